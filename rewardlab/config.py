"""Structured configs (Hydra): one typed schema, option files in ``conf/``.

Every task of the registry is also a Hydra option of the ``task`` group, so
``task=mujoco/hopper_backflip`` selects it and ``task.horizon=500`` overrides a field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from rewardlab.tasks.registry import TaskSpec, list_tasks


@dataclass
class LLMConfig:
    """Which reward writer to use and how to reach it."""

    backend: str = "offline"
    """``offline`` (deterministic term synthesizer, no network) or ``openai`` (any
    OpenAI-compatible chat-completions server)."""
    model: str = "rewardlab-offline-v1"
    """Model name sent to the server (ignored by ``offline``)."""
    base_url: str | None = None
    """Server URL, e.g. ``http://127.0.0.1:11434/v1`` for Ollama; ``None`` = OpenAI."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable that holds the API key (never stored in run records)."""
    temperature: float = 0.7
    max_tokens: int = 2048
    timeout_s: float = 120.0
    """Per-request timeout."""
    max_retries: int = 3
    """Retries on 429/5xx/timeouts, with exponential backoff."""
    backoff_s: float = 1.0
    """First backoff delay; doubles per retry."""
    fix_attempts: int = 3
    """How many times a rejected program is sent back with its errors for a fix."""
    few_shot: bool = False
    """Add the most similar other task's example reward program to the prompt (retrieved by
    TF-IDF similarity from ``envs/*/examples``)."""
    cache_dir: str | None = "${runs_dir}/.llm_cache"
    """Replies are cached here by a hash of (back-end, model, sampling parameters, messages,
    sample index); ``null`` turns the cache off."""
    replay_from: str | None = None
    """``llm=replay``: run directories or cache folders (comma-separated) whose recorded replies
    answer every request; nothing goes to the network."""
    price_input_per_mtok: float = 0.0
    """US$ per million prompt tokens, for the cost estimate in the records (0 = unknown)."""
    price_output_per_mtok: float = 0.0
    """US$ per million completion tokens (0 = unknown)."""


@dataclass
class AlgoConfig:
    """The stable-baselines3 algorithm."""

    name: str = "ppo"
    """``ppo`` or ``sac``."""
    policy: str = "MlpPolicy"
    normalize_obs: bool = True
    """Wrap the training env in ``VecNormalize`` for observations."""
    normalize_reward: bool = True
    """... and for rewards (PPO only; generated reward scales vary widely)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the SB3 constructor (learning_rate, n_steps, policy_kwargs ...)."""



def algo_preset(name: str, **kwargs: Any) -> AlgoConfig:
    """``conf/algo/<name>.yaml`` as an :class:`AlgoConfig` (what ``algo=<name>`` selects on the
    command line), with ``kwargs`` merged into its constructor keyword arguments.

    Example:
        >>> algo_preset("ppo", n_steps=256).kwargs["n_steps"]
        256
    """
    from omegaconf import OmegaConf

    from rewardlab.paths import data_dir

    path = data_dir("conf") / "algo" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown algorithm preset {name!r}: no {path}")
    merged = OmegaConf.merge(OmegaConf.structured(AlgoConfig), OmegaConf.load(path), {"kwargs": kwargs})
    algo = OmegaConf.to_object(merged)
    assert isinstance(algo, AlgoConfig)
    return algo

@dataclass
class TrainConfig:
    """Budget, evaluation, checkpoints and outputs of a training run."""

    total_timesteps: int = 400_000
    n_envs: int = 4
    """Parallel environments."""
    backend: str = "dummy"
    """How the ``n_envs`` environments are stepped: ``dummy`` (gymnasium envs in SB3's
    ``DummyVecEnv``), or the batched rollout core: ``native`` (MuJoCo's C engine) or ``mjx``
    (JAX; ``pip install ".[mjx]"``). The core covers the MuJoCo tasks except humanoid."""
    seed: int = 0
    eval_freq: int = 20_000
    """Evaluate every this many environment steps (summed over envs)."""
    eval_episodes: int = 5
    checkpoint_freq: int = 50_000
    """Save model + normalisation (+ replay buffer) every this many environment steps."""
    stop_at_success: float = 1.0
    """Stop early once an evaluation reaches this success rate (0 = never)."""
    video_episodes: int = 2
    """Evaluation episodes recorded to mp4 at the end (0 = none)."""
    video_size: int = 320
    device: str = "cpu"
    torch_threads: int = 1
    progress_bar: bool = True
    memory_limit_gb: float = 0.0
    """Cap on this process's data segment so reward code cannot eat all memory
    (0 = 80% of physical memory, negative = no cap)."""
    max_reward_error_rate: float = 0.05
    """Stop training when more than this fraction of recent reward calls fail."""


