"""The review web app (Flask): runs and tasks, a run's versions compared, reviews, refinement.

Routes::

    GET  /                       runs and tasks (sort, filter by task/status, search); refused
                                 and unreadable run folders with the reason
    GET  /run/<run>?v=N&v=M      comparison table of all versions (best marked), overlaid
                                 learning curves and SB3 diagnostics, the chosen versions' videos
                                 and review forms side by side (default: best and latest),
                                 per-version details (diff, source), refused files
    POST /feedback/<run>         save a review (rewards/vN/reviews.jsonl); action=refine also
                                 launches ``rewardlab refine`` with the budget and algorithm
                                 chosen on the form; answers with a redirect (POST-redirect-GET),
                                 errors shown next to the form
    POST /cancel/<run>           stop the running refinement (its whole process tree)
    POST /tensorboard/<run>      start TensorBoard on the run's logs (loopback servers only)
    GET  /status/<run>           refinement status as JSON (phase, steps, budget; polled)
    GET  /files/<path>           a regular file of the runs directory (videos with range requests)

Safety: the runs directory is untrusted (:mod:`rewardlab.review.safefs`: no link followed,
regular files only, nothing from procfs, writes by temp file + rename inside checked folders;
what is refused is listed). Only known file types are served, with their type and
``nosniff``; templates autoescape and a Content-Security-Policy forbids inline scripts; POSTs
from other origins are refused; requests naming a host other than the configured names are
refused (DNS rebinding); a server reachable from the network (``review.allow_remote``) also
asks for a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WResponse
from werkzeug.wsgi import wrap_file

from rewardlab.generators.feedback_tags import tags_for
from rewardlab.interrupts import stop_on_sigterm
from rewardlab.review.charts import comparison_charts, lineage_chart
from rewardlab.review.refine import (
    ALGOS,
    NextVersion,
    Refiner,
    override_value,
    parse_budget,
    secrets_in,
)
from rewardlab.review.runs import (
    BEST_RULE,
    Run,
    RunSummary,
    SummaryCache,
    Version,
    discover_runs,
    integer,
    is_run,
    load_run,
    num,
)
from rewardlab.review.safefs import Refused, RunsRoot
from rewardlab.review.store import append_review
from rewardlab.review.tensorboard import TensorBoards

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN_COOKIE = "rewardlab_review_token"
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
    "started": "Refinement started: the new version is being written and trained (status above).",
    "busy": "Not refined: a refinement of this run is already running. Your review was saved.",
    "untrained": "Not refined: this version has no finished training to refine. Your review was saved.",
    "error": "Not refined: the refinement could not be started (see refine.log). Your review was saved.",
    "cancelled": "Refinement cancelled: its processes were stopped.",
}
INDEX_SORTS = {
    "updated": lambda r: (r.updated, r.id), "run": lambda r: r.id, "task": lambda r: (r.task, r.id),
    "status": lambda r: (r.status, r.id), "versions": lambda r: (r.versions, r.id),
    "best": lambda r: (r.best_success if r.best_success is not None else -1.0, r.id),
    "success": lambda r: (r.success_rate if r.success_rate is not None else -1.0, r.id),
    "steps": lambda r: (r.timesteps or -1, r.id),
}  # fmt: skip
"""Index sort keys (``?sort=``); text columns ascend by default, the others descend."""
ASCENDING = ("run", "task", "status")


class RemoteRefused(ValueError):
    """A review server configuration that would expose the page unsafely (one-line reason)."""


@dataclass
class FormState:
    """A review form's submitted values and errors (re-shown after a rejected submission)."""

    version: int
    rating: str = ""
    text: str = ""
    video: str = ""
    tags: list[str] = field(default_factory=list)
    terms: dict[str, str] = field(default_factory=dict)
    budget: str = ""
    algo: str = ""
    errors: list[str] = field(default_factory=list)
    refine_problem: str = ""
    """Why a requested refinement did not start (shown next to the form)."""


