"""Structured configs (Hydra): one typed schema, option files in ``conf/``.

Every task of the registry is also a Hydra option of the ``task`` group, so
``task=mujoco/hopper_backflip`` selects it and ``task.horizon=500`` overrides a field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from rewardlab.tasks.registry import SuccessSpec, TaskSpec, list_tasks


class Choice(str, Enum):
    """A closed set of values for a config field: Hydra/OmegaConf refuse anything else at
    composition (``gate.on_train=blok`` -> "expected one of [off, warn, block]"). Members
    compare equal to, print as and serialise as their string value.

    Example:
        >>> GateMode("block") == "block", f"{GateMode.warn}", GateMode.off.value
        (True, 'warn', 'off')
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class LLMBackend(Choice):
    offline = "offline"
    openai = "openai"
    replay = "replay"


class AlgoName(Choice):
    ppo = "ppo"
    sac = "sac"


class PolicyName(Choice):
    """The network of the SB3 policy (``algo.policy``)."""

    MlpPolicy = "MlpPolicy"
    """SB3's dense MLP actor and critic (``algo.kwargs.policy_kwargs.net_arch``)."""
    moe = "moe"
    """Mixture-of-experts actor and/or critic (:mod:`rewardlab.moe.policies`, the ``moe``
    node)."""


class TrainBackend(Choice):
    dummy = "dummy"
    native = "native"
    mjx = "mjx"


class GateMode(Choice):
    off = "off"
    warn = "warn"
    block = "block"


class ShapingKind(Choice):
    none = "none"
    teacher = "teacher"
    adaptive = "adaptive"
    meta = "meta"


class TeacherAlgo(Choice):
    auto = "auto"
    ppo = "ppo"
    sac = "sac"


class MetaExtrinsic(Choice):
    progress = "progress"
    env = "env"


class SearchScore(Choice):
    success = "success"
    progress = "progress"


def _positive(owner: str, **values: float) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{owner}.{name} must be positive, not {value}")


def _non_negative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{owner}.{name} must be >= 0, not {value}")


class RouterName(Choice):
    """The routing rules of mixture-of-experts layers (``moe.router``)."""

    topk = "topk"
    prototype = "prototype"
    expert_choice = "expert_choice"
    sigmoid = "sigmoid"
    dense_to_sparse = "dense_to_sparse"
    tsallis = "tsallis"


class ExpertKind(Choice):
    """What an expert is (``moe.expert``)."""

    mlp = "mlp"
    lora = "lora"


class MoEWhere(Choice):
    """Which networks of a policy get the MoE block (``moe.where``)."""

    actor = "actor"
    critic = "critic"
    both = "both"


class RouteOn(Choice):
    """What a mixture-of-experts router reads (``moe.route_on``)."""

    obs = "obs"
    """The layer's whole input (the observation; for SAC's critics observation and action)."""
    task = "task"
    """Only the one-hot task id that ``task=multi/<set>`` appends to the observation, so every
    token of a task gets the same experts (task-level routing, as MOORE's task-chosen mixing
    weights): multi-task sets only."""


ROUTERS: tuple[str, ...] = tuple(r.value for r in RouterName)


class AdaptMode(Choice):
    """How a warm-started policy adapts to a refined reward (``train.adapt``; see
    :mod:`rewardlab.moe.policies`)."""

    full = "full"
    """Every parameter trains (plain fine-tuning)."""
    lora = "lora"
    """The parent frozen, one rank-``moe.lora_rank`` LoRA adapter per linear layer."""
    lora_moe = "lora_moe"
    """The parent frozen, a routed mixture of LoRA adapters per linear layer (DynMoLE; router
    and experts from ``moe.*``)."""


class WarmStart(Choice):
    """Where a new reward version's policy starts (``train.warm_start``)."""

    none = "none"
    """From scratch."""
    parent = "parent"
    """``rewardlab refine``: from the parent version's trained policy (and its normalisation),
    adapted as ``train.adapt`` says."""


