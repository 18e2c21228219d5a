"""The review page in a real browser: Playwright drives Debian's Chromium against the real
server (``serve``) on a runs directory from a real tiny training.

Real run, real refinements: the run is listed, its video loads and plays (slow motion for a
short clip), a review with an injected ``<script>`` is saved, shown inert, not re-posted on
reload and kept across a server restart; the budget typed on the form reaches the next
version's training settings (``rewards/v1/train.yaml``); cancel stops a running refinement
and every process it started.

Crafted lineages (:mod:`review_lineage`: the real run's files with designed success rates,
since a tiny run never succeeds): the comparison table marks the best version by the stated
rule and sorts; the overlay chart has one series per version, hover values and smoothing; 12
versions fit a 1440x900 window without horizontal scrolling; a broken video shows its state.
Skipped only when Chromium or the ``playwright`` package is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from guards import HANG_S, UI_HANG_S
from review_lineage import BEST_LINEAGE, Spec, copy_run, craft_lineage
from test_review_server import TINY, XSS, copy_tiny_run

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)",
        allow_module_level=True,
    )
if importlib.util.find_spec("playwright") is None:
    pytest.skip(
        "browser tests need the playwright package (pip install playwright)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

from rewardlab.review.refine import pid_alive, process_tree  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
WIDE = {"width": 1440, "height": 900}


class Server:
    """``rewardlab.review.app.serve`` in a subprocess (restartable)."""

    def __init__(self, runs_dir: Path, log: Path) -> None:
        self.runs_dir, self.log, self.url = runs_dir, log, ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        code = ("import sys; from pathlib import Path; from rewardlab.review.app import serve; "
                "serve(Path(sys.argv[1]), host='127.0.0.1', port=0, refine_overrides=sys.argv[2:])")  # fmt: skip
        start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(self.runs_dir), *TINY],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + UI_HANG_S
        while not (
            m := re.search(r"review page: (http://127\.0\.0\.1:\d+/)", self.log.read_text()[start:])
        ):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)
        self.url = m.group(1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def run_dir(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_tiny_run(tiny_run, tmp_path_factory.mktemp("review_browser"))


@pytest.fixture(scope="module")
def crafted(run_dir: Path) -> dict[str, str]:
    """Crafted lineages next to the real run (made before it is refined): run ids by name."""
    runs_dir = run_dir.parents[2]
    best = copy_run(run_dir, runs_dir, "best")
    craft_lineage(best, BEST_LINEAGE)
    twelve = copy_run(run_dir, runs_dir, "twelve")
    craft_lineage(twelve, [Spec(parent=i - 1, successes=(i * 7) % 6, episodes=5, progress=(i * 0.37) % 1, env_return=50 + (i * 53) % 250,
                                first_success_at=512 if (i * 7) % 6 else None, weight=1 + i, feedback=f"refinement {i}: more speed")
                           for i in range(1, 12)])  # fmt: skip
    media = copy_run(run_dir, runs_dir, "media")
    craft_lineage(media, BEST_LINEAGE[:1])
    truncated = (
        media / "rewards" / "v0" / "videos" / "episode_00.mp4"
    )  # cut short: the server sees it
    truncated.write_bytes(truncated.read_bytes()[:2000])
    garbage = (
        media / "rewards" / "v1" / "videos" / "episode_00.mp4"
    )  # complete boxes, undecodable: only a player sees it
    boxes = [
        (b"ftyp", b"isom\0\0\2\0isomiso2mp41"),
        (b"moov", os.urandom(400)),
        (b"mdat", os.urandom(2000)),
    ]
    garbage.write_bytes(
        b"".join((8 + len(body)).to_bytes(4, "big") + kind + body for kind, body in boxes)
    )
    return {
        name: p.relative_to(runs_dir).as_posix()
        for name, p in (("best", best), ("twelve", twelve), ("media", media))
    }


@pytest.fixture(scope="module")
def server(run_dir: Path, crafted: dict[str, str]) -> Iterator[Server]:
    srv = Server(run_dir.parents[2], run_dir.parents[3] / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def new_page(browser: Browser, errors: list[str], viewport: dict[str, int] = WIDE) -> Page:
    pg = browser.new_context(viewport=viewport).new_page()  # type: ignore[arg-type]
    pg.set_default_timeout(UI_HANG_S * 1000)  # Playwright's own waits (30 s by default) too
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    return pg


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    errors: list[str] = []
    pg = new_page(browser, errors)
    yield pg
    pg.context.close()
    assert not errors, f"browser errors: {errors}"


def until(page: Page, script: str, timeout: float = UI_HANG_S, arg: Any = None) -> Any:
    """Poll ``script`` (a JS function) until it returns a truthy value. (``wait_for_function``
    evaluates strings, which the page's Content-Security-Policy forbids.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script, arg)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        time.sleep(0.1)


def open_run(page: Page, server: Server, run_dir: Path) -> str:
    run_id = run_dir.relative_to(run_dir.parents[2]).as_posix()
    page.goto(server.url)
    page.click(f'tr[data-run="{run_id}"] a')
    page.wait_for_selector("#watch")
    return run_id


def test_index_lists_the_run(page: Page, server: Server, run_dir: Path) -> None:
    page.goto(server.url)
    run_id = run_dir.relative_to(run_dir.parents[2]).as_posix()
    row = page.locator(f'tr[data-run="{run_id}"]')
    assert row.count() == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    text = row.inner_text()
    assert (
        "mujoco/hopper_forward" in text and "done" in text and f"{summary['timesteps']:,}" in text
    )
    assert page.locator("table.tasks").inner_text().count("Make the hopper move forward") == 1
    page.fill('input[name="q"]', "twelve")
    page.click('form.filters button[type="submit"]')
    assert (
        page.locator("tr.run-row").count() == 1
        and "twelve" in page.locator("tr.run-row").inner_text()
    )


def test_video_loads_and_plays_slowly_when_short(page: Page, server: Server, run_dir: Path) -> None:
    open_run(page, server, run_dir)
    assert page.locator("#watch video").count() >= 1
    state = until(
        page,
        "() => { const v = document.querySelector('#watch video'); return v.readyState >= 3 && v.duration > 0 && !v.error && [v.readyState, v.duration, v.videoWidth, v.clientWidth]; }",
    )
    assert state[0] >= 3 and state[1] > 0.1 and state[2] == 96 and state[3] == 96, (
        "shown at its natural size"
    )
    assert (
        state[1] < 4
        and page.evaluate("() => document.querySelector('#watch video').playbackRate") == 0.5
    ), "a short clip plays in slow motion"
    page.click('button[data-action="restart"]')  # the page's own "play all from start"
    until(
        page,
        "() => { const v = document.querySelector('#watch video'); return !v.paused && v.currentTime > 0.05; }",
    )
    page.select_option("select[data-speed]", "1")
    assert page.evaluate("() => document.querySelector('#watch video').playbackRate") == 1


def test_comparison_table_marks_the_best_version_and_sorts(
    page: Page, server: Server, crafted: dict[str, str]
) -> None:
    page.goto(f"{server.url}run/{crafted['best']}")
    best = page.locator("table.versions tr.best")
    assert best.count() == 1 and best.get_attribute("data-version") == "4", (
        "by the stated rule (see review_lineage.BEST_LINEAGE)"
    )
    assert "best" in best.locator(".best-badge").inner_text()
    assert (
        "highest lower bound of the 95% Wilson interval"
        in page.locator("#compare .rule").inner_text()
    )
    page.click("table.versions th:has-text('benchmark return')")
    order = page.eval_on_selector_all(
        "table.versions tbody tr", "rows => rows.map(r => r.dataset.version)"
    )
    assert order == ["3", "4", "2", "1", "0"], "sorted by the benchmark return, highest first"
    page.click("table.versions th:has-text('success')")
    order = page.eval_on_selector_all(
        "table.versions tbody tr", "rows => rows.map(r => r.dataset.version)"
    )
    assert order[:2] in (["2", "4"], ["4", "2"]) and order[-1] == "0", (
        "by the interval's lower bound"
    )
    cols = page.eval_on_selector_all("#watch article.version-col", "cols => cols.map(c => c.id)")
    assert cols == ["review-v2", "review-v4"], "default: the best (which is current) and its parent"
    page.check('input[name="v"][value="1"]')
    page.click("text=Compare selected side by side")
    cols = page.eval_on_selector_all("#watch article.version-col", "cols => cols.map(c => c.id)")
    assert cols == ["review-v1", "review-v2", "review-v4"]


def test_compared_videos_play_in_sync(page: Page, server: Server, crafted: dict[str, str]) -> None:
    page.goto(f"{server.url}run/{crafted['best']}")
    until(
        page,
        "() => Array.from(document.querySelectorAll('#watch video')).every(v => v.readyState >= 2)",
    )
    page.evaluate(
        "() => { const v = document.querySelector('#review-v2 video'); v.currentTime = 0.4; }"
    )
    until(
        page, "() => Math.abs(document.querySelector('#review-v4 video').currentTime - 0.4) < 0.05"
    )
    page.evaluate("() => document.querySelector('#review-v2 video').play()")
    until(page, "() => !document.querySelector('#review-v4 video').paused")
    page.evaluate("() => document.querySelector('#review-v4 video').pause()")
    until(page, "() => document.querySelector('#review-v2 video').paused")
    page.uncheck("[data-sync]")
    # v2 plays on (its play event and several time updates reached the page's handlers: the clips
    # loop, so its position alone would not tell), and v4 has not followed
    page.evaluate(
        "() => { const v = document.querySelector('#review-v2 video'); window.__ticks = 0; v.addEventListener('timeupdate', () => window.__ticks++); v.play(); }"
    )
    until(page, "() => !document.querySelector('#review-v2 video').paused && window.__ticks >= 3")
    assert page.evaluate("() => document.querySelector('#review-v4 video').paused"), (
        "unsynchronized: each on its own"
    )


def test_overlay_chart_has_one_series_per_version_hover_and_smoothing(
    page: Page, server: Server, crafted: dict[str, str]
) -> None:
    page.goto(f"{server.url}run/{crafted['best']}")
    for key in ("success", "env_return", "reward/progress"):
        names = page.eval_on_selector_all(
            f'[data-chart="{key}"] g.series', "gs => gs.map(g => g.dataset.name)"
        )
        assert names == [f"v{n}" for n in range(5)], (key, names)
    chart = page.locator('[data-chart="env_return"] svg.plot')
    box = chart.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.5)
    tip = page.locator('[data-chart="env_return"] .chart-tip')
    tip.wait_for(state="visible")
    lines = tip.inner_text().splitlines()
    assert lines[0].startswith("at ") and len(lines) == 6 and lines[1].startswith("v3: 400"), lines
    before = page.get_attribute(
        '[data-chart="env_return"] g.series[data-name="v4"] polyline', "points"
    )
    page.fill("[data-smoothing]", "0.9")
    page.dispatch_event("[data-smoothing]", "input")
    after = page.get_attribute(
        '[data-chart="env_return"] g.series[data-name="v4"] polyline', "points"
    )
    assert before != after and before.split()[0] == after.split()[0], (
        "smoothing redraws the curve from its first point"
    )
    assert (
        page.locator("details.diagnostics summary")
        .inner_text()
        .startswith("SB3 training diagnostics")
    )


