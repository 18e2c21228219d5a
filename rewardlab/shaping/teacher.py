"""Teacher-driven shaping for continuous control: potential-based shaping with a teacher's value.

The continuous counterpart of ``pbrs_optimal`` (:mod:`rewardlab.shaping.baselines`): a teacher
(an SB3 model, typically trained on the benchmark's expert reward) supplies the potential
``Phi(s) = scale * V_teacher(s)`` and the learner is trained on

    r'(s, a, s') = r(s, a, s') + F,   F = gamma * Phi(s') - Phi(s),   Phi(s') = 0 at termination

(Ng, Harada & Russell 1999). Over an episode the terms telescope,
``sum_t gamma^t F_t = gamma^T Phi(s_T) - Phi(s_0)`` (``Phi(s_T) = 0`` if the episode
*terminated*), so every policy's return changes by the same ``-Phi(s_0)`` in expectation and
optimal policies are kept. A time-limit *truncation* is not a terminal state: ``Phi(s')`` is
kept there, consistent with SB3 bootstrapping the value of the truncated state.

The teacher's value comes from its critic on the teacher's *own* normalised observation:
``policy.predict_values`` (PPO), or the smaller of SAC's twin Q values at the actor's
deterministic action (``min_i Q_i(s, mu(s))``). A teacher trained with reward normalisation
learnt values of rewards divided by its running return std; ``reward_units=True`` multiplies
that std back, so ``Phi`` is in the teacher's reward units (as ``V*`` is in PBRS). The default
is the critic's raw output (see ``experiments/shaping_continuous/README.md``: the larger
potential hurt SAC on hopper).

Example:
    >>> import gymnasium as gym
    >>> env = PotentialShaping(gym.make("Pendulum-v1"), lambda obs: obs[:, 0], gamma=0.9)
    >>> obs, _ = env.reset(seed=0)
    >>> obs2, r, *_, info = env.step(env.action_space.sample())
    >>> round(abs(info["reward/shaping"] - float(0.9 * obs2[0] - obs[0])), 6)
    0.0
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from rewardlab.checkpoints import load_model, load_normalizer

Potential = Callable[[np.ndarray], np.ndarray]
"""Maps a batch of raw observations ``(n, obs_dim)`` to potentials ``(n,)``."""


class PotentialShaping(gym.Wrapper):
    """Add ``F = gamma * Phi(s') - Phi(s)`` to the reward (``Phi(s') = 0`` when terminated).

    ``info["reward/shaping"]`` carries ``F`` (logged with the other ``reward/*`` components).
    """

    def __init__(self, env: gym.Env, potential: Potential, gamma: float) -> None:
        super().__init__(env)
        self.potential, self.gamma = potential, float(gamma)
        self._phi = 0.0

    def _phi_of(self, obs: Any) -> float:
        return float(self.potential(np.asarray(obs, dtype=np.float32)[None])[0])

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._phi = self._phi_of(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        phi_next = 0.0 if terminated else self._phi_of(obs)
        shaping = self.gamma * phi_next - self._phi
        self._phi = phi_next
        info["reward/shaping"] = shaping
        return obs, float(reward) + shaping, terminated, truncated, info


def teacher_values(model: BaseAlgorithm, obs: torch.Tensor) -> torch.Tensor:
    """The teacher's state value on (already normalised) observations: PPO's value head, or
    SAC's ``min_i Q_i(s, mu(s))`` at the actor's deterministic action."""
    with torch.no_grad():
        if isinstance(model, SAC):
            actions = model.actor(obs, deterministic=True)
            return torch.cat(model.critic(obs, actions), dim=1).min(dim=1).values
        return model.policy.predict_values(obs).flatten()  # type: ignore[operator]


@dataclass
class TeacherPotential:
    """``Phi(s) = scale * value_unit * V_teacher(normalize(s))`` for raw observations ``s``."""

    model: BaseAlgorithm
    normalizer: Any = None
    """The teacher's ``VecNormalize`` (its observation and return statistics are read)."""
    scale: float = 1.0
    value_unit: float = 1.0
    """Reward units per unit of the critic's output (the return std it normalised by, or 1)."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        if self.normalizer is not None and getattr(self.normalizer, "norm_obs", False):
            x = self.normalizer.normalize_obs(x).astype(np.float32)
        values = teacher_values(self.model, torch.as_tensor(x, device=self.model.device))
        return self.scale * self.value_unit * values.cpu().numpy().astype(np.float64)

    @classmethod
    def load(
        cls, path: str | Path, algo: str = "auto", scale: float = 1.0, reward_units: bool = False
    ) -> TeacherPotential:
        """Load a teacher from a run directory, a version directory or a model zip."""
        model_zip, stats = resolve_teacher(Path(path))
        name = sniff_algo(model_zip) if algo == "auto" else algo
        algos: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC}
        model = load_model(algos[name], model_zip, device="cpu")
        normalizer = load_normalizer(stats) if stats is not None else None
        unit = 1.0
        if reward_units and normalizer is not None and getattr(normalizer, "norm_reward", False):
            unit = float(np.sqrt(normalizer.ret_rms.var + normalizer.epsilon))
        return cls(model=model, normalizer=normalizer, scale=scale, value_unit=unit)


def sniff_algo(model_zip: Path) -> str:
    """``sac`` or ``ppo``, from the policy class recorded in an SB3 model zip."""
    with zipfile.ZipFile(model_zip) as archive:
        data = json.loads(archive.read("data"))
    module = str(data.get("policy_class", {}).get("__module__", ""))
    return "sac" if ".sac." in module else "ppo"


def resolve_teacher(path: Path) -> tuple[Path, Path | None]:
    """``(model zip, VecNormalize pickle or None)`` for a teacher given as a model zip, a
    trained directory (``model.zip`` or checkpoints) or a run directory (a trained
    ``rewards/v<N>``: the current version, else the newest with a model)."""
    from rewardlab.checkpoints import latest_checkpoint
    from rewardlab.rundir import RunDir

    if path.is_file():
        stem = path.stem  # model_<n>_steps -> model_vecnormalize_<n>_steps.pkl
        candidates = [path.parent / "vecnormalize.pkl"]
        if stem.startswith("model_") and stem.endswith("_steps"):
            candidates.insert(0, path.parent / f"model_vecnormalize_{stem.split('_')[1]}_steps.pkl")
        return path, next((c for c in candidates if c.exists()), None)
    if (path / "model.zip").exists():
        stats = path / "vecnormalize.pkl"
        return path / "model.zip", stats if stats.exists() else None
    if (ckpt := latest_checkpoint(path)) is not None:
        stats = path / "checkpoints" / f"model_vecnormalize_{ckpt[1]}_steps.pkl"
        return ckpt[0], stats if stats.exists() else None
    run = RunDir(path)
    current = run.current_version()
    order = [
        *([current] if current is not None else []),
        *(n for n in reversed(run.versions()) if n != current),
    ]
    for vdir in map(run.version_dir, order):
        if (vdir / "model.zip").exists() or latest_checkpoint(vdir) is not None:
            return resolve_teacher(vdir)
    raise FileNotFoundError(
        f"no trained teacher model under {path} (model.zip, checkpoints/ or rewards/v*/)"
    )
