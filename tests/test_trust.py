"""Run folders from elsewhere: nothing in them that runs code when loaded (pickles inside SB3
model zips and normalisation statistics) or names code and endpoints (``config.yaml``) is
used unless this user's rewardlab signed it (:mod:`rewardlab.trust`).

Two walls: the command line refuses a run folder with any unsigned code-bearing file before
anything is written (exit 2); behind it, every load checks the signature of the bytes it
unpickles. The second wall is shown by switching the first off."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from guards import HANG_S

from rewardlab import atomic, trust
from rewardlab.checkpoints import load_policy

RL = [sys.executable, "-m", "rewardlab.cli"]
TINY = [
    "train.total_timesteps=512", "train.n_envs=2", "train.eval_freq=512", "train.eval_episodes=1",
    "train.video_episodes=0", "train.progress_bar=false", "algo.kwargs.n_steps=256", "check.steps=30",
]  # fmt: skip


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RL, *args], cwd=cwd, capture_output=True, text=True, timeout=HANG_S)


class Plant:
    """Unpickling this creates ``marker``: the proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Plant(marker)))


def plant_in_model_zip(path: Path, marker: Path) -> None:
    """An SB3 model zip whose ``data`` carries a serialized object that SB3 would
    cloudpickle-load (``lr_schedule``), replaced by the plant."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    data["lr_schedule"] = {
        ":type:": "<class 'function'>",
        ":serialized:": base64.b64encode(pickle.dumps(Plant(marker))).decode(),
    }
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def listing(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    res = run("train", "task=mujoco/hopper_forward", *TINY, f"runs_dir={root / 'runs'}", cwd=root)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (config,) = [p for p in (root / "runs").rglob("config.yaml") if p.parent.name != ".hydra"]
    return config.parent


def copy_run(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def test_own_run_is_signed_and_loads(trained: Path) -> None:
    assert trust.untrusted_files(trained) == []
    signed = {p.name for p in trust.signable(trained)}
    assert {"config.yaml", "model.zip", "vecnormalize.pkl"} <= signed
    model, normalizer = load_policy(trained / "rewards" / "v0", "ppo")
    assert model is not None and normalizer is not None


def test_foreign_folder_is_refused_before_anything_is_written_until_trusted(
    trained: Path, tmp_path: Path
) -> None:
    foreign = copy_run(trained, tmp_path)
    for sig in foreign.rglob("*.sig"):  # as it arrives from another machine: other key
        sig.unlink()
    before = listing(foreign)
    for command in (["evaluate", "episodes=1"], ["refine", "feedback=faster"], ["train"]):
        res = run(*command, f"run={foreign}", cwd=tmp_path)
        assert res.returncode == 2, res.stdout + res.stderr
        line = res.stdout.strip()
        assert line.startswith("error: ") and "\n" not in line, line
        assert "not signed" in line and f"rewardlab trust {foreign}" in line
        assert listing(foreign) == before, "nothing may be written before the refusal"

    res = run("trust", str(foreign), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "signed" in res.stdout
    assert trust.untrusted_files(foreign) == []
    res = run("evaluate", f"run={foreign}", "episodes=1", "train.video_episodes=0", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


@pytest.mark.parametrize("planted", ["vecnormalize.pkl", "model.zip"])
def test_planted_pickle_never_runs(
    trained: Path, tmp_path: Path, planted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trusted run whose pickle was swapped afterwards (or a folder someone sent with a
    valid-looking layout): the command line refuses it; with that wall switched off, the
    load itself refuses it. Either way the planted code never runs."""
    folder = copy_run(trained, tmp_path)
    marker = tmp_path / "pwned"
    target = folder / "rewards" / "v0" / planted
    if planted.endswith(".zip"):
        plant_in_model_zip(target, marker)
    else:
        plant_pickle(target, marker)
    # the plant is real: loading it the way SB3 / pickle would, unchecked, runs it
    probe = tmp_path / "probe"
    if planted.endswith(".pkl"):
        plant_pickle(tmp_path / "probe.pkl", probe)
        pickle.loads((tmp_path / "probe.pkl").read_bytes())
    else:
        from stable_baselines3 import PPO

        shutil.copy(trained / "rewards" / "v0" / planted, tmp_path / "probe.zip")
        plant_in_model_zip(tmp_path / "probe.zip", probe)
        PPO.load(tmp_path / "probe.zip", device="cpu")
    assert probe.exists()

    res = run("evaluate", f"run={folder}", "episodes=1", cwd=tmp_path)
    assert res.returncode == 2 and planted in res.stdout, res.stdout + res.stderr
    assert not marker.exists()

    # the second wall alone: the command line's check switched off
    with pytest.raises(trust.UntrustedFile, match="signature does not match"):
        load_policy(folder / "rewards" / "v0", "ppo")
    assert not marker.exists()

    from rewardlab import cli

    monkeypatch.setattr(trust, "untrusted_files", lambda folder: [])
    code = cli.main(["evaluate", f"run={folder}", "episodes=1", "train.video_episodes=0"])
    assert code == 2
    assert not marker.exists()