class Flash:
    """Form states handed from a POST to the GET it redirects to (POST-redirect-GET), by a
    random key in the URL; the most recent :attr:`size` are kept."""

    size = 200

    def __init__(self) -> None:
        self._items: OrderedDict[str, FormState] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, form: FormState) -> str:
        key = secrets.token_urlsafe(9)
        with self._lock:
            self._items[key] = form
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> FormState | None:
        with self._lock:
            return self._items.get(key)


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


def _ci(ci: Any) -> str:
    if not ci:
        return ""
    return f"[{ci[0] * 100:.0f}–{ci[1] * 100:.0f}%]"


STATUS_CLASSES = {"done": "ok", "trained": "ok", "running": "busy", "training": "busy", "refining": "busy",
                  "interrupted": "warn", "stopped": "warn", "ended": "warn", "not trained": "warn", "cancelled": "warn",
                  "trained, not evaluated": "warn", "trained, summary unreadable": "warn",
                  "passed": "ok", "accepted": "ok", "rejected": "bad", "refused": "bad"}  # fmt: skip


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

    formatter = HtmlFormatter(
        cssclass="src", linenos="table", hl_lines=list(changed), wrapcode=True
    )
    return Markup(highlight(source, PythonLexer(), formatter))  # Pygments escapes the source


def _pygments_css() -> str:
    from pygments.formatters import HtmlFormatter

    return str(HtmlFormatter(style="default").get_style_defs(".src"))