@dataclass
class MoEConfig:
    """Settings of one mixture-of-experts layer (``moe.*`` on the command line)."""

    router: RouterName = RouterName.topk
    """Routing rule: ``topk`` (GShard/Switch), ``prototype`` (M6-T), ``expert_choice``,
    ``sigmoid`` (DeepSeekMoE), ``dense_to_sparse`` (EvoMoE) or ``tsallis`` (DynMoLE)."""
    experts: int = 4
    """Number of routed experts ``E``."""
    k: int = 2
    """Experts per token for ``topk``/``sigmoid``; number of groups for ``prototype``."""
    shared: int = 0
    """Always-on shared experts (DeepSeekMoE); 0 for none."""
    hidden: int = 64
    """Hidden width of each MLP expert."""
    expert: ExpertKind = ExpertKind.mlp
    """``mlp``: independent two-layer MLPs; ``lora``: rank-``lora_rank`` adapters over a
    shared base linear layer (DynMoLE's mixture of LoRA experts)."""
    lora_rank: int = 4
    """Rank of each LoRA expert."""
    capacity_factor: float | None = None
    """Tokens per expert as a multiple of the even share: caps ``topk`` (None: no cap) and sets
    ``expert_choice``'s capacity (2.0 when None)."""
    balance_coef: float = 0.01
    """Weight of the router's load-balance loss (``topk``, ``prototype``, ``dense_to_sparse``;
    ``tsallis`` uses ``balance_coef / 10``, DynMoLE's 0.001)."""
    bias_rate: float = 1e-3
    """``sigmoid``: step of the per-expert selection bias (loss-free balancing)."""
    tau_max: float = 1.0
    """``dense_to_sparse``: initial Gumbel-softmax temperature."""
    tau_min: float = 0.5
    """``dense_to_sparse``: final temperature."""
    anneal_steps: int = 10_000
    """``dense_to_sparse``: training passes over which the temperature is annealed; after
    them the gate is hard top-1."""
    tsallis_q: float = 1.1
    """``tsallis``: entropy index ``q``."""
    tsallis_threshold: float = 0.9
    """``tsallis``: normalized entropy above which a token uses every expert."""
    top_p: float = 0.75
    """``tsallis``: cumulative probability of the top-p set otherwise."""
    entropy_coef: float = 0.01
    """``tsallis``: weight of the mean Tsallis entropy in the loss."""
    where: MoEWhere = MoEWhere.both
    """Policies (:mod:`rewardlab.moe.policies`): the MoE block replaces the MLP of the
    ``actor``, the ``critic`` or ``both``."""
    route_on: RouteOn = RouteOn.obs
    """Policies: the router reads the whole input (``obs``) or only the one-hot task id of a
    multi-task set (``task``: experts chosen per task, not per observation). LoRA adapters of
    ``train.adapt=lora_moe`` always route on their own input."""
    straight_through: bool = False
    """``topk`` with ``k=1``: the chosen expert's weight is 1 in the forward pass (not Switch's
    raw gate probability, about ``1 / E`` for a fresh router, which shrinks the layer's output)
    and the gate still learns through a straight-through gradient (``p / stop_gradient(p)``,
    :class:`rewardlab.moe.routers.TopKRouter`). Saved with the model."""
    spread_tasks: bool = False
    """``route_on=task`` policies: every router starts with task ``t`` routed to expert
    ``t mod E`` (gate logit margin 1) instead of a random near-uniform gate, under which tasks
    often start on one expert and stay there (:func:`rewardlab.moe.policies.spread_task_routing`);
    only the start, training moves the gate as usual. With ``straight_through`` this is the
    ``moe_st`` arm of ``experiments/moe_multitask``."""

    def __post_init__(self) -> None:  # also when built from Python with strings
        choices = (("router", RouterName), ("expert", ExpertKind), ("where", MoEWhere),
                   ("route_on", RouteOn))  # fmt: skip
        for name, kind in choices:
            value = getattr(self, name)
            try:
                setattr(self, name, kind(value.value if isinstance(value, Enum) else value))
            except ValueError:
                allowed = ", ".join(m.value for m in kind)
                raise ValueError(f"moe.{name} must be one of {allowed}; got {value!r}") from None
        if self.experts < 1 or self.shared < 0 or self.hidden < 1 or self.lora_rank < 1:
            raise ValueError(
                "moe.experts, moe.hidden and moe.lora_rank must be >= 1, moe.shared >= 0"
            )
        if self.router == RouterName.prototype and self.experts % self.k:
            raise ValueError(
                f"moe.router=prototype needs moe.experts divisible by moe.k (groups), "
                f"got {self.experts} and {self.k}"
            )
        if self.router in (RouterName.topk, RouterName.sigmoid) and not 1 <= self.k <= self.experts:
            raise ValueError(f"moe.k must be in [1, moe.experts={self.experts}], got {self.k}")
        if self.straight_through and (self.router != RouterName.topk or self.k != 1):
            raise ValueError(
                "moe.straight_through weighs the one chosen expert 1: it needs moe.router=topk "
                f"and moe.k=1, got moe.router={self.router.value} and moe.k={self.k}"
            )
        if self.spread_tasks and self.route_on != RouteOn.task:
            raise ValueError(
                "moe.spread_tasks starts task t on expert t mod E: it needs moe.route_on=task "
                "(and a multi-task set, task=multi/<set>)"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values (enums as their strings): how policies store the
        settings in SB3's ``policy_kwargs``, so a saved model loads without these types."""
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in self.__dict__.items()}


