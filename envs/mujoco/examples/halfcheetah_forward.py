# task: mujoco/halfcheetah_forward
# instruction: Make the half cheetah run forward as fast as possible.
# origin: gymnasium HalfCheetah-v5's own reward, written in card terms
import numpy as np


def compute_dense_reward(self, action):
    forward = self.cheetah.top.velocity_x
    control = 0.1 * float(np.sum(np.square(action)))
    return forward - control, {"forward": forward, "control": -control}
