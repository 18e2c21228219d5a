"""Evaluation videos: the camera follows a robot that runs away, and files decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rewardlab.evaluation import _prepare_renderer, run_episodes
from rewardlab.tasks import get_task
from rewardlab.wrappers import make_env


def _robot_pixels(frame: np.ndarray) -> int:
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    return int(np.sum((r > 120) & (r - b > 60) & (g > 50) & (g < r)))  # the brown-orange body


def test_camera_tracks_a_robot_far_from_the_start() -> None:
    """Regression: gymnasium renders with the free camera, so a hopper 20 m away was out of
    the picture in every video."""
    env = make_env(
        get_task("mujoco/hopper_forward"), render_mode="rgb_array", width=160, height=160
    )
    env.reset(seed=0)
    _prepare_renderer(env)
    base = env.unwrapped
    qpos = base.init_qpos.copy()  # type: ignore[attr-defined]
    near = env.render()
    for x in np.linspace(0.0, 20.0, 200):  # run away at 0.1 m per frame (3 m/s at 30 fps)
        qpos[0] = x
        base.set_state(qpos, base.init_qvel)  # type: ignore[attr-defined]
        far = env.render()
    env.close()
    assert _robot_pixels(near) > 50
    assert _robot_pixels(far) > 0.5 * _robot_pixels(near)


def test_random_policy_episode_video(tmp_path: Path) -> None:
    import imageio.v3 as iio

    results = run_episodes(get_task("mujoco/halfcheetah_forward"), None, episodes=2, seed=0,
                           video_dir=tmp_path, video_episodes=1, video_size=96)  # fmt: skip
    assert results[0].video is not None and results[1].video is None
    frames = iio.imread(results[0].video)
    assert frames.shape[1:] == (96, 96, 3) and len(frames) >= 30
