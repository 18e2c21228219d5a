import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real tiny training for the whole session, shared by the review tests (server and
    browser), which copy it. Defined here so that both modules get the same one: a session
    fixture imported into two test modules is set up once per module."""
    from test_review_server import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("review_tiny"))
