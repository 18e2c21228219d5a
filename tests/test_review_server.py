"""The review web app without a browser: a real (tiny) training run served through Flask's
test client and through ``rewardlab review`` itself; path traversal, escaping, malformed run
folders, reviews surviving a restart, the refinement guard and its command line."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from rewardlab.review.app import create_app
from rewardlab.review.refine import LOCK, STATE, Refiner, hydra_quote, refine_command
from rewardlab.review.runs import safe_path
from rewardlab.rundir import write_json

RL = [sys.executable, "-m", "rewardlab.cli"]
TINY = [
    "train.total_timesteps=1024", "train.n_envs=2", "train.eval_freq=512", "train.eval_episodes=1",
    "train.video_episodes=1", "train.video_size=96", "train.progress_bar=false",
    "train.checkpoint_freq=1024", "algo.kwargs.n_steps=256", "check.steps=30",
]  # fmt: skip
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def train_tiny_run(root: Path) -> Path:
    """``rewardlab train`` with a tiny budget into ``root/runs``; the run directory."""
    res = subprocess.run([*RL, "train", "task=mujoco/hopper_forward", *TINY, f"runs_dir={root / 'runs'}"],
                         cwd=root, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (config,) = [p for p in (root / "runs").rglob("config.yaml") if p.parent.name != ".hydra"]
    return config.parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A runs directory with one real run, malformed folders and escaping symlinks;
    ``(runs dir, run id)``."""
    root = tmp_path_factory.mktemp("review")
    run_dir = train_tiny_run(root)
    runs_dir = root / "runs"
    bad = runs_dir / "broken"
    (bad / "bad_json" / "rewards").mkdir(parents=True)
    (bad / "bad_json" / "config.yaml").write_text("task: {name: mujoco/hopper_forward}\n")
    (bad / "bad_json" / "summary.json").write_text("{not json")
    (bad / "bad_yaml" / "rewards").mkdir(parents=True)
    (bad / "bad_yaml" / "config.yaml").write_text("task: [unclosed\n")
    (bad / "no_config" / "rewards" / "v0").mkdir(parents=True)
    half = bad / "bad_version"
    shutil.copytree(run_dir, half, ignore=shutil.ignore_patterns("checkpoints", "*.zip", "*.pkl", "tb", "videos"))
    (half / "rewards" / "v0" / "summary.json").write_text("[1, 2]")
    (half / "rewards" / "v0" / "reviews.jsonl").write_text('{"rating": 3, "text": "fine"}\nnot json\n')
    (half / "rewards" / "v0" / "metrics.csv").write_bytes(b"\xff\xfe garbage,\x00\n1,2,3\n")
    training = runs_dir / "mujoco" / "hopper_forward" / "0000-in-progress"
    (training / "rewards" / "v0").mkdir(parents=True)
    shutil.copy(run_dir / "config.yaml", training / "config.yaml")
    shutil.copy(run_dir / "rewards" / "v0" / "reward.py", training / "rewards" / "v0" / "reward.py")
    (root / "secret.json").write_text('{"SECRET": "outside the runs directory"}')  # a servable type
    (runs_dir / "escape").symlink_to("/etc", target_is_directory=True)
    (runs_dir / "up").symlink_to(root, target_is_directory=True)
    (run_dir / "rewards" / "v0" / "videos" / "leak.mp4").symlink_to("/etc/passwd")
    (run_dir / "rewards" / "v0" / "leak.json").symlink_to(root / "secret.json")
    return runs_dir, run_dir.relative_to(runs_dir).as_posix()


@pytest.fixture
def client(runs: tuple[Path, str]) -> FlaskClient:
    return create_app(runs[0], python="/nonexistent/python").test_client()


def page(client: FlaskClient, url: str) -> str:
    res = client.get(url)
    assert res.status_code == 200, (url, res.status_code, res.data[:500])
    return res.get_data(as_text=True)