def is_loopback(host: str) -> bool:
    """``host`` (a name or address to bind) only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """The name in a ``Host`` header (without port; IPv6 brackets removed), lower-case."""
    name = (
        host[1 : host.index("]")]
        if host.startswith("[") and "]" in host
        else host.rsplit(":", 1)[0]
    )
    return name.lower()


# --------------------------------------------------------------------------- the app


def create_app(
    runs_dir: Path, *, refine_overrides: Sequence[str] = (), python: str = sys.executable,
    allowed_hosts: frozenset[str] | None = LOOPBACK_HOSTS, token: str | None = None,
    tensorboard: bool = True,
) -> Flask:  # fmt: skip
    """The review app over ``runs_dir``.

    Args:
        refine_overrides: extra Hydra overrides for every refinement (e.g. a small budget).
        python: the interpreter that runs ``rewardlab refine``.
        allowed_hosts: host names requests may address (DNS-rebinding guard); ``None`` = any.
        token: when set, every request must carry it (``?token=`` once, then a cookie, or
            ``Authorization: Bearer``).
        tensorboard: offer to start TensorBoard (only sensible when the browser runs on this machine).
    """
    root = RunsRoot(Path(runs_dir))
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024)
    refiner = Refiner(root, refine_overrides, python)
    boards = TensorBoards(root)
    cache = SummaryCache(root)
    flash = Flash()
    app.extensions.update(
        rewardlab_refiner=refiner, rewardlab_cache=cache, rewardlab_tensorboards=boards
    )
    app.jinja_env.filters.update(pct=_pct, fixed=_fixed, steps=_steps, duration=_duration, stars=_stars,
                                 status_class=_status_class, ci=_ci)  # fmt: skip
    pygments_css = _pygments_css()

    @app.before_request
    def _guard() -> WResponse | None:
        if allowed_hosts is not None and _host_name(request.host) not in allowed_hosts:
            abort(
                421,
                "this server only answers requests addressed to the names it was configured with",
            )
        if token is not None:
            given = request.args.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = auth[7:]
            if not hmac.compare_digest(given.encode(), token.encode()):
                abort(
                    401,
                    "this review server asks for a token: open the address it printed when it started",
                )
            if (
                "token" in request.args and request.method == "GET"
            ):  # move it from the URL into a cookie
                args = {k: v for k, v in request.args.items(multi=True) if k != "token"}
                target = request.path + ("?" + urlencode(args) if args else "")
                response = redirect(target, code=303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
                return response
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
        response.headers["Referrer-Policy"] = (
            "same-origin"  # "no-referrer" would make form posts say Origin: null
        )
        response.headers["X-Frame-Options"] = "DENY"
        if request.endpoint in ("run_page", "index"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def _error(exc: HTTPException) -> tuple[str, int]:
        return render_template(
            "error.html", code=exc.code, name=exc.name, description=exc.description, root=root.path
        ), exc.code or 500

    def run_id_of(run_id: str) -> str:
        if not is_run(root, run_id):
            abort(404, "no such run")
        return run_id

    @app.get("/pygments.css")
    def pygments_stylesheet() -> Response:
        return Response(pygments_css, mimetype="text/css")

    @app.get("/")
    def index() -> str:
        ids, refused = discover_runs(root)
        runs = cache.rows(ids)
        shown: list[RunSummary] = []
        for r in runs:
            if r.error is None:
                st = refiner.status(r.id, tail=False)
                row = r
                if st.running or (st.state == "cancelled" and r.status in ("training", "refining")):
                    row = RunSummary(
                        **{**r.__dict__, "status": "refining" if st.running else "cancelled"}
                    )
                shown.append(row)
        broken = [r for r in runs if r.error is not None]
        refused += [x for r in runs for x in r.refused]
        tasks = _tasks(shown)
        q = request.args.get("q", "").strip()
        task = request.args.get("task", "")
        status = request.args.get("status", "")
        sort = request.args.get("sort", "updated")
        sort = sort if sort in INDEX_SORTS else "updated"
        order = request.args.get("order", "asc" if sort in ASCENDING else "desc")
        statuses = sorted({r.status for r in shown})
        rows = [r for r in shown if (not task or r.task == task) and (not status or r.status == status)
                and (not q or q.lower() in f"{r.id} {r.task} {r.instruction} {r.algo} {r.generator}".lower())]  # fmt: skip
        rows.sort(key=INDEX_SORTS[sort], reverse=order != "asc")
        return render_template("index.html", root=root.path, runs=rows, total=len(shown), broken=broken,
                               refused=refused, tasks=tasks, statuses=statuses, q=q, task=task, status=status,
                               sort=sort, order=order, sorts=list(INDEX_SORTS), ascending=ASCENDING,
                               root_is_run=root.lstat("config.yaml") is not None)  # fmt: skip

    def compare_set(run: Run) -> list[int]:
        asked = [
            n
            for n in (integer(x) for x in request.args.getlist("v"))
            if n is not None and run.version(n)
        ]
        if asked:
            return sorted(set(asked))
        best, latest = run.best(), run.latest()
        chosen = {v.number for v in (best, latest) if v is not None}
        if len(chosen) == 1 and latest is not None:  # best is current: show what it improved on
            before = (
                latest.parent if latest.parent is not None and run.version(latest.parent) else None
            )
            earlier = [v.number for v in run.versions if v.number < latest.number]
            if before is not None or earlier:
                chosen.add(before if before is not None else earlier[-1])
        return sorted(chosen)

    def next_defaults(run: Run, version: Version | None) -> tuple[int | None, str]:
        budget = integer(override_value(refiner.overrides, "train.total_timesteps"))
        if budget is None:
            budget = (
                version.budget if version is not None and version.budget else run.summary.budget
            )
        algo = (
            (version.algo if version is not None and version.algo else "")
            or run.summary.algo
            or "ppo"
        )
        return budget, algo

    @app.get("/run/<path:run_id>")
    def run_page(run_id: str) -> str:
        run_id = run_id_of(run_id)
        refine = refiner.status(run_id)
        run = load_run(root, run_id, refine=refine.as_state())
        if refine.running:
            run.summary.status = "refining"
        form = flash.get(request.args.get("form", ""))
        notices = [
            NOTICES[k]
            for k in (request.args.get("refine"), request.args.get("cancel"))
            if k in NOTICES
        ]
        saved = request.args.get("saved", "")
        if saved.isdigit():
            notices.insert(0, f"Review of v{saved} saved to rewards/v{saved}/reviews.jsonl.")
        cancel_error = request.args.get("cancel_error", "")
        if cancel_error:
            notices.append(f"Not cancelled: {cancel_error[:300]}.")
        chosen = compare_set(run)
        compared = [v for v in run.versions if v.number in chosen]
        if (
            form is not None and form.errors and form.version not in chosen
        ):  # no form of that version on the page
            notices.insert(0, "Review not saved: " + "; ".join(form.errors) + ".")
        best, latest = run.best(), run.latest()
        charts = comparison_charts(run.versions, chosen)
        sources = {v.number: highlight_source(v.source, v.changed_lines()) for v in run.versions
                   if v.source is not None and v.number in chosen}  # fmt: skip
        defaults = {v.number: next_defaults(run, v) for v in compared}
        return render_template(
            "run.html", root=root.path, run=run, s=run.summary, versions=run.versions, compared=compared,
            chosen=chosen, best=best, latest=latest, best_rule=BEST_RULE, refine=refine, busy=refine.running,
            next_version=max((v.number for v in run.versions), default=-1) + 1, charts=charts,
            lineage=lineage_chart(run.versions), sources=sources, diff_lines=diff_lines,
            tags=tags_for(run.summary.task), form=form, notices=notices, defaults=defaults, algos=ALGOS,
            tb=boards.status(run_id), tb_command=boards.command(run_id, [v.number for v in run.versions if v.has_tb]),
            tb_offered=tensorboard and boards.available(), compare_query=[("v", n) for n in chosen],
        )  # fmt: skip

    def back(run_id: str, chosen: Sequence[int], anchor: str, **args: str) -> WResponse:
        query = [("v", str(n)) for n in chosen] + list(args.items())
        target = url_for("run_page", run_id=run_id) + ("?" + urlencode(query) if query else "")
        return redirect(f"{target}#{anchor}", code=303)

    @app.post("/feedback/<path:run_id>")
    def feedback(run_id: str) -> WResponse:
        run_id = run_id_of(run_id)
        refine_status = refiner.status(run_id, tail=False)
        run = load_run(root, run_id, refine=refine_status.as_state())
        chosen = [n for n in (integer(x) for x in request.form.getlist("compare")) if n is not None]
        form, version, next_version = _read_form(run)
        if form.errors or version is None:
            return back(
                run_id,
                chosen,
                f"review-v{form.version}" if version else "top",
                form=flash.put(form),
            )
        wants_refine = request.form.get("action") == "refine"
        tags = form.tags + [f"{name}_{way}" for name, way in form.terms.items()]
        record = {
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "version": version.number, "video": form.video or None,
            "rating": int(form.rating) if form.rating else None, "text": form.text, "tags": tags,
            "refine": wants_refine,
        }  # fmt: skip
        if wants_refine:
            record["next"] = {"budget": next_version.budget, "algo": next_version.algo}
        try:
            append_review(root, f"{run_id}/rewards/v{version.number}", record)
        except (Refused, OSError) as exc:
            form.errors.append(f"the review could not be saved ({exc})")
            return back(run_id, chosen, f"review-v{version.number}", form=flash.put(form))
        args: dict[str, str] = {"saved": str(version.number)}
        anchor = f"review-v{version.number}"
        if wants_refine:
            if not version.trained:
                args["refine"] = "untrained"
            else:
                problem = refiner.start(run_id, version.number, form.text, tags, next_version, run_algo=version.algo or run.summary.algo,
                                        extra_secret_names=_key_names(run))  # fmt: skip
                if problem is None:
                    args["refine"], anchor = "started", "refine-status"
                elif "already running" in problem:
                    args["refine"] = "busy"
                else:
                    form.refine_problem = "Not refined: " + problem
                    args["form"] = flash.put(form)
        return back(run_id, chosen, anchor, **args)

    @app.post("/cancel/<path:run_id>")
    def cancel(run_id: str) -> WResponse:
        run_id = run_id_of(run_id)
        chosen = [n for n in (integer(x) for x in request.form.getlist("compare")) if n is not None]
        problem = refiner.cancel(run_id)
        if problem is None:
            return back(run_id, chosen, "refine-status", cancel="cancelled")
        return back(run_id, chosen, "refine-status", cancel_error=problem)

    @app.post("/tensorboard/<path:run_id>")
    def start_tensorboard(run_id: str) -> WResponse:
        run_id = run_id_of(run_id)
        if not tensorboard:
            abort(
                403, "TensorBoard is not offered by this server (it is reachable from the network)"
            )
        chosen = [n for n in (integer(x) for x in request.form.getlist("compare")) if n is not None]
        run = load_run(root, run_id)
        problem = boards.start(run_id, [v.number for v in run.versions if v.has_tb])
        return back(run_id, chosen, "tensorboard", **({"tb_error": problem} if problem else {}))

    @app.get("/status/<path:run_id>")
    def status(run_id: str) -> Response:
        return jsonify(refiner.status(run_id_of(run_id)).to_json())

    @app.get("/files/<path:rel>")
    def files(rel: str) -> WResponse:
        suffix = rel[rel.rfind(".") :].lower() if "." in rel.rsplit("/", 1)[-1] else ""
        if suffix not in FILE_TYPES:
            abort(404, "no such file")
        try:
            handle, st = root.open_binary(rel)
        except (Refused, OSError):
            abort(404, "no such file")
        body = wrap_file(request.environ, handle)  # type: ignore[arg-type]
        response = Response(body, mimetype=FILE_TYPES[suffix], direct_passthrough=True)
        response.content_length = st.st_size
        response.last_modified = st.st_mtime  # type: ignore[assignment]
        response.set_etag(f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}")
        response.cache_control.no_cache = True
        return response.make_conditional(
            request.environ, accept_ranges=True, complete_length=st.st_size
        )

    return app


def _key_names(run: Run) -> list[str]:
    """The environment variable the run's LLM key is read from (``llm.api_key_env``)."""
    llm = run.config.get("llm")
    name = llm.get("api_key_env") if isinstance(llm, dict) else None
    return [name] if isinstance(name, str) and name else []