def test_twelve_versions_fit_without_horizontal_scrolling(
    browser: Browser, server: Server, crafted: dict[str, str]
) -> None:
    errors: list[str] = []
    pg = new_page(browser, errors)
    try:
        for query in ("", "?" + "&".join(f"v={n}" for n in range(12))):
            pg.goto(f"{server.url}run/{crafted['twelve']}{query}")
            widths = pg.evaluate("""() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,
                ...Array.from(document.querySelectorAll('.table-wrap, .compare-grid, .charts')).map(e => e.scrollWidth - e.clientWidth)]""")
            assert widths[0] <= widths[1] and max(widths[2:]) <= 0, (query, widths)
            assert pg.locator("table.versions tbody tr").count() == 12
        assert pg.locator("#watch article.version-col").count() == 12
    finally:
        pg.context.close()
    assert not errors, errors


def test_a_broken_video_shows_its_state(
    page: Page, server: Server, crafted: dict[str, str]
) -> None:
    page.goto(f"{server.url}run/{crafted['media']}?v=0&v=1")
    cut = page.locator("#review-v0 figure.video")
    assert (
        cut.get_attribute("data-state") == "broken"
        and "Broken video: truncated" in cut.inner_text()
    )
    assert cut.locator("video").count() == 0, "no player spinning forever"
    undecodable = page.locator("#review-v1 figure.video")
    until(
        page, "() => document.querySelector('#review-v1 figure.video').dataset.state === 'broken'"
    )
    assert "Broken video: the browser cannot play it" in undecodable.inner_text()


