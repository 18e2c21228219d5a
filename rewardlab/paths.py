"""Locate the data folders (``envs/``, ``prompts/``, ``conf/``).

They live at the repository root in a source checkout and inside the package
(``rewardlab/envs`` ...) in an installed wheel; this is the one place that knows.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder ``name`` (``"envs"``, ``"prompts"`` or ``"conf"``).

    Example:
        >>> data_dir("envs").joinpath("mujoco").is_dir()
        True
    """
    for candidate in (_PKG / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"rewardlab data folder {name!r} not found next to {_PKG}")
