"""The review web app without a browser: a real (tiny) training run served through Flask's
test client and through ``rewardlab review`` itself. Path traversal, escaping, malformed run
folders, reviews surviving a restart, the refinement guard, its command line and cancel; the
run folder as untrusted input (symlinked files and folders read and written, a symlinked run
folder, procfs targets, secrets, non-UTF-8 names, a non-loopback host); the comparison of
versions (best by the stated rule, crafted lineage from the real run's files), honest media
and version states, the index's sort/filter/search and its cache."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from guards import HANG_S, UI_HANG_S
from review_lineage import BEST_LINEAGE, copy_run, craft_lineage

from rewardlab.generators.feedback_tags import TAGS, tags_for
from rewardlab.review.app import RemoteRefused, create_app, remote_settings
from rewardlab.review.refine import (
    LOCK,
    STATE,
    NextVersion,
    Refiner,
    hydra_quote,
    parse_budget,
    pid_alive,
    refine_command,
)
from rewardlab.review.runs import mp4_problem
from rewardlab.review.safefs import Refused, RunsRoot
from rewardlab.stats import wilson_interval

RL = [sys.executable, "-m", "rewardlab.cli"]
TINY = [
    "train.total_timesteps=1024", "train.n_envs=2", "train.eval_freq=512", "train.eval_episodes=1",
    "train.video_episodes=1", "train.video_size=96", "train.progress_bar=false",
    "train.checkpoint_freq=1024", "algo.kwargs.n_steps=256", "check.steps=30",
]  # fmt: skip
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
SECRET = "sk-test-0123456789abcdefSECRET"


def train_tiny_run(root: Path) -> Path:
    """``rewardlab train`` with a tiny budget into ``root/runs``; the run directory."""
    res = subprocess.run([*RL, "train", "task=mujoco/hopper_forward", *TINY, f"runs_dir={root / 'runs'}"],
                         cwd=root, capture_output=True, text=True, timeout=HANG_S)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (config,) = [p for p in (root / "runs").rglob("config.yaml") if p.parent.name != ".hydra"]
    return config.parent


def copy_tiny_run(run_dir: Path, root: Path) -> Path:
    """A copy of the run at the same place below ``root/runs`` (links kept as links)."""
    dst = root / "runs" / run_dir.relative_to(run_dir.parents[2])
    shutil.copytree(run_dir, dst, symlinks=True)
    return dst


@pytest.fixture(scope="module")
def runs(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A runs directory with one real run, malformed folders and escaping symlinks;
    ``(runs dir, run id)``."""
    root = tmp_path_factory.mktemp("review")
    run_dir = copy_tiny_run(tiny_run, root)
    runs_dir = root / "runs"
    bad = runs_dir / "broken"
    (bad / "bad_json" / "rewards").mkdir(parents=True)
    (bad / "bad_json" / "config.yaml").write_text("task: {name: mujoco/hopper_forward}\n")
    (bad / "bad_json" / "summary.json").write_text("{not json")
    (bad / "bad_yaml" / "rewards").mkdir(parents=True)
    (bad / "bad_yaml" / "config.yaml").write_text("task: [unclosed\n")
    (bad / "no_config" / "rewards" / "v0").mkdir(parents=True)
    half = bad / "bad_version"
    shutil.copytree(
        run_dir, half, ignore=shutil.ignore_patterns("checkpoints", "*.pkl", "tb", "videos")
    )
    (half / "rewards" / "v0" / "summary.json").write_text("[1, 2]")
    (half / "rewards" / "v0" / "reviews.jsonl").write_text(
        '{"rating": 3, "text": "fine"}\nnot json\n'
    )
    (half / "rewards" / "v0" / "metrics.csv").write_bytes(b"\xff\xfe garbage,\x00\n1,2,3\n")
    training = runs_dir / "mujoco" / "hopper_forward" / "0000-in-progress"
    (training / "rewards" / "v0").mkdir(parents=True)
    shutil.copy(run_dir / "config.yaml", training / "config.yaml")
    shutil.copy(run_dir / "rewards" / "v0" / "reward.py", training / "rewards" / "v0" / "reward.py")
    (root / "secret.json").write_text('{"SECRET": "outside the runs directory"}')  # a servable type
    (runs_dir / "escape").symlink_to("/etc", target_is_directory=True)
    (runs_dir / "up").symlink_to(root, target_is_directory=True)
    links = copy_run(run_dir, runs_dir, "links")
    (links / "rewards" / "v0" / "videos" / "leak.mp4").symlink_to("/etc/passwd")
    (links / "rewards" / "v0" / "leak.json").symlink_to(root / "secret.json")
    return runs_dir, run_dir.relative_to(runs_dir).as_posix()


@pytest.fixture
def client(runs: tuple[Path, str]) -> FlaskClient:
    return create_app(runs[0], python="/nonexistent/python").test_client()


def page(client: FlaskClient, url: str) -> str:
    res = client.get(url)
    assert res.status_code == 200, (url, res.status_code, res.data[:500])
    return res.get_data(as_text=True)


def form_html(html: str, version: int) -> str:
    """The review column of ``version`` on a run page."""
    start = html.index(f'id="review-v{version}"')
    return html[start : html.index("</article>", start)]


