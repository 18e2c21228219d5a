import math

import numpy as np


def compute_dense_reward(self, action):
    """Reach the goal position with the gripper.

    Written by rewardlab's offline synthesizer (rewardlab-offline-v1, a deterministic term
    library, not an LLM). Behaviour: reach.
    """
    ee = self.robot.ee_position
    goal = self.goal_position
    tip = ee - np.array([0.0, 0.0, 0.045])
    dist_goal = float(np.linalg.norm(goal - tip))
    components = {
        # bring the fingertips to the goal
        "reach": 2.0 * (1.0 - math.tanh(5.0 * dist_goal)),
        # staged bonus at the goal
        "goal": 1.0 * (1.0 if dist_goal < 0.05 else 0.0),
        # small action regularisation
        "action": 0.01 * (-float(action @ action)),
    }
    return sum(components.values()), components
