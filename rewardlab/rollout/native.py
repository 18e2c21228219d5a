"""The ``native`` back-end: MuJoCo's C engine steps all worlds with little Python per step.

Two engines, chosen by ``engine=``:

``loop`` (the default)
    One scratch ``MjData``; per world and env step ``mj_setState`` of the world's integration
    state (time, qpos, qvel, the solver's warm start ...), one ``mj_step(nstep=frame_skip)``
    (plus ``mj_rnePostConstraint`` when contact forces are needed), ``mj_getState``:
    bit-for-bit gymnasium, including the warm start and Ant's ``cfrc_ext``/stale ``xpos``,
    with memory ``O(N * nstate)`` (one ``MjData`` stays in cache).
``rollout``
    One :func:`mujoco.rollout` call steps every world ``frame_skip`` physics steps (the loop
    over worlds and sub-steps runs in C). The state is the full-physics state
    ``(N, 1 + nq + nv)`` (time, qpos, qvel); stepping is the pure function
    :func:`rollout_step`. ``mujoco.rollout`` (3.3) does not return the solver's warm start,
    so every env step starts the constraint solver cold: results differ from gymnasium's by
    ~1e-14 per step, which a contact-rich gait amplifies (HalfCheetah: 1e-10 after ~30 steps,
    O(1) after ~120; see ``benchmarks/README.md``). A few percent faster than ``loop``; not
    available where the env reads contact forces (Ant).

``auto`` is ``loop``.

Example:
    >>> import numpy as np
    >>> from rewardlab.rollout.spec import spec_for
    >>> sim = NativeBackend(spec_for("HalfCheetah-v5"), num_worlds=4)
    >>> sim.engine, sim.qpos.shape
    ('loop', (4, 9))
    >>> sim.set_worlds(np.arange(4), np.zeros((4, 9)), np.zeros((4, 9)))
    >>> sim.step(np.zeros((4, 6))); round(float(sim.time[0]), 3)
    0.05
"""

from __future__ import annotations

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

from rewardlab.rollout.spec import LocomotionSpec

FULLPHYSICS = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
INTEGRATION = int(mujoco.mjtState.mjSTATE_INTEGRATION)
"""Everything ``mj_step`` reads that carries over between steps (full physics, warm start,
controls, applied forces, mocap ...); it starts with the full-physics state."""
ENGINES = ("auto", "rollout", "loop")


def rollout_step(
    model: mujoco.MjModel, state: np.ndarray, ctrl: np.ndarray, frame_skip: int
) -> np.ndarray:
    """Pure physics step: ``state (N, nstate)`` and ``ctrl (N, nu)`` -> a new state array after
    ``frame_skip`` physics steps (``state`` is unchanged).

    Example:
        >>> from rewardlab.rollout.spec import spec_for
        >>> spec = spec_for("Hopper-v5")
        >>> s0 = np.zeros((3, 1 + spec.nq + spec.nv)); s0[:, 1:1 + spec.nq] = spec.init_qpos
        >>> s1 = rollout_step(spec.model, s0, np.zeros((3, spec.nu)), spec.frame_skip)
        >>> s1.shape, bool(s0[0, 0] == 0.0), round(float(s1[0, 0]), 3)
        ((3, 13), True, 0.008)
    """
    n = state.shape[0]
    control = np.ascontiguousarray(
        np.broadcast_to(
            np.asarray(ctrl, dtype=np.float64)[:, None, :], (n, frame_skip, ctrl.shape[1])
        )
    )
    states, _ = mj_rollout.rollout(
        model, mujoco.MjData(model), np.ascontiguousarray(state, dtype=np.float64), control
    )
    return np.asarray(states[:, -1]).copy()


