import math


def compute_dense_reward(self, action):
    """Make the hopper jump in place.

    Written by rewardlab's offline synthesizer (rewardlab-offline-v1, a deterministic term
    library, not an LLM). Behaviour: jump.
    """
    x = self.hopper.top.position_x
    z = self.hopper.top.position_z
    vz = self.hopper.top.velocity_z
    pitch = self.hopper.top_joint.angle
    components = {
        # rise above the standing height
        "height": 2.0 * (max(z - 1.25, 0.0)),
        # upward velocity
        "lift": 0.5 * (max(vz, 0.0)),
        # stay where you started
        "stay": 0.5 * (-abs(x)),
        # keep the torso upright
        "upright": 1.0 * (math.cos(pitch)),
        # small action regularisation
        "action": 0.001 * (-float(action @ action)),
    }
    return sum(components.values()), components
