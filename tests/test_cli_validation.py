"""The CLI checks the whole command line before it writes anything: each bad command line is
one line on stdout, exit code 2, and no file or folder appears. A crash of any kind leaves
the run ``failed`` with its reason, never ``training``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from rewardlab.cli import main
from rewardlab.config import to_schema
from rewardlab.rundir import RunDir
from rewardlab.tasks import get_task

TINY = [
    "train.total_timesteps=512", "train.n_envs=2", "train.eval_freq=512", "train.eval_episodes=1",
    "train.video_episodes=0", "train.progress_bar=false", "algo.kwargs.n_steps=256", "check.steps=30",
]  # fmt: skip


def untrained_run(root: Path) -> Path:
    """A run folder whose v0 started training but has no model yet."""
    run = root / "untrained"
    (run / "rewards" / "v0").mkdir(parents=True)
    cfg = to_schema({"task": asdict(get_task("mujoco/hopper_forward"))})
    RunDir(run).save_config(cfg)
    (run / "rewards" / "v0" / "summary.json").write_text('{"version": 0, "status": "training"}')
    return run


CASES = [
    (["train", "gate.on_train=blok"], "expected one of [off, warn, block]"),
    (["train", "llm.backend=offlin"], "expected one of [offline, openai, replay]"),
    (["train", "algo.name=dqn"], "expected one of [ppo, sac]"),
    (["train", "train.backend=nope"], "expected one of [dummy, native, mjx]"),
    (["train", "+train.total_steps=4096"], "train.total_steps: not a setting"),
    (["train", "train.total_steps=4096"], "Key 'total_steps' not in 'TrainConfig'"),
    (["train", "train.total_timesteps=-5"], "train.total_timesteps must be positive, not -5"),
    (["train", "train.n_envs=0"], "train.n_envs must be positive"),
    (["train", "reward_file=missing.py"], "reward_file=missing.py does not exist"),
    (["train", "task=mujoco/nope"], "unknown task 'mujoco/nope'; did you mean"),
    (["train", "algo=nope"], "unknown algo 'nope': choose one of ppo, sac"),
    (["train", "run=missing_run"], "missing_run does not exist"),
    (["train", "episodes=3"], "episodes= is not an argument of `rewardlab train`"),
    (
        ["train", "task=metaworld/drawer_open", "train.backend=native"],
        "MuJoCo locomotion tasks only",
    ),
    (
        ["train", "task=mujoco/humanoid_forward", "train.backend=native"],
        "HumanoidEnv is not supported",
    ),
    (["train", "task=mujoco/ant_forward", "train.backend=mjx"], "contact forces"),
    (
        ["train", "train.backend=native", "shaping=adaptive"],
        "shaping=adaptive wraps each env and needs train.backend=dummy",
    ),
    (["train", "llm=replay"], "llm.replay_from"),
    (["train", "llm=openai"], "set the environment variable OPENAI_API_KEY"),
    (["train", "-m", "train.seed=0,1", "train.total_timesteps=0"], "must be positive"),
    (["train", "algo.policy=moee"], "expected one of [MlpPolicy, moe]"),
    (
        ["train", "algo.policy=moe", "moe.router=top2"],
        "expected one of [topk, prototype, expert_choice, sigmoid, dense_to_sparse, tsallis]",
    ),
    (
        ["train", "algo.policy=moe", "moe.router=prototype", "moe.k=3"],
        "needs moe.experts divisible by moe.k",
    ),
    (["train", "algo.policy=moe", "moe.k=5"], "moe.k must be in [1, moe.experts=4]"),
    (["train", "algo.policy=moe", "moe.route_on=tsk"], "expected one of [obs, task]"),
    (
        ["train", "algo.policy=moe", "moe.route_on=task"],
        "moe.route_on=task routes by the one-hot task id",
    ),
    (
        ["train", "algo.policy=moe", "moe.straight_through=true"],
        "moe.straight_through weighs the one chosen expert 1: it needs moe.router=topk and moe.k=1",
    ),
    (
        ["train", "task=multi/mt10", "algo.policy=moe", "moe.k=1", "moe.spread_tasks=true"],
        "moe.spread_tasks starts task t on expert t mod E: it needs moe.route_on=task",
    ),
    (["train", "task=multi/mt10", "shaping=adaptive"], "not available for multi-task sets"),
    (["train", "task=multi/mt10", "train.backend=native"], "MuJoCo locomotion tasks only"),
    (["generate", "task=multi/mt10"], "is a multi-task set"),
    (["check", "task=mujoco/hopper_forward"], "give the reward program to check"),
    (["evaluate"], "give the run: rewardlab evaluate run=<run dir>"),
    (["evaluate", "run=untrained"], "has no trained model yet"),
    (["refine", "run=untrained", "feedback=faster"], "has no finished training to refine"),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_command_line_is_one_line_exit_2_and_writes_nothing(
    args: list[str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    untrained_run(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code = main([*args, f"runs_dir={tmp_path / 'runs'}"])
    out = capsys.readouterr()
    assert code == 2, out.out + out.err
    lines = out.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], out.out
    assert "Traceback" not in out.err
    assert sorted(tmp_path.rglob("*")) == before, "a refused command writes nothing"


def test_unknown_algo_does_not_list_internal_schema_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "algo=nope", "llm=nope"]) == 2
    out = capsys.readouterr().out
    assert "schema" not in out and "`rewardlab tasks`" not in out
    assert main(["train", "task=mujoco/hoper_forward"]) == 2
    out = capsys.readouterr().out
    assert "did you mean mujoco/hopper_forward" in out and "`rewardlab tasks` lists them all" in out


def test_a_crash_of_any_type_leaves_the_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rewardlab.pipeline

    def crash(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("simulated bug in training")

    monkeypatch.setattr(rewardlab.pipeline, "train", crash)
    monkeypatch.chdir(tmp_path)
    with pytest.raises((SystemExit, ZeroDivisionError)):
        main(["train", "reward_file=env", *TINY, f"runs_dir={tmp_path / 'runs'}"])
    (summary_file,) = [
        p for p in (tmp_path / "runs").rglob("summary.json") if p.parent.name != "v0"
    ]
    summary = json.loads(summary_file.read_text())
    assert (
        summary["status"] == "failed"
        and summary["message"] == "ZeroDivisionError: simulated bug in training"
    )
    version = json.loads((summary_file.parent / "rewards" / "v0" / "summary.json").read_text())
    assert version["status"] == "failed" and "ZeroDivisionError" in version["message"]