@dataclass
class LLMConfig:
    """Which reward writer to use and how to reach it."""

    backend: LLMBackend = LLMBackend.offline
    """``offline`` (deterministic term synthesizer, no network), ``openai`` (any
    OpenAI-compatible chat-completions server) or ``replay`` (recorded replies only,
    ``replay_from``)."""
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

    name: AlgoName = AlgoName.ppo
    """``ppo`` or ``sac``."""
    policy: PolicyName = PolicyName.MlpPolicy
    """SB3's policy name (``MlpPolicy``), or ``moe``: mixture-of-experts actor and/or critic
    set up by the ``moe`` node (:mod:`rewardlab.moe.policies`)."""
    normalize_obs: bool = True
    """Wrap the training env in ``VecNormalize`` for observations."""
    normalize_reward: bool = True
    """... and for rewards (PPO only; generated reward scales vary widely)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the SB3 constructor (learning_rate, n_steps, policy_kwargs ...)."""
    steps_per_update: int | None = None
    """PPO: environment steps collected per update, summed over ``train.n_envs``; ``n_steps``
    becomes ``ceil(steps_per_update / n_envs)``, so the update keeps its size whatever the
    number of envs. ``kwargs.n_steps``, when set (not null), wins; ``None``: SB3's default
    ``n_steps``."""


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
    merged = OmegaConf.merge(
        OmegaConf.structured(AlgoConfig), OmegaConf.load(path), {"kwargs": kwargs}
    )
    algo = OmegaConf.to_object(merged)
    assert isinstance(algo, AlgoConfig)
    return algo


@dataclass
class TrainConfig:
    """Budget, evaluation, checkpoints and outputs of a training run."""

    total_timesteps: int = 400_000
    n_envs: int = 4
    """Parallel environments."""
    env_workers: int = 0
    """Confined worker processes that hold the ``n_envs`` environments with their generated
    reward and step them in parallel (``backend=dummy``; 0 = one per CPU core this process may
    use, at most ``n_envs``; a multi-task set shares them out over its members, at least one
    each; in a search's parallel trainings, 0 = the job's share of the cores:
    :func:`rewardlab.search.launch.env_workers_per_job`). Each copy keeps its own seed, so
    results do not depend on it."""
    backend: TrainBackend = TrainBackend.dummy
    """How the ``n_envs`` environments are stepped: ``dummy`` (gymnasium envs in SB3's
    ``DummyVecEnv``), or the batched rollout core: ``native`` (MuJoCo's C engine) or ``mjx``
    (JAX; ``pip install ".[mjx]"``). The core covers the MuJoCo tasks except humanoid."""
    seed: int = 0
    eval_freq: int = 20_000
    """Evaluate every this many environment steps (summed over envs)."""
    eval_episodes: int = 5
    checkpoint_freq: int = 50_000
    """Save model + normalisation (+ replay buffer) every this many environment steps ..."""
    checkpoint_minutes: float = 5.0
    """... and at least every this many minutes of training (0 = by steps only), so a run
    killed without warning loses at most this much; Ctrl-C and SIGTERM always checkpoint."""
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
    warm_start: WarmStart = WarmStart.none
    """``rewardlab refine``: ``parent`` starts the new version from the parent version's trained
    policy and normalisation instead of from scratch (SAC then skips its random-action
    warm-up beyond one batch)."""
    adapt: AdaptMode = AdaptMode.full
    """With ``warm_start=parent``: ``full`` (fine-tune every weight), ``lora`` (parent frozen,
    one LoRA adapter per linear layer, rank ``moe.lora_rank``) or ``lora_moe`` (parent frozen,
    a mixture of LoRA adapters per linear layer routed by ``moe.router``)."""

    def __post_init__(self) -> None:
        _positive("train", total_timesteps=self.total_timesteps, n_envs=self.n_envs, eval_freq=self.eval_freq,
                  eval_episodes=self.eval_episodes, checkpoint_freq=self.checkpoint_freq, video_size=self.video_size,
                  torch_threads=self.torch_threads)  # fmt: skip
        _non_negative(
            "train",
            video_episodes=self.video_episodes,
            checkpoint_minutes=self.checkpoint_minutes,
            env_workers=self.env_workers,
        )