@dataclass
class CheckConfig:
    """The pre-use check of reward programs."""

    steps: int = 200
    """Real states (random-action rollout) the program is smoke-run on."""
    timeout_s: float = 60.0
    memory_mb: int = 4096
    """Address-space limit of the smoke-run subprocess."""


@dataclass
class SearchConfig:
    """``rewardlab search``: Eureka-style candidate search with successive halving."""

    candidates: int = 4
    """K: programs sampled per iteration (Eureka: 16)."""
    iterations: int = 3
    """N: sample -> gate -> train -> reflect rounds (Eureka: 5)."""
    min_steps: int = 50_000
    """First rung's training budget per candidate (rounded up to whole PPO rollouts)."""
    eta: int = 2
    """Rung budgets grow by this factor; the best 1/eta of the candidates go on."""
    max_steps: int = 200_000
    """Largest rung budget (the last rung is the largest ``min_steps * eta**r`` not above it)."""
    target_success: float = 1.0
    """Stop the search once a candidate's evaluation reaches this success rate (0 = never)."""
    launcher: str = "auto"
    """Where candidate trainings and seed runs go: ``inline`` (this process, one at a time),
    ``joblib`` (Hydra's joblib launcher, local processes), ``submitit_slurm`` /
    ``submitit_local`` (Hydra's submitit launcher) or any other Hydra launcher name;
    ``auto`` = ``joblib`` when installed and ``n_jobs > 1``, else ``inline``."""
    n_jobs: int = 2
    """Parallel jobs of the joblib launcher (1 = the inline path)."""
    launcher_overrides: list[str] = field(default_factory=list)
    """Extra Hydra overrides for the launcher, e.g. ``[hydra.launcher.partition=gpu]``."""
    job_timeout_s: float = 0.0
    """Kill a launched batch of trainings after this many seconds (0 = no limit)."""
    seeds: list[int] = field(default_factory=list)
    """After the search, retrain the best reward from scratch with these seeds (for IQM and
    confidence intervals); empty = no seed sweep."""
    final_steps: int = 0
    """Budget of the seed runs (0 = the last rung budget)."""
    score: str = "success"
    """What the seed sweep scores: ``success`` (the task's success rate, Eureka's choice) or
    ``progress`` (the task's progress measure, 0..1, informative while success is still 0)."""
    baselines: bool = False
    """Also train the sparse and expert baselines with the same seeds and budget, and report
    the normalized score."""
    clip_normalized: bool = False
    """Clip normalized scores to [0, 3] as Eureka does."""
    bootstrap_reps: int = 2000
    confidence: float = 0.95
    bootstrap_seed: int = 0
    snapshots: int = 10
    """Values per reward component shown in the reflection."""
    hacking_min_rise: float = 0.25
    """Reward-hacking alarm: relative rise of the generated return that counts as rising."""
    hacking_flat_tol: float = 0.1
    """Reward-hacking alarm: largest rise of success / progress that counts as flat."""


@dataclass
class ReviewConfig:
    """The rollout review web page (``rewardlab review``)."""

    host: str = "127.0.0.1"
    """Interface to bind; keep the loopback default unless you know who can reach you."""
    port: int = 8765