def test_index_lists_runs_tasks_and_malformed_folders_with_reasons(client: FlaskClient, runs: tuple[Path, str]) -> None:
    html = page(client, "/")
    run_id = runs[1]
    summary = json.loads((runs[0] / run_id / "summary.json").read_text())
    assert f'href="/run/{run_id}"' in html and "mujoco/hopper_forward" in html
    assert "Make the hopper move forward as fast as possible." in html
    row = html[html.index(f'data-run="{run_id}"') :].split("</tr>")[0]
    assert ">done<" in row and f"{summary['timesteps']:,}" in row and f"{summary['success_rate'] * 100:.0f}%" in row
    broken = html[html.index("Unreadable run directories") :]
    assert "broken/bad_json" in broken and "summary.json: invalid JSON" in broken
    assert "broken/bad_yaml" in broken and "config.yaml: invalid YAML" in broken
    assert "broken/no_config" in broken and "no config.yaml" in broken
    assert "broken/bad_version" not in broken, "a run with one bad version is still a run"
    training = html[html.index('data-run="mujoco/hopper_forward/0000-in-progress"') :].split("</tr>")[0]
    assert ">training<" in training, "a run without summary.json yet is in progress, not broken"


def test_run_page_shows_lineage_videos_plots_and_source(client: FlaskClient, runs: tuple[Path, str]) -> None:
    html = page(client, f"/run/{runs[1]}")
    assert f'<video src="/files/{runs[1]}/rewards/v0/videos/episode_00.mp4"' in html
    assert "leak.mp4" not in html, "a video symlinked out of the runs directory is not offered"
    assert html.count('<svg class="plot"') >= 3 and "<polyline" in html
    for title in ("Task success during training", "Learning curve", "Reward components (mean per step"):
        assert title in html
    for component in ("progress", "alive", "upright"):
        assert f'<select name="term:{component}">' in html
    assert 'class="src"' in html and "compute_dense_reward" in html
    assert 'name="rating" value="5"' in html and 'value="refine"' in html
    assert "<script>" not in html.replace('<script src="/static/review.js" defer></script>', "")


def test_run_in_progress_renders(client: FlaskClient) -> None:
    html = page(client, "/run/mujoco/hopper_forward/0000-in-progress")
    assert "compute_dense_reward" in html and "no videos for this version" in html and "no data yet" in html


def test_malformed_runs_and_versions_show_the_reason(client: FlaskClient) -> None:
    html = page(client, "/run/broken/bad_json")
    assert "This run cannot be shown" in html and "summary.json: invalid JSON" in html
    html = page(client, "/run/broken/bad_version")
    assert "summary.json: expected a JSON object, found list" in html
    assert "reviews.jsonl line 2: invalid JSON" in html and "fine" in html


def test_files_are_served_with_type_and_ranges(client: FlaskClient, runs: tuple[Path, str]) -> None:
    url = f"/files/{runs[1]}/rewards/v0/videos/episode_00.mp4"
    full = client.get(url)
    assert full.status_code == 200 and full.mimetype == "video/mp4"
    assert full.headers["Accept-Ranges"] == "bytes" and full.headers["X-Content-Type-Options"] == "nosniff"
    part = client.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.data) == 100 and part.data == full.data[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(full.data)}"
    src = client.get(f"/files/{runs[1]}/rewards/v0/reward.py")
    assert src.status_code == 200 and src.mimetype == "text/plain" and b"compute_dense_reward" in src.data


TRAVERSALS = [
    "/files/../secret.json", "/files/..%2fsecret.json", "/files/%2e%2e/secret.json", "/files/%2E%2E%2Fsecret.json",
    "/files/up/secret.json", "/files/up/runs/../secret.json", "/files/./../secret.json",
    "/files/../../../../etc/passwd", "/files/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/files//etc/passwd", "/files/%2fetc%2fpasswd",
    "/files/escape/passwd", "/files/escape/../escape/passwd", "/files/.%2e/.%2e/etc/passwd",
    "/files/x%00/etc/passwd", "/files/..\\..\\etc\\passwd", "/run/../../etc", "/run/escape", "/status/..%2f..%2fetc",
]  # fmt: skip


def test_no_path_outside_the_runs_directory_is_served(client: FlaskClient, runs: tuple[Path, str]) -> None:
    secret = runs[0].parent / "secret.json"
    links = [f"/files/{runs[1]}/rewards/v0/videos/leak.mp4", f"/files/{runs[1]}/rewards/v0/leak.json"]
    for url in [*TRAVERSALS, *links, f"/files/{secret}", f"/files/{runs[1]}/rewards/v0/model.zip"]:
        res = client.get(url, follow_redirects=True)
        assert res.status_code in (400, 404), (url, res.status_code)
        assert b"root:" not in res.data and b"SECRET" not in res.data, url
    root = runs[0]
    assert safe_path(root, "escape/passwd") is None and safe_path(root, "../secret.json") is None
    assert safe_path(root, "up/secret.json") is None and safe_path(root, "up/runs") is None
    assert safe_path(root, "/etc/passwd") is None and safe_path(root, "a//b") is None
    assert safe_path(root, f"{runs[1]}/config.yaml") == (root / runs[1] / "config.yaml").resolve()


