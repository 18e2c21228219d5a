# task: mujoco/walker_forward
# instruction: Make the walker walk forward as fast as possible.
# origin: gymnasium Walker2d-v5's own reward, written in card terms
import numpy as np


def compute_dense_reward(self, action):
    forward = self.walker.top.velocity_x
    z, pitch = self.walker.top.position_z, self.walker.top_joint.angle
    healthy = 1.0 if 0.8 < z < 2.0 and abs(pitch) < 1.0 else 0.0
    control = 0.001 * float(np.sum(np.square(action)))
    return forward + healthy - control, {
        "forward": forward,
        "healthy": healthy,
        "control": -control,
    }
