import math


def compute_dense_reward(self, action):
    """Make the hopper move forward as fast as possible.

    Written by rewardlab's offline synthesizer (rewardlab-offline-v1, a deterministic term
    library, not an LLM). Behaviour: locomotion.
    """
    vx = self.hopper.top.velocity_x
    pitch = self.hopper.top_joint.angle
    components = {
        # velocity along +x
        "progress": 1.0 * (vx),
        # bonus for every step the episode lasts
        "alive": 1.0 * (1.0),
        # keep the torso upright
        "upright": 0.5 * (math.cos(pitch)),
        # small action regularisation
        "action": 0.001 * (-float(action @ action)),
    }
    return sum(components.values()), components