@dataclass
class CheckConfig:
    """The pre-use check of reward programs."""

    steps: int = 200
    """Real states (random-action rollout) the program is smoke-run on."""
    timeout_s: float = 60.0
    memory_mb: int = 4096
    """Address-space limit of the smoke-run subprocess."""

    def __post_init__(self) -> None:
        _positive("check", steps=self.steps, timeout_s=self.timeout_s, memory_mb=self.memory_mb)


@dataclass
class GateConfig:
    """The pre-flight gate (:mod:`rewardlab.gate`): checks on reference rollouts of the
    task before any training. The thresholds are measured against training outcomes in
    ``experiments/gate_calibration/README.md`` (per check: rejections, false rejections, false
    acceptances)."""

    on_train: GateMode = GateMode.warn
    """``rewardlab train``/``refine``: ``warn`` (gate each new version, record ``gate.json``,
    train anyway), ``block`` (send rejections back to the reward writer like check failures
    and never train a rejected version) or ``off``. The search always blocks."""
    seed: int = 0
    """First reset seed of the reference rollouts."""
    steps: int = 200
    """Longest reference rollout without demonstrations (on tasks with demonstrations every
    rollout runs the task's whole episode)."""
    episodes: int = 4
    """Random-policy rollouts."""
    zero_episodes: int = 1
    """Zero-action rollouts."""
    perturbed_episodes: int = 2
    """Rollouts of zero action plus Gaussian noise (std ``perturb_std``)."""
    perturb_std: float = 0.3
    demos: int = 6
    """Successful scripted-expert demonstrations (tasks with a scripted policy)."""
    noisy_demos: int = 6
    """Expert rollouts with action noise (std ``noise_std``); those that fail count as failures."""
    noise_std: float = 1.0
    truncate_at: float = 0.5
    """Truncated demos: the expert acts for this fraction of its time to success, then zero
    actions (a near miss that did not succeed)."""
    max_abs: float = 1e3
    """Largest per-step |reward| accepted on the reference states."""
    min_abs: float = 1e-6
    """The reward is rejected as ~0 when its largest per-step |value| is below this."""
    constant_tol: float = 1e-9
    """A reward or component whose values span at most ``constant_tol * max(1, |mean|)`` is
    constant (the total: rejected; a component: a warning)."""
    min_ranking_accuracy: float = 0.6
    """Reject below this fraction of (successful demo, failed rollout) pairs ranked right
    (whole episodes, neutral actions). Calibration (``experiments/gate_calibration``): no
    program that learned falls below it there; see its README for the false acceptances."""
    timeout_s: float = 60.0
    """Wall-clock and CPU-time limit of the evaluation child (memory: ``check.memory_mb``)."""
    cache_dir: str | None = "${runs_dir}/.gate_cache"
    """Reference rollouts are cached here per task and settings (``null``: per process only)."""


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
    decision_episodes: int = 20
    """Fresh evaluation episodes behind every promotion decision (on the rollout core where the
    task runs there); 0 = decide on the last training evaluation (``train.eval_episodes``)."""
    promotion: str = "interval"
    """``interval``: the top 1/eta go on, plus every candidate whose success interval (Wilson)
    overlaps the best's (on equal success: whose progress interval overlaps the best's);
    ``rank``: the top 1/eta by point estimate only (see :mod:`rewardlab.search.halving`)."""
    launcher: str = "auto"
    """Where candidate trainings and seed runs go: ``inline`` (this process, one at a time, no
    isolation), ``joblib`` (Hydra's joblib launcher, local processes), ``ray`` (a Ray cluster:
    ``ray_address``, or a local instance), ``submitit_slurm`` / ``submitit_local`` (Hydra's
    submitit launcher) or any other Hydra launcher name; ``auto`` = ``joblib`` when installed
    and ``n_jobs > 1``, else ``inline`` (see :mod:`rewardlab.search.launch`)."""
    n_jobs: int = 2
    """Parallel jobs of the joblib launcher and of a local Ray instance (1 = the inline path)."""
    launcher_overrides: list[str] = field(default_factory=list)
    """Extra Hydra overrides for the launcher, e.g. ``[hydra.launcher.partition=gpu]``."""
    job_timeout_s: float = 0.0
    """Kill a training attempt after this many seconds and record it as timed out (0 = no
    limit); submitit: the job's time limit (rounded up to minutes)."""
    retries: int = 1
    """Re-run a training whose process was killed (signal, lost Ray worker) this many times,
    from its last checkpoint; then it is recorded as failed and the search goes on."""
    ray_address: str | None = None
    """``launcher=ray``: the cluster (``auto``, ``<head ip>:6379``); ``null`` = start a local
    Ray instance for the search."""
    cpus_per_job: float = 1.0
    """CPUs reserved per training (Ray ``num_cpus``; submitit ``cpus_per_task``)."""
    gpus_per_job: float = 0.0
    """GPUs reserved per training (Ray ``num_gpus``, which sets ``CUDA_VISIBLE_DEVICES``;
    submitit ``gpus_per_node``)."""
    memory_gb_per_job: float = 0.0
    """Memory reserved per training in GiB (Ray ``memory``; submitit ``mem_gb``); 0 = none."""
    gpus: list[int] = field(default_factory=list)
    """joblib (and other local launchers): GPU indices to pin trainings to, one free GPU per
    running training via ``CUDA_VISIBLE_DEVICES`` (empty = leave the environment alone)."""
    seeds: list[int] = field(default_factory=list)
    """After the search, retrain the best reward from scratch with these seeds (for IQM and
    confidence intervals); empty = no seed sweep."""
    final_steps: int = 0
    """Budget of the seed runs (0 = the last rung budget)."""
    score: SearchScore = SearchScore.success
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

    def __post_init__(self) -> None:
        _positive("search", candidates=self.candidates, iterations=self.iterations, min_steps=self.min_steps,
                  max_steps=self.max_steps, n_jobs=self.n_jobs)  # fmt: skip
        if self.eta < 2:
            raise ValueError(f"search.eta must be at least 2, not {self.eta}")
        if self.max_steps < self.min_steps:
            raise ValueError(
                f"search.max_steps ({self.max_steps}) is below search.min_steps ({self.min_steps})"
            )


