"""Scripted MetaWorld teacher (rewardlab.shaping.scripted): the value fitted from scripted
rollouts predicts held-out returns and rises along a successful demonstration, the shaping
wrapper adds exactly ``gamma Phi(s') - Phi(s)`` with it, a resumed training reuses the fitted
value, and the CLI path fits, saves and trains."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from guards import HANG_S

from rewardlab.config import AlgoConfig, ShapingConfig, TrainConfig
from rewardlab.rundir import read_csv
from rewardlab.shaping import continuous
from rewardlab.shaping.continuous import TeacherShaper, make_shaper
from rewardlab.shaping.scripted import ScriptedValue, fit_scripted_value, r_squared
from rewardlab.shaping.teacher import PotentialShaping
from rewardlab.tasks import get_task
from rewardlab.wrappers import make_env

GAMMA = 0.95  # tail of 59 steps: most of each 200-step rollout has pure Monte-Carlo targets
TASK = "metaworld/drawer_close"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    task = replace(get_task(TASK), horizon=200)  # the scripted policy succeeds at ~80 steps
    folder = tmp_path_factory.mktemp("teacher")
    _, report = fit_scripted_value(
        task, folder, gamma=GAMMA, episodes=3, noise=(0.0, 1.0), epochs=40
    )
    return folder, report


def test_r_squared() -> None:
    y = np.array([1.0, 2.0, 3.0])
    assert r_squared(y, y) == 1.0 and r_squared(np.full(3, 2.0), y) == 0.0
    assert r_squared(y[::-1], y) == pytest.approx(-3.0)


def test_fit_predicts_heldout_returns_and_rises_along_a_demo(
    fitted: tuple[Path, dict[str, object]],
) -> None:
    folder, report = fitted
    assert (folder / "value.pt").exists() and json.loads(
        (folder / "fit.json").read_text()
    ) == report
    assert (
        report["steps"] == 2 * 3 * 200 and report["heldout_steps"] == 2 * 200
    )  # 1 of 3 per level held out
    assert report["heldout_r2_pure_mc"] > 0.3, report  # type: ignore[operator]
    assert report["heldout_r2"] > 0.3, report  # type: ignore[operator]
    # the held-out noiseless demonstration: the value climbs on its way to success
    assert report["heldout_demo_value_increment_to_success"] > 0, report  # type: ignore[operator]
    assert report["heldout_demo_fraction_rising_to_success"] > 0.5, report  # type: ignore[operator]


def test_wrapper_adds_the_scripted_potential_exactly(
    fitted: tuple[Path, dict[str, object]],
) -> None:
    folder, _ = fitted
    phi = ScriptedValue.load(folder / "value.pt", scale=0.5)
    reference = ScriptedValue.load(folder / "value.pt")  # an independent copy of the network
    task = get_task(TASK)
    env = PotentialShaping(make_env(task), phi, gamma=GAMMA)
    bare = make_env(task)
    obs, _ = env.reset(seed=3)
    bare_obs, _ = bare.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        obs2, reward, terminated, _, info = env.step(action)
        _, bare_reward, *_ = bare.step(action)
        values = 0.5 * reference(np.stack([obs, obs2]))
        expected = GAMMA * (0.0 if terminated else values[1]) - values[0]
        assert info["reward/shaping"] == pytest.approx(expected, rel=1e-5, abs=1e-4)
        assert float(reward) == pytest.approx(float(bare_reward) + expected, rel=1e-5, abs=1e-4)
        obs = obs2
    env.close()
    bare.close()


def test_directory_form_of_load(tmp_path: Path, fitted: tuple[Path, dict[str, object]]) -> None:
    folder, _ = fitted
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "value.pt").write_bytes((folder / "value.pt").read_bytes())
    obs = np.zeros((1, 39), dtype=np.float32)
    assert ScriptedValue.load(tmp_path)(obs) == pytest.approx(
        ScriptedValue.load(folder / "value.pt")(obs)
    )


def test_resumed_training_reuses_the_fitted_value(
    tmp_path: Path, fitted: tuple[Path, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = fitted
    (tmp_path / "teacher").mkdir()
    for name in ("value.pt", "fit.json"):
        (tmp_path / "teacher" / name).write_bytes((folder / name).read_bytes())

    def refit(*args: object, **kwargs: object) -> None:
        raise AssertionError("the value was fitted again on resume")

    monkeypatch.setattr(continuous, "fit_scripted_value", refit)
    cfg = ShapingConfig(kind="teacher", teacher="scripted")
    shaper = make_shaper(cfg, AlgoConfig(), TrainConfig(), tmp_path, get_task(TASK))
    assert isinstance(shaper, TeacherShaper) and shaper.obs_dim == 39
    with pytest.raises(ValueError, match="needs a MetaWorld task"):
        make_shaper(
            cfg, AlgoConfig(), TrainConfig(), tmp_path / "fresh", get_task("mujoco/hopper_forward")
        )
    with pytest.raises(ValueError, match="observes 39 values"):  # a reused value.pt on another task
        shaper = make_shaper(
            ShapingConfig(kind="teacher", teacher=str(folder / "value.pt")),
            AlgoConfig(),
            TrainConfig(),
            tmp_path,
        )
        assert shaper is not None
        shaper.wrap(make_env(get_task("mujoco/hopper_forward")), from_program=False)


def test_cli_trains_with_the_scripted_teacher(tmp_path: Path) -> None:
    args = [
        "train", f"task={TASK}", "reward_file=env", "shaping=teacher", "shaping.teacher=scripted",
        "shaping.scripted_episodes=3", "shaping.scripted_noise=[0.0,1.0]", "shaping.value_epochs=10",
        "shaping.gamma=0.9", "task.horizon=100", f"runs_dir={tmp_path / 'runs'}", "train.total_timesteps=256",
        "train.n_envs=2", "train.eval_freq=256", "train.eval_episodes=1", "train.video_episodes=0",
        "train.progress_bar=false", "train.checkpoint_freq=100000", "algo.kwargs.n_steps=128", "algo.kwargs.n_epochs=1",
    ]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "rewardlab.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (vdir,) = (tmp_path / "runs").rglob("rewards/v0")
    fit = json.loads((vdir / "teacher" / "fit.json").read_text())
    assert (
        (vdir / "teacher" / "value.pt").exists()
        and fit["gamma"] == 0.9
        and fit["heldout_steps"] == 200
    )
    assert any(r.get("reward/shaping") for r in read_csv(vdir / "tb" / "progress.csv"))
    assert "teacher: scripted" in (vdir.parents[1] / "config.yaml").read_text()
