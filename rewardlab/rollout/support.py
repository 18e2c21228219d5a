"""Which task runs on which training back-end, decided before anything is built or written.

:func:`supports` is the one place that knows it: ``dummy`` (gymnasium envs in SB3's
``DummyVecEnv``) runs every task; the batched rollout core (``native``, ``mjx``) runs the
gymnasium MuJoCo locomotion envs it reproduces (:data:`rewardlab.rollout.spec.FAMILIES`:
Hopper, Walker2d, HalfCheetah, Ant) whose card has robot parts only, without per-env
shaping wrappers; ``mjx`` also needs JAX and an env that reads no contact forces (so not Ant).

Example:
    >>> from rewardlab.tasks import get_task
    >>> supports(get_task("mujoco/hopper_forward"), "native") is None
    True
    >>> print(supports(get_task("mujoco/ant_forward"), "mjx"))
    train.backend=mjx cannot run mujoco/ant_forward: its observation reads contact forces (cfrc_ext), which MJX does not provide; use train.backend=native or dummy
"""

from __future__ import annotations

from importlib.util import find_spec

from rewardlab.tasks.registry import TaskSpec

BACKENDS = ("dummy", "native", "mjx")
"""Training back-ends: gymnasium envs, or the rollout core on MuJoCo's C engine or MJX."""


def supports(task: TaskSpec, backend: str, *, shaping: str = "none") -> str | None:
    """Why ``backend`` cannot train ``task`` (with shaping ``shaping``), in one line naming the
    alternative; ``None`` when it can."""
    backend, shaping = str(backend), str(shaping)
    if backend not in BACKENDS:
        return f"train.backend={backend}: expected one of {', '.join(BACKENDS)}"
    if backend == "dummy":
        return None
    if shaping != "none":
        return f"shaping={shaping} wraps each env and needs train.backend=dummy, not {backend}"
    if task.benchmark != "mujoco":
        return (
            f"train.backend={backend} steps gymnasium MuJoCo locomotion tasks only, not "
            f"{task.name} ({task.benchmark}): use train.backend=dummy"
        )
    card = task.load_card()
    if getattr(card, "attributes", None) or card.robot_fields():
        return f"train.backend={backend} cannot run {task.name}: its card has values other than robot parts; use train.backend=dummy"
    from rewardlab.rollout.spec import spec_for

    try:
        spec = spec_for(task.resolved_env_id(), **dict(task.env_kwargs))
    except NotImplementedError as exc:
        return f"train.backend={backend} cannot run {task.name}: {exc}; use train.backend=dummy"
    if backend == "mjx":
        if spec.needs_contact_forces:
            return (
                f"train.backend=mjx cannot run {task.name}: its observation reads contact forces "
                "(cfrc_ext), which MJX does not provide; use train.backend=native or dummy"
            )
        if find_spec("jax") is None or find_spec("mujoco.mjx") is None:
            return "train.backend=mjx needs JAX and MJX: pip install mujoco-mjx==3.3.0 jax==0.5.3 jaxlib==0.5.3"
    return None
