# A reward with planted errors for the E2CL experiment (`metaworld/drawer_close:planted`):
# it pays for the gripper's height only (it ignores the drawer) plus a constant.
def compute_dense_reward(self, action):
    """Close the drawer (planted errors: gripper height only, and a constant bias)."""
    ee = self.robot.ee_position
    components = {
        "height": 1.0 * (float(ee[2])),
        "bias": 0.5 * (1.0),
    }
    return sum(components.values()), components