def review_lines(runs: tuple[Path, str], version: int = 0) -> list[dict[str, object]]:
    path = runs[0] / runs[1] / "rewards" / f"v{version}" / "reviews.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_review_is_saved_escaped_and_survives_a_restart(runs: tuple[Path, str]) -> None:
    before = len(review_lines(runs))
    client = create_app(runs[0]).test_client()
    text = f"falls over backwards {XSS} & jumps"
    res = client.post(f"/feedback/{runs[1]}", data={"version": "0", "rating": "2", "text": text, "tags": ["falls", "jerky"],
                                                    "term:progress": "up", "video": "episode_00.mp4", "action": "save"})  # fmt: skip
    assert res.status_code == 303 and res.headers["Location"].endswith("#review-v0")
    record = review_lines(runs)[-1]
    assert len(review_lines(runs)) == before + 1
    assert record["text"] == text and record["rating"] == 2 and record["video"] == "episode_00.mp4"
    assert record["tags"] == ["falls", "jerky", "progress_up"] and record["refine"] is False

    restarted = create_app(runs[0]).test_client()  # a new server process reads the same files
    html = page(restarted, f"/run/{runs[1]}?saved=0")
    assert "Review of v0 saved" in html
    assert "falls over backwards &lt;script&gt;window.__xss = 1&lt;/script&gt;&lt;img src=x onerror=&#34;window.__xss = 2&#34;&gt; &amp; jumps" in html
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "★★☆☆☆" in html and "progress_up" in html


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"version": "0", "rating": "9", "text": "kept text"}, "the rating must be 1 to 5"),
        ({"version": "0", "rating": "3", "tags": ["flies"], "text": "kept text"}, "unknown tag"),
        ({"version": "0", "term:__class__": "up", "text": "kept text"}, "unknown reward term adjustment"),
        ({"version": "0", "rating": "3", "video": "../../etc/passwd", "text": "kept text"}, "unknown video"),
        ({"version": "0", "text": "x" * 4001}, "longer than 4000"),
        ({"version": "0"}, "give a rating, tags or feedback text"),
        ({"version": "0", "rating": "4", "action": "refine"}, "say what to change"),
    ],
)  # fmt: skip
def test_invalid_reviews_are_refused_and_the_form_keeps_its_text(runs: tuple[Path, str], data: dict[str, object], error: str) -> None:
    before = len(review_lines(runs))
    res = create_app(runs[0]).test_client().post(f"/feedback/{runs[1]}", data=data)
    assert res.status_code == 400 and error in res.get_data(as_text=True)
    if data.get("text") == "kept text":
        assert ">kept text</textarea>" in res.get_data(as_text=True)
    assert len(review_lines(runs)) == before, "nothing is written"


def test_unknown_version_and_run_are_refused(client: FlaskClient, runs: tuple[Path, str]) -> None:
    res = client.post(f"/feedback/{runs[1]}", data={"version": "7", "rating": "3"})
    assert res.status_code == 400 and "Review not saved: unknown reward version" in res.get_data(as_text=True)
    assert client.post("/feedback/broken/nothing", data={"version": "0", "rating": "3"}).status_code == 404