def test_index_lists_runs_tasks_and_malformed_folders_with_reasons(
    client: FlaskClient, runs: tuple[Path, str]
) -> None:
    html = page(client, "/")
    run_id = runs[1]
    summary = json.loads((runs[0] / run_id / "summary.json").read_text())
    assert f'href="/run/{run_id}"' in html and "mujoco/hopper_forward" in html
    assert "Make the hopper move forward as fast as possible." in html
    row = html[html.index(f'data-run="{run_id}"') :].split("</tr>")[0]
    assert (
        ">done<" in row
        and f"{summary['timesteps']:,}" in row
        and f"{summary['success_rate'] * 100:.0f}%" in row
    )
    broken = html[html.index("Unreadable run directories") :]
    assert "broken/bad_json" in broken and "summary.json: invalid JSON" in broken
    assert "broken/bad_yaml" in broken and "config.yaml: invalid YAML" in broken
    assert "broken/no_config" in broken and "no config.yaml" in broken
    assert "broken/bad_version" not in broken.split('id="refused"')[0], (
        "a run with one bad version is still a run"
    )
    training = html[html.index('data-run="mujoco/hopper_forward/0000-in-progress"') :].split(
        "</tr>"
    )[0]
    assert ">training<" in training, "a run without summary.json yet is in progress, not broken"
    refused = html[html.index('id="refused"') :]
    assert "escape" in refused and "a symbolic link (to /etc)" in refused and "up" in refused


def test_run_page_shows_comparison_curves_videos_and_source(
    client: FlaskClient, runs: tuple[Path, str]
) -> None:
    html = page(client, f"/run/{runs[1]}")
    assert f'<video src="/files/{runs[1]}/rewards/v0/videos/episode_00.mp4"' in html
    assert 'id="refused"' not in html, "nothing refused in a plain run"
    html = page(client, "/run/mujoco/hopper_forward/links")
    assert "videos/leak.mp4" in html.split('id="refused"')[1].split("</section>")[0], (
        "the symlinked video is listed as refused"
    )
    assert 'src="/files/mujoco/hopper_forward/links/rewards/v0/videos/leak.mp4"' not in html, (
        "and never offered"
    )
    for key in (
        "success",
        "progress",
        "env_return",
        "reward/progress",
        "reward/alive",
        "train/value_loss",
        "rollout/ep_len_mean",
    ):
        assert f'data-chart="{key}"' in html, key
    assert html.count('<svg class="plot"') >= 8 and "<polyline" in html
    for component in ("progress", "alive", "upright"):
        assert f'<select name="term:{component}">' in html
    assert 'class="src"' in html and "compute_dense_reward" in html
    assert 'name="rating" value="5"' in html and 'value="refine"' in html
    assert 'name="budget"' in html and 'value="1024"' in html, (
        "the run's budget is the form's default"
    )
    assert "tensorboard --logdir" in html
    assert "<script>" not in html.replace('<script src="/static/review.js" defer></script>', "")
    assert "style=" not in html, "no inline styles (the Content-Security-Policy forbids them)"


def test_run_in_progress_renders(client: FlaskClient) -> None:
    html = page(client, "/run/mujoco/hopper_forward/0000-in-progress")
    assert (
        "compute_dense_reward" in html and "Not recorded yet: the version is still training" in html
    )
    assert "no data yet" in html


def test_malformed_runs_and_versions_show_the_reason(client: FlaskClient) -> None:
    html = page(client, "/run/broken/bad_json")
    assert "This run cannot be shown" in html and "summary.json: invalid JSON" in html
    html = page(client, "/run/broken/bad_version")
    assert "summary.json: expected a JSON object, found list" in html
    assert "reviews.jsonl line 2: invalid JSON" in html and "fine" in html
    assert ">trained, summary unreadable<" in html, (
        "a model without a readable summary is not 'not trained'"
    )


def test_files_are_served_with_type_and_ranges(client: FlaskClient, runs: tuple[Path, str]) -> None:
    url = f"/files/{runs[1]}/rewards/v0/videos/episode_00.mp4"
    full = client.get(url)
    assert full.status_code == 200 and full.mimetype == "video/mp4"
    assert (
        full.headers["Accept-Ranges"] == "bytes"
        and full.headers["X-Content-Type-Options"] == "nosniff"
    )
    part = client.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.data) == 100 and part.data == full.data[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(full.data)}"
    src = client.get(f"/files/{runs[1]}/rewards/v0/reward.py")
    assert (
        src.status_code == 200
        and src.mimetype == "text/plain"
        and b"compute_dense_reward" in src.data
    )


TRAVERSALS = [
    "/files/../secret.json", "/files/..%2fsecret.json", "/files/%2e%2e/secret.json", "/files/%2E%2E%2Fsecret.json",
    "/files/up/secret.json", "/files/up/runs/../secret.json", "/files/./../secret.json",
    "/files/../../../../etc/passwd", "/files/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/files//etc/passwd", "/files/%2fetc%2fpasswd",
    "/files/escape/passwd", "/files/escape/../escape/passwd", "/files/.%2e/.%2e/etc/passwd",
    "/files/x%00/etc/passwd", "/files/..\\..\\etc\\passwd", "/run/../../etc", "/run/escape", "/status/..%2f..%2fetc",
]  # fmt: skip


