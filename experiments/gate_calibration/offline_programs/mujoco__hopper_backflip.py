import math


def compute_dense_reward(self, action):
    """Make the hopper do a back flip.

    Written by rewardlab's offline synthesizer (rewardlab-offline-v1, a deterministic term
    library, not an LLM). Behaviour: flip.
    """
    z = self.hopper.top.position_z
    vz = self.hopper.top.velocity_z
    pitch = self.hopper.top_joint.angle
    spin = self.hopper.top_joint.angular_velocity
    flipped = -pitch >= 2.0 * math.pi
    components = {
        # spin in the flip direction until one full turn is done
        "rotation": 1.0 * (0.0 if flipped else min(max(-spin, -2.0), 6.0)),
        # jump: height gives time to rotate
        "lift": 0.3 * (0.0 if flipped else min(max(vz, -1.0), 3.0)),
        # after the full turn: be upright and high (stage bonus)
        "landing": 2.0 * ((1.0 + math.cos(pitch) + min(z, 1.25) / 1.25) if flipped else 0.0),
        # stop spinning after landing
        "steady": 0.05 * (-abs(spin) if flipped else 0.0),
        # small action regularisation
        "action": 0.001 * (-float(action @ action)),
    }
    return sum(components.values()), components
