"""Training checkpoints in a version folder, and loading trained policies.

``checkpoints/`` holds, per saved step count ``n``: ``model_<n>_steps.zip`` (the SB3 model),
``model_vecnormalize_<n>_steps.pkl`` (observation/reward normalisation),
``model_replay_buffer_<n>_steps.pkl`` (SAC) and ``model_<n>_steps.json`` (why it was saved,
training wall time and PPO/SAC iterations so far, so a resumed training continues its clocks
and counters). A checkpoint counts only when complete: a run killed while writing one leaves
files that are skipped.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> latest_checkpoint(folder) is None, describe_start(folder, 10_000)
    (True, 'no checkpoint: training starts at step 0 of 10,000')
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rewardlab.atomic import write_atomic
from rewardlab.interrupts import deferred
from rewardlab.trust import read_trusted, signed_output

FOLDER = "checkpoints"


@dataclass
class CheckpointInfo:
    """The sidecar ``model_<n>_steps.json`` of a checkpoint."""

    steps: int
    wall_s: float = 0.0
    """Training wall time up to this checkpoint, summed over earlier resumes."""
    iterations: int | None = 0
    """SB3 training iterations (rollouts collected) so far; ``None``: unknown (a checkpoint
    saved without a sidecar)."""
    reason: str = "steps"
    """``steps`` (every ``train.checkpoint_freq``), ``time`` (every ``train.checkpoint_minutes``),
    ``stopped`` (Ctrl-C / SIGTERM) or ``end`` (training reached its budget)."""


REASONS = {
    "steps": "every train.checkpoint_freq steps", "time": "every train.checkpoint_minutes",
    "stopped": "when training was stopped", "end": "at the end of training",
}  # fmt: skip


def _paths(folder: Path, steps: int) -> dict[str, Path]:
    return {
        "model": folder / f"model_{steps}_steps.zip",
        "stats": folder / f"model_vecnormalize_{steps}_steps.pkl",
        "buffer": folder / f"model_replay_buffer_{steps}_steps.pkl",
        "info": folder / f"model_{steps}_steps.json",
    }


def _complete(model_zip: Path, steps: int) -> bool:
    """Whether a checkpoint was fully written (a run killed mid-save leaves a broken one)."""
    try:
        with zipfile.ZipFile(model_zip) as archive:
            if "data" not in archive.namelist() or archive.testzip() is not None:
                return False
    except (zipfile.BadZipFile, OSError):
        return False
    paths = _paths(model_zip.parent, steps)
    # the normalisation and the sidecar (written last) must be there too, unless the folder
    # never had any (checkpoints saved before they existed)
    return all(
        paths[kind].exists() or not list(model_zip.parent.glob(pattern))
        for kind, pattern in (
            ("stats", "model_vecnormalize_*_steps.pkl"),
            ("info", "model_*_steps.json"),
        )
    )


def latest_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """The newest complete ``checkpoints/model_<n>_steps.zip`` and its step count."""
    found = []
    for p in (run_dir / FOLDER).glob("model_*_steps.zip"):
        number = p.stem.split("_")[1]
        if number.isdigit():
            found.append((p, int(number)))
    for path, steps in sorted(found, key=lambda x: -x[1]):
        if _complete(path, steps):
            return path, steps
    return None


def checkpoint_info(run_dir: Path, steps: int) -> CheckpointInfo:
    """The sidecar of the checkpoint at ``steps`` (defaults for checkpoints saved without one)."""
    try:
        data = json.loads(_paths(run_dir / FOLDER, steps)["info"].read_text())
        return CheckpointInfo(
            **{k: data[k] for k in ("steps", "wall_s", "iterations", "reason") if k in data}
        )
    except (OSError, ValueError, TypeError):
        return CheckpointInfo(steps=steps, iterations=None)


def describe_start(run_dir: Path, total_timesteps: int) -> str:
    """Where a training in ``run_dir`` starts, truthfully (what :func:`latest_checkpoint`
    finds, not what the user hopes)."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        had = any((run_dir / FOLDER).glob("model_*_steps.zip"))
        broken = " (the only checkpoints are incomplete)" if had else ""
        return f"no checkpoint{broken}: training starts at step 0 of {total_timesteps:,}"
    info = checkpoint_info(run_dir, ckpt[1])
    if ckpt[1] >= total_timesteps:
        return f"the checkpoint at step {ckpt[1]:,} already reaches train.total_timesteps={total_timesteps:,}"
    why = REASONS.get(info.reason, info.reason)
    return (f"resuming from the checkpoint at step {ckpt[1]:,} of {total_timesteps:,} "
            f"(saved {why}, after {info.wall_s:.0f} s of training)")  # fmt: skip


