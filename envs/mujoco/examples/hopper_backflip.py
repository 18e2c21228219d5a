# task: mujoco/hopper_backflip
# instruction: Make the hopper do a back flip.
# origin: rewardlab, hand-written staged reward (spin until one full turn, then land upright)
import math


def compute_dense_reward(self, action):
    pitch = self.hopper.top_joint.angle
    spin = self.hopper.top_joint.angular_velocity
    z = self.hopper.top.position_z
    flipped = -pitch >= 2.0 * math.pi  # the pitch is not wrapped: a full back flip is -2*pi
    components = {
        "rotation": 0.0 if flipped else min(max(-spin, -2.0), 4.0),
        "lift": 0.0 if flipped else 0.5 * min(max(self.hopper.top.velocity_z, -1.0), 2.0),
        "landing": 3.0 * (2.0 + 2.0 * math.cos(pitch) + min(z, 1.25) / 1.25) if flipped else 0.0,
        "steady": -0.3 * abs(spin) if flipped else 0.0,
    }
    return sum(components.values()), components
