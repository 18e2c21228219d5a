"""A multi-task run's reward versions (``task=multi/<set>``, :mod:`rewardlab.multitask`).

A version of a multi-task run holds **every member's reward**: ``rewards/v<N>/tasks/<member
name>/reward.py`` (with that member's ``check.json``, ``gate.json`` and LLM records where it
was written in this version; a member on the benchmark's own reward has no ``reward.py``),
beside the one policy trained on all of them (``metrics.csv`` with ``success/<member>``
columns, checkpoints, ``summary.json`` with success per member, videos
``<member>_<n>.mp4``). Version 0 writes a reward per member (``reward_file=env``: the
benchmark's reward everywhere); ``rewardlab refine run=<run> task_member=<name>
feedback=...`` writes version N+1 from feedback on one member: that member's reward is refined
(``feedback.json`` names the member, ``diff.patch`` is its diff), the others are copied, and
the policy is trained again (from scratch, or from version N's policy with
``train.warm_start=parent``).

Example:
    >>> member_dir(Path("run/rewards/v1"), "metaworld/push").as_posix()
    'run/rewards/v1/tasks/metaworld/push'
"""

from __future__ import annotations

import difflib
import logging
import time
from pathlib import Path

from rewardlab.config import BENCHMARK_REWARD, RewardLabConfig
from rewardlab.generators.prompts import refinement_messages
from rewardlab.multitask import member_index, member_tasks
from rewardlab.pipeline import accept, describe_generator, evidence, generate
from rewardlab.rundir import RunDir, write_json
from rewardlab.tasks.registry import TaskSpec

log = logging.getLogger(__name__)

MEMBERS = "tasks"
"""Folder of the members' rewards inside a version folder."""


def member_dir(vdir: Path, member: str) -> Path:
    """Folder of member ``member``'s reward in version folder ``vdir``."""
    return vdir / MEMBERS / member


def read_sources(vdir: Path, task: TaskSpec) -> dict[str, str | None]:
    """Every member's reward program in version folder ``vdir`` (``None``: the benchmark's)."""
    out: dict[str, str | None] = {}
    for name in map(str, task.members):
        path = member_dir(vdir, name) / "reward.py"
        out[name] = path.read_text() if path.is_file() else None
    return out


def initial_rewards(
    cfg: RewardLabConfig, task: TaskSpec, run_dir: Path
) -> tuple[dict[str, str | None] | None, str]:
    """Version 0 of a multi-task run: a reward per member from the reward writer, or the
    benchmark's own everywhere (``reward_file=env``): ``(sources, failure message)``."""
    vdir = RunDir(run_dir).version_dir(0)
    sources: dict[str, str | None] = {}
    for member in member_tasks(task):
        mdir = member_dir(vdir, member.name)
        mdir.mkdir(parents=True, exist_ok=True)
        if cfg.reward_file in BENCHMARK_REWARD:
            sources[member.name] = None
            continue
        log.info(
            f"{member.name}: writing a reward for {member.instruction!r} with {describe_generator(cfg)} ..."
        )
        source, failure = accept(cfg, member, generate(cfg, member, mdir), mdir)
        if failure or source is None:
            return None, f"{member.name}: {failure}"
        sources[member.name] = source
    return sources, ""


def refinable(run: RunDir, task: TaskSpec, version: int, member: str | None) -> str:
    """Why member ``member`` of version ``version`` cannot be refined (``""``: it can)."""
    if member is None:
        names = ", ".join(map(str, task.members))
        return f"{run.path} is a multi-task run ({task.name}): say which member the feedback is about: task_member=<one of {names}>"
    try:
        name = str(task.members[member_index(task, member)])
    except KeyError as exc:
        return str(exc.args[0])
    if read_sources(run.version_dir(version), task)[name] is None:
        return f"{name} in v{version} of {run.path} was trained on the benchmark's reward: there is no program to refine"
    return ""


def refined_member_reward(
    cfg: RewardLabConfig,
    task: TaskSpec,
    run_dir: Path,
    parent: int,
    member: str,
    feedback: list[str],
) -> tuple[int, dict[str, str | None] | None, str]:
    """Write the next version from ``feedback`` on member ``member`` of version ``parent``:
    ``(version, every member's source, failure message)``."""
    run = RunDir(run_dir)
    target = member_tasks(task)[member_index(task, member)]
    sources = read_sources(run.version_dir(parent), task)
    parent_source = sources[target.name]
    if parent_source is None:
        raise ValueError(f"{target.name} in v{parent} has no reward program to refine")
    shown = evidence(run_dir, parent, target.name)
    version = run.next_version()
    vdir = run.version_dir(version)
    for name, source in sources.items():
        member_dir(vdir, name).mkdir(parents=True, exist_ok=True)
        if source is not None and name != target.name:
            (member_dir(vdir, name) / "reward.py").write_text(source)
    write_json(vdir / "feedback.json", {"parent": parent, "member": target.name, "feedback": feedback,
                                        "evidence": shown, "time": time.strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
    log.info(f"refining {target.name}: v{parent} -> v{version} with {describe_generator(cfg)} ...")
    mdir = member_dir(vdir, target.name)
    result = generate(
        cfg, target, mdir, previous_source=parent_source, feedback=feedback,
        messages=refinement_messages(target, target.instruction, parent_source, feedback, shown),
    )  # fmt: skip
    source, failure = accept(cfg, target, result, mdir)
    if source is None:
        return version, None, failure
    where = f"{target.name}/reward.py"
    diff = difflib.unified_diff(
        parent_source.splitlines(keepends=True), source.splitlines(keepends=True),
        fromfile=f"v{parent}/{MEMBERS}/{where}", tofile=f"v{version}/{MEMBERS}/{where}",
    )  # fmt: skip
    (vdir / "diff.patch").write_text("".join(diff))
    return version, {**sources, target.name: source}, failure