@dataclass
class ReviewConfig:
    """The rollout review web page (``rewardlab review``)."""

    host: str = "127.0.0.1"
    """Interface to bind; keep the loopback default unless you know who can reach you. Any
    other address is refused unless ``allow_remote`` is set."""
    port: int = 8765
    allow_remote: bool = False
    """Serve on a non-loopback ``host``: then a warning is printed, requests must name one of
    ``allowed_hosts`` and carry a token (printed in the address at start)."""
    allowed_hosts: list[str] = field(default_factory=list)
    """Host names (or addresses) clients use to reach a remote review server (``Host`` header
    check against DNS rebinding); required when ``host`` is ``0.0.0.0`` or ``::``."""
    token_env: str | None = None
    """Name of an environment variable holding the token of a remote review server (the value
    is never written anywhere); unset: a random token per start."""


@dataclass
class ShapingConfig:
    """Reward shaping during training (:mod:`rewardlab.shaping.continuous`), on top of the
    reward program (or the env reward). Evaluation always scores the task's own metric."""

    kind: ShapingKind = ShapingKind.none
    """``none``; ``teacher`` (potential-based shaping with a trained teacher's value);
    ``adaptive`` (re-weight the reward's named components from the learner's behaviour);
    ``meta`` (learned intrinsic reward r_phi(s, a) + count-based novelty bonus)."""
    gamma: float | None = None
    """Discount of the potential-based term ``gamma * Phi(s') - Phi(s)`` and of the meta
    critic; ``None`` = the learner's ``algo.kwargs.gamma`` (0.99 if unset)."""
    teacher: str | None = None
    """``teacher``: a trained SB3 policy: a run directory (its latest reward version), a
    version directory (``<run>/rewards/v0``) or a model zip; the VecNormalize statistics next
    to it (``vecnormalize.pkl`` or the checkpoint's) normalise the teacher's observations.
    ``scripted``: the task's scripted MetaWorld policy, whose value under the expert reward is
    fitted from its rollouts (:mod:`rewardlab.shaping.scripted`) and saved as
    ``teacher/value.pt`` + ``teacher/fit.json`` in the training directory (reused on resume);
    or the path of such a ``value.pt`` to reuse a fitted one."""
    scripted_episodes: int = 8
    """``teacher=scripted``: rollouts per noise level (each the task's full horizon); every
    third one of each level is held out for the fit report."""
    scripted_noise: list[float] = field(default_factory=lambda: [0.0, 0.3, 1.0, 3.0])
    """``teacher=scripted``: std of the Gaussian noise added to the scripted actions (then
    clipped to [-1, 1]), one set of rollouts per value: coverage of states off the expert's
    path."""
    value_epochs: int = 60
    """``teacher=scripted``: passes over the rollouts when regressing the value MLP."""
    teacher_algo: TeacherAlgo = TeacherAlgo.auto
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
    extrinsic: MetaExtrinsic = MetaExtrinsic.progress
    """``meta``: the task return the meta-gradient climbs: ``progress`` (increase of the task's
    progress measure + success) or ``env`` (the benchmark's own reward)."""