def test_cross_origin_posts_and_foreign_hosts_are_refused(client: FlaskClient, runs: tuple[Path, str]) -> None:
    before = len(review_lines(runs))
    data = {"version": "0", "rating": "1", "text": "csrf"}
    assert client.post(f"/feedback/{runs[1]}", data=data, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post(f"/feedback/{runs[1]}", data=data, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 421, "DNS rebinding"
    assert len(review_lines(runs)) == before
    ok = client.post(f"/feedback/{runs[1]}", data=data, headers={"Origin": "http://localhost"})
    assert ok.status_code == 303 and len(review_lines(runs)) == before + 1


@pytest.mark.parametrize("text", ["it's \"fine\"", "a\\b", "end\\", "\\'", "x ${oc.env:HOME} y", "a,b=c [d] {e}", "ünï ✓", "'"])
def test_feedback_reaches_hydra_verbatim(text: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    value = OverridesParser.create().parse_override(f"feedback={hydra_quote(text)}").value()
    assert OmegaConf.create({"feedback": value}).feedback == text.replace("${", "$ {")


@pytest.fixture
def fake_python(tmp_path: Path) -> Iterator[Path]:
    """An interpreter stand-in that records its arguments and takes a moment."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path / 'args.txt'}\necho refining; sleep 0.3\n")
    script.chmod(0o755)
    yield script


def test_refinement_guard_command_line_and_status(runs: tuple[Path, str], fake_python: Path) -> None:
    run_dir = runs[0] / runs[1]
    app = create_app(runs[0], python=str(fake_python), refine_overrides=["train.total_timesteps=64"])
    client = app.test_client()
    data = {"version": "0", "rating": "2", "text": "falls forward; more speed", "tags": ["too_slow"], "action": "refine"}
    (run_dir / LOCK).write_text(str(os.getpid()))  # a live process holds the run
    try:
        res = client.post(f"/feedback/{runs[1]}", data=data)
        assert "refine=busy" in res.headers["Location"] and not (run_dir / STATE).exists()
        assert review_lines(runs)[-1]["refine"] is True, "the review is kept even when refining is refused"
        dead = subprocess.Popen(["true"])
        dead.wait()
        (run_dir / LOCK).write_text(str(dead.pid))  # stale lock of a finished process
        res = client.post(f"/feedback/{runs[1]}", data=data)
        assert "refine=started" in res.headers["Location"]
        assert "a refinement of this run is running" in page(client, f"/run/{runs[1]}")
        again = client.post(f"/feedback/{runs[1]}", data=data)
        assert "refine=busy" in again.headers["Location"], "one refinement per run at a time"
        assert app.extensions["rewardlab_refiner"].wait(timeout=30)
    finally:
        (run_dir / LOCK).unlink(missing_ok=True)
    status = client.get(f"/status/{runs[1]}").get_json()
    assert status["state"] == "done" and status["parent"] == 0 and status["target"] == 1 and "refining" in status["log_tail"]
    args = (fake_python.parent / "args.txt").read_text().splitlines()
    assert args == ["-m", "rewardlab.cli", "refine", f"run='{run_dir.resolve()}'", "version=0",
                    "feedback='falls forward; more speed'", "tags=[too_slow]", "train.total_timesteps=64"]  # fmt: skip
    assert not (run_dir / LOCK).exists()
    (run_dir / STATE).unlink()
    assert refine_command(run_dir, 2, "", ["falls"])[-1] == "tags=[falls]"


def test_refinement_that_cannot_start_says_so(client: FlaskClient, runs: tuple[Path, str]) -> None:
    run_dir = runs[0] / runs[1]
    res = client.post(f"/feedback/{runs[1]}", data={"version": "0", "text": "more speed", "action": "refine"})
    assert "refine=error" in res.headers["Location"]  # the client's interpreter does not exist
    assert "could not start" in (run_dir / "refine.log").read_text() and not (run_dir / LOCK).exists()
    assert review_lines(runs)[-1]["text"] == "more speed", "the review is kept"


def test_refinement_that_ended_while_no_server_watched(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    write_json(tmp_path / STATE, {"state": "running", "pid": dead.pid, "parent": 0, "target": 1})
    (tmp_path / LOCK).write_text(str(dead.pid))
    refiner = Refiner()
    assert refiner.status(tmp_path).state == "ended" and not refiner.busy(tmp_path)
    (tmp_path / "rewards" / "v1").mkdir(parents=True)
    (tmp_path / "rewards" / "v1" / "summary.json").write_text("{}")
    assert refiner.status(tmp_path).state == "done", "its version was trained"


def test_rewardlab_review_command_serves_and_refuses_raw_traversal(runs: tuple[Path, str], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*RL, "review", f"runs_dir={runs[0]}", "review.port=0"], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"review page: http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        port = int(m.group(1))

        def get(path: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.putrequest("GET", path, skip_accept_encoding=True)  # the path goes out byte for byte
            conn.endheaders()
            res = conn.getresponse()
            body = res.read()
            conn.close()
            return res.status, body

        status, body = get("/")
        assert status == 200 and runs[1].encode() in body
        for path in TRAVERSALS:
            status, body = get(path)
            assert status in (400, 404, 308), (path, status)
            assert b"root:" not in body and b"SECRET" not in body, path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