def test_feedback_persists_is_escaped_and_the_budget_reaches_the_next_version(
    page: Page, server: Server, run_dir: Path
) -> None:
    run_id = open_run(page, server, run_dir)
    form = page.locator("#review-v0 form.review")
    assert form.locator('input[name="budget"]').input_value() == "1024", (
        "the default is the run's budget"
    )
    form.locator('label:has(input[name="rating"][value="2"])').click()
    form.locator('label.chip:has(input[value="falls"])').click()
    form.locator("textarea[name=text]").fill(f"more speed {XSS}")
    form.locator('input[name="budget"]').fill("768")
    with page.expect_navigation():
        form.locator('button[value="refine"]').click()
    assert "Refinement started" in " ".join(page.locator("p.notice").all_inner_texts())
    assert page.evaluate("() => location.hash") == "#refine-status"
    assert page.evaluate(
        "() => { const r = document.getElementById('refine-status').getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; }"
    ), "progress in view"
    reviews = run_dir / "rewards" / "v0" / "reviews.jsonl"
    record = json.loads(reviews.read_text().splitlines()[-1])
    assert (
        record["text"] == f"more speed {XSS}"
        and record["rating"] == 2
        and record["tags"] == ["falls"]
        and record["refine"]
    )
    assert record["next"] == {"budget": 768, "algo": "ppo"}
    page.reload()
    assert len(reviews.read_text().splitlines()) == 1, "a reload does not post the review again"

    assert page.locator("#review-v0 details.reviews-box").get_attribute("open") is None, (
        "review history collapsed"
    )
    shown = page.locator("#review-v0 .review-text").first.text_content()
    assert shown == f"more speed {XSS}", "the script is shown as text"
    assert page.evaluate("() => window.__xss") is None, "and never runs"
    assert page.evaluate("() => Array.from(document.scripts).map(s => s.src.split('/').pop())") == [
        "review.js"
    ]

    # the page polls the refinement and reloads itself with the new version when it is done
    page.wait_for_selector("details.version#v1", timeout=HANG_S * 1000)  # a real refinement trains
    assert page.locator("#refine-status").get_attribute("data-state") == "done", page.locator(
        "#refine-status"
    ).inner_text()
    settings = yaml.safe_load((run_dir / "rewards" / "v1" / "train.yaml").read_text())
    assert settings["train"]["total_timesteps"] == 768 and settings["algo"]["name"] == "ppo", (
        "the form's budget trained v1"
    )
    v1 = page.locator("details.version#v1")
    assert "refined from v0" in v1.inner_text() and "falls" in v1.inner_text()
    assert v1.locator(".diff .add").count() >= 1 and v1.locator(".diff .del").count() >= 1
    assert "768" in page.locator('tr[data-version="1"]').inner_text()
    until(
        page,
        "() => { const v = document.querySelector('#review-v1 video'); return v && v.readyState >= 2 && v.duration > 0; }",
    )
    assert json.loads((run_dir / "summary.json").read_text())["current_version"] == 1
    assert page.locator('#review-v1 button[value="refine"]').is_enabled()

    server.stop()  # the review is still there after a restart of the server
    server.start()
    page.goto(f"{server.url}run/{run_id}?v=0")
    page.locator("#review-v0 details.reviews-box summary").click()
    assert page.locator("#review-v0 .review-text").first.inner_text() == f"more speed {XSS}"
    assert page.evaluate("() => window.__xss") is None