@dataclass
class E2CLConfig:
    """``rewardlab refine run=<dir> feedback=auto``: exploration-based error correction
    (:mod:`rewardlab.e2cl`): explore the trained version, detect errors, write feedback with
    evidence, refine, and keep the correction only if it passes the gate and the errors that
    triggered it are gone in a fresh exploration."""

    rounds: int = 2
    """Explore -> feedback -> correct -> verify rounds."""
    episodes: int = 3
    """Teacher-free episodes of the learner (the first unperturbed, then with action noise,
    then with observation noise, in turn)."""
    action_noise: float = 0.1
    """Action perturbation: Gaussian noise std as a fraction of the half action range."""
    obs_noise: float = 0.05
    """Observation perturbation: std ``obs_noise * (|obs| + 0.1)`` per entry."""
    random_episodes: int = 3
    """Random-action episodes: states independent of the learner, on which a reward that pays
    for falling is told apart from a learner that happens to dive."""
    random_steps: int = 200
    """Longest random-action episode."""
    demos: int = 2
    """Expert demonstrations (MetaWorld's scripted policies, or ``teacher``'s rollouts)."""
    teacher: str | None = None
    """A trained teacher policy (run directory, version directory or model zip) whose rollouts
    serve as demonstrations on tasks without a scripted expert; ``null``: none."""
    branch_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    """Teacher-guided branches start from the expert's state at these fractions of each
    demonstration."""
    branch_steps: int = 50
    """Steps the learner acts in each branch."""
    seed: int = 40_000
    """First reset seed of the exploration episodes."""
    expert_min_correlation: float = 0.3
    """Report a reward whose rank correlation with the expert's progress along the
    demonstrations is below this."""
    object_min_effect: float = 0.1
    """Report a reward that rises by less than this fraction of its spread while the expert
    moves the object to the goal (manipulation)."""
    failure_correlation: float = -0.5
    """Report a reward whose rank correlation with the distance to a fall limit is at most
    this (it pays for falling)."""
    saturation_fraction: float = 0.95
    """A component at its maximum or minimum on at least this fraction of states is saturated."""
    action_bound_fraction: float = 0.5
    """Report when at least this fraction of action entries sit at the bounds."""
    action_bound_tol: float = 0.02
    """"At a bound": within this fraction of the action range."""
    regression_drop: float = 0.4
    """Report a drop of the evaluation success rate by at least this much during training."""
    success_tolerance: float = 0.2
    """A correction is also refused when its success rate is lower than its parent's by more
    than this ..."""
    progress_tolerance: float = 0.05
    """... or its evaluation's mean task progress lower by more than this (a correction that
    removes a finding by removing the task's drive does not count)."""
    frames: int = 3
    """Frames rendered per finding at its evidence steps (0 = none)."""
    clips: bool = True
    """Also render a short clip around each finding's first evidence step."""
    media_findings: int = 4
    """Render frames and clips for at most this many findings (errors and warnings first)."""
    frame_size: int = 240
    """Side of the rendered frames and clips in pixels."""
    summarise: bool = True
    """With an LLM back-end, also have it summarise the findings into the feedback (recorded
    under ``rewards/v<N>/e2cl/llm/``)."""
    memory: str | None = "${runs_dir}/.e2cl_memory.jsonl"
    """JSONL store of (finding, feedback, correction, outcome) records shared across runs;
    ``null`` turns memory off."""
    memory_k: int = 3
    """Similar past records shown to the reward writer per round."""


