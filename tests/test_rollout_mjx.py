"""The mjx (JAX) back-end against gymnasium, on CPU with two worlds.

Skipped when jax / mujoco-mjx are not installed (they are optional: pip install
mujoco-mjx==3.3.0 jax==0.5.3 jaxlib==0.5.3). The jit compile takes ~10 s on CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip(
    "jax", reason="mjx back-end needs jax: pip install mujoco-mjx==3.3.0 jax==0.5.3 jaxlib==0.5.3"
)
pytest.importorskip("mujoco.mjx", reason="mjx back-end needs mujoco-mjx==3.3.0")

from rewardlab.rollout import CoreConfig, RolloutCore  # noqa: E402
from rewardlab.tasks import get_task  # noqa: E402
from rewardlab.wrappers import make_env  # noqa: E402

PROGRAM = """
import math
def compute_dense_reward(self, action):
    return self.cheetah.top.velocity_x + 0.5 * math.cos(self.cheetah.top_joint.angle)
"""


def test_mjx_core_matches_gymnasium_and_batches_the_reward():
    task = get_task("mujoco/halfcheetah_forward")
    n = 2
    core = RolloutCore(task, CoreConfig(num_worlds=n, seed=3, backend="mjx"), program=PROGRAM)
    envs = [make_env(task) for _ in range(n)]
    gym_obs = np.stack([env.reset(seed=3 + i)[0] for i, env in enumerate(envs)])
    np.testing.assert_array_equal(core.reset(), gym_obs)
    rng = np.random.default_rng(0)
    for _ in range(12):
        action = rng.uniform(-1, 1, (n, 6)).astype(np.float32)
        out = core.step(action)
        for i, env in enumerate(envs):
            obs, reward, *_ = env.step(action[i])
            # MJX's own solver/collision code in float64: same dynamics to ~1e-9 here
            np.testing.assert_allclose(out.final_obs[i], obs, rtol=0, atol=1e-7)
            assert out.env_reward[i] == pytest.approx(reward, abs=1e-6)
    assert core.reward_report.mode == "lifted"
    assert core.backend.name == "mjx"
    # auto-reset on device: force world 1 to finish its episode now
    core.steps[1] = core.horizon - 1
    out = core.step(np.zeros((n, 6), dtype=np.float32))
    assert out.truncated.tolist() == [False, True]
    np.testing.assert_array_equal(out.obs[1], envs[1].reset()[0])
    assert core.steps.tolist() == [13, 0]


def test_mjx_rejects_contact_force_envs():
    with pytest.raises(NotImplementedError, match="cfrc_ext"):
        RolloutCore(get_task("mujoco/ant_forward"), CoreConfig(num_worlds=2, backend="mjx"))
