def compute_dense_reward(self, action):
    """Make the ant lie down on the ground.

    Written by rewardlab's offline synthesizer (rewardlab-offline-v1, a deterministic term
    library, not an LLM). Behaviour: lie_down.
    """
    z = self.ant.torso.position_z
    vx = self.ant.torso.velocity_x
    vz = self.ant.torso.velocity_z
    up = self.ant.torso.up_z
    components = {
        # bring the torso down to 0.30 m
        "height": 2.0 * (-max(z - 0.30, 0.0)),
        # stay right side up
        "upright": 1.0 * (up),
        # settle down
        "steady": 0.1 * (-abs(vx) - abs(vz)),
        # small action regularisation
        "action": 0.001 * (-float(action @ action)),
    }
    return sum(components.values()), components
