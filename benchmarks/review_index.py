"""How fast the review page's index answers over many runs.

``python benchmarks/review_index.py [--runs 300] [--versions 3] [--rounds 5] [--markdown FILE]``

Builds ``--runs`` run folders in a temporary directory with the files the index reads, at their
real size: ``config.yaml`` (the full resolved config schema, as ``rewardlab train`` saves it),
``summary.json`` (a lineage of ``--versions`` versions), ``report.md`` and ``rewards/vN/``
folders. Then it times ``GET /`` through the real Flask app (test client, no network):

- **before** (the baseline): every request reads and parses every run's ``config.yaml`` (with
  PyYAML's pure-Python safe loader) and ``summary.json``, which is what the index did before it
  had a cache;
- **uncached**: the same with libyaml's safe loader (what a cold cache costs now);
- **cached**: the same app answering again; rows come from the cache, keyed by the
  ``(mtime, size, inode)`` of the files they were read from, so each run costs a few ``stat``
  calls;
- **one run changed**: a run's ``summary.json`` rewritten between requests (one row re-read).

Each figure is the median of ``--rounds`` requests; the machine is shared, so the ratio within
one run is what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from rewardlab.config import RewardLabConfig


def build(root: Path, runs: int, versions: int) -> list[Path]:
    config = OmegaConf.to_yaml(OmegaConf.structured(RewardLabConfig), resolve=True)
    made = []
    for i in range(runs):
        task = ("hopper_forward", "walker_forward", "ant_forward", "halfcheetah_forward")[i % 4]
        run = root / "mujoco" / task / f"2026-01-01_00-{i // 60:02d}-{i % 60:02d}_{i}"
        (run / ".hydra").mkdir(parents=True)
        (run / "config.yaml").write_text(config.replace("hopper_forward", task))
        entries = []
        for v in range(versions):
            vdir = run / "rewards" / f"v{v}"
            (vdir / "videos").mkdir(parents=True)
            (vdir / "reward.py").write_text(
                "def compute_dense_reward(self, action):\n    return 0.0\n"
            )
            rate = ((i + v) % 6) / 5
            (vdir / "summary.json").write_text(
                json.dumps(
                    {"version": v, "status": "done", "timesteps": 400_000, "success_rate": rate}
                )
            )
            entries.append({"version": v, "has_reward": True, "status": "done", "timesteps": 400_000, "success_rate": rate,
                            "videos": [str(vdir / "videos" / "episode_00.mp4")], "train_wall_s": 200.0})  # fmt: skip
        summary = {"task": f"mujoco/{task}", "instruction": "Make the robot move forward as fast as possible.",
                   "algo": "ppo", "generator": "offline synthesizer", "run_dir": str(run), "status": "done", "message": "",
                   "latest_version": versions - 1, "success_rate": entries[-1]["success_rate"], "timesteps": 400_000,
                   "videos": entries[-1]["videos"], "versions": entries, "updated": f"2026-01-01 00:{i // 60:02d}:{i % 60:02d}"}  # fmt: skip
        (run / "summary.json").write_text(json.dumps(summary, indent=2))
        (run / "report.md").write_text("# report\n" * 50)
        made.append(run)
    return made


def timed(fn: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the results table here"
    )
    args = parser.parse_args()

    from rewardlab.review.app import create_app
    from rewardlab.review.runs import SummaryCache

    with tempfile.TemporaryDirectory(prefix="review_index_") as tmp:
        root = Path(tmp)
        runs = build(root, args.runs, args.versions)
        app = create_app(root)
        client = app.test_client()
        cache: SummaryCache = app.extensions["rewardlab_cache"]

        def get() -> None:
            res = client.get("/")
            assert res.status_code == 200 and res.data.count(b'class="run-row"') == args.runs

        def uncached() -> None:
            cache._rows.clear()
            get()

        get()  # imports, template compilation
        import yaml

        import rewardlab.review.runs as runs_module

        fast = runs_module.SAFE_LOADER
        runs_module.SAFE_LOADER = yaml.SafeLoader
        before = timed(uncached, args.rounds)
        runs_module.SAFE_LOADER = fast
        cold = timed(uncached, args.rounds)
        warm = timed(get, args.rounds)
        counter = [0]

        def changed() -> None:
            counter[0] += 1
            summary = runs[counter[0] % len(runs)] / "summary.json"
            summary.write_text(
                summary.read_text()
                .replace('"message": ""', f'"message": "{counter[0]}"', 1)
                .replace(f'"message": "{counter[0] - 1}"', f'"message": "{counter[0]}"')
            )
            get()

        one = timed(changed, args.rounds)
        page_bytes = len(client.get("/").data)

    load = os.getloadavg()
    lines = [
        f"runs: {args.runs} (versions per run: {args.versions}); median of {args.rounds} requests; load average at the end "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; page size {page_bytes / 1024:.0f} KiB",
        "",
        "| index request | time (s) | vs before |",
        "|---|---:|---:|",
        f"| before: every config.yaml (pure-Python YAML) + summary.json parsed | {before:.3f} | 1.00x |",
        f"| cold cache: every file parsed (libyaml) | {cold:.3f} | {before / cold:.1f}x faster |",
        f"| cached (rows keyed by file mtimes) | {warm:.3f} | {before / warm:.1f}x faster |",
        f"| cached, one run's summary.json rewritten | {one:.3f} | {before / one:.1f}x faster |",
    ]
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
