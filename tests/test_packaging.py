"""The data folders ship inside the wheel (``pip install .``, not only ``-e``)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_cards_prompts_and_configs(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("rewardlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(p.relative_to(ROOT))
        for d in ("envs", "prompts", "conf")
        for p in (ROOT / d).rglob("*")
        if p.is_file()
    }
    assert expected, "data folders exist in the source tree"
    assert {f"rewardlab/{name}" for name in expected} <= names