@dataclass
class ShapingConfig:
    """Reward shaping during training (:mod:`rewardlab.shaping.continuous`), on top of the
    reward program (or the env reward). Evaluation always scores the task's own metric."""

    kind: str = "none"
    """``none``; ``teacher`` (potential-based shaping with a trained teacher's value);
    ``adaptive`` (re-weight the reward's named components from the learner's behaviour);
    ``meta`` (learned intrinsic reward r_phi(s, a) + count-based novelty bonus)."""
    gamma: float | None = None
    """Discount of the potential-based term ``gamma * Phi(s') - Phi(s)`` and of the meta
    critic; ``None`` = the learner's ``algo.kwargs.gamma`` (0.99 if unset)."""
    teacher: str | None = None
    """``teacher``: a trained SB3 policy: a run directory (its latest reward version), a
    version directory (``<run>/rewards/v0``) or a model zip; the VecNormalize statistics next
    to it (``vecnormalize.pkl`` or the checkpoint's) normalise the teacher's observations."""
    teacher_algo: str = "auto"
    """``ppo``, ``sac`` or ``auto`` (read from the model zip)."""
    potential_scale: float = 1.0
    """Phi = potential_scale * V_teacher(s)."""
    teacher_reward_units: bool = False
    """Express V_teacher in the teacher's reward units: a teacher trained with reward
    normalisation (PPO's default here) predicts values of rewards divided by its return std;
    true multiplies that std back (``sqrt(ret_rms.var + eps)`` of its VecNormalize). Off by
    default: the critic's raw output did as well or better in
    ``experiments/shaping_continuous`` (much better with SAC on hopper)."""
    update_every: int = 4096
    """``adaptive``: env steps (summed over envs) between weight updates; ``meta``: between
    intrinsic-reward (meta) updates."""
    window: int = 32
    """``adaptive``: the most recent finished episodes the update looks at."""
    min_episodes: int = 4
    """``adaptive``: no update until this many episodes are in the window."""
    step_size: float = 0.5
    """``adaptive``: ``w <- clip(w * exp(step_size * (corr - threshold)), min, max)``."""
    threshold: float = 0.1
    """``adaptive``: correlation below which a component's weight decays."""
    min_weight: float = 0.1
    max_weight: float = 3.0
    hidden: int = 64
    """``meta``: width of the two hidden layers of r_phi(s, a) and of the extrinsic critic."""
    intrinsic_lr: float = 1e-3
    critic_lr: float = 1e-3
    meta_epochs: int = 4
    """``meta``: Adam steps per update for r_phi and for the critic."""
    intrinsic_scale: float = 0.5
    """``meta``: |r_phi| <= intrinsic_scale (a tanh output)."""
    intrinsic_l2: float = 1.0
    """``meta``: weight of the 0.5 * mean(r_phi^2 / scale^2) penalty in the meta loss."""
    novelty_weight: float = 0.05
    """``meta``: B(s') = novelty_weight / sqrt(1 + N(hash(s'))) (0 = no bonus)."""
    hash_bits: int = 16
    """``meta``: SimHash code length for the visit counts N."""
    extrinsic: str = "progress"
    """``meta``: the task return the meta-gradient climbs: ``progress`` (increase of the task's
    progress measure + success) or ``env`` (the benchmark's own reward)."""


@dataclass
class RewardLabConfig:
    """Root config shared by all commands (each reads what it needs)."""

    task: TaskSpec = MISSING
    llm: LLMConfig = field(default_factory=LLMConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    check: CheckConfig = field(default_factory=CheckConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    shaping: ShapingConfig = field(default_factory=ShapingConfig)
    instruction: str | None = None
    """Overrides the task's instruction (e.g. a new behaviour on the same robot)."""
    reward_file: str | None = None
    """Train on this reward program instead of generating one; ``env`` (or ``expert``) = the
    benchmark's own dense reward, the expert baseline."""
    file: str | None = None
    """``check``: the reward program to validate; ``generate``: where to also write it."""
    run: str | None = None
    """``evaluate``/``train``: an existing run directory (``train`` resumes it)."""
    episodes: int = 10
    """``evaluate``: number of episodes."""
    version: int | None = None
    """``refine``/``evaluate``: the reward version to use (default: the latest)."""
    feedback: str | None = None
    """``refine``: what is wrong with the behaviour, in words."""
    tags: list[str] = field(default_factory=list)
    """``refine``: structured feedback tags, e.g. ``[too_slow,falls,jerky,drifts,spins]``."""
    interactive: bool = False
    """``refine``: ask for feedback in the terminal after every round."""
    runs_dir: str = "runs"
    """Where new run directories are created."""


def register_configs() -> None:
    """Register the schema and every task as a ``task`` group option."""
    cs = ConfigStore.instance()
    cs.store(name="rewardlab_schema", node=RewardLabConfig)
    cs.store(group="llm", name="schema_llm", node=LLMConfig)
    cs.store(group="algo", name="schema_algo", node=AlgoConfig)
    for task in list_tasks():
        benchmark, short = task.name.split("/", 1)
        cs.store(group=f"task/{benchmark}", name=short, node=task, package="task")