def _read_form(run: Run) -> tuple[FormState, Version | None, NextVersion]:
    """The submitted review, validated against the version it is about."""
    f = request.form
    raw_version = f.get("version", "")
    form = FormState(
        version=int(raw_version) if raw_version.isdigit() and len(raw_version) < 9 else -1
    )
    form.rating = f.get("rating", "").strip()
    form.text = f.get("text", "").replace("\r\n", "\n").strip()
    form.video = f.get("video", "").strip()
    form.tags = [t for t in f.getlist("tags") if t]
    form.terms = {k[5:]: v for k, v in f.items() if k.startswith("term:") and v}
    form.budget = f.get("budget", "").strip()
    form.algo = f.get("algo", "").strip()
    version = run.version(form.version)
    next_version = NextVersion()
    if version is None:
        form.errors.append("unknown reward version")
        return form, None, next_version
    if form.rating and form.rating not in ("1", "2", "3", "4", "5"):
        form.errors.append("the rating must be 1 to 5")
    if len(form.text) > MAX_TEXT:
        form.errors.append(f"the feedback is longer than {MAX_TEXT} characters")
    if form.video and form.video not in {v.name for v in version.videos}:
        form.errors.append("unknown video")
    allowed = {t.name for t in tags_for(run.summary.task)}
    if any(t not in allowed for t in form.tags):
        form.errors.append("unknown tag")
    components = set(version.adjustable())
    if any(k not in components or v not in ("up", "down") for k, v in form.terms.items()):
        form.errors.append("unknown reward term adjustment")
    if not (form.rating or form.text or form.tags or form.terms):
        form.errors.append("give a rating, tags or feedback text")
    leaked = secrets_in(form.text, _key_names(run))
    if leaked:
        form.errors.append(f"the feedback contains the value of ${leaked[0]}; it is not saved")
    if f.get("action") == "refine":
        if not (form.text or form.tags or form.terms):
            form.errors.append("say what to change (text or tags) to refine")
        budget = parse_budget(form.budget) if form.budget else None
        if form.budget and budget is None:
            form.errors.append(
                "the budget must be a whole number of environment steps from 1 to 100,000,000 (e.g. 50000 or 50k)"
            )
        if form.algo and form.algo not in ALGOS:
            form.errors.append(f"the algorithm must be one of {', '.join(ALGOS)}")
        next_version = NextVersion(budget=budget, algo=form.algo or None)
    return form, version, next_version


