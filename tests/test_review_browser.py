"""The review page in a real browser: Playwright drives Debian's Chromium against the real
server (``serve``) on a runs directory from a real tiny training. The run is listed, its
video loads and plays, the plots render, a review with an injected ``<script>`` is saved,
shown inert and kept across a server restart, and the refinement it launches adds a trained
version to the page. Skipped only when Chromium or the ``playwright`` package is missing."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_review_server import TINY, XSS, train_tiny_run

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
if importlib.util.find_spec("playwright") is None:
    pytest.skip("browser tests need the playwright package (pip install playwright)", allow_module_level=True)

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


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
            self.proc = subprocess.Popen([sys.executable, "-c", code, str(self.runs_dir), *TINY], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (m := re.search(r"review page: (http://127\.0\.0\.1:\d+/)", self.log.read_text()[start:])):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)
        self.url = m.group(1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("review_browser"))


@pytest.fixture(scope="module")
def server(run_dir: Path) -> Iterator[Server]:
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


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield pg
    context.close()
    assert not errors, f"browser errors: {errors}"


def until(page: Page, script: str, timeout: float = 30.0, arg: Any = None) -> Any:
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
    page.wait_for_selector("section.version")
    return run_id


def test_index_lists_the_run(page: Page, server: Server, run_dir: Path) -> None:
    page.goto(server.url)
    run_id = run_dir.relative_to(run_dir.parents[2]).as_posix()
    row = page.locator(f'tr[data-run="{run_id}"]')
    assert row.count() == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    text = row.inner_text()
    assert "mujoco/hopper_forward" in text and "done" in text and f"{summary['timesteps']:,}" in text
    assert page.locator("table.tasks").inner_text().count("Make the hopper move forward") == 1


def test_video_loads_and_plays(page: Page, server: Server, run_dir: Path) -> None:
    open_run(page, server, run_dir)
    assert page.locator("video").count() >= 1
    state = until(page, "() => { const v = document.querySelector('video'); return v.readyState >= 3 && v.duration > 0 && !v.error && [v.readyState, v.duration, v.videoWidth]; }")
    assert state[0] >= 3 and state[1] > 0.1 and state[2] == 96
    page.click('button[data-action="restart"]')  # the page's own "play all from start"
    until(page, "() => { const v = document.querySelector('video'); return !v.paused && v.currentTime > 0.05; }")
    page.select_option("select[data-speed]", "0.5")
    assert page.evaluate("() => document.querySelector('video').playbackRate") == 0.5


def test_plots_render(page: Page, server: Server, run_dir: Path) -> None:
    open_run(page, server, run_dir)
    charts = page.locator("section.version svg.plot")
    assert charts.count() >= 3
    sizes = page.evaluate("""() => Array.from(document.querySelectorAll('section.version svg.plot')).map(svg => {
        const drawn = svg.querySelectorAll('polyline, circle');
        const box = svg.getBoundingClientRect();
        return [box.width, box.height, drawn.length, Array.from(drawn).every(e => e.getBBox().width + e.getBBox().height > 0)];
    })""")
    for width, height, drawn, visible in sizes:
        assert width > 200 and height > 100 and drawn >= 1 and visible, sizes
    legend = page.locator("section.version figure.chart").nth(2).inner_text()
    assert "progress" in legend and "alive" in legend, "per-component reward curves"


def test_feedback_persists_is_escaped_and_refinement_adds_a_version(
    page: Page, browser: Browser, server: Server, run_dir: Path
) -> None:
    run_id = open_run(page, server, run_dir)
    form = page.locator("#review-v0 form.review")
    form.locator('label:has(input[name="rating"][value="2"])').click()
    form.locator('label.chip:has(input[value="falls"])').click()
    form.locator("textarea[name=text]").fill(f"more speed {XSS}")
    with page.expect_navigation():
        form.locator('button[value="refine"]').click()
    assert "Refinement started" in page.locator("p.notice").all_inner_texts()[-1]
    record = json.loads((run_dir / "rewards" / "v0" / "reviews.jsonl").read_text().splitlines()[-1])
    assert record["text"] == f"more speed {XSS}" and record["rating"] == 2 and record["tags"] == ["falls"] and record["refine"]

    shown = page.locator("#review-v0 .review-text").first.inner_text()
    assert shown == f"more speed {XSS}", "the script is shown as text"
    assert page.evaluate("() => window.__xss") is None, "and never runs"
    assert page.evaluate("() => Array.from(document.scripts).map(s => s.src.split('/').pop())") == ["review.js"]

    # the page polls the refinement and reloads itself with the new version when it is done
    page.wait_for_selector("section.version#v1", timeout=150_000)
    assert page.locator("#refine-status").get_attribute("data-state") == "done", page.locator("#refine-status").inner_text()
    v1 = page.locator("section.version#v1")
    assert "refined from v0" in v1.inner_text() and "falls" in v1.inner_text()
    assert v1.locator(".diff .add").count() >= 1 and v1.locator(".diff .del").count() >= 1
    until(page, "() => { const v = document.querySelector('#review-v1 video'); return v && v.readyState >= 2 && v.duration > 0; }")
    assert (run_dir / "rewards" / "v1" / "summary.json").exists()
    assert json.loads((run_dir / "summary.json").read_text())["latest_version"] == 1
    assert page.locator('#review-v1 button[value="refine"]').is_enabled()
    page.screenshot(path=str(run_dir.parents[3] / "review_page.png"), full_page=True)  # for a look when it fails

    server.stop()  # the review is still there after a restart of the server
    server.start()
    page.goto(f"{server.url}run/{run_id}")
    assert page.locator("#review-v0 .review-text").first.inner_text() == f"more speed {XSS}"
    assert page.evaluate("() => window.__xss") is None


def test_path_traversal_from_the_browser_is_refused(page: Page, server: Server, run_dir: Path) -> None:
    outside = run_dir.parents[3] / "server.log"  # a file next to the runs directory
    for path in ["files/..%2fserver.log", "files/%2e%2e/server.log", f"files/{outside}", "files/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd"]:
        res = page.request.get(server.url + path)
        assert res.status in (400, 404), (path, res.status)
        assert "review page:" not in res.text() and "root:" not in res.text()