class NativeBackend:
    """N worlds of one MuJoCo model stepped by the C engine.

    Attributes:
        qpos, qvel: ``(N, nq)``, ``(N, nv)`` views into :attr:`state` (updated in place).
        cfrc_ext: ``(N, nbody, 6)`` after each step when the spec needs contact forces.
        main_xpos: ``(N, 3)`` the main body's position from the last kinematics pass (Ant).
    """

    name = "native"

    def __init__(
        self, spec: LocomotionSpec, num_worlds: int, *, engine: str = "auto", nthread: int = 0
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "auto":
            engine = "loop"
        if engine == "rollout" and spec.needs_contact_forces:
            raise ValueError(
                f"{spec.env_id} reads contact forces (cfrc_ext), which mujoco.rollout does not "
                "return; use engine='loop'"
            )
        self.spec = spec
        self.engine = engine
        self.num_worlds = n = int(num_worlds)
        m = spec.model
        self.model = m
        nstate = mujoco.mj_stateSize(m, FULLPHYSICS)
        if nstate != 1 + m.nq + m.nv:
            raise NotImplementedError("only models whose full physics state is (time, qpos, qvel)")
        self.cfrc_ext: np.ndarray | None = None
        self.main_xpos: np.ndarray | None = None
        if engine == "loop":
            self._data = mujoco.MjData(m)
            self._integration = np.zeros((n, mujoco.mj_stateSize(m, INTEGRATION)))
            self.state = self._integration[:, :nstate]  # the integration state starts with it
            if spec.needs_contact_forces:
                self.cfrc_ext = np.zeros((n, m.nbody, 6))
                self.main_xpos = np.zeros((n, 3))
        else:
            self.state = np.zeros((n, nstate))
            self._runner = mj_rollout.Rollout(nthread=nthread)
            self._scratch = [mujoco.MjData(m) for _ in range(max(nthread, 1))]
            self._models = [m] * n
            self._states = np.empty((n, spec.frame_skip, nstate))
            self._sensors = np.empty((n, spec.frame_skip, 0))
            self._control = np.empty((n, spec.frame_skip, m.nu))
        self.time = self.state[:, 0]
        self.qpos = self.state[:, 1 : 1 + m.nq]
        self.qvel = self.state[:, 1 + m.nq :]

    def set_worlds(self, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """gymnasium's ``reset`` for worlds ``idx``: ``mj_resetData``, set ``(qpos, qvel)``,
        ``mj_forward``."""
        if self.engine == "rollout":
            self.time[idx] = 0.0
            self.qpos[idx] = qpos
            self.qvel[idx] = qvel
            return
        m, d = self.model, self._data
        for row, i in enumerate(np.asarray(idx).tolist()):
            mujoco.mj_resetData(m, d)
            d.qpos[:] = qpos[row]
            d.qvel[:] = qvel[row]
            mujoco.mj_forward(m, d)
            mujoco.mj_getState(m, d, self._integration[i], INTEGRATION)
            if self.cfrc_ext is not None and self.main_xpos is not None:
                self.cfrc_ext[i] = d.cfrc_ext
                self.main_xpos[i] = d.xpos[self.spec.main_body]

    def step(self, ctrl: np.ndarray) -> None:
        """Advance every world by one env step (``frame_skip`` physics steps) under ``ctrl``."""
        if self.engine == "rollout":
            self._control[...] = ctrl[:, None, :]
            self._runner.rollout(
                self._models, self._scratch, self.state, self._control, nstep=self.spec.frame_skip,
                state=self._states, sensordata=self._sensors, skip_checks=True,
                control_spec=int(mujoco.mjtState.mjSTATE_CTRL),
            )  # fmt: skip
            self.state[...] = self._states[:, -1]
            return
        self._loop_step(np.asarray(ctrl, dtype=np.float64))

    def _loop_step(self, ctrl: np.ndarray) -> None:
        m, d, fs, states = self.model, self._data, self.spec.frame_skip, self._integration
        step, rne = mujoco.mj_step, mujoco.mj_rnePostConstraint
        get_state, set_state = mujoco.mj_getState, mujoco.mj_setState
        cfrc, xpos, main = self.cfrc_ext, self.main_xpos, self.spec.main_body
        for i in range(self.num_worlds):
            set_state(m, d, states[i], INTEGRATION)
            d.ctrl[:] = ctrl[i]
            step(m, d, fs)
            get_state(m, d, states[i], INTEGRATION)
            if cfrc is not None and xpos is not None:
                rne(m, d)
                cfrc[i] = d.cfrc_ext
                xpos[i] = d.xpos[main]

    def close(self) -> None:
        if self.engine == "rollout":
            self._runner.close()
