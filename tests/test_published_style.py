"""Reward programs written the way published LLM rewards are (Text2Reward's conventions) run
unchanged: ``np``/``math`` without an import, scipy's distances and ``Rotation``,
``transforms3d`` quaternions, unused imports (a warning), ``(self, action, obs)``, typing
annotations, ``match`` with captures; what stays refused says why (torch)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import transforms3d.quaternions as t3q
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation as ScipyRotation

from rewardlab.reward.check import check_program, static_check
from rewardlab.reward.program import RewardProgram, RewardProgramError, RewardRuntimeError
from rewardlab.tasks import get_task
from rewardlab.wrappers import compile_for_task, env_proxy, make_env

HOPPER = get_task("mujoco/hopper_forward")


def program(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module")
def hopper():  # type: ignore[no-untyped-def]
    env = make_env(HOPPER)
    obs, _ = env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
    yield env, env_proxy(env, HOPPER), obs
    env.close()


def test_np_and_math_are_bound_without_an_import(hopper) -> None:  # type: ignore[no-untyped-def]
    env, me, obs = hopper
    prog = compile_for_task(
        program("""
        def compute_dense_reward(self, action):
            speed = np.clip(self.hopper.top.velocity_x, -3.0, 3.0)
            return float(speed - 0.1 * np.sum(np.square(action)) + math.cos(0.0))
    """),
        HOPPER,
    )
    action = np.array([0.5, -0.5, 0.25])
    expected = float(np.clip(me.hopper.top.velocity_x, -3.0, 3.0) - 0.1 * np.sum(action**2) + 1.0)
    assert prog(me, action, obs)[0] == pytest.approx(expected)
    assert prog.warnings == []


def test_scipy_distance_and_rotation_give_scipys_values(hopper) -> None:  # type: ignore[no-untyped-def]
    env, me, obs = hopper
    prog = RewardProgram.compile(
        program("""
        from scipy.spatial import distance
        from scipy.spatial.distance import cdist
        from scipy.spatial.transform import Rotation as R

        def compute_dense_reward(self, action, obs):
            a, b = obs[:3].reshape(1, -1), obs[3:6].reshape(1, -1)
            r = R.from_euler("xyz", obs[:3]) * R.from_rotvec(obs[3:6])
            parts = {
                "cdist_cosine": float(cdist(a, b, "cosine")[0, 0]),
                "euclidean": float(distance.euclidean(obs[:3], obs[3:6])),
                "angle": float(r.magnitude()),
                "applied": float(r.apply([1.0, 0.0, 0.0])[1]),
                "quat_w": float(r.inv().as_quat()[3]),
                "n": float(len(R.from_quat([[0, 0, 0, 1], [0, 0, 1, 0]]))),
            }
            return sum(parts.values()), parts
    """)
    )
    _, parts = prog(me, None, obs)
    r = ScipyRotation.from_euler("xyz", obs[:3]) * ScipyRotation.from_rotvec(obs[3:6])
    assert parts["cdist_cosine"] == pytest.approx(
        cdist(obs[None, :3], obs[None, 3:6], "cosine")[0, 0]
    )
    assert parts["euclidean"] == pytest.approx(float(np.linalg.norm(obs[:3] - obs[3:6])))
    assert parts["angle"] == pytest.approx(r.magnitude())
    assert parts["applied"] == pytest.approx(r.apply([1.0, 0.0, 0.0])[1])
    assert parts["quat_w"] == pytest.approx(r.inv().as_quat()[3])
    assert parts["n"] == 2.0


def test_transforms3d_quaternions(hopper) -> None:  # type: ignore[no-untyped-def]
    env, me, obs = hopper
    prog = RewardProgram.compile(
        program("""
        from transforms3d.quaternions import qinverse, qmult, quat2axangle
        import transforms3d

        def compute_dense_reward(self, action, obs):
            q = obs[:4] / np.linalg.norm(obs[:4])
            axis, angle = quat2axangle(qmult(qinverse(q), transforms3d.quaternions.qeye()))
            return float(angle), {"axis0": float(axis[0])}
    """)
    )
    q = obs[:4] / np.linalg.norm(obs[:4])
    axis, angle = t3q.quat2axangle(t3q.qmult(t3q.qinverse(q), t3q.qeye()))
    reward, parts = prog(me, None, obs)
    assert reward == pytest.approx(angle) and parts["axis0"] == pytest.approx(axis[0])


def test_unused_imports_are_warnings_and_torch_says_why() -> None:
    unused = program("""
        import numpy as np
        import math
        from scipy.spatial import distance
        from scipy.spatial.transform import Rotation

        def compute_dense_reward(self, action):
            return float(np.sum(action))
    """)
    prog = RewardProgram.compile(unused)
    assert prog(None, np.ones(3))[0] == 3.0
    notes = [(w.line, w.message) for w in prog.warnings]
    assert notes == [(2, "unused import of 'math'"), (3, "unused import of 'scipy.spatial.distance'"),
                     (4, "unused import of 'scipy.spatial.transform.Rotation'")]  # fmt: skip
    _, findings, stats = static_check(HOPPER, unused)
    assert findings == [] and len(stats["warnings"]) == 3

    for body in ("return float(np.sum(action))", "return float(torch.sum(action))"):  # unused, used
        with pytest.raises(RewardProgramError) as err:
            RewardProgram.compile(
                unused.replace("import math", "import torch").replace(
                    "return float(np.sum(action))", body
                )
            )
        (finding,) = err.value.findings
        assert finding.line == 2 and finding.message.startswith(
            "torch is not available to reward programs"
        )
        assert "write the reward with numpy" in finding.message


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ("from scipy.spatial import KDTree", "scipy.spatial.KDTree is not available"),
        ("import scipy.optimize", "module 'scipy.optimize' is not available"),
        ("from scipy.spatial.transform import Slerp", "Slerp is not available"),
        ("from transforms3d.quaternions import np", "transforms3d.quaternions.np is not available"),
    ],
)
def test_only_the_vetted_parts_of_scipy_and_transforms3d(body: str, phrase: str) -> None:
    source = f"{body}\n\ndef compute_dense_reward(self, action):\n    return float(len([{body.split()[-1]}]))\n"
    with pytest.raises(RewardProgramError) as err:
        RewardProgram.compile(source)
    assert phrase in str(err.value)


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        ("cdist(np.zeros((2000, 3)), np.zeros((2000, 3)))", "would create 4,000,000 elements"),
        ("cdist(np.zeros((2, 3)), np.zeros((2, 3)), lambda u, v: 0.0)", "metric must be a name"),
        ("R.random(10**7)", "would create 90,000,000 elements"),
        ("R.from_quat([0, 0, 0, 1]).random", "Rotation.random is not available"),
        ("R.identity().as_quat().astype('O')", "object dtypes are not allowed"),
    ],
)
def test_facaded_scipy_is_bounded(line: str, phrase: str) -> None:
    prog = RewardProgram.compile(
        program(f"""
        from scipy.spatial.distance import cdist
        from scipy.spatial.transform import Rotation as R

        def compute_dense_reward(self, action):
            x = {line}
            return 0.0
    """)
    )
    with pytest.raises(RewardRuntimeError) as err:
        prog(None, np.zeros(3))
    assert phrase in err.value.finding.message and err.value.finding.line == 5


def test_annotations_signature_and_match_captures() -> None:
    prog = RewardProgram.compile(
        program("""
        from typing import Dict, Tuple

        def compute_dense_reward(self, action: np.ndarray, obs) -> Tuple[float, Dict[str, float]]:
            match list(action):
                case [a, b, c]:
                    total = a + b + c
                case [first, *rest]:
                    total = first
                case _:
                    total = 0.0
            return float(total), {"first": float(action[0])}
    """)
    )
    assert prog.takes_obs
    assert prog(None, np.array([1.0, 2.0, 3.0]), np.zeros(2)) == (6.0, {"first": 1.0})
    assert prog(None, np.array([4.0, 2.0]), np.zeros(2))[0] == 4.0


@pytest.mark.timeout(120)
def test_metaworld_program_in_published_style_passes_the_check() -> None:
    """A MetaWorld program as the published ones are written: no numpy import, an unused
    ``Rotation`` import, ``(self, action, obs)``, a cdist, an action penalty on the raw action."""
    source = program("""
        from scipy.spatial.transform import Rotation as R
        from scipy.spatial.distance import cdist

        def compute_dense_reward(self, action, obs) -> float:
            reach = np.linalg.norm(self.robot.ee_position - self.obj1.position)
            to_goal = cdist(self.obj1.position.reshape(1, -1), self.goal_position.reshape(1, -1))[0, 0]
            grip = -abs(self.robot.gripper_openness + 1)
            return -reach - to_goal + 0.5 * grip - 0.1 * np.linalg.norm(action)
    """)
    report = check_program(get_task("metaworld/drawer_close"), source, steps=30)
    assert report.ok, report.summary()
    assert report.stats["calls_ok"] == 30
    assert report.stats["warnings"] == [
        "line 1: unused import of 'scipy.spatial.transform.Rotation'"
    ]
