"""Finding and reading run directories for the review page, defensively.

Everything here treats the runs directory as untrusted input: paths from URLs are resolved
and must stay inside the runs directory (:func:`safe_path`), files are read with size caps,
and a run or version that cannot be read is reported with the reason instead of raising.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rewardlab.review.store import read_reviews

MAX_TEXT_BYTES = 512 * 1024
"""Largest text file (source, diff, CSV) read for the page."""
MAX_DEPTH = 8
"""How deep below the runs directory run folders are looked for."""
VIDEO_SUFFIXES = (".mp4", ".webm")
TERM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
"""Reward terms that feedback tags (``<term>_up``/``_down``) can name."""


class RunError(Exception):
    """A run directory that cannot be shown; the message says why."""


def safe_path(root: Path, rel: str) -> Path | None:
    """``rel`` (a ``/``-separated path from a URL) inside ``root``, or ``None``.

    Rejects absolute paths, ``..`` and ``.`` components, empty components, backslashes and NUL,
    then resolves symlinks and checks the result is still inside ``root``.
    """
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    base = root.resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, RuntimeError):  # symlink loops
        return None
    if target == base or not target.is_relative_to(base):
        return None
    return target


def rel_id(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators (the id used in URLs)."""
    return path.relative_to(root.resolve()).as_posix()


def _is_run_dir(names: dict[str, os.DirEntry[str]]) -> bool:
    rewards = names.get("rewards")
    return "config.yaml" in names or (rewards is not None and rewards.is_dir(follow_symlinks=False))


def discover_runs(root: Path) -> list[Path]:
    """Folders under ``root`` holding ``config.yaml`` or ``rewards/`` (resolved, sorted).

    Hidden folders (``.hydra``) are skipped, symlinked folders are not followed and the walk
    does not descend into a run.
    """
    base = root.resolve()
    if not base.is_dir():
        return []
    found: list[Path] = []
    stack: list[tuple[Path, int]] = [(base, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = {e.name: e for e in it}
        except OSError:
            continue
        if folder != base and _is_run_dir(entries):
            found.append(folder)
            continue
        if depth >= MAX_DEPTH:
            continue
        for entry in entries.values():
            if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), depth + 1))
    return sorted(found)


def read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """A text file, at most ``limit`` bytes, undecodable bytes replaced."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + "\n... (truncated)\n" if len(data) > limit else text


def read_json_obj(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`RunError` naming the file if it is not one."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise RunError(f"{path.name}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    except OSError as exc:
        raise RunError(f"{path.name}: cannot be read ({exc.strerror})") from exc
    if not isinstance(data, dict):
        raise RunError(f"{path.name}: expected a JSON object, found {type(data).__name__}")
    return data


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    return list(csv.DictReader(io.StringIO(read_text(path))))


def num(value: Any) -> float | None:
    """A finite number from JSON/CSV data, or ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def integer(value: Any) -> int | None:
    x = num(value)
    return int(x) if x is not None else None


def text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def version_numbers(run_dir: Path) -> list[int]:
    rewards = run_dir / "rewards"
    if not rewards.is_dir():
        return []
    return sorted(int(p.name[1:]) for p in rewards.iterdir() if p.name[:1] == "v" and p.name[1:].isdigit() and p.is_dir())


@dataclass
class RunSummary:
    """One row of the index page."""

    id: str
    path: Path
    task: str = "?"
    instruction: str = ""
    status: str = "unknown"
    message: str = ""
    generator: str = ""
    algo: str = ""
    updated: str = ""
    latest_version: int | None = None
    success_rate: float | None = None
    timesteps: int | None = None
    versions: int = 0
    error: str | None = None
    """Why the run cannot be shown (malformed), else ``None``."""


