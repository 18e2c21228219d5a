import numpy as np


def compute_dense_reward(self, action):
    upright = 1.0 - abs(self.pendulum.pole.angle) / 0.2
    centred = -0.1 * abs(self.pendulum.cart.position)
    effort = -0.001 * float(np.sum(np.square(action)))
    return upright + centred + effort, {"upright": upright, "centred": centred, "effort": effort}