@dataclass
class TaskRow:
    name: str
    instruction: str
    runs: int
    best: float | None
    latest: RunSummary


def _tasks(runs: list[RunSummary]) -> list[TaskRow]:
    rows: dict[str, TaskRow] = {}
    for r in sorted(runs, key=lambda r: (r.updated, r.id), reverse=True):  # newest first
        row = rows.setdefault(r.task, TaskRow(r.task, r.instruction, 0, None, r))
        row.runs += 1
        if r.best_success is not None and (row.best is None or r.best_success > row.best):
            row.best = r.best_success
    return sorted(rows.values(), key=lambda t: t.name)


def serve(
    runs_dir: Path, host: str = "127.0.0.1", port: int = 8765, *, refine_overrides: Sequence[str] = (),
    allow_remote: bool = False, allowed_hosts: Sequence[str] = (), token: str | None = None,
) -> None:  # fmt: skip
    """Serve the review page until interrupted (threaded; ``port=0`` picks a free port).

    A ``host`` that is not a loopback address is refused (:class:`RemoteRefused`) unless
    ``allow_remote``; then a warning is printed, requests must name one of ``allowed_hosts``
    (required when binding every interface) and carry ``token`` (generated when ``None``).
    """
    import logging

    from werkzeug.serving import make_server

    names, token, warning = remote_settings(host, allow_remote, allowed_hosts, token)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(runs_dir, refine_overrides=refine_overrides, allowed_hosts=names, token=token,
                     tensorboard=token is None)  # fmt: skip
    server = make_server(host, port, app, threaded=True)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    shown = f"[{host}]" if ":" in host else host
    suffix = f"?token={token}" if token else ""
    print(f"review page: http://{shown}:{server.server_port}/{suffix}", flush=True)
    try:  # Ctrl-C, or SIGTERM (kill, timeout, systemd; a script's background job ignores SIGINT)
        with stop_on_sigterm():
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["rewardlab_tensorboards"].stop_all()
        refiner: Refiner = app.extensions["rewardlab_refiner"]
        if not refiner.wait(timeout=0):
            print(
                "a refinement is still running in the background; its output goes to <run>/refine.log",
                flush=True,
            )