def save_checkpoint(
    model: Any, run_dir: Path, *, wall_s: float, iterations: int | None, reason: str
) -> int:
    """Save an SB3 model with its normalisation (and replay buffer), then the sidecar that
    makes it count; the step count."""
    steps, folder = int(model.num_timesteps), run_dir / FOLDER
    paths = _paths(folder, steps)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, paths["model"], paths["stats"])
    if hasattr(model, "save_replay_buffer"):
        with signed_output(paths["buffer"]) as tmp:
            model.save_replay_buffer(tmp)
    info = CheckpointInfo(
        steps=steps, wall_s=round(wall_s, 1), iterations=iterations, reason=reason
    )
    write_atomic(paths["info"], json.dumps(asdict(info)))
    return steps


def save_model(model: Any, path: Path, stats: Path | None = None) -> None:
    """Save an SB3 model (and, to ``stats``, its normalisation if it has one), signed
    (:mod:`rewardlab.trust`: these files are pickles, loaded only with a valid signature)."""
    with deferred():  # Ctrl-C / SIGTERM wait: the model and its normalisation stay a pair
        with signed_output(path) as tmp:
            model.save(tmp)
        vec_norm = model.get_vec_normalize_env()
        if stats is not None and vec_norm is not None:
            with signed_output(stats) as tmp:
                vec_norm.save(str(tmp))


def load_model(cls: Any, path: Path, **kwargs: Any) -> Any:
    """``cls.load`` of a model zip whose signature checks (:class:`~rewardlab.trust.UntrustedFile`
    otherwise), from the bytes that were checked."""
    return cls.load(io.BytesIO(read_trusted(path)), **kwargs)


def load_normalizer(path: Path) -> Any:
    """The ``VecNormalize`` pickled at ``path`` (signature checked; without its environment)."""
    return pickle.loads(read_trusted(path))  # noqa: S301 - signed by this user's rewardlab


def remove_checkpoint(run_dir: Path, steps: int) -> None:
    """Delete the files of the checkpoint at ``steps`` (the sidecar first: it stops counting)."""
    for path in reversed(_paths(run_dir / FOLDER, steps).values()):
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sig").unlink(missing_ok=True)


def algo_class(name: str) -> Any:
    """The stable-baselines3 class of ``algo.name``."""
    from stable_baselines3 import PPO, SAC

    classes: dict[str, Any] = {"ppo": PPO, "sac": SAC}
    return classes[str(name)]


def load_policy(run_dir: Path, algo_name: str, *, best: bool = False) -> tuple[Any, Any]:
    """Load a trained policy and its observation normaliser (or ``None``) from a version
    folder: ``model.zip`` (or ``best_model.zip`` with ``best``), else the newest checkpoint."""
    path = run_dir / (
        "best_model.zip" if best and (run_dir / "best_model.zip").exists() else "model.zip"
    )
    ckpt = latest_checkpoint(run_dir)
    if not path.exists():
        if ckpt is None:
            raise FileNotFoundError(f"no trained model in {run_dir} (model.zip or checkpoints/)")
        path = ckpt[0]
    model = load_model(algo_class(algo_name), path, device="cpu")
    normalizer = None
    stats = run_dir / "vecnormalize.pkl"
    if not stats.exists() and ckpt is not None:
        stats = _paths(run_dir / FOLDER, ckpt[1])["stats"]
    if stats.exists():
        normalizer = load_normalizer(stats)
    return model, normalizer


def has_model(run_dir: Path) -> bool:
    """Whether :func:`load_policy` finds a model in ``run_dir``."""
    return (run_dir / "model.zip").is_file() or latest_checkpoint(run_dir) is not None
