"""Select the software Vulkan driver that ``python tools/setup_vulkan.py`` cached, before
SAPIEN (ManiSkill3) makes its Vulkan instance: the run-time half of the installer, which lives
outside the library (``tools/setup_vulkan.py``).
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
ICD_FILE = "lvp_icd.json"
ICD_VARIABLES = ("VK_ICD_FILENAMES", "VK_DRIVER_FILES")
"""The Vulkan loader's variables that select drivers; a user's own setting always wins."""

SETUP_COMMAND = "python tools/setup_vulkan.py"
"""How to install the driver (from a rewardlab checkout)."""


def cache_dir() -> Path:
    """Where the driver is unpacked: ``$REWARDLAB_VULKAN_DIR``, else
    ``$XDG_CACHE_HOME/rewardlab/vulkan``, else ``~/.cache/rewardlab/vulkan``."""
    if os.environ.get("REWARDLAB_VULKAN_DIR"):
        return Path(os.environ["REWARDLAB_VULKAN_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rewardlab" / "vulkan"


def read_manifest(directory: Path | None = None) -> dict[str, Any] | None:
    """The cached driver's manifest (``None`` when no driver is cached)."""
    path = (directory or cache_dir()) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and Path(str(data.get("icd", ""))).is_file() else None


def activate(directory: Path | None = None) -> str | None:
    """Select the cached driver for this process, before SAPIEN makes its Vulkan instance.

    Does nothing (returns ``None``) when no driver is cached, or when ``VK_ICD_FILENAMES`` /
    ``VK_DRIVER_FILES`` name another driver (the user's choice). Otherwise loads the driver's
    unpacked dependencies (so that the dynamic linker finds them without ``LD_LIBRARY_PATH``),
    sets ``VK_ICD_FILENAMES`` and returns the ICD path. Child processes inherit the variable and
    call this again for the libraries.
    """
    manifest = read_manifest(directory)
    if manifest is None:
        return None
    icd = str(manifest["icd"])
    chosen = {os.environ[v] for v in ICD_VARIABLES if os.environ.get(v)}
    if chosen - {icd}:
        return None
    pending = [str(p) for p in manifest.get("preload") or []]
    for _ in range(len(pending) + 1):  # a library whose dependency is not loaded yet waits a round
        failed = []
        for path in pending:
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                failed.append(path)
        if not failed or len(failed) == len(pending):
            break
        pending = failed
    os.environ["VK_ICD_FILENAMES"] = icd
    return icd