@dataclass
class RolloutConfig:
    """The batched rollout core that steps all ``train.n_envs`` worlds together when
    ``train.backend`` is ``native`` or ``mjx`` (:mod:`rewardlab.rollout`; ignored with
    ``dummy``). What ran is recorded in ``rewards/v<N>/rollout.json``."""

    engine: str = "auto"
    """``native`` physics: ``loop`` (one ``mj_step`` call per world: bit-for-bit the gymnasium
    envs; what ``auto`` picks) or ``rollout`` (one ``mujoco.rollout`` call for all worlds: a
    few percent faster, but its cold-started contact solver drifts from gymnasium's
    trajectories, HalfCheetah after ~30 steps; not for Ant)."""
    nthread: int = 0
    """``rollout`` engine: worker threads (0 = the calling thread)."""
    mjx_precision: str = "float64"
    """``mjx`` physics: ``float64`` (parity with the C engine) or ``float32`` (speed on a GPU;
    JAX's precision is process-wide)."""
    reward_mode: str = "auto"
    """How the reward program runs over worlds: ``auto`` (one call for all worlds, as written
    or lifted, where it equals per-world evaluation; else once per world), or force
    ``batched``, ``lifted`` (an error if the program cannot run so) or ``per_world``."""
    verify_every: int = 1
    """Re-check one random world of a batched reward against a per-world call every this many
    steps (0 = never)."""
    error_window: int = 1000
    """World-steps over which ``train.max_reward_error_rate`` is measured."""
    infos: str = "full"
    """Per-step infos: ``full`` (success, progress and every reward component, as the
    gymnasium wrappers give them) or ``episode`` (end-of-episode keys only: faster at 1024+
    worlds, but the ``reward/<name>`` curves are not logged)."""

    def __post_init__(self) -> None:
        for name, allowed in (
            ("engine", ("auto", "loop", "rollout")), ("mjx_precision", ("float64", "float32")),
            ("reward_mode", ("auto", "batched", "lifted", "per_world")), ("infos", ("full", "episode")),
        ):  # fmt: skip
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"rollout.{name}={value}: expected one of {', '.join(allowed)}")
        for name in ("nthread", "verify_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"rollout.{name} must be >= 0, not {getattr(self, name)}")
        if self.error_window < 1:
            raise ValueError(f"rollout.error_window must be positive, not {self.error_window}")


@dataclass
class RewardLabConfig:
    """Root config shared by all commands (each reads what it needs)."""

    task: TaskSpec = MISSING
    llm: LLMConfig = field(default_factory=LLMConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    check: CheckConfig = field(default_factory=CheckConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    shaping: ShapingConfig = field(default_factory=ShapingConfig)
    e2cl: E2CLConfig = field(default_factory=E2CLConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    """``algo.policy=moe`` (and ``train.adapt=lora_moe``): router, experts, where."""
    instruction: str | None = None
    """``train``/``generate``/``check``/``search``: overrides the task's instruction (e.g. a new
    behaviour on the same robot)."""
    reward_file: str | None = None
    """``train``: train on this reward program instead of generating one; ``env`` (or
    ``expert``) = the benchmark's own dense reward, the expert baseline."""
    file: str | None = None
    """``check``: the reward program to validate; ``generate``: where to also write it."""
    run: str | None = None
    """``train``/``refine``/``evaluate``: an existing run directory (``train`` resumes it)."""
    episodes: int = 10
    """``evaluate``: number of episodes."""
    version: int | None = None
    """``refine``/``evaluate``: the reward version to use (default: the run's current version,
    :meth:`rewardlab.rundir.RunDir.current_version`)."""
    feedback: str | None = None
    """``refine``: what is wrong with the behaviour, in words; ``auto``: found by exploration
    (E2CL rounds, ``e2cl.*``)."""
    tags: list[str] = field(default_factory=list)
    """``refine``: structured feedback tags, e.g. ``[too_slow,falls,jerky,drifts,spins]``."""
    interactive: bool = False
    """``refine``: ask for feedback in the terminal after every round."""
    task_member: str | None = None
    """``refine`` of a multi-task run (``task=multi/<set>``): the member whose reward the
    feedback is about (``metaworld/push`` or ``push``)."""
    runs_dir: str = "runs"
    """Where new run directories are created."""
    task_path: list[str] = field(default_factory=list)
    """More task folders (``<benchmark>/tasks.yaml`` + cards, :mod:`rewardlab.tasks.registry`),
    searched after the package's own; also ``$REWARDLAB_TASK_PATH``."""

    def __post_init__(self) -> None:
        _positive("", episodes=self.episodes)
        if self.version is not None and self.version < 0:
            raise ValueError(f"version must be >= 0, not {self.version}")


BENCHMARK_REWARD = ("env", "expert")
"""``reward_file`` values that train on the benchmark's own dense reward (the expert baseline)."""

COMMAND_ARGS: dict[str, frozenset[str]] = {
    "train": frozenset({"instruction", "reward_file", "run"}),
    "generate": frozenset({"instruction", "file"}),
    "check": frozenset({"instruction", "file"}),
    "refine": frozenset({"run", "version", "feedback", "tags", "interactive", "task_member"}),
    "evaluate": frozenset({"run", "version", "episodes"}),
    "review": frozenset(),
    "search": frozenset({"instruction"}),
}
"""The command arguments at the schema root each command reads; any other one given on its
command line is refused (``rewardlab train episodes=3`` would otherwise be ignored)."""


def to_schema(cfg: Any) -> RewardLabConfig:
    """The one conversion of a composed config (a Hydra ``DictConfig`` or a plain mapping) to
    the typed :class:`RewardLabConfig`: unknown keys (also ones added with ``+``), values of
    the wrong type, choices outside their set and non-positive budgets raise
    :class:`ConfigError` with one line naming the key.

    Example:
        >>> cfg = to_schema({"task": {"name": "mujoco/hopper_forward"}, "train": {"n_envs": 2}})
        >>> cfg.train.n_envs, cfg.gate.on_train
        (2, <GateMode.warn: 'warn'>)
        >>> to_schema({"task": {}, "train": {"total_steps": 4096}})
        Traceback (most recent call last):
        ...
        rewardlab.config.ConfigError: train.total_steps: not a setting (see rewardlab/config.py TrainConfig)
        >>> to_schema({"task": {}, "gate": {"on_train": "blok"}})
        Traceback (most recent call last):
        ...
        rewardlab.config.ConfigError: gate.on_train=blok: expected one of off, warn, block
        >>> to_schema({"task": {}, "train": {"total_timesteps": -5}})
        Traceback (most recent call last):
        ...
        rewardlab.config.ConfigError: train.total_timesteps must be positive, not -5
    """
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RewardLabConfig), data)
        typed = OmegaConf.to_object(merged)
    except ConfigKeyError as exc:
        key = _full_key(exc)
        owner = getattr(exc, "object_type_str", None) or "the schema"
        raise ConfigError(f"{key}: not a setting (see rewardlab/config.py {owner})") from None
    except ValidationError as exc:
        key, value = _full_key(exc), getattr(exc, "value", None)
        message = str(exc).splitlines()[0]
        if "expected one of" in message:
            message = "expected one of " + message.split("expected one of [", 1)[1].rstrip("]")
        raise ConfigError(f"{key}={value}: {message}") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{_full_key(exc)}: {str(exc).splitlines()[0]}") from None
    except ValueError as exc:  # a dataclass's own check (budgets ...)
        raise ConfigError(str(exc).lstrip(".")) from None
    assert isinstance(typed, RewardLabConfig)
    if not isinstance(
        typed.task.success, SuccessSpec
    ):  # a mapping, or task.success=<name or expression>
        from rewardlab.tasks.success import SuccessChoiceError

        try:
            typed.task = TaskSpec.from_dict(asdict(typed.task))
        except (SuccessChoiceError, TypeError) as exc:
            raise ConfigError(f"task.success: {str(exc).splitlines()[0]}") from None
    return typed


class ConfigError(ValueError):
    """A bad configuration; the message is one line naming the key."""


def _full_key(exc: Any) -> str:
    return str(getattr(exc, "full_key", None) or getattr(exc, "key", None) or "config")


def register_configs() -> None:
    """Register the schema and every task as a ``task`` group option."""
    cs = ConfigStore.instance()
    cs.store(name="rewardlab_schema", node=RewardLabConfig)
    for task in list_tasks():
        benchmark, short = task.name.split("/", 1)
        cs.store(group=f"task/{benchmark}", name=short, node=task, package="task")
