import math

import numpy as np


def compute_dense_reward(self, action):
    """Rotate the faucet handle clockwise.

    Written by rewardlab's offline synthesizer (rewardlab-offline-v1, a deterministic term
    library, not an LLM). Behaviour: open_close.
    """
    ee = self.robot.ee_position
    goal = self.goal_position
    tip = ee - np.array([0.0, 0.0, 0.045])
    obj = self.obj1.position
    gap = goal - obj
    dist_goal = float(np.linalg.norm(gap))
    behind = obj - 0.03 * gap / (dist_goal + 1e-6)
    dist_reach = float(np.linalg.norm(behind - tip))
    components = {
        # fingertips behind obj1, on the side away from the goal
        "reach": 1.0 * (1.0 - math.tanh(5.0 * dist_reach)),
        # obj1 toward the goal (along xyz)
        "move": 3.0 * (1.0 - math.tanh(5.0 * dist_goal)),
        # staged bonus at the goal
        "goal": 2.0 * (1.0 if dist_goal < 0.05 else 0.0),
        # small action regularisation
        "action": 0.01 * (-float(action @ action)),
    }
    return sum(components.values()), components
