# task: mujoco/ant_forward
# instruction: Make the ant move forward as fast as possible.
# origin: gymnasium Ant-v5's own reward (without contact cost), written in card terms
import numpy as np


def compute_dense_reward(self, action):
    forward = self.ant.torso.velocity_x
    healthy = 1.0 if 0.2 <= self.ant.torso.position_z <= 1.0 else 0.0
    control = 0.5 * float(np.sum(np.square(action)))
    return forward + healthy - control, {
        "forward": forward,
        "healthy": healthy,
        "control": -control,
    }
