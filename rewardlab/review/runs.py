"""Finding and reading run directories for the review page, defensively (the one module that
reads run folders for the page).

Everything here treats the runs directory as untrusted input: every file goes through
:class:`~rewardlab.review.safefs.RunsRoot` (no link followed, regular files only, nothing on
procfs), files are read with size caps, and a run or version that cannot be read is reported
with the reason instead of raising. What was refused is collected per run and shown.

Index rows are cached keyed by the modification times of the files they come from, so the
index costs a few ``stat`` calls per run once it has been built.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import re
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from rewardlab.review.safefs import Refusal, Refused, RunsRoot, shown_name, split_rel, utf8_name
from rewardlab.review.store import REVIEWS, parse_reviews
from rewardlab.stats import wilson_interval

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it (about 10x faster than the pure-Python one)."""
MAX_TEXT_BYTES = 512 * 1024
"""Largest text file (source, diff, JSON) read for the page."""
MAX_CSV_BYTES = 4 * 1024 * 1024
"""Largest CSV (training logs) read for the page."""
MAX_DEPTH = 8
"""How deep below the runs directory run folders are looked for."""
VIDEO_SUFFIXES = (".mp4", ".webm")
TERM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
"""Reward terms that feedback tags (``<term>_up``/``_down``) can name."""
BEST_RULE = ("best = the highest lower bound of the 95% Wilson interval of the final success rate; "
             "ties go to higher final progress, then higher benchmark return, then the earlier version")  # fmt: skip


RUN_FILES = ("config.yaml", "summary.json", "report.md", "refine.log", "refine.json", "refine.lock")
"""Files of a run folder that the page or a refinement started from it reads or writes."""


class RunError(Exception):
    """A run directory that cannot be shown; the message says why."""