def test_changed_config_is_refused(trained: Path, tmp_path: Path) -> None:
    """A run folder's config names code (task entry points, task_path) and where the API key
    is sent (llm.base_url): a changed one is not used."""
    folder = copy_run(trained, tmp_path)
    config = folder / "config.yaml"
    config.write_text(
        config.read_text() + "\ntask_path: [/tmp/elsewhere]\n"
    )  # any change, however small
    res = run("evaluate", f"run={folder}", "episodes=1", cwd=tmp_path)
    assert res.returncode == 2 and "config.yaml" in res.stdout, res.stdout + res.stderr


def test_symbolic_links_leading_outside_are_never_trusted(trained: Path, tmp_path: Path) -> None:
    folder = copy_run(trained, tmp_path)
    # a link inside the folder (as a search links its best candidate) is checked where it leads
    (folder / "rewards" / "best").symlink_to("v0", target_is_directory=True)
    assert trust.untrusted_files(folder) == []
    (folder / "rewards" / "outside").symlink_to(tmp_path, target_is_directory=True)
    assert trust.untrusted_files(folder) == [folder / "rewards" / "outside"]
    (folder / "rewards" / "outside").unlink()
    model = folder / "rewards" / "v0" / "model.zip"
    outside = tmp_path / "elsewhere.zip"
    shutil.move(model, outside)
    shutil.move(folder / "rewards" / "v0" / "model.zip.sig", tmp_path / "elsewhere.zip.sig")
    model.symlink_to(outside)
    assert model in trust.untrusted_files(folder)
    signed, links = trust.trust_folder(folder)
    assert links == [model] and model not in signed
    assert model in trust.untrusted_files(folder)


def test_key_is_private_and_shared_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "keys" / "trust.key"
    monkeypatch.setenv(trust.KEY_ENV, str(key_file))
    data = tmp_path / "x.pkl"
    data.write_bytes(b"payload")
    trust.sign(data)
    assert key_file.stat().st_mode & 0o077 == 0, "the key is readable by this user only"
    assert trust.read_trusted(data) == b"payload"
    monkeypatch.setenv(trust.KEY_ENV, str(tmp_path / "other.key"))  # another machine's key
    with pytest.raises(trust.UntrustedFile):
        trust.read_trusted(data)
    assert os.environ[trust.KEY_ENV].endswith("other.key")


class Killed(BaseException):
    """Stands for a kill at one instant of :func:`trust.signed_output`."""


@pytest.mark.parametrize("at", ["writing", "listing both", "renaming", "keeping new", None])
def test_a_kill_at_any_instant_of_a_signed_write_leaves_a_file_that_loads(
    at: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replacing a signed file (write the new bytes, list both digests, rename, keep the new
    digest), killed at each step: the file on disk is the old or the new content, its signature
    accepts it, and no temporary file is left (regression: writing, then signing, left an
    unsigned ``best_model.zip`` when a stop came between the two, and resuming refused it)."""
    path = tmp_path / "best_model.zip"
    path.write_bytes(b"old")
    trust.sign(path)
    writes, replace = [], os.replace

    def write_atomic(target: Path, data: str) -> None:
        writes.append(target)
        if (at, len(writes)) in (("listing both", 1), ("keeping new", 2)):
            raise Killed
        atomic.write_atomic(target, data)

    def rename(src: str, dst: str) -> None:
        if at == "renaming" and Path(dst) == path:
            raise Killed
        replace(src, dst)

    monkeypatch.setattr(trust, "write_atomic", write_atomic)
    monkeypatch.setattr(trust.os, "replace", rename)
    stopped = pytest.raises(Killed) if at else contextlib.nullcontext()
    with stopped, trust.signed_output(path) as tmp:
        tmp.write_bytes(b"ne")
        if at == "writing":
            raise Killed
        with tmp.open("ab") as f:
            f.write(b"w")
    monkeypatch.undo()
    new = at in ("keeping new", None)
    assert trust.read_trusted(path) == (b"new" if new else b"old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.zip", "best_model.zip.sig"]