def test_cancel_stops_the_refinement(page: Page, server: Server, run_dir: Path) -> None:
    run_id = open_run(page, server, run_dir)
    number = max(int(p.name[1:]) for p in (run_dir / "rewards").glob("v*"))
    form = page.locator(f"#review-v{number} form.review")
    form.locator("textarea[name=text]").fill("more speed")
    form.locator('input[name="budget"]').fill("5M")
    with page.expect_navigation():
        form.locator('button[value="refine"]').click()
    state = json.loads((run_dir / "refine.json").read_text())
    assert state["budget"] == 5_000_000 and state["state"] == "running"
    until(
        page,
        "() => document.querySelector('#refine-status .phase').textContent === 'training' && /\\d+ \\/ 5,000,000 steps/.test(document.querySelector('#refine-status .progress-text').textContent)",
        timeout=HANG_S,
    )
    tree = process_tree(state["pid"])
    assert len(tree) >= 1 and all(pid_alive(p) for p in [state["pid"]])
    with page.expect_navigation():
        page.click("text=Cancel refinement")
    assert "Refinement cancelled" in " ".join(page.locator("p.notice").all_inner_texts())
    assert page.locator("#refine-status").get_attribute("data-state") == "cancelled"
    assert not any(pid_alive(p) for p in tree), "the refinement and everything it started are gone"
    assert not [p for p in process_tree(state["pid"]) if pid_alive(p)]
    assert json.loads((run_dir / "refine.json").read_text())["state"] == "cancelled"
    row = page.locator(f'tr[data-version="{state["target"]}"]')
    assert "cancelled" in row.inner_text(), "the version it was training says so"
    page.goto(f"{server.url}run/{run_id}")
    assert page.locator("#refine-status").get_attribute("data-state") == "cancelled"


def test_path_traversal_from_the_browser_is_refused(
    page: Page, server: Server, run_dir: Path
) -> None:
    outside = run_dir.parents[3] / "server.log"  # a file next to the runs directory
    for path in [
        "files/..%2fserver.log",
        "files/%2e%2e/server.log",
        f"files/{outside}",
        "files/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    ]:
        res = page.request.get(server.url + path)
        assert res.status in (400, 404), (path, res.status)
        assert "review page:" not in res.text() and "root:" not in res.text()
