import math

import numpy as np


def compute_dense_reward(self, action):
    """Push the button on the coffee machine.

    Written by rewardlab's offline synthesizer (rewardlab-offline-v1, a deterministic term
    library, not an LLM). Behaviour: push_pull.
    """
    ee = self.robot.ee_position
    goal = self.goal_position
    tip = ee - np.array([0.0, 0.0, 0.045])
    obj = self.obj1.position
    gap = float(goal[1] - obj[1])
    dist_goal = abs(gap)
    behind = obj - np.array([0.0, 0.03 * np.sign(gap), 0.0])
    dist_reach = float(np.linalg.norm(behind - tip))
    components = {
        # fingertips behind obj1, on the side away from the goal
        "reach": 1.0 * (1.0 - math.tanh(5.0 * dist_reach)),
        # obj1 toward the goal (along y)
        "move": 3.0 * (1.0 - math.tanh(5.0 * dist_goal)),
        # staged bonus at the goal
        "goal": 2.0 * (1.0 if dist_goal < 0.02 else 0.0),
        # small action regularisation
        "action": 0.01 * (-float(action @ action)),
    }
    return sum(components.values()), components
