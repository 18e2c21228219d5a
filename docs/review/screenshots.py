"""Screenshots of the review page's run page at 1, 3 and 12 reward versions, from real runs.

``python docs/review/screenshots.py --out docs/review [--steps 16384] [--work DIR]``

Trains ``mujoco/hopper_forward`` with the offline synthesizer and PPO for ``--steps`` steps
(2 envs, 3 evaluation episodes, 1 video), then refines it with ``rewardlab refine`` eleven
times (the feedback below, each version trained with the same budget), and photographs the run
page in Chromium at 1440x900 (full page) after 1, 3 and 12 versions: ``run_1.png``,
``run_3.png``, ``run_12.png``, plus ``run_12_top.png`` (the first screen). Everything shown
is real: real trainings, real evaluations and videos, the offline synthesizer's real edits.
Without ``--out`` the images go to a temporary folder (committed ones are not overwritten).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FEEDBACK = [
    "more speed", "falls", "jerky", "the hopper falls forward; more upright", "drop the action penalty",
    "too slow", "more speed; less upright", "add stay", "more alive", "falls; more speed", "less alive",
]  # fmt: skip
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def settings(steps: int) -> list[str]:
    return [f"train.total_timesteps={steps}", "train.n_envs=2", f"train.eval_freq={max(steps // 8, 512)}",
            "train.eval_episodes=3", "train.video_episodes=1", "train.video_size=240", "train.progress_bar=false",
            f"train.checkpoint_freq={steps}", "algo.kwargs.n_steps=512", "check.steps=30"]  # fmt: skip


def rewardlab(*args: str, cwd: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "rewardlab.cli", *args], cwd=cwd, capture_output=True, text=True
    )
    if res.returncode != 0:
        raise SystemExit(f"rewardlab {args[0]} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def shoot(runs: Path, run_id: str, out: Path, name: str, top: bool = False) -> None:
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from rewardlab.review.app import create_app

    server = make_server("127.0.0.1", 0, create_app(runs), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}/run/{run_id}")
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('#watch video')).every(v => v.readyState >= 2)"
            )
            time.sleep(0.5)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            if top:
                page.screenshot(path=str(out / f"{name}_top.png"))
            browser.close()
    finally:
        server.shutdown()
    for png in [out / f"{name}.png", *([out / f"{name}_top.png"] if top else [])]:
        small(png)
    print(f"wrote {out / name}.png", flush=True)


def small(png: Path) -> None:
    """256 colours, no dithering: a third of the size, the page's flat colours unchanged."""
    from PIL import Image

    image = Image.open(png).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        png, optimize=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=16384)
    parser.add_argument(
        "--work", type=Path, default=None, help="where the runs go (default: a temporary folder)"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="review_screenshots_"))
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="review_runs_"))
    work.mkdir(parents=True, exist_ok=True)
    runs = work / "runs"
    found = (
        [p for p in runs.rglob("config.yaml") if p.parent.name != ".hydra"] if runs.exists() else []
    )
    if not found:  # a --work folder from an interrupted call goes on where it stopped
        rewardlab(
            "train",
            "task=mujoco/hopper_forward",
            *settings(args.steps),
            f"runs_dir={runs}",
            cwd=work,
        )
        found = [p for p in runs.rglob("config.yaml") if p.parent.name != ".hydra"]
    run_dir = found[0].parent
    run_id = run_dir.relative_to(runs).as_posix()
    done = len([p for p in (run_dir / "rewards").glob("v*") if (p / "summary.json").exists()])
    if done == 1:
        shoot(runs, run_id, out, "run_1")
    for i, feedback in enumerate(FEEDBACK, 1):
        if i < done:
            continue
        rewardlab(
            "refine", f"run={run_dir}", f"feedback={feedback}", *settings(args.steps), cwd=work
        )
        print(f"v{i}: {feedback}", flush=True)
        if i == 2:
            shoot(runs, run_id, out, "run_3")
    shoot(runs, run_id, out, "run_12", top=True)


if __name__ == "__main__":
    main()