def num(value: Any) -> float | None:
    """A finite number from JSON/CSV data, or ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return x if math.isfinite(x) else None


def integer(value: Any) -> int | None:
    x = num(value)
    return int(x) if x is not None else None


def text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


# --------------------------------------------------------------------------- discovery


def _is_run_dir(entries: dict[str, int]) -> bool:
    return "config.yaml" in entries or stat.S_ISDIR(entries.get("rewards", 0))


def discover_runs(root: RunsRoot) -> tuple[list[str], list[Refusal]]:
    """Run folders below ``root`` (ids: ``/``-separated paths, sorted) and what was refused on
    the way (links, which are never followed, and names that are not UTF-8). Hidden folders
    (``.hydra``, caches) are skipped and the walk does not descend into a run."""
    found: list[str] = []
    refused: list[Refusal] = []
    stack: list[tuple[list[str], int]] = [([], 0)]
    while stack:
        parts, depth = stack.pop()
        try:
            entries = dict(root.entries(parts))
        except Refused as exc:
            refused.append(Refusal(exc.rel, exc.reason))
            continue
        except OSError:
            continue
        if parts and _is_run_dir(entries):
            found.append("/".join(parts))
            continue
        if depth >= MAX_DEPTH:
            continue
        for name, mode in entries.items():
            if name.startswith("."):
                continue
            rel = "/".join([*parts, shown_name(name)])
            if not utf8_name(name):
                if stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
                    refused.append(
                        Refusal(rel, "the name is not valid UTF-8 (rename the folder to show it)")
                    )
            elif stat.S_ISLNK(mode):
                try:
                    with root.folder(parts) as dfd:
                        target = shown_name(os.readlink(name, dir_fd=dfd))
                except OSError:
                    target = "?"
                refused.append(
                    Refusal(rel, f"a symbolic link (to {target}); links are not followed")
                )
            elif stat.S_ISDIR(mode):
                stack.append(([*parts, name], depth + 1))
    return sorted(found), sorted(refused, key=lambda r: r.path)


def is_run(root: RunsRoot, run_id: str) -> bool:
    """``run_id`` names a run folder :func:`discover_runs` would list (without walking the
    whole tree): plain visible components, no link on the way, no run folder above it."""
    try:
        parts = split_rel(run_id)
    except Refused:
        return False
    if len(parts) > MAX_DEPTH or any(p.startswith(".") for p in parts):
        return False
    try:
        for i in range(len(parts)):
            entries = dict(root.entries(parts[:i]))
            if i and _is_run_dir(entries):
                return False  # inside another run
            if not stat.S_ISDIR(entries.get(parts[i], 0)):
                return False
        return _is_run_dir(dict(root.entries(parts)))
    except (Refused, OSError):
        return False


# --------------------------------------------------------------------------- reading one run


class RunFiles:
    """Confined reading of one run folder; collects what it refused."""

    def __init__(self, root: RunsRoot, run_id: str) -> None:
        self.root = root
        self.id = run_id
        self.refused: list[Refusal] = []

    def rel(self, sub: str) -> str:
        return f"{self.id}/{sub}"

    def _refuse(self, exc: Refused) -> None:
        if all(r.path != exc.rel for r in self.refused):
            self.refused.append(Refusal(exc.rel, exc.reason))

    def mode(self, sub: str) -> int | None:
        """``lstat`` mode of ``sub`` (``None``: missing or unreachable)."""
        try:
            st = self.root.lstat(self.rel(sub))
        except Refused as exc:
            self._refuse(exc)
            return None
        except OSError:
            return None
        return st.st_mode if st is not None else None

    def is_file(self, sub: str) -> bool:
        """``sub`` is a regular file (a link or special file there is refused and listed)."""
        mode = self.mode(sub)
        if mode is None:
            return False
        if stat.S_ISREG(mode):
            return True
        if not stat.S_ISDIR(mode):
            try:
                self.root.read_bytes(self.rel(sub), 0)
            except Refused as exc:
                self._refuse(exc)
            except OSError:
                pass
        return False

    def is_dir(self, sub: str) -> bool:
        mode = self.mode(sub)
        if mode is not None and stat.S_ISLNK(mode):
            try:
                with self.root.folder(self.rel(sub)):
                    pass
            except Refused as exc:
                self._refuse(exc)
            except OSError:
                pass
        return mode is not None and stat.S_ISDIR(mode)

    def bytes(self, sub: str, limit: int = MAX_TEXT_BYTES) -> tuple[bytes, bool] | None:
        """Contents (at most ``limit`` bytes) and whether truncated; ``None`` if missing or refused."""
        try:
            return self.root.read_bytes(self.rel(sub), limit)
        except Refused as exc:
            self._refuse(exc)
        except OSError:
            pass
        return None

    def text(self, sub: str, limit: int = MAX_TEXT_BYTES) -> str | None:
        got = self.bytes(sub, limit)
        if got is None:
            return None
        data, cut = got
        out = data.decode("utf-8", errors="replace")
        return out + "\n... (truncated)\n" if cut else out

    def json_obj(self, sub: str) -> dict[str, Any] | None:
        """A JSON object; ``None`` if missing/refused; :class:`RunError` if it is not one."""
        got = self.bytes(sub)
        if got is None:
            return None
        data, cut = got
        name = sub.rsplit("/", 1)[-1]
        if cut:
            raise RunError(f"{name}: larger than {MAX_TEXT_BYTES // 1024} KiB")
        try:
            value = json.loads(data.decode("utf-8", errors="replace"))
        except json.JSONDecodeError as exc:
            raise RunError(f"{name}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
        except RecursionError as exc:
            raise RunError(f"{name}: nested too deeply") from exc
        if not isinstance(value, dict):
            raise RunError(f"{name}: expected a JSON object, found {type(value).__name__}")
        return value

    def csv_rows(self, sub: str) -> list[dict[str, str]]:
        got = self.bytes(sub, MAX_CSV_BYTES)
        if got is None:
            return []
        return list(
            csv.DictReader(
                io.StringIO(got[0].decode("utf-8", errors="replace").replace("\x00", ""))
            )
        )

    def names(self, sub: str) -> list[tuple[str, int]]:
        """Entries of the folder ``sub`` (``[]`` if missing or refused)."""
        try:
            return self.root.entries(self.rel(sub))
        except Refused as exc:
            self._refuse(exc)
        except OSError:
            pass
        return []

    def version_numbers(self) -> list[int]:
        out = []
        for name, mode in self.names("rewards"):
            if name[:1] == "v" and name[1:].isdigit():
                if stat.S_ISDIR(mode):
                    out.append(int(name[1:]))
                else:
                    self.is_dir(f"rewards/{name}")  # records the refusal of a linked version folder
        return sorted(out)


@dataclass
class RunSummary:
    """One row of the index page."""

    id: str
    task: str = "?"
    instruction: str = ""
    status: str = "unknown"
    message: str = ""
    generator: str = ""
    algo: str = ""
    updated: str = ""
    latest_version: int | None = None
    success_rate: float | None = None
    """The latest (current) version's final success rate."""
    best_success: float | None = None
    """The highest final success rate of any version."""
    timesteps: int | None = None
    versions: int = 0
    budget: int | None = None
    """``train.total_timesteps`` of the run's config."""
    error: str | None = None
    """Why the run cannot be shown (malformed), else ``None``."""
    refused: list[Refusal] = field(default_factory=list)


