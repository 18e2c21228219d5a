"""The ``mjx`` back-end: MuJoCo XLA (JAX), jit-compiled and vmapped over worlds -- the GPU path.

Requires ``mujoco-mjx==3.3.0`` with ``jax==0.5.3``/``jaxlib==0.5.3`` (newer jax froze in
batched runs on the project's machines). It runs on CPU too (tests, parity checks), where it
is much slower than ``native``.

Physics is two pure, jit-compiled functions over a batched ``mjx.Data``:
:func:`make_step_fn` (``frame_skip`` ``mjx.step`` calls under ``lax.scan``, vmapped) and
:func:`make_reset_fn` (gymnasium's ``reset``: zero the data, set ``qpos``/``qvel``, forward,
for the worlds in a mask; fixed shapes, so auto-reset never recompiles). After each step the
state is copied into host numpy buffers (``qpos``/``qvel``), where observations, success
metrics and the reward program are evaluated (the sandbox's numpy facade is host numpy).

``x64=True`` (default) runs in float64 for parity with the C engine; use ``x64=False`` for
speed on a GPU. Models that read contact forces (Ant's ``cfrc_ext``) are not supported.

Example (skipped when jax is missing):
    >>> import numpy as np
    >>> from rewardlab.rollout.spec import spec_for
    >>> sim = MjxBackend(spec_for("HalfCheetah-v5"), num_worlds=2)  # doctest: +SKIP
    >>> sim.set_worlds(np.arange(2), np.zeros((2, 9)), np.zeros((2, 9)))  # doctest: +SKIP
    >>> sim.step(np.zeros((2, 6))); sim.qpos.shape  # doctest: +SKIP
    (2, 9)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardlab.rollout.spec import LocomotionSpec


def require_jax() -> tuple[Any, Any, Any]:
    """Import ``(jax, jax.numpy, mujoco.mjx)`` or raise ImportError with the pins to install."""
    try:
        import jax
        import jax.numpy as jnp
        from mujoco import mjx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the mjx back-end needs: pip install mujoco-mjx==3.3.0 jax==0.5.3 jaxlib==0.5.3 "
            f"({exc})"
        ) from None
    return jax, jnp, mjx


def make_step_fn(mjx_model: Any, frame_skip: int) -> Any:
    """``step(data, ctrl) -> data``: ``frame_skip`` physics steps, vmapped over worlds, jitted."""
    jax, _, mjx = require_jax()

    def one_world(data: Any, ctrl: Any) -> Any:
        data = data.replace(ctrl=ctrl)

        def body(d: Any, _: Any) -> tuple[Any, None]:
            return mjx.step(mjx_model, d), None

        data, _ = jax.lax.scan(body, data, None, length=frame_skip)
        return data

    return jax.jit(jax.vmap(one_world))


def make_reset_fn(mjx_model: Any) -> Any:
    """``reset(data, mask, qpos, qvel) -> data``: gymnasium's reset for worlds in ``mask``
    (``mj_resetData``, then ``qpos``/``qvel``), others untouched; jitted, fixed shapes.

    gymnasium's ``mj_forward`` after setting the state is not repeated: it only fills derived
    quantities, which the next ``mjx.step`` recomputes from ``qpos``/``qvel`` before using
    them (and which this back-end never reads), so the dynamics are unchanged and the compile
    is seconds shorter.
    """
    jax, jnp, mjx = require_jax()
    fresh = mjx.make_data(mjx_model)

    def one_world(data: Any, reset: Any, qpos: Any, qvel: Any) -> Any:
        new = fresh.replace(qpos=qpos, qvel=qvel)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(reset, a, b), new, data)

    return jax.jit(jax.vmap(one_world))


class MjxBackend:
    """N worlds of one model in MJX (see the module docstring). Same interface as
    :class:`rewardlab.rollout.native.NativeBackend`."""

    name = "mjx"
    engine = "mjx"

    def __init__(self, spec: LocomotionSpec, num_worlds: int, *, x64: bool = True) -> None:
        jax, jnp, mjx = require_jax()
        if spec.needs_contact_forces:
            raise NotImplementedError(f"{spec.env_id}: the mjx back-end does not provide cfrc_ext")
        if x64:
            jax.config.update("jax_enable_x64", True)
        self.spec = spec
        self.num_worlds = n = int(num_worlds)
        self._jnp = jnp
        self.mjx_model = mjx.put_model(spec.model)
        self._step = make_step_fn(self.mjx_model, spec.frame_skip)
        self._reset = make_reset_fn(self.mjx_model)
        one = mjx.make_data(self.mjx_model)
        self.data = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), one)
        self.qpos = np.zeros((n, spec.nq))
        self.qvel = np.zeros((n, spec.nv))
        self.time = np.zeros(n)
        self.cfrc_ext: np.ndarray | None = None
        self.main_xpos: np.ndarray | None = None
        self._dtype = jnp.float64 if x64 else jnp.float32

    def _pull(self) -> None:
        self.qpos[...] = np.asarray(self.data.qpos)
        self.qvel[...] = np.asarray(self.data.qvel)
        self.time[...] = np.asarray(self.data.time)

    def set_worlds(self, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        jnp = self._jnp
        mask = np.zeros(self.num_worlds, dtype=bool)
        mask[idx] = True
        full_q, full_v = self.qpos.copy(), self.qvel.copy()
        full_q[idx], full_v[idx] = qpos, qvel
        self.data = self._reset(
            self.data,
            jnp.asarray(mask),
            jnp.asarray(full_q, self._dtype),
            jnp.asarray(full_v, self._dtype),
        )
        self._pull()

    def step(self, ctrl: np.ndarray) -> None:
        self.data = self._step(self.data, self._jnp.asarray(ctrl, self._dtype))
        self._pull()

    def close(self) -> None:
        pass
