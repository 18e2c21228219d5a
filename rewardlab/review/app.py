"""The review web app (Flask): runs and tasks, a run's reward lineage, reviews, refinement.

Routes::

    GET  /                       runs and tasks; unreadable run folders with the reason
    GET  /run/<run>              lineage, videos side by side, review forms, per-version
                                 curves, diffs and sources
    POST /feedback/<run>         save a review (rewards/vN/reviews.jsonl); action=refine also
                                 launches ``rewardlab refine`` in the background
    GET  /status/<run>           refinement status as JSON (polled by the page)
    GET  /files/<path>           a file of the runs directory (videos with range requests)

Safety: every path from a URL is resolved and must stay inside the runs directory; only
known file types are served, with their type and ``nosniff``; templates autoescape and a
Content-Security-Policy forbids inline scripts; POSTs from other origins and (when bound to
the loopback interface) requests naming another host are refused.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    Response,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from rewardlab.review.charts import Chart, lineage_chart, version_charts
from rewardlab.review.refine import Refiner
from rewardlab.review.runs import (
    Run,
    RunSummary,
    Version,
    discover_runs,
    load_run,
    load_summary,
    num,
    safe_path,
)
from rewardlab.review.store import append_review

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
BASE_TAGS = (("too_slow", "too slow"), ("falls", "falls"), ("jerky", "jerky"), ("drifts", "drifts"), ("spins", "spins"))
MAX_TEXT = 4000
FILE_TYPES = {
    ".mp4": "video/mp4", ".webm": "video/webm", ".png": "image/png", ".json": "application/json",
    ".jsonl": "text/plain; charset=utf-8", ".csv": "text/plain; charset=utf-8",
    ".py": "text/plain; charset=utf-8", ".patch": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8", ".yaml": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8",
}  # fmt: skip
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")  # fmt: skip
NOTICES = {
    "started": "Refinement started: the new version is being written and trained (status below).",
    "busy": "Not refined: a refinement of this run is already running. Your review was saved.",
    "untrained": "Not refined: this version has no finished training to refine. Your review was saved.",
    "error": "Not refined: the refinement could not be started (see refine.log). Your review was saved.",
}


@dataclass
class FormState:
    """A review form's submitted values and errors (re-shown after a rejected submission)."""

    version: int
    rating: str = ""
    text: str = ""
    video: str = ""
    tags: list[str] = field(default_factory=list)
    terms: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- formatting


def _pct(x: Any) -> str:
    v = num(x)
    return "–" if v is None else f"{v * 100:.0f}%"


def _fixed(x: Any, digits: int = 2) -> str:
    v = num(x)
    return "–" if v is None else f"{v:.{digits}f}"


def _steps(x: Any) -> str:
    v = num(x)
    return "–" if v is None else f"{int(v):,}"


def _duration(x: Any) -> str:
    v = num(x)
    if v is None:
        return "–"
    return f"{v:.0f} s" if v < 120 else f"{v / 60:.1f} min"


def _stars(x: Any) -> str:
    v = num(x)
    if v is None or not 1 <= v <= 5:
        return ""
    return "★" * int(v) + "☆" * (5 - int(v))


STATUS_CLASSES = {"done": "ok", "trained": "ok", "running": "busy", "training": "busy", "refining": "busy",
                  "interrupted": "warn", "ended": "warn", "not trained": "warn"}  # fmt: skip


def _status_class(status: Any) -> str:
    return STATUS_CLASSES.get(str(status), "bad" if status else "warn")


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """``(css class, line)`` for a unified diff."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            cls = "meta"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "ctx"
        out.append((cls, line))
    return out


def highlight_source(source: str, changed: Sequence[int]) -> Markup:
    """Python source as HTML (Pygments escapes it) with ``changed`` lines marked."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    formatter = HtmlFormatter(cssclass="src", linenos="table", hl_lines=list(changed), wrapcode=True)
    return Markup(highlight(source, PythonLexer(), formatter))  # Pygments escapes the source


def _pygments_css() -> str:
    from pygments.formatters import HtmlFormatter

    return str(HtmlFormatter(style="default").get_style_defs(".src"))


# --------------------------------------------------------------------------- the app