def _config(files: RunFiles) -> dict[str, Any]:
    raw = files.text("config.yaml")
    if raw is None:
        if files.mode("config.yaml") is None and not files.refused:
            raise RunError("no config.yaml (not a complete rewardlab run)")
        raise RunError("config.yaml: refused (see the refused files)")
    try:
        data = yaml.load(raw, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise RunError(f"config.yaml: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise RunError("config.yaml: not a mapping")
    return data


def _read_summary(files: RunFiles, run: RunSummary) -> dict[str, Any]:
    """Fill ``run`` from config.yaml and summary.json; returns the config."""
    config = _config(files)
    if not files.is_dir("rewards"):
        raise RunError("no rewards/ folder (training never started?)")
    task = config.get("task")
    run.task = text(task.get("name"), "?") if isinstance(task, dict) else "?"
    run.instruction = text(task.get("instruction")) if isinstance(task, dict) else ""
    run.instruction = text(config.get("instruction")) or run.instruction
    algo = config.get("algo")
    run.algo = text(algo.get("name")) if isinstance(algo, dict) else ""
    train = config.get("train")
    run.budget = integer(train.get("total_timesteps")) if isinstance(train, dict) else None
    numbers = files.version_numbers()
    run.versions = len(numbers)
    summary = files.json_obj("summary.json")
    if summary is None:
        run.status = "training"
        run.latest_version = numbers[-1] if numbers else None
        return config
    run.task = text(summary.get("task"), run.task)
    run.instruction = text(summary.get("instruction"), run.instruction)
    run.status = text(summary.get("status"), "unknown")
    run.message = text(summary.get("message"))
    run.generator = text(summary.get("generator"))
    run.algo = text(summary.get("algo"), run.algo)
    run.updated = text(summary.get("updated"))
    # the current version (newest trained and not refused by E2CL); runs recorded before the key: latest_version
    run.latest_version = integer(summary.get("current_version", summary.get("latest_version")))
    run.success_rate = num(summary.get("success_rate"))
    run.timesteps = integer(summary.get("timesteps"))
    listed = summary.get("versions")
    rates = (
        [num(v.get("success_rate")) for v in listed if isinstance(v, dict)]
        if isinstance(listed, list)
        else []
    )
    run.best_success = max((r for r in rates if r is not None), default=run.success_rate)
    return config


def load_summary(root: RunsRoot, run_id: str) -> RunSummary:
    """The index row of ``run_id``; malformed runs get ``error`` set, never raise."""
    run = RunSummary(id=run_id)
    files = RunFiles(root, run_id)
    try:
        _read_summary(files, run)
    except RunError as exc:
        run.error = str(exc)
    except (
        Exception
    ) as exc:  # anything unexpected in a run folder is the run's problem, not the page's
        run.error = f"unreadable: {type(exc).__name__}: {exc}"
    run.refused = files.refused
    return run


class SummaryCache:
    """Index rows keyed by the ``(mtime, size, inode)`` of the files they are read from
    (``config.yaml``, ``summary.json``, the ``rewards`` folder, the run folder itself)."""

    KEY_FILES = ("", "config.yaml", "summary.json", "rewards")

    def __init__(self, root: RunsRoot) -> None:
        self.root = root
        self._rows: dict[str, tuple[tuple[Any, ...], RunSummary]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _key(self, run_id: str) -> tuple[Any, ...]:
        out: list[Any] = []
        try:
            with self.root.folder(run_id) as fd:
                for name in self.KEY_FILES:
                    try:
                        st = os.stat(name or ".", dir_fd=fd, follow_symlinks=False)
                    except OSError:
                        out.append(None)
                        continue
                    out.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode))
        except (Refused, OSError):
            return ("unreadable",)
        return tuple(out)

    def get(self, run_id: str) -> RunSummary:
        key = self._key(run_id)
        with self._lock:
            hit = self._rows.get(run_id)
            if hit is not None and hit[0] == key:
                self.hits += 1
                return hit[1]
        row = load_summary(self.root, run_id)
        with self._lock:
            self.misses += 1
            self._rows[run_id] = (key, row)
        return row

    def rows(self, run_ids: list[str]) -> list[RunSummary]:
        with self._lock:
            for gone in set(self._rows) - set(run_ids):
                del self._rows[gone]
        return [self.get(r) for r in run_ids]


# --------------------------------------------------------------------------- versions


@dataclass
class Video:
    rel: str
    """Path relative to the runs directory (for ``/files/``)."""
    label: str
    name: str = ""
    state: str = "ok"
    """``ok``; ``broken`` (empty or not a complete MP4/WebM: cannot play); ``missing`` (the
    evaluation recorded it but the file is gone); ``refused`` (a link or special file)."""
    problem: str = ""
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
    """``trained``, ``training``, ``rejected``, ``cancelled``, ``not trained``, ``trained, summary
    unreadable`` (a model exists but ``summary.json`` cannot be read), ``trained, not evaluated``
    (a model but no final evaluation) or the recorded status of an unfinished training."""
    has_model: bool = False
    success_rate: float | None = None
    success_ci: tuple[float, float] | None = None
    progress: float | None = None
    env_return: float | None = None
    """Mean return under the benchmark's own reward in the final evaluation (comparable across
    versions, unlike the return under each version's own reward)."""
    reward_return: float | None = None
    steps_to_success: int | None = None
    """Environment steps at the first evaluation during training with any success."""
    timesteps: int | None = None
    wall_s: float | None = None
    mean_length: float | None = None
    episodes: int | None = None
    reward_errors: int = 0
    algo: str = ""
    budget: int | None = None
    gate: str | None = None
    """``passed`` / ``rejected`` (``gate.json``), else ``None``."""
    gate_note: str = ""
    e2cl: str | None = None
    """An E2CL correction's outcome (``accepted`` / ``refused``), else ``None``."""
    e2cl_note: str = ""
    components: list[Component] = field(default_factory=list)
    source: str | None = None
    parent_source: str | None = None
    diff: str | None = None
    videos: list[Video] = field(default_factory=list)
    videos_expected: int | None = None
    """Videos the evaluation was asked to record (``train.video_episodes``), if known."""
    metrics: list[dict[str, str]] = field(default_factory=list)
    progress_rows: list[dict[str, str]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    """(label, path relative to the runs directory) of the raw files worth opening."""
    findings: list[FindingView] = field(default_factory=list)
    verification: dict[str, Any] | None = None
    has_tb: bool = False

    @property
    def trained(self) -> bool:
        """Finished training with a readable evaluation (what refinement needs)."""
        return self.status == "trained"

    def adjustable(self) -> list[str]:
        """Components that can be re-weighted by a ``<term>_up``/``<term>_down`` tag."""
        return [c.name for c in self.components if TERM.match(c.name)]

    def changed_lines(self) -> list[int]:
        """1-based lines of ``source`` added or changed relative to the parent's source."""
        if self.source is None or self.parent_source is None:
            return []
        matcher = difflib.SequenceMatcher(
            None, self.parent_source.splitlines(), self.source.splitlines(), autojunk=False
        )
        return [
            j + 1
            for tag, _, _, j1, j2 in matcher.get_opcodes()
            if tag in ("replace", "insert")
            for j in range(j1, j2)
        ]

    def rank_key(self) -> tuple[float, float, float, int]:
        """Sort key of :data:`BEST_RULE` (larger is better)."""
        lo = self.success_ci[0] if self.success_ci else -1.0
        return (lo, self.progress if self.progress is not None else -math.inf,
                self.env_return if self.env_return is not None else -math.inf, -self.number)  # fmt: skip


def video_problem(head: bytes, size: int, suffix: str) -> str:
    """Why a video file cannot be played (empty, not MP4/WebM, truncated), or ``""``.

    MP4: the top-level boxes must start with ``ftyp``, include ``moov`` (the index a player
    needs) and every box must fit in the file (a killed encoder leaves ``mdat`` cut short).
    """
    if size == 0:
        return "the file is empty"
    if suffix == ".webm":
        return "" if head[:4] == b"\x1a\x45\xdf\xa3" else "not a WebM file"
    return ""  # MP4s are checked box by box by :func:`mp4_problem`


def mp4_problem(read_at: Callable[[int, int], bytes], size: int) -> str:
    """See :func:`video_problem`; ``read_at(offset, n)`` reads the file."""
    if size == 0:
        return "the file is empty"
    offset, boxes = 0, list[bytes]()
    while offset < size and len(boxes) < 64:
        head = read_at(offset, 16)
        if len(head) < 8:
            return "truncated (a box header is cut off)"
        length = int.from_bytes(head[:4], "big")
        kind = head[4:8]
        if length == 1:
            if len(head) < 16:
                return "truncated (a box header is cut off)"
            length = int.from_bytes(head[8:16], "big")
        elif length == 0:
            length = size - offset
        if length < 8:
            return "not an MP4 file (malformed box)"
        if not boxes and kind != b"ftyp":
            return "not an MP4 file (no ftyp box)"
        boxes.append(kind)
        if offset + length > size:
            return f"truncated ({kind.decode('latin-1')} box needs {offset + length:,} bytes, the file has {size:,})"
        offset += length
    if b"moov" not in boxes:
        return "incomplete (no moov box: recording did not finish)"
    return ""


def _video_state(root: RunsRoot, rel: str, suffix: str) -> tuple[str, str]:
    """``(state, problem)`` of the video file ``rel``."""
    try:
        with root.open(rel) as (fd, st):
            if suffix == ".mp4":
                problem = mp4_problem(lambda off, n: os.pread(fd, n, off), st.st_size)
            else:
                problem = video_problem(os.pread(fd, 4, 0), st.st_size, suffix)
    except Refused as exc:
        return "refused", exc.reason
    except OSError as exc:
        return "missing", exc.strerror or "cannot be read"
    return ("broken", problem) if problem else ("ok", "")


def _episodes(summary: dict[str, Any]) -> list[dict[str, Any]]:
    final = summary.get("final_eval")
    episodes = final.get("per_episode") if isinstance(final, dict) else None
    return [e for e in episodes if isinstance(e, dict)] if isinstance(episodes, list) else []


def _gate(v: Version, gate: dict[str, Any]) -> None:
    ok = gate.get("ok")
    if not isinstance(ok, bool):
        return
    v.gate = "passed" if ok else "rejected"
    raw = gate.get("warnings" if ok else "findings")
    notes = [text(x) for x in raw if text(x)] if isinstance(raw, list) else []
    acc = num(gate.get("ranking_accuracy"))
    head = f"ranking accuracy {acc:.2f}" if acc is not None else ""
    v.gate_note = "; ".join([h for h in (head,) if h] + notes[:3])


@dataclass(frozen=True)
class RefineState:
    """What the page knows about the run's refinement: ``state`` (``idle``, ``running``,
    ``cancelled`` ...) and the version it writes."""

    state: str = "idle"
    target: int | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"


def _load_version(
    files: RunFiles, number: int, run_status: str, config: dict[str, Any], refine: RefineState
) -> Version:
    sub = f"rewards/v{number}"
    v = Version(number=number)
    episodes: dict[str, dict[str, Any]] = {}
    listed: list[str] = []
    vconfig = config
    summary: dict[str, Any] | None = None
    try:
        try:
            own = files.text(f"{sub}/train.yaml")
            parsed = yaml.load(own, Loader=SAFE_LOADER) if own else None
            if isinstance(parsed, dict):
                vconfig = parsed
        except yaml.YAMLError:
            v.errors.append("train.yaml: invalid YAML (the run's settings are shown)")
        algo = vconfig.get("algo")
        v.algo = text(algo.get("name")) if isinstance(algo, dict) else ""
        train = vconfig.get("train")
        if isinstance(train, dict):
            v.budget = integer(train.get("total_timesteps"))
            v.videos_expected = integer(train.get("video_episodes"))
        v.source = files.text(f"{sub}/reward.py")
        fb = files.json_obj(f"{sub}/feedback.json")
        if fb is not None:
            v.parent = integer(fb.get("parent"))
            raw = fb.get("feedback")
            v.feedback = (
                [str(x) for x in raw] if isinstance(raw, list) else [str(raw)] if raw else []
            )
            v.feedback_time = text(fb.get("time"))
        if v.parent is not None:
            v.parent_source = files.text(f"rewards/v{v.parent}/reward.py")
        v.diff = files.text(f"{sub}/diff.patch")
    except RunError as exc:
        v.errors.append(str(exc))
    v.has_model = files.is_file(f"{sub}/model.zip") or files.is_file(f"{sub}/best_model.zip")
    try:
        summary = files.json_obj(f"{sub}/summary.json")
    except RunError as exc:
        v.errors.append(str(exc))
        if files.is_file(f"{sub}/summary.json"):
            summary = None
            v.status = "trained, summary unreadable" if v.has_model else "summary unreadable"
    if summary is not None:
        episodes, listed = _read_version_summary(v, summary)
        if (
            refine.state == "cancelled"
            and refine.target == number
            and v.status in ("stopped", "interrupted", "training")
        ):
            v.status = "cancelled"  # stopped by the page's Cancel: say who stopped it
    elif v.status == "not trained":
        target = refine.target
        if refine.running and target == number:
            v.status = "training"
        elif refine.state == "cancelled" and target == number:
            v.status = "cancelled"
        elif v.source is None and files.is_file(f"{sub}/check.json"):
            v.status = "rejected"
        elif v.source is None and number == 0 and run_status == "done":
            v.status = "trained"  # the env's own reward: nothing to show but training outputs
        elif (
            run_status in ("training", "refining")
            and not refine.running
            and refine.state != "cancelled"
        ):
            v.status = "training"
        elif v.has_model:
            v.status = "trained, not evaluated"
    try:
        gate = files.json_obj(f"{sub}/gate.json")
        if gate is not None:
            _gate(v, gate)
        v.findings = _findings(files, sub)
        v.verification = files.json_obj(f"{sub}/verification.json")
        if v.verification is not None:
            v.e2cl = text(v.verification.get("outcome")) or None
            v.e2cl_note = text(v.verification.get("reason"))
    except RunError as exc:
        v.errors.append(str(exc))
    for label, name in (("metrics.csv", "metrics"), ("tb/progress.csv", "progress_rows")):
        try:
            setattr(v, name, files.csv_rows(f"{sub}/{label}"))
        except Exception as exc:
            v.errors.append(f"{label}: unreadable ({type(exc).__name__})")
    v.has_tb = files.is_dir(f"{sub}/tb")
    for row in v.metrics:
        rate, steps = num(row.get("success_rate")), integer(row.get("timesteps"))
        if rate is not None and rate > 0 and steps is not None:
            v.steps_to_success = steps
            break
    v.videos = _videos(files, sub, episodes, listed)
    raw_reviews = files.bytes(f"{sub}/{REVIEWS}", 4 * MAX_TEXT_BYTES)
    if raw_reviews is not None:
        v.reviews, bad = parse_reviews(raw_reviews[0])
        v.errors += bad
    v.files = [(name, files.rel(f"{sub}/{name}")) for name in
               ("reward.py", "diff.patch", "feedback.json", "summary.json", "metrics.csv", "curves.png", "check.json",
                "gate.json", "findings.json", "verification.json", "train.yaml")
               if files.is_file(f"{sub}/{name}")]  # fmt: skip
    return v


def _read_version_summary(
    v: Version, summary: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Fill ``v`` from its ``summary.json``; the evaluation episodes by video file name, and
    the video file names the evaluation recorded."""
    status = text(summary.get("status"), "done")
    v.status = "trained" if status == "done" else status
    v.success_rate = num(summary.get("success_rate"))
    v.timesteps = integer(summary.get("timesteps"))
    v.wall_s = num(summary.get("train_wall_s"))
    errors = summary.get("reward_errors")
    v.reward_errors = (
        sum(integer(x) or 0 for x in errors.values()) if isinstance(errors, dict) else 0
    )
    final = summary.get("final_eval")
    if isinstance(final, dict):
        v.progress = num(final.get("mean_progress"))
        v.mean_length = num(final.get("mean_length"))
        v.episodes = integer(final.get("episodes"))
        v.env_return = num(final.get("mean_env_return"))
        v.reward_return = num(final.get("mean_reward_return"))
        if v.success_rate is None:
            v.success_rate = num(final.get("success_rate"))
    if v.success_rate is not None and not 0.0 <= v.success_rate <= 1.0:
        v.errors.append(f"summary.json: success_rate {v.success_rate:g} is not a rate; not shown")
        v.success_rate = None
    if v.success_rate is not None and v.episodes:
        wins = round(v.success_rate * v.episodes)
        v.success_ci = wilson_interval(wins, v.episodes)
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
    names = [_base(text(e.get("video"))) for e in episodes if text(e.get("video"))]
    return {
        n: e for n, e in zip(names, [e for e in episodes if text(e.get("video"))], strict=True)
    }, names


def _base(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _media(files: RunFiles, sub: str, rel: Any, suffixes: tuple[str, ...]) -> str | None:
    """A media file named in ``findings.json`` (relative to the version folder), as a
    runs-directory id, if it is a regular file inside the runs directory with one of ``suffixes``."""
    if not isinstance(rel, str) or not rel or not rel.lower().endswith(suffixes):
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return files.rel(f"{sub}/{rel}") if files.is_file(f"{sub}/{rel}") else None


def _findings(files: RunFiles, sub: str) -> list[FindingView]:
    """The version's E2CL findings (none without ``findings.json``); malformed entries skipped."""
    data = files.json_obj(f"{sub}/findings.json")
    if data is None:
        return []
    raw = data.get("findings")
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
            frames=[m for m in (_media(files, sub, x, (".png",)) for x in frames) if m],
            clip=_media(files, sub, evidence.get("clip"), VIDEO_SUFFIXES),
        ))  # fmt: skip
    return out


def _videos(
    files: RunFiles, sub: str, episodes: dict[str, dict[str, Any]], listed: list[str]
) -> list[Video]:
    """The version's evaluation videos (``videos/``, then later ``eval/<time>/`` ones), found
    on disk (summary paths are absolute and break when a runs directory moves), with the
    statistics of their episode and an honest state; videos the evaluation recorded but that
    are not on disk are listed as ``missing``."""
    found: list[Video] = []
    folders = ["videos"]
    for name, mode in files.names(f"{sub}/eval"):
        if stat.S_ISDIR(mode) and utf8_name(name):
            folders.append(f"eval/{name}")
        elif stat.S_ISLNK(mode):
            files.is_dir(f"{sub}/eval/{name}")
    seen: set[str] = set()
    for folder in folders:
        if not files.is_dir(f"{sub}/{folder}"):
            continue
        entries = files.names(f"{sub}/{folder}")
        names = {n for n, _ in entries}
        for name, _mode in entries:
            suffix = name[name.rfind(".") :].lower() if "." in name else ""
            if suffix not in VIDEO_SUFFIXES:
                continue
            main = folder == "videos"
            if not utf8_name(name):
                rel = files.rel(f"{sub}/{folder}/{shown_name(name)}")
                files.refused.append(
                    Refusal(rel, "the name is not valid UTF-8 (rename the video to show it)")
                )
                continue
            if suffix == ".webm" and name[: -len(suffix)] + ".mp4" in names:
                continue  # a cached transcode of the mp4 next to it
            rel = files.rel(f"{sub}/{folder}/{name}")
            stem = name[: -len(suffix)].replace("_", " ")
            label = stem if main else f"evaluation {folder[5:]}: {stem}"
            state, problem = _video_state(files.root, rel, suffix)
            if state == "refused":
                files._refuse(Refused(rel, problem))
            video = Video(rel=rel, label=label, name=name, state=state, problem=problem)
            e = episodes.get(name) if main else None
            if e is not None:
                seen.add(name)
                video.success = e["success"] if isinstance(e.get("success"), bool) else None
                video.progress, video.length = num(e.get("progress")), integer(e.get("length"))
                video.reward_return, video.env_return = (
                    num(e.get("reward_return")),
                    num(e.get("env_return")),
                )
            found.append(video)
    for name in listed:
        if name not in seen and utf8_name(name):
            e = episodes.get(name, {})
            video = Video(rel=files.rel(f"{sub}/videos/{name}"), label=name.rsplit(".", 1)[0].replace("_", " "),
                          name=name, state="missing", problem="recorded by the evaluation, but the file is not there")  # fmt: skip
            video.success = e["success"] if isinstance(e.get("success"), bool) else None
            video.progress, video.env_return = num(e.get("progress")), num(e.get("env_return"))
            found.append(video)
    return found


@dataclass
class Run:
    """A run with all its versions (the run page)."""

    summary: RunSummary
    versions: list[Version] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)

    def version(self, number: int) -> Version | None:
        return next((v for v in self.versions if v.number == number), None)

    def best(self) -> Version | None:
        """The best version by :data:`BEST_RULE` (``None`` until two versions were evaluated)."""
        rated = [v for v in self.versions if v.success_ci is not None]
        return (
            max(rated, key=Version.rank_key) if len(rated) > 1 else None
        )  # one version: nothing to choose

    def latest(self) -> Version | None:
        """The current version: the summary's ``current_version`` (newest not refused by E2CL),
        else the newest trained one, else the newest."""
        if self.summary.latest_version is not None and self.version(self.summary.latest_version):
            return self.version(self.summary.latest_version)
        trained = [v for v in self.versions if v.trained and v.e2cl != "refused"]
        return trained[-1] if trained else (self.versions[-1] if self.versions else None)


def load_run(root: RunsRoot, run_id: str, *, refine: RefineState = RefineState()) -> Run:
    """Everything the run page shows; a malformed run has ``summary.error`` and no versions.
    ``refine``: the run's refinement status (its target version is training or cancelled)."""
    files = RunFiles(root, run_id)
    summary = RunSummary(id=run_id)
    run = Run(summary)
    try:
        run.config = _read_summary(files, summary)
    except RunError as exc:
        summary.error = str(exc)
    except Exception as exc:
        summary.error = f"unreadable: {type(exc).__name__}: {exc}"
    for (
        name
    ) in RUN_FILES:  # lists links and special files where the page or a refinement reads or writes
        files.is_file(name)
    if summary.error is None:
        status = "refining" if refine.running else summary.status
        for n in files.version_numbers():
            try:
                run.versions.append(_load_version(files, n, status, run.config, refine))
            except Exception as exc:  # a version the page cannot read is that version's problem
                run.versions.append(
                    Version(number=n, errors=[f"unreadable: {type(exc).__name__}: {exc}"])
                )
    summary.refused = run.refused = files.refused
    return run