def test_no_path_outside_the_runs_directory_is_served(
    client: FlaskClient, runs: tuple[Path, str]
) -> None:
    secret = runs[0].parent / "secret.json"
    links = [
        "/files/mujoco/hopper_forward/links/rewards/v0/videos/leak.mp4",
        "/files/mujoco/hopper_forward/links/rewards/v0/leak.json",
    ]
    for url in [*TRAVERSALS, *links, f"/files/{secret}", f"/files/{runs[1]}/rewards/v0/model.zip"]:
        res = client.get(url, follow_redirects=True)
        assert res.status_code in (400, 404), (url, res.status_code)
        assert b"root:" not in res.data and b"SECRET" not in res.data, url
    root = RunsRoot(runs[0])
    for rel in (
        "escape/passwd",
        "../secret.json",
        "up/secret.json",
        "/etc/passwd",
        "a//b",
        "mujoco/hopper_forward/links/rewards/v0/leak.json",
    ):
        with pytest.raises((Refused, OSError)):
            root.read_bytes(rel, 100)
    assert (
        root.read_bytes(f"{runs[1]}/config.yaml", 10**6)[0]
        == (runs[0] / runs[1] / "config.yaml").read_bytes()
    )


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
    assert (
        "falls over backwards &lt;script&gt;window.__xss = 1&lt;/script&gt;&lt;img src=x onerror=&#34;window.__xss = 2&#34;&gt; &amp; jumps"
        in html
    )
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "★★☆☆☆" in html and "progress_up" in html


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"version": "0", "rating": "9", "text": "kept text"}, "the rating must be 1 to 5"),
        ({"version": "0", "rating": "3", "tags": ["flies"], "text": "kept text"}, "unknown tag"),
        ({"version": "0", "rating": "3", "tags": ["drops_it"], "text": "kept text"}, "unknown tag"),
        ({"version": "0", "term:__class__": "up", "text": "kept text"}, "unknown reward term adjustment"),
        ({"version": "0", "rating": "3", "video": "../../etc/passwd", "text": "kept text"}, "unknown video"),
        ({"version": "0", "text": "x" * 4001}, "longer than 4000"),
        ({"version": "0"}, "give a rating, tags or feedback text"),
        ({"version": "0", "rating": "4", "action": "refine"}, "say what to change"),
        ({"version": "0", "text": "kept text", "action": "refine", "budget": "lots"}, "the budget must be a whole number"),
        ({"version": "0", "text": "kept text", "action": "refine", "algo": "dqn"}, "the algorithm must be one of"),
    ],
)  # fmt: skip
def test_invalid_reviews_are_refused_next_to_the_form_without_a_repost(
    runs: tuple[Path, str], data: dict[str, object], error: str
) -> None:
    before = len(review_lines(runs))
    client = create_app(runs[0]).test_client()
    res = client.post(f"/feedback/{runs[1]}", data=data)
    assert res.status_code == 303 and "form=" in res.headers["Location"], (
        "POST-redirect-GET, also for errors"
    )
    assert res.headers["Location"].endswith("#review-v0"), "back to the form"
    html = page(client, res.headers["Location"].split("#")[0])
    assert error in form_html(html, 0), "the error is shown inside the form it belongs to"
    if data.get("text") == "kept text":
        assert ">kept text</textarea>" in form_html(html, 0)
    assert len(review_lines(runs)) == before, "nothing is written"


def test_unknown_version_and_run_are_refused(client: FlaskClient, runs: tuple[Path, str]) -> None:
    res = client.post(f"/feedback/{runs[1]}", data={"version": "7", "rating": "3"})
    assert res.status_code == 303
    assert "Review not saved: unknown reward version" in page(
        client, res.headers["Location"].split("#")[0]
    )
    assert (
        client.post("/feedback/broken/nothing", data={"version": "0", "rating": "3"}).status_code
        == 404
    )


def test_cross_origin_posts_and_foreign_hosts_are_refused(
    client: FlaskClient, runs: tuple[Path, str]
) -> None:
    before = len(review_lines(runs))
    data = {"version": "0", "rating": "1", "text": "csrf"}
    assert (
        client.post(
            f"/feedback/{runs[1]}", data=data, headers={"Origin": "http://evil.example"}
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"/feedback/{runs[1]}", data=data, headers={"Sec-Fetch-Site": "cross-site"}
        ).status_code
        == 403
    )
    assert (
        client.post(f"/cancel/{runs[1]}", headers={"Origin": "http://evil.example"}).status_code
        == 403
    )
    assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 421, (
        "DNS rebinding"
    )
    assert len(review_lines(runs)) == before
    ok = client.post(f"/feedback/{runs[1]}", data=data, headers={"Origin": "http://localhost"})
    assert ok.status_code == 303 and len(review_lines(runs)) == before + 1


