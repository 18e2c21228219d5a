"""Roll out a policy on a task: success from simulator state, returns, and mp4 videos."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.reward.program import RewardProgram
from rewardlab.tasks.registry import TaskSpec
from rewardlab.workers.confined import program_env

os.environ.setdefault("MUJOCO_GL", "egl")


@dataclass
class EpisodeResult:
    """One evaluation episode."""

    success: bool
    progress: float
    length: int
    reward_return: float
    """Return under the reward program (or the env reward without one)."""
    env_return: float
    """Return under the benchmark's own reward."""
    components: dict[str, float] = field(default_factory=dict)
    """Per-component returns of the reward program."""
    reward_errors: int = 0
    video: str | None = None


def _prepare_renderer(env: Any) -> None:
    """Make offscreen videos fast and watchable.

    Shadows and reflections are turned off (~2x faster software rendering, same content).
    A free camera over a robot with a floating root (slide or free joint on body 1, i.e. the
    locomotion robots) tracks that body, so a robot that runs away stays in the picture;
    gymnasium's configs name a ``trackbodyid`` but render with the free camera, which does not
    track.
    """
    import mujoco

    try:
        renderer = env.unwrapped.mujoco_renderer
        viewer = renderer._get_viewer("rgb_array")
    except AttributeError:  # a renderer without a MuJoCo scene: leave it as it is
        return
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    model = env.unwrapped.model
    if renderer.camera_id != -1 or model.nbody < 2:  # a named/fixed camera: keep it
        return
    first_joint = int(model.body_jntadr[1])
    floating = first_joint >= 0 and int(model.jnt_type[first_joint]) in (
        mujoco.mjtJoint.mjJNT_FREE, mujoco.mjtJoint.mjJNT_SLIDE,
    )  # fmt: skip
    if floating:
        renderer.camera_id = None  # otherwise every render resets the camera to free
        viewer.cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        viewer.cam.trackbodyid = 1


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    """Write frames to an h264 mp4 with imageio-ffmpeg."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(
        path, list(frames), fps=fps, codec="libx264", quality=7, macro_block_size=16,
        ffmpeg_log_level="error",
    )  # fmt: skip


def run_episodes(
    task: TaskSpec,
    policy: Any,
    *,
    episodes: int,
    seed: int,
    program: RewardProgram | None = None,
    normalizer: Any = None,
    deterministic: bool = True,
    video_dir: Path | None = None,
    video_episodes: int = 0,
    video_size: int = 320,
    video_prefix: str = "episode",
    video_fps: float = 30.0,
) -> list[EpisodeResult]:
    """Run ``episodes`` episodes of ``policy`` (an SB3 model, or ``None`` for random actions).

    The episodes, their success and their videos come from an environment in this process;
    ``program`` (compiled in this process, never run here) is evaluated along them in a confined worker
    (:func:`rewardlab.workers.confined.program_env`).

    Args:
        normalizer: a ``VecNormalize`` whose ``normalize_obs`` maps raw observations to the
            policy's input (it is only read, never updated).
        video_episodes: how many of the first episodes to record into ``video_dir``.
    """
    render = video_dir is not None and video_episodes > 0
    env = program_env(
        task, program, render_mode="rgb_array" if render else None,
        **({"width": video_size, "height": video_size} if render else {}),
    )  # fmt: skip
    results: list[EpisodeResult] = []
    try:
        if render:
            _prepare_renderer(env)
        dt = float(env.get_wrapper_attr("dt"))  # the base env's, or a task layer's (ManiSkill)
        frame_every = max(1, round(1.0 / (dt * video_fps)))
        env.action_space.seed(seed)
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            record = render and ep < video_episodes
            frames: list[np.ndarray] = [env.render()] if record else []  # type: ignore[list-item]
            done, length, ret, env_ret, errors = False, 0, 0.0, 0.0, 0
            comps: dict[str, float] = {}
            while not done:
                if policy is None:
                    action = env.action_space.sample()
                else:
                    x = normalizer.normalize_obs(obs) if normalizer is not None else obs
                    action, _ = policy.predict(x, deterministic=deterministic)
                obs, reward, terminated, truncated, info = env.step(action)
                done = terminated or truncated
                length += 1
                ret += float(reward)
                env_ret += float(info.get("reward/env", reward))
                errors += int(info.get("reward/error", 0))
                for k, v in info.items():
                    if k.startswith("reward/") and k not in ("reward/env", "reward/error"):
                        comps[k[7:]] = comps.get(k[7:], 0.0) + float(v)
                if record and length % frame_every == 0:
                    frames.append(env.render())  # type: ignore[arg-type]
            video = None
            if record and video_dir is not None:
                path = video_dir / f"{video_prefix}_{ep:02d}.mp4"
                write_video(path, frames, fps=1.0 / (dt * frame_every))
                video = str(path)
            results.append(
                EpisodeResult(
                    success=bool(info.get("success", False)),
                    progress=float(info.get("task/progress", 0.0)),
                    length=length,
                    reward_return=ret,
                    env_return=env_ret,
                    components=comps,
                    reward_errors=errors,
                    video=video,
                )  # fmt: skip
            )
    finally:
        env.close()
    return results


def summarize(results: list[EpisodeResult]) -> dict[str, Any]:
    """Success rate and mean returns over episodes (plus the episodes themselves)."""
    n = max(len(results), 1)
    return {
        "episodes": len(results),
        "success_rate": sum(r.success for r in results) / n,
        "mean_progress": sum(r.progress for r in results) / n,
        "mean_reward_return": sum(r.reward_return for r in results) / n,
        "mean_env_return": sum(r.env_return for r in results) / n,
        "mean_length": sum(r.length for r in results) / n,
        "per_episode": [asdict(r) for r in results],
    }