def remote_settings(
    host: str, allow_remote: bool, allowed_hosts: Sequence[str], token: str | None
) -> tuple[frozenset[str], str | None, str]:
    """``(host names requests may address, token or None, warning)`` for binding ``host``;
    :class:`RemoteRefused` when that would be unsafe."""
    if is_loopback(host):
        return LOOPBACK_HOSTS | {host.lower()} | {h.lower() for h in allowed_hosts}, None, ""
    if not allow_remote:
        raise RemoteRefused(
            f"review.host={host} is not a loopback address: the page (your runs, reviews and a button that "
            f"starts training) would be reachable from the network. Keep review.host=127.0.0.1, or set "
            f"review.allow_remote=true and review.allowed_hosts=[<names clients use>] to serve it with a token"
        )
    names = {h.lower().strip("[]") for h in allowed_hosts if h}
    wildcard = host in ("0.0.0.0", "::", "")
    if not names and wildcard:
        raise RemoteRefused(
            f"review.host={host} listens on every interface: name the host names clients will use, "
            f"e.g. review.allowed_hosts=[myhost.lan,192.168.1.20]"
        )
    if not wildcard:
        names.add(host.lower().strip("[]"))
    token = token or secrets.token_urlsafe(24)
    warning = (f"warning: the review page listens on {host} and is reachable from the network; requests must "
               f"name {', '.join(sorted(names))} and carry the token in the address printed below "
               f"(plain HTTP: use it only on a network you trust)")  # fmt: skip
    return frozenset(names), token, warning