@pytest.mark.parametrize(
    "text",
    ['it\'s "fine"', "a\\b", "end\\", "\\'", "x ${oc.env:HOME} y", "a,b=c [d] {e}", "ünï ✓", "'"],
)
def test_feedback_reaches_hydra_verbatim(text: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    value = OverridesParser.create().parse_override(f"feedback={hydra_quote(text)}").value()
    assert OmegaConf.create({"feedback": value}).feedback == text.replace("${", "$ {")


@pytest.fixture
def fake_python(tmp_path: Path) -> Iterator[Path]:
    """An interpreter stand-in that records its arguments and takes a moment (until released)."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path / 'args.txt'}\necho refining\n"
                      f"while [ ! -e {tmp_path / 'release'} ]; do sleep 0.05; done\n")  # fmt: skip
    script.chmod(0o755)
    yield script


def test_refinement_guard_command_line_budget_and_status(
    runs: tuple[Path, str], fake_python: Path
) -> None:
    run_dir = runs[0] / runs[1]
    app = create_app(
        runs[0],
        python=str(fake_python),
        refine_overrides=["train.total_timesteps=64", "algo.kwargs.n_steps=32"],
    )
    client = app.test_client()
    data = {"version": "0", "rating": "2", "text": "falls forward; more speed", "tags": ["too_slow"], "action": "refine",
            "budget": "3k", "algo": "ppo"}  # fmt: skip
    (run_dir / LOCK).write_text(str(os.getpid()))  # a live process holds the run
    try:
        res = client.post(f"/feedback/{runs[1]}", data=data)
        assert "refine=busy" in res.headers["Location"] and not (run_dir / STATE).exists()
        assert review_lines(runs)[-1]["refine"] is True, (
            "the review is kept even when refining is refused"
        )
        dead = subprocess.Popen(["true"])
        dead.wait()
        (run_dir / LOCK).write_text(str(dead.pid))  # stale lock of a finished process
        res = client.post(f"/feedback/{runs[1]}", data=data)
        assert "refine=started" in res.headers["Location"] and res.headers["Location"].endswith(
            "#refine-status"
        )
        html = page(client, f"/run/{runs[1]}")
        assert (
            "a refinement of this run is running" in html
            and "Cancel refinement" in html
            and "budget 3,000 steps" in html
        )
        again = client.post(f"/feedback/{runs[1]}", data=data)
        assert "refine=busy" in again.headers["Location"], "one refinement per run at a time"
        status = client.get(f"/status/{runs[1]}").get_json()
        assert status["state"] == "running" and status["budget"] == 3000 and status["phase"]
        (fake_python.parent / "release").touch()
        assert app.extensions["rewardlab_refiner"].wait(timeout=UI_HANG_S)
    finally:
        (run_dir / LOCK).unlink(missing_ok=True)
    status = client.get(f"/status/{runs[1]}").get_json()
    assert (
        status["state"] == "done"
        and status["parent"] == 0
        and status["target"] == 1
        and "refining" in status["log_tail"]
    )
    args = (fake_python.parent / "args.txt").read_text().splitlines()
    assert args == ["-m", "rewardlab.cli", "refine", f"run='{run_dir.resolve()}'", "version=0",
                    "feedback='falls forward; more speed'", "tags=[too_slow]", "algo.kwargs.n_steps=32",
                    "train.total_timesteps=3000"], "the page's budget replaces the server's"  # fmt: skip
    assert not (run_dir / LOCK).exists()
    (run_dir / STATE).unlink()
    assert refine_command(run_dir, 2, "", ["falls"])[-1] == "tags=[falls]"
    switched = refine_command(
        run_dir,
        0,
        "x",
        [],
        ["algo.kwargs.n_steps=32", "train.seed=1"],
        next_version=NextVersion(algo="sac"),
        run_algo="ppo",
    )
    assert switched[-2:] == ["train.seed=1", "algo=sac"], (
        "another algorithm drops the overrides written for the old one"
    )


@pytest.mark.parametrize(("raw", "value"), [("50000", 50000), ("50k", 50000), ("1.5M", 1_500_000), ("50_000", 50000),
                                            ("0", None), ("-5", None), ("1e9", None), ("2.5", None), ("10 steps", None)])  # fmt: skip
def test_budget_parsing(raw: str, value: int | None) -> None:
    assert parse_budget(raw) == value


def test_cancel_stops_the_refinement_and_everything_it_started(tmp_path: Path) -> None:
    """The refinement's process tree (a child that left its process group included) is gone."""
    runs_dir = tmp_path / "runs"
    run = runs_dir / "r"
    (run / "rewards" / "v0").mkdir(parents=True)
    (run / "rewards" / "v0" / "reward.py").write_text("x = 1\n")
    pids = tmp_path / "pids"
    script = tmp_path / "python"  # ignores SIGTERM, starts a grandchild in a new process group
    script.write_text(f"#!/bin/sh\ntrap '' TERM\nsetsid sh -c 'echo $$ >> {pids}; trap \"\" TERM; while true; do sleep 0.05; done' &\n"
                      f"echo $$ >> {pids}\nwhile true; do sleep 0.05; done\n")  # fmt: skip
    script.chmod(0o755)
    refiner = Refiner(RunsRoot(runs_dir), python=str(script))
    assert refiner.start("r", 0, "more speed", []) is None
    deadline = time.monotonic() + UI_HANG_S
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = [int(p) for p in pids.read_text().split()]
    assert all(pid_alive(p) for p in started)
    assert refiner.cancel("r", grace_s=0.5) is None
    assert not any(pid_alive(p) for p in started), (
        "SIGKILL after the grace period, to the whole tree"
    )
    state = json.loads((run / STATE).read_text())
    assert state["state"] == "cancelled" and not (run / LOCK).exists()
    assert (
        refiner.status("r").state == "cancelled"
        and "cancelled from the review page" in (run / "refine.log").read_text()
    )
    assert refiner.cancel("r") == "no refinement of this run is running"


def test_refinement_that_cannot_start_says_so_next_to_the_form(
    client: FlaskClient, runs: tuple[Path, str]
) -> None:
    run_dir = runs[0] / runs[1]
    res = client.post(
        f"/feedback/{runs[1]}", data={"version": "0", "text": "more speed", "action": "refine"}
    )
    assert "form=" in res.headers["Location"]  # the client's interpreter does not exist
    assert "could not start" in form_html(page(client, res.headers["Location"].split("#")[0]), 0)
    assert (
        "could not start" in (run_dir / "refine.log").read_text() and not (run_dir / LOCK).exists()
    )
    assert review_lines(runs)[-1]["text"] == "more speed", "the review is kept"


def test_refinement_that_ended_while_no_server_watched(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / STATE).write_text(
        json.dumps({"state": "running", "pid": dead.pid, "parent": 0, "target": 1})
    )
    (tmp_path / "r" / LOCK).write_text(str(dead.pid))
    refiner = Refiner(RunsRoot(tmp_path))
    assert refiner.status("r").state == "ended" and not refiner.busy("r")
    (tmp_path / "r" / "rewards" / "v1").mkdir(parents=True)
    (tmp_path / "r" / "rewards" / "v1" / "summary.json").write_text("{}")
    assert refiner.status("r").state == "done", "its version was trained"


# --------------------------------------------------------------------------- an untrusted run folder


@pytest.fixture(scope="module")
def hostile(
    runs: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, Path]:
    """A copy of the real run whose files and folders are links out of the runs directory:
    ``(runs dir, run id, folder outside)``."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "target.txt").write_text("ORIGINAL TARGET\n")
    (outside / "beside.patch").write_text("+ BESIDE THE RUNS DIRECTORY\n")
    (outside / "vdir").mkdir()
    runs_dir = runs[0]
    run = copy_run(runs_dir / runs[1], runs_dir, "hostile")
    v0 = run / "rewards" / "v0"
    for name in ("report.md", "refine.log", "refine.json"):
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(outside / "target.txt")
    (v0 / "reviews.jsonl").symlink_to(outside / "target.txt")
    (v0 / "reward.py").unlink()
    (v0 / "reward.py").symlink_to("/proc/self/environ")
    (v0 / "diff.patch").symlink_to(outside / "beside.patch")
    (v0 / "feedback.json").symlink_to("/etc/hostname")
    (run / "rewards" / "v1").symlink_to(outside / "vdir", target_is_directory=True)
    os.mkfifo(v0 / "metrics.csv.fifo")
    return runs_dir, run.relative_to(runs_dir).as_posix(), outside


def test_linked_files_are_never_shown_and_are_listed_with_the_reason(
    hostile: tuple[Path, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # what /proc/self/environ would show
    runs_dir, run_id, _ = hostile
    client = create_app(runs_dir).test_client()
    html = page(client, f"/run/{run_id}")
    assert SECRET not in html and "OPENAI_API_KEY" not in html and "BESIDE THE RUNS" not in html
    refused = html[html.index('id="refused"') :].split("</section>")[0]
    for name, reason in [("report.md", "a symbolic link"), ("rewards/v0/reward.py", "(to /proc/self/environ)"),
                         ("rewards/v0/diff.patch", "beside.patch"), ("rewards/v0/reviews.jsonl", "a symbolic link"),
                         ("rewards/v0/feedback.json", "(to /etc/hostname)"), ("rewards/v1", "a symbolic link")]:  # fmt: skip
        line = next((li for li in refused.split("<li>") if f"{run_id}/{name}<" in li), "")
        assert reason in line, (name, refused)
    for rel in (
        "report.md",
        "rewards/v0/reward.py",
        "rewards/v0/diff.patch",
        "rewards/v0/feedback.json",
        "rewards/v1/x.json",
    ):
        res = client.get(f"/files/{run_id}/{rel}")
        assert res.status_code == 404 and SECRET.encode() not in res.data, rel
    assert ">v1<" not in html, "a linked version folder is not a version"


def test_writes_through_links_are_refused_and_targets_untouched(
    hostile: tuple[Path, str, Path], tmp_path: Path
) -> None:
    runs_dir, run_id, outside = hostile
    ran = tmp_path / "ran"
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\ntouch {ran}\n")
    script.chmod(0o755)
    app = create_app(runs_dir, python=str(script))
    client = app.test_client()
    res = client.post(
        f"/feedback/{run_id}",
        data={"version": "0", "rating": "2", "text": "more speed", "action": "refine"},
    )
    html = page(client, res.headers["Location"].split("#")[0])
    assert "the review could not be saved" in form_html(html, 0) and "a symbolic link" in form_html(
        html, 0
    )
    (
        runs_dir / run_id / "rewards" / "v0" / "reviews.jsonl"
    ).unlink()  # now the review can be saved, the refinement not
    res = client.post(
        f"/feedback/{run_id}",
        data={"version": "0", "rating": "2", "text": "more speed", "action": "refine"},
    )
    html = page(client, res.headers["Location"].split("#")[0])
    assert "Not refined: refused" in form_html(html, 0) and "report.md" in form_html(html, 0)
    assert (outside / "target.txt").read_text() == "ORIGINAL TARGET\n", "no target was written"
    assert sorted(p.name for p in outside.iterdir()) == [
        "beside.patch",
        "target.txt",
        "vdir",
    ] and not list((outside / "vdir").iterdir())
    assert not ran.exists(), "no refinement process was started"
    root = RunsRoot(runs_dir)
    for rel in (f"{run_id}/report.md", f"{run_id}/rewards/v1/reviews.jsonl"):
        with pytest.raises(Refused):
            root.write_atomic(rel, b"x")
    with pytest.raises(Refused):
        root.append_atomic(f"{run_id}/refine.log", b"x")
    assert (outside / "target.txt").read_text() == "ORIGINAL TARGET\n"


def test_a_linked_run_folder_is_refused(runs: tuple[Path, str], tmp_path: Path) -> None:
    elsewhere = copy_run(runs[0] / runs[1], tmp_path, "elsewhere")
    link = runs[0] / "linked_run"
    link.symlink_to(elsewhere, target_is_directory=True)
    try:
        client = create_app(runs[0]).test_client()
        html = page(client, "/")
        assert 'data-run="linked_run"' not in html
        refused = html[html.index('id="refused"') :]
        assert "linked_run" in refused and f"a symbolic link (to {elsewhere})" in refused
        for url in ("/run/linked_run", "/files/linked_run/config.yaml", "/status/linked_run"):
            assert client.get(url).status_code == 404, url
        assert (
            client.post("/feedback/linked_run", data={"version": "0", "rating": "1"}).status_code
            == 404
        )
    finally:
        link.unlink()


def test_procfs_is_refused_even_as_the_runs_directory() -> None:
    root = RunsRoot(Path("/proc/self"))
    for rel in ("environ", "cmdline", "status"):
        with pytest.raises(Refused, match="pseudo file system"):
            root.read_bytes(rel, 100)


def test_secrets_never_reach_a_record_or_a_prompt(
    runs: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    run = copy_run(runs[0] / runs[1], runs[0], "leaky")
    reward = run / "rewards" / "v0" / "reward.py"
    reward.write_text(
        reward.read_text() + f"# OPENAI_API_KEY={SECRET}\n"
    )  # e.g. a copy of an environment
    ran = tmp_path / "ran"
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\ntouch {ran}\n")
    script.chmod(0o755)
    client = create_app(runs[0], python=str(script)).test_client()
    res = client.post(
        "/feedback/mujoco/hopper_forward/leaky",
        data={"version": "0", "text": "more speed", "action": "refine"},
    )
    html = page(client, res.headers["Location"].split("#")[0])
    assert "contains the value of $OPENAI_API_KEY; it would reach the prompt" in form_html(html, 0)
    assert not ran.exists(), (
        "no refinement: the key would have gone into the prompt and the records"
    )
    before = (run / "rewards" / "v0" / "reviews.jsonl").read_text()
    res = client.post(
        "/feedback/mujoco/hopper_forward/leaky",
        data={"version": "0", "text": f"my key is {SECRET}"},
    )
    assert "contains the value of $OPENAI_API_KEY" in form_html(
        page(client, res.headers["Location"].split("#")[0]), 0
    )
    assert (run / "rewards" / "v0" / "reviews.jsonl").read_text() == before
    assert SECRET not in "".join(
        p.read_text(errors="replace") for p in run.rglob("*.json*") if p.is_file()
    )


def test_names_that_are_not_utf8_answer_without_a_500(runs: tuple[Path, str]) -> None:
    base = os.fsencode(runs[0])
    odd_run = copy_run(runs[0] / runs[1], runs[0], "plain")
    os.rename(os.fsencode(odd_run), os.path.join(os.fsencode(odd_run.parent), b"run-\xff\xfe"))
    video_dir = runs[0] / runs[1] / "rewards" / "v0" / "videos"
    odd_video = os.path.join(os.fsencode(video_dir), b"episode-\xe9.mp4")
    shutil.copy(video_dir / "episode_00.mp4", odd_video)
    try:
        client = create_app(Path(os.fsdecode(base))).test_client()
        html = page(client, "/")
        assert "run-\\xff\\xfe" in html and "the name is not valid UTF-8" in html
        html = page(client, f"/run/{runs[1]}")
        assert "episode-\\xe9.mp4" in html and "the name is not valid UTF-8" in html
        for url in (
            "/run/mujoco/hopper_forward/run-%FF%FE",
            f"/files/{runs[1]}/rewards/v0/videos/episode-%E9.mp4",
        ):
            assert client.get(url).status_code == 404, url
    finally:
        os.unlink(odd_video)


def test_a_non_loopback_host_is_refused_unless_asked_then_it_checks_host_and_token(
    runs: tuple[Path, str],
) -> None:
    with pytest.raises(RemoteRefused, match="not a loopback address"):
        remote_settings("0.0.0.0", False, [], None)
    with pytest.raises(RemoteRefused, match="name the host names"):
        remote_settings("0.0.0.0", True, [], None)
    names, token, warning = remote_settings("0.0.0.0", True, ["review.lan"], None)
    assert (
        names == {"review.lan"}
        and token
        and len(token) >= 24
        and "reachable from the network" in warning
    )
    assert (
        remote_settings("127.0.0.1", False, [], None)[1] is None
        and remote_settings("::1", False, [], None)[1] is None
    )
    client = create_app(runs[0], allowed_hosts=names, token=token).test_client()
    lan = {"Host": "review.lan:8765"}
    assert client.get("/", headers=lan).status_code == 401
    assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 421
    assert client.get("/", headers={**lan, "Authorization": "Bearer wrong"}).status_code == 401
    res = client.get(f"/?token={token}", headers=lan)
    assert (
        res.status_code == 303
        and res.headers["Location"] == "/"
        and "HttpOnly" in res.headers["Set-Cookie"]
    )
    assert "SameSite=Strict" in res.headers["Set-Cookie"]
    assert client.get("/", headers=lan).status_code == 200, (
        "the cookie carries the token from now on"
    )
    assert (
        client.get(
            f"/files/{runs[1]}/config.yaml", headers={**lan, "Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )


def test_rewardlab_review_refuses_a_network_host_before_serving(tmp_path: Path) -> None:
    res = subprocess.run([*RL, "review", f"runs_dir={tmp_path}", "review.host=0.0.0.0", "review.port=0"],
                         capture_output=True, text=True, timeout=HANG_S, cwd=tmp_path)  # fmt: skip
    assert (
        res.returncode == 2 and "error: review.host=0.0.0.0 is not a loopback address" in res.stdout
    )
    assert "review page:" not in res.stdout


def test_rewardlab_review_command_serves_and_refuses_raw_traversal(
    runs: tuple[Path, str], tmp_path: Path
) -> None:
    """Also a regression: started as a script's background job (`rewardlab review &`: SIGINT
    ignored), the server must stop cleanly on SIGTERM (it died uncleaned, exit -15, and a test
    that sent SIGINT waited forever)."""
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*RL, "review", f"runs_dir={runs[0]}", "review.port=0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        deadline = time.monotonic() + UI_HANG_S
        while not (m := re.search(r"review page: http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        port = int(m.group(1))

        def get(path: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=UI_HANG_S)
            conn.putrequest(
                "GET", path, skip_accept_encoding=True
            )  # the path goes out byte for byte
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
        import socket

        with socket.create_connection(
            ("127.0.0.1", port), timeout=UI_HANG_S
        ) as sock:  # a path that is not UTF-8
            sock.sendall(
                b"GET /run/mujoco/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            assert sock.recv(64).split(b" ")[1] in (b"400", b"404")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=UI_HANG_S) == 0, log.read_text()


# --------------------------------------------------------------------------- comparing versions


@pytest.fixture(scope="module")
def lineage(runs: tuple[Path, str]) -> tuple[Path, str]:
    """The real run plus crafted versions v1..v4 (:data:`review_lineage.BEST_LINEAGE`)."""
    run = copy_run(runs[0] / runs[1], runs[0], "lineage")
    craft_lineage(run, BEST_LINEAGE)
    return runs[0], run.relative_to(runs[0]).as_posix()


def test_the_best_version_follows_the_stated_rule(lineage: tuple[Path, str]) -> None:
    runs_dir, run_id = lineage
    html = page(create_app(runs_dir).test_client(), f"/run/{run_id}")
    rows = {
        int(m.group(1)): m.group(0)
        for m in re.finditer(
            r'<tr class="version-row[^"]*" data-version="(\d+)">.*?</tr>', html, re.S
        )
    }
    best = [n for n, row in rows.items() if "version-row best" in row]
    lower = {n: wilson_interval(s.successes, s.episodes)[0] for n, s in enumerate(BEST_LINEAGE, 1)}
    assert lower[3] < lower[1] < lower[2] == lower[4], (
        "the lineage is built so that the interval decides"
    )
    assert best == [4], (
        "v2 and v4 tie on the interval's lower bound and progress; v4's benchmark return is higher"
    )
    assert "100%" in rows[3] and "[21–100%]" in rows[3], (
        "v3's 1/1 shows its wide interval and is not best"
    )
    assert "210.0" in rows[4] and "150.0" in rows[2], "the benchmark return is shown"
    assert 'data-value="512"' in rows[2] and 'data-value="1024"' in rows[4], (
        "steps to first success"
    )
    assert "Best: <b>v4</b>" in html and "highest lower bound of the 95% Wilson interval" in html
    watch = html[html.index('id="watch"') : html.index('id="details"')]
    assert (
        'id="review-v4"' in watch and 'id="review-v2"' in watch and 'id="review-v1"' not in watch
    ), "best + current by default; here the best is current, so its parent too"
    chosen = page(create_app(runs_dir).test_client(), f"/run/{run_id}?v=1&v=3")
    watch = chosen[chosen.index('id="watch"') : chosen.index('id="details"')]
    assert 'id="review-v1"' in watch and 'id="review-v3"' in watch and 'id="review-v4"' not in watch


def test_overlay_charts_have_one_series_per_version(lineage: tuple[Path, str]) -> None:
    html = page(create_app(lineage[0]).test_client(), f"/run/{lineage[1]}")
    for key in ("success", "env_return", "reward/progress", "train/value_loss"):
        chart = html[html.index(f'data-chart="{key}"') :].split("</figure>")[0]
        assert re.findall(r'data-name="(v\d+)"', chart) == [f"v{n}" for n in range(5)], key


def test_media_and_version_states_are_honest(runs: tuple[Path, str]) -> None:
    run = copy_run(runs[0] / runs[1], runs[0], "media")
    craft_lineage(run, BEST_LINEAGE[:3])
    video = run / "rewards" / "v0" / "videos" / "episode_00.mp4"
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # a recording cut short
    (run / "rewards" / "v1" / "videos" / "episode_00.mp4").unlink()  # recorded, then lost
    shutil.rmtree(run / "rewards" / "v2" / "videos")
    (run / "rewards" / "v2" / "summary.json").write_text(
        json.dumps(
            {**json.loads((run / "rewards" / "v2" / "summary.json").read_text()), "videos": []}
        ).replace('"video": "', '"video_was": "')
    )
    (run / "rewards" / "v2" / "train.yaml").write_text(
        "train: {video_episodes: 0, total_timesteps: 1024}\nalgo: {name: ppo}\n"
    )
    (run / "rewards" / "v3" / "summary.json").write_text("{truncated")
    html = page(
        create_app(runs[0]).test_client(), "/run/mujoco/hopper_forward/media?v=0&v=1&v=2&v=3"
    )
    v0 = form_html(html, 0).split("<form")[0]
    assert "Broken video</b>: truncated (mdat box needs" in v0 and 'data-state="broken"' in v0
    assert (
        "Missing video</b>: recorded by the evaluation, but the file is not there"
        in html[html.index('id="review-v1"') :].split("</article>")[0]
    )
    assert (
        "Not recorded: this version's evaluation was set to record no video"
        in html[html.index('id="review-v2"') :].split("</article>")[0]
    )
    v3 = html[html.index('id="review-v3"') :].split("</article>")[0]
    assert ">trained, summary unreadable<" in v3 and "not trained" not in v3
    assert mp4_problem(lambda off, n: data[off : off + n], len(data)) == ""
    unfinished = b"\0\0\0\x10ftypisom\0\0\0\0" + b"\0\0\0\x10mdat" + b"x" * 8
    assert "no moov box" in mp4_problem(lambda off, n: unfinished[off : off + n], len(unfinished))
    assert "no ftyp box" in mp4_problem(
        lambda off, n: b"\0\0\0\x10junk1234abcdefgh"[off : off + n], 16
    )


def test_index_sorts_filters_searches_and_caches(
    runs: tuple[Path, str], lineage: tuple[Path, str]
) -> None:
    app = create_app(runs[0])
    client = app.test_client()
    html = page(client, "/?sort=best&order=desc")
    best = [float(x) for x in re.findall(r'<td class="num best">(\d+)%</td>', html)]
    assert len(best) >= 3 and best == sorted(best, reverse=True) and best[0] == 100.0
    assert re.findall(r'data-run="([^"]+)"', page(client, "/?q=lineage")) == [lineage[1]]
    assert re.findall(r'data-run="([^"]+)"', page(client, "/?status=training")) == [
        "mujoco/hopper_forward/0000-in-progress"
    ]
    assert "No run matches." in page(client, "/?task=metaworld/drawer_open")
    cache = app.extensions["rewardlab_cache"]
    misses = cache.misses
    page(client, "/")
    assert cache.misses == misses, "unchanged runs come from the cache"
    summary = runs[0] / lineage[1] / "summary.json"
    summary.write_text(summary.read_text().replace('"status": "done"', '"status": "interrupted"'))
    html = page(client, "/")
    assert (
        cache.misses == misses + 1
        and ">interrupted<" in html.split(f'data-run="{lineage[1]}"')[1].split("</tr>")[0]
    )


def test_tags_follow_the_task_family_and_the_writer_understands_each() -> None:
    from rewardlab.generators.offline import feedback_edits

    assert [t.label for t in tags_for("metaworld/pick_place")][:3] == [
        "misses the object",
        "drops it",
        "pushes instead of grasps",
    ]
    assert "falls" in [t.name for t in tags_for("mujoco/hopper_forward")] and "drops_it" not in [
        t.name for t in tags_for("mujoco/ant_forward")
    ]
    assert {t.family for t in tags_for("maniskill/pick_cube")} == {"manipulation"}
    for tag in TAGS:
        names = {term for _, term in tag.edits}
        edits, unknown = feedback_edits([tag.phrase], names)
        assert edits and not unknown, (tag.name, edits, unknown)


def test_tensorboard_starts_on_the_runs_logs_from_the_page(runs: tuple[Path, str]) -> None:
    import urllib.request

    app = create_app(runs[0])
    client = app.test_client()
    assert "tensorboard --logdir" in page(
        client, f"/run/{runs[1]}"
    ) and "Start TensorBoard" in page(client, f"/run/{runs[1]}")
    try:
        res = client.post(f"/tensorboard/{runs[1]}")
        assert res.status_code == 303 and "tb_error" not in res.headers["Location"], res.headers[
            "Location"
        ]
        url = re.search(
            r'TensorBoard: <a href="(http://127\.0\.0\.1:\d+/)"', page(client, f"/run/{runs[1]}")
        ).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + UI_HANG_S
        while True:  # it loads the event files in the background
            with urllib.request.urlopen(url + "data/runs", timeout=UI_HANG_S) as answer:
                names = json.loads(answer.read())
            if names or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "v0/tb" in names, "TensorBoard reads the versions' logs"
        refused = client.post("/tensorboard/mujoco/hopper_forward/links")
        assert "tb_error=refused" in refused.headers["Location"], "not on a folder holding links"
    finally:
        app.extensions["rewardlab_tensorboards"].stop_all()
    remote = create_app(runs[0], token="t" * 24, tensorboard=False).test_client()
    assert (
        remote.post(
            f"/tensorboard/{runs[1]}", headers={"Authorization": "Bearer " + "t" * 24}
        ).status_code
        == 403
    )


def test_a_run_is_recognised_without_walking_the_tree(runs: tuple[Path, str]) -> None:
    from rewardlab.review.runs import discover_runs, is_run

    root = RunsRoot(runs[0])
    found, _ = discover_runs(root)
    assert runs[1] in found and all(is_run(root, r) for r in found)
    for not_a_run in (
        "mujoco",
        f"{runs[1]}/rewards",
        f"{runs[1]}/rewards/v0",
        f"{runs[1]}/.hydra",
        "escape",
        "up/runs",
        "",
        "a/../b",
    ):
        assert not is_run(root, not_a_run), not_a_run


def test_a_summary_that_is_not_a_rate_is_not_shown_as_one() -> None:
    from rewardlab.review.runs import Version, _read_version_summary

    v = Version(number=0)
    _read_version_summary(
        v,
        {
            "success_rate": 7.5,
            "final_eval": {"episodes": 4, "per_episode": "x", "mean_env_return": "nan"},
        },
    )
    assert v.success_rate is None and v.success_ci is None and v.env_return is None
    assert v.errors == ["summary.json: success_rate 7.5 is not a rate; not shown"]
    _read_version_summary(v, {"success_rate": 0.75, "final_eval": {"episodes": 4}})
    assert v.success_ci is not None and v.success_ci[0] < 0.75 < v.success_ci[1]
