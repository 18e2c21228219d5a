import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
_SB3_DIR = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """SB3 makes a ``/tmp/SB3-<time>`` folder for every ``learn`` without a logger (tests and
    their subprocesses): one folder for the session instead, removed at its end."""
    if "SB3_LOGDIR" not in os.environ:
        os.environ["SB3_LOGDIR"] = tempfile.mkdtemp(prefix="rewardlab-tests-sb3-")
        config.stash[_SB3_DIR] = os.environ["SB3_LOGDIR"]


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_SB3_DIR, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real tiny training for the whole session, shared by the review tests (server and
    browser), which copy it. Defined here so that both modules get the same one: a session
    fixture imported into two test modules is set up once per module."""
    from test_review_server import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("review_tiny"))
