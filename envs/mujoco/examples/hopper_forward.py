# task: mujoco/hopper_forward
# instruction: Make the hopper move forward as fast as possible.
# origin: gymnasium Hopper-v5's own reward (forward velocity + healthy bonus - control cost), written in card terms
import numpy as np


def compute_dense_reward(self, action):
    forward = self.hopper.top.velocity_x
    healthy = (
        1.0 if self.hopper.top.position_z > 0.7 and abs(self.hopper.top_joint.angle) < 0.2 else 0.0
    )
    control = 0.001 * float(np.sum(np.square(action)))
    return forward + healthy - control, {
        "forward": forward,
        "healthy": healthy,
        "control": -control,
    }