def create_app(
    runs_dir: Path, *, refine_overrides: Sequence[str] = (), python: str = sys.executable,
    allowed_hosts: frozenset[str] | None = LOOPBACK_HOSTS,
) -> Flask:  # fmt: skip
    """The review app over ``runs_dir``.

    Args:
        refine_overrides: extra Hydra overrides for every refinement (e.g. a small budget).
        python: the interpreter that runs ``rewardlab refine``.
        allowed_hosts: host names requests may address (DNS-rebinding guard); ``None`` = any.
    """
    root = Path(runs_dir).resolve()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024)
    refiner = Refiner(refine_overrides, python)
    app.extensions["rewardlab_refiner"] = refiner
    app.jinja_env.filters.update(pct=_pct, fixed=_fixed, steps=_steps, duration=_duration, stars=_stars,
                                 status_class=_status_class)  # fmt: skip
    pygments_css = _pygments_css()

    @app.before_request
    def _guard() -> Response | None:
        if allowed_hosts is not None:
            host = request.host
            name = host[1 : host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
            if name.lower() not in allowed_hosts:
                abort(421, "this server only answers requests addressed to the loopback interface")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin != request.host_url.rstrip("/"):
                abort(403, "cross-origin form submissions are refused")
            if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
                abort(403, "cross-site form submissions are refused")
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"  # "no-referrer" would make form posts say Origin: null
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.errorhandler(HTTPException)
    def _error(exc: HTTPException) -> tuple[str, int]:
        return render_template("error.html", code=exc.code, name=exc.name, description=exc.description, root=root), exc.code or 500

    def run_dir_of(run_id: str) -> Path:
        path = safe_path(root, run_id)
        if path is None or not path.is_dir() or path not in discover_runs(root):
            abort(404, "no such run")
        return path

    @app.get("/pygments.css")
    def pygments_stylesheet() -> Response:
        return Response(pygments_css, mimetype="text/css")

    @app.get("/")
    def index() -> str:
        runs = [load_summary(root, d) for d in discover_runs(root)]
        for r in runs:
            if r.error is None and refiner.status(r.path).running:
                r.status = "refining"
        good = sorted((r for r in runs if r.error is None), key=lambda r: (r.updated, r.id), reverse=True)
        broken = [r for r in runs if r.error is not None]
        return render_template("index.html", root=root, runs=good, broken=broken, tasks=_tasks(good),
                               root_is_run=(root / "config.yaml").is_file())  # fmt: skip

    def render_run(run_dir: Path, form: FormState | None = None, status: int = 200) -> tuple[str, int]:
        refine = refiner.status(run_dir)
        run = load_run(root, run_dir, refining=refine.running)
        if refine.running:
            run.summary.status = "refining"
        notices = [NOTICES[k] for k in (request.args.get("refine"),) if k in NOTICES]
        saved = request.args.get("saved", "")
        if saved.isdigit():
            notices.insert(0, f"Review of v{saved} saved to rewards/v{saved}/reviews.jsonl.")
        if form is not None and form.errors:
            notices.insert(0, "Review not saved: " + "; ".join(form.errors) + ".")
        page = render_template(
            "run.html", root=root, run=run, s=run.summary, versions=run.versions, refine=refine,
            busy=refine.running, next_version=max((v.number for v in run.versions), default=-1) + 1,
            charts=_charts(run), lineage=lineage_chart(run.versions), sources=_sources(run),
            diff_lines=diff_lines, base_tags=BASE_TAGS, form=form, notices=notices,
        )  # fmt: skip
        return page, status

    @app.get("/run/<path:run_id>")
    def run_page(run_id: str) -> tuple[str, int]:
        return render_run(run_dir_of(run_id))

    @app.post("/feedback/<path:run_id>")
    def feedback(run_id: str) -> Any:
        run_dir = run_dir_of(run_id)
        form, version = _read_form(root, run_dir)
        if form.errors or version is None:
            return render_run(run_dir, form, 400)
        refine = request.form.get("action") == "refine"
        tags = form.tags + [f"{name}_{way}" for name, way in form.terms.items()]
        record = {
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "version": version.number, "video": form.video or None,
            "rating": int(form.rating) if form.rating else None, "text": form.text, "tags": tags,
            "refine": refine,
        }  # fmt: skip
        append_review(run_dir / "rewards" / f"v{version.number}", record)
        args: dict[str, str] = {"saved": str(version.number)}
        if refine:
            if not version.trained:
                args["refine"] = "untrained"
            else:
                problem = refiner.start(run_dir, version.number, form.text, tags)
                args["refine"] = "started" if problem is None else "busy" if "already running" in problem else "error"
        target = url_for("run_page", run_id=run_id, **args)  # type: ignore[arg-type]
        return redirect(f"{target}#review-v{version.number}", code=303)

    @app.get("/status/<path:run_id>")
    def status(run_id: str) -> Response:
        return jsonify(refiner.status(run_dir_of(run_id)).to_json())

    @app.get("/files/<path:rel>")
    def files(rel: str) -> Response:
        path = safe_path(root, rel)
        if path is None or not path.is_file() or path.suffix.lower() not in FILE_TYPES:
            abort(404, "no such file")
        return send_file(path, mimetype=FILE_TYPES[path.suffix.lower()], conditional=True, max_age=0)

    return app


def _read_form(root: Path, run_dir: Path) -> tuple[FormState, Version | None]:
    """The submitted review, validated against the version it is about."""
    f = request.form
    raw_version = f.get("version", "")
    form = FormState(version=int(raw_version) if raw_version.isdigit() else -1)
    form.rating = f.get("rating", "").strip()
    form.text = f.get("text", "").replace("\r\n", "\n").strip()
    form.video = f.get("video", "").strip()
    form.tags = [t for t in f.getlist("tags") if t]
    form.terms = {k[5:]: v for k, v in f.items() if k.startswith("term:") and v}
    run = load_run(root, run_dir)
    version = run.version(form.version)
    if version is None:
        form.errors.append("unknown reward version")
        return form, None
    if form.rating and form.rating not in ("1", "2", "3", "4", "5"):
        form.errors.append("the rating must be 1 to 5")
    if len(form.text) > MAX_TEXT:
        form.errors.append(f"the feedback is longer than {MAX_TEXT} characters")
    if form.video and form.video not in {Path(v.rel).name for v in version.videos}:
        form.errors.append("unknown video")
    allowed = {t for t, _ in BASE_TAGS}
    if any(t not in allowed for t in form.tags):
        form.errors.append("unknown tag")
    components = set(version.adjustable())
    if any(k not in components or v not in ("up", "down") for k, v in form.terms.items()):
        form.errors.append("unknown reward term adjustment")
    if not (form.rating or form.text or form.tags or form.terms):
        form.errors.append("give a rating, tags or feedback text")
    if f.get("action") == "refine" and not (form.text or form.tags or form.terms):
        form.errors.append("say what to change (text or tags) to refine")
    return form, version


@dataclass
class TaskRow:
    name: str
    instruction: str
    runs: int
    best: float | None
    latest: RunSummary


def _tasks(runs: list[RunSummary]) -> list[TaskRow]:
    rows: dict[str, TaskRow] = {}
    for r in runs:  # newest first
        row = rows.setdefault(r.task, TaskRow(r.task, r.instruction, 0, None, r))
        row.runs += 1
        if r.success_rate is not None and (row.best is None or r.success_rate > row.best):
            row.best = r.success_rate
    return sorted(rows.values(), key=lambda t: t.name)


def _charts(run: Run) -> dict[int, list[Chart]]:
    return {v.number: version_charts(v) for v in run.versions}


def _sources(run: Run) -> dict[int, Markup]:
    return {v.number: highlight_source(v.source, v.changed_lines()) for v in run.versions if v.source is not None}


def serve(runs_dir: Path, host: str = "127.0.0.1", port: int = 8765, *, refine_overrides: Sequence[str] = ()) -> None:
    """Serve the review page until interrupted (threaded; ``port=0`` picks a free port)."""
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    loopback = host in LOOPBACK_HOSTS or host.startswith("127.")
    app = create_app(runs_dir, refine_overrides=refine_overrides,
                     allowed_hosts=LOOPBACK_HOSTS | {host} if loopback else None)  # fmt: skip
    server = make_server(host, port, app, threaded=True)
    print(f"review page: http://{host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        refiner: Refiner = app.extensions["rewardlab_refiner"]
        if not refiner.wait(timeout=0):
            print("a refinement is still running in the background; its output goes to <run>/refine.log", flush=True)
