# task: mujoco/humanoid_standup
# instruction: Make the humanoid stand up from lying on the ground.
# origin: gymnasium HumanoidStandup-v5's own reward (torso height / dt, here scaled by 1e-3, + alive - control), in card terms
import numpy as np


def compute_dense_reward(self, action):
    upward = self.humanoid.torso.position_z / self.dt
    control = 0.1 * float(np.sum(np.square(action)))
    return 0.001 * upward + 1.0 - control, {
        "upward": 0.001 * upward,
        "alive": 1.0,
        "control": -control,
    }