def _config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise RunError("no config.yaml (not a complete rewardlab run)")
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise RunError(f"config.yaml: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise RunError("config.yaml: not a mapping")
    return data


def load_summary(root: Path, run_dir: Path) -> RunSummary:
    """The index row of ``run_dir``; malformed runs get ``error`` set, never raise."""
    run = RunSummary(id=rel_id(root, run_dir), path=run_dir)
    try:
        config = _config(run_dir)
        if not (run_dir / "rewards").is_dir():
            raise RunError("no rewards/ folder (training never started?)")
        task = config.get("task")
        run.task = text(task.get("name"), "?") if isinstance(task, dict) else "?"
        run.instruction = text(task.get("instruction")) if isinstance(task, dict) else ""
        run.instruction = text(config.get("instruction")) or run.instruction
        algo = config.get("algo")
        run.algo = text(algo.get("name")) if isinstance(algo, dict) else ""
        numbers = version_numbers(run_dir)
        run.versions = len(numbers)
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            run.status = "training"
            run.latest_version = numbers[-1] if numbers else None
            return run
        summary = read_json_obj(summary_path)
        run.task = text(summary.get("task"), run.task)
        run.instruction = text(summary.get("instruction"), run.instruction)
        run.status = text(summary.get("status"), "unknown")
        run.message = text(summary.get("message"))
        run.generator = text(summary.get("generator"))
        run.algo = text(summary.get("algo"), run.algo)
        run.updated = text(summary.get("updated"))
        run.latest_version = integer(summary.get("latest_version"))
        run.success_rate = num(summary.get("success_rate"))
        run.timesteps = integer(summary.get("timesteps"))
    except RunError as exc:
        run.error = str(exc)
    except Exception as exc:  # anything unexpected in a run folder is the run's problem, not the page's
        run.error = f"unreadable: {type(exc).__name__}: {exc}"
    return run


@dataclass
class Video:
    rel: str
    """Path relative to the runs directory (for ``/files/``)."""
    label: str
    success: bool | None = None
    progress: float | None = None
    length: int | None = None
    reward_return: float | None = None
    env_return: float | None = None


@dataclass
class Component:
    name: str
    mean: float
    share: float


@dataclass
class FindingView:
    """One E2CL finding of a version (``findings.json``), as shown beside its videos."""

    kind: str
    severity: str
    message: str
    trajectory: str = ""
    steps: list[int] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    """Frame images (paths relative to the runs directory, checked to stay inside it)."""
    clip: str | None = None


@dataclass
class Version:
    """One reward version of a run, as shown on the run page."""

    number: int
    parent: int | None = None
    feedback: list[str] = field(default_factory=list)
    feedback_time: str = ""
    status: str = "not trained"
    success_rate: float | None = None
    progress: float | None = None
    timesteps: int | None = None
    wall_s: float | None = None
    mean_length: float | None = None
    episodes: int | None = None
    reward_errors: int = 0
    components: list[Component] = field(default_factory=list)
    source: str | None = None
    parent_source: str | None = None
    diff: str | None = None
    videos: list[Video] = field(default_factory=list)
    metrics: list[dict[str, str]] = field(default_factory=list)
    progress_rows: list[dict[str, str]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    """(label, path relative to the runs directory) of the raw files worth opening."""
    findings: list[FindingView] = field(default_factory=list)
    """What an E2CL exploration of this version found (``findings.json``)."""
    verification: dict[str, Any] | None = None
    """An E2CL correction's verdict (``verification.json``: outcome, reason ...)."""

    @property
    def trained(self) -> bool:
        return self.status == "trained"

    def adjustable(self) -> list[str]:
        """Components that can be re-weighted by a ``<term>_up``/``<term>_down`` tag."""
        return [c.name for c in self.components if TERM.match(c.name)]

    def changed_lines(self) -> list[int]:
        """1-based lines of ``source`` added or changed relative to the parent's source."""
        if self.source is None or self.parent_source is None:
            return []
        matcher = difflib.SequenceMatcher(None, self.parent_source.splitlines(), self.source.splitlines(), autojunk=False)
        return [j + 1 for tag, _, _, j1, j2 in matcher.get_opcodes() if tag in ("replace", "insert") for j in range(j1, j2)]


def _episodes(summary: dict[str, Any]) -> list[dict[str, Any]]:
    final = summary.get("final_eval")
    episodes = final.get("per_episode") if isinstance(final, dict) else None
    return [e for e in episodes if isinstance(e, dict)] if isinstance(episodes, list) else []


def _load_version(root: Path, run_dir: Path, number: int, run_status: str) -> Version:
    vdir = run_dir / "rewards" / f"v{number}"
    v = Version(number=number)
    episodes: dict[str, dict[str, Any]] = {}
    try:
        if (vdir / "reward.py").is_file():
            v.source = read_text(vdir / "reward.py")
        if (vdir / "feedback.json").is_file():
            fb = read_json_obj(vdir / "feedback.json")
            v.parent = integer(fb.get("parent"))
            raw = fb.get("feedback")
            v.feedback = [str(x) for x in raw] if isinstance(raw, list) else [str(raw)] if raw else []
            v.feedback_time = text(fb.get("time"))
        if v.parent is not None and (run_dir / "rewards" / f"v{v.parent}" / "reward.py").is_file():
            v.parent_source = read_text(run_dir / "rewards" / f"v{v.parent}" / "reward.py")
        if (vdir / "diff.patch").is_file():
            v.diff = read_text(vdir / "diff.patch")
        if (vdir / "summary.json").is_file():
            episodes = _read_version_summary(v, read_json_obj(vdir / "summary.json"))
        elif v.source is None and (vdir / "check.json").is_file():
            v.status = "rejected"
        elif v.source is None and number == 0 and run_status == "done":
            v.status = "trained"  # the env's own reward: nothing to show but training outputs
        elif run_status in ("training", "refining"):
            v.status = "training"
    except RunError as exc:
        v.errors.append(str(exc))
    except Exception as exc:
        v.errors.append(f"unreadable: {type(exc).__name__}: {exc}")
    for label, loader in (("metrics.csv", lambda: read_csv_rows(vdir / "metrics.csv")),
                          ("tb/progress.csv", lambda: read_csv_rows(vdir / "tb" / "progress.csv"))):  # fmt: skip
        try:
            rows = loader()
        except Exception as exc:
            v.errors.append(f"{label}: unreadable ({type(exc).__name__})")
            continue
        if label == "metrics.csv":
            v.metrics = rows
        else:
            v.progress_rows = rows
    v.videos = _videos(root, vdir, episodes)
    try:
        v.findings = _findings(root, vdir)
        if (vdir / "verification.json").is_file():
            v.verification = read_json_obj(vdir / "verification.json")
    except RunError as exc:
        v.errors.append(str(exc))
    v.reviews, bad = read_reviews(vdir)
    v.errors += bad
    v.files = [(name, rel_id(root, vdir / name)) for name in
               ("reward.py", "diff.patch", "feedback.json", "summary.json", "metrics.csv", "curves.png", "check.json",
                "findings.json", "verification.json")
               if (vdir / name).is_file()]  # fmt: skip
    return v


def _read_version_summary(v: Version, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Fill ``v`` from its ``summary.json``; the evaluation episodes by video file name."""
    v.status = "trained" if text(summary.get("status"), "done") == "done" else text(summary.get("status"))
    v.success_rate = num(summary.get("success_rate"))
    v.timesteps = integer(summary.get("timesteps"))
    v.wall_s = num(summary.get("train_wall_s"))
    errors = summary.get("reward_errors")
    v.reward_errors = sum(integer(x) or 0 for x in errors.values()) if isinstance(errors, dict) else 0
    final = summary.get("final_eval")
    if isinstance(final, dict):
        v.progress = num(final.get("mean_progress"))
        v.mean_length = num(final.get("mean_length"))
        v.episodes = integer(final.get("episodes"))
    episodes = _episodes(summary)
    steps = sum(integer(e.get("length")) or 0 for e in episodes) or 1
    totals: dict[str, float] = {}
    for e in episodes:
        comps = e.get("components")
        if isinstance(comps, dict):
            for name, value in comps.items():
                totals[str(name)] = totals.get(str(name), 0.0) + (num(value) or 0.0)
    scale = sum(abs(t) for t in totals.values()) or 1.0
    v.components = [Component(name, t / steps, abs(t) / scale) for name, t in totals.items()]
    return {Path(text(e.get("video"))).name: e for e in episodes if text(e.get("video"))}


def _media(root: Path, vdir: Path, rel: Any, suffixes: tuple[str, ...]) -> str | None:
    """A media file named in ``findings.json`` (relative to ``vdir``), as a runs-directory id,
    if it exists inside the runs directory with one of ``suffixes``."""
    if not isinstance(rel, str) or not rel or Path(rel).suffix.lower() not in suffixes:
        return None
    path = safe_path(root, rel_id(root, vdir.resolve()) + "/" + rel)
    return rel_id(root, path) if path is not None and path.is_file() else None


def _findings(root: Path, vdir: Path) -> list[FindingView]:
    """The version's E2CL findings (none without ``findings.json``); malformed entries skipped."""
    if not (vdir / "findings.json").is_file():
        return []
    raw = read_json_obj(vdir / "findings.json").get("findings")
    out = []
    for f in raw if isinstance(raw, list) else []:
        if not isinstance(f, dict):
            continue
        found = f.get("evidence")
        evidence: dict[str, Any] = found if isinstance(found, dict) else {}
        steps = evidence.get("steps")
        steps = steps if isinstance(steps, list) else []
        frames = evidence.get("frames")
        frames = frames if isinstance(frames, list) else []
        out.append(FindingView(
            kind=text(f.get("kind"), "?"), severity=text(f.get("severity"), "info"), message=text(f.get("message")),
            trajectory=text(evidence.get("trajectory")), steps=[n for n in map(integer, steps) if n is not None],
            frames=[m for m in (_media(root, vdir, x, (".png",)) for x in frames) if m],
            clip=_media(root, vdir, evidence.get("clip"), VIDEO_SUFFIXES),
        ))  # fmt: skip
    return out


def _videos(root: Path, vdir: Path, episodes: dict[str, dict[str, Any]]) -> list[Video]:
    """The version's evaluation videos (``videos/``, then later ``eval/<time>/`` ones), found
    on disk (summary paths are absolute and break when a runs directory moves), with the
    statistics of their episode."""
    found: list[Video] = []
    folders = [vdir / "videos"]
    if (vdir / "eval").is_dir():
        folders += sorted(p for p in (vdir / "eval").iterdir() if p.is_dir())
    for folder in folders:
        if not folder.is_dir() or folder.is_symlink():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix not in VIDEO_SUFFIXES or not path.is_file() or safe_path(root, rel_id(root, path)) is None:
                continue
            if path.suffix == ".webm" and path.with_suffix(".mp4").exists():
                continue  # a cached transcode of the mp4 next to it
            main = folder.name == "videos"
            label = path.stem.replace("_", " ") if main else f"evaluation {folder.name}: {path.stem.replace('_', ' ')}"
            video = Video(rel=rel_id(root, path), label=label)
            e = episodes.get(path.name) if main else None
            if e is not None:
                video.success = e["success"] if isinstance(e.get("success"), bool) else None
                video.progress, video.length = num(e.get("progress")), integer(e.get("length"))
                video.reward_return, video.env_return = num(e.get("reward_return")), num(e.get("env_return"))
            found.append(video)
    return found


@dataclass
class Run:
    """A run with all its versions (the run page)."""

    summary: RunSummary
    versions: list[Version] = field(default_factory=list)

    def version(self, number: int) -> Version | None:
        return next((v for v in self.versions if v.number == number), None)


def load_run(root: Path, run_dir: Path, *, refining: bool = False) -> Run:
    """Everything the run page shows; a malformed run has ``summary.error`` and no versions.
    ``refining``: a refinement of this run is under way (its newest version is training)."""
    run = Run(load_summary(root, run_dir))
    if run.summary.error is None:
        status = "refining" if refining else run.summary.status
        run.versions = [_load_version(root, run_dir, n, status) for n in version_numbers(run_dir)]
    return run
