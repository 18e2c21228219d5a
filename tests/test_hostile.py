"""The hostile corpus: one program per attack class, run the way training runs generated code
(a confined worker, :class:`rewardlab.workers.confined.ConfinedVecEnv`).

Each program is run twice:

* **with the vetter** (as rewardlab runs it): it must be rejected with the right finding and
  line, and leave no side effect;
* **with the vetter switched off** (the test-only
  :func:`~rewardlab.reward.program.unvetted_program`, which no configuration can reach: the
  program runs as plain Python with real builtins inside the worker): the OS wall alone must stop every side effect -- no file written or changed, no
  process started or signalled, no connection made, no secret read back, no hang past the
  watchdog, the trusted simulator unchanged.

Side effects are checked from outside the worker: marker files under a temporary folder, a
victim file and a victim process, TCP/UDP listeners, a secret file whose contents must never
come back in any observation, reward or info key.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from rewardlab.reward import confine
from rewardlab.reward.program import RewardProgram, RewardProgramError, unvetted_program
from rewardlab.tasks import get_task
from rewardlab.workers.confined import ConfinedVecEnv
from rewardlab.wrappers import RewardFailure, compile_for_task

HOPPER = get_task("mujoco/hopper_forward")
TIMEOUT_S = 3.0
"""Watchdog limit in these tests (a hopper step takes well under a millisecond)."""

pytestmark = pytest.mark.skipif(confine.confinement_problem() is not None, reason="no OS wall here")


@dataclass
class World:
    """What the attacks aim at, observed from outside the worker."""

    root: Path
    secret: str
    secret_file: Path
    victim_file: Path
    victim_mode: int
    victim: subprocess.Popen[bytes]
    tcp_port: int
    udp_port: int
    connections: list[str] = field(default_factory=list)

    def mark(self, case: str) -> Path:
        return self.root / f"mark-{case}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("hostile")
    secret = "SECRET-" + os.urandom(6).hex()
    secret_file = root / "id_rsa"
    secret_file.write_text(secret)
    victim_file = root / "victim.txt"
    victim_file.write_text("untouched")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    w = World(root, secret, secret_file, victim_file, stat.S_IMODE(victim_file.stat().st_mode),
              victim, tcp.getsockname()[1], udp.getsockname()[1])  # fmt: skip

    def listen() -> None:
        tcp.settimeout(0.2)
        udp.settimeout(0.2)
        while not stop.is_set():
            for sock, kind in ((tcp, "tcp"), (udp, "udp")):
                try:
                    if kind == "tcp":
                        conn, _ = sock.accept()
                        conn.close()
                    else:
                        sock.recv(1024)
                    w.connections.append(kind)
                except OSError:
                    pass

    stop = threading.Event()
    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    yield w
    stop.set()
    thread.join()
    tcp.close()
    udp.close()
    victim.kill()
    victim.wait()


@dataclass
class Attack:
    """One attack class: the program, the finding the vetter must produce, and the side
    effect that must not happen (checked with or without the vetter)."""

    id: str
    body: str
    """The body of ``compute_dense_reward(self, action, obs)``, formatted with ``mark``,
    ``secret_file``, ``victim_file``, ``victim_pid``, ``tcp_port``, ``udp_port``, ``parent``,
    ``breach``."""
    stage: str
    phrase: str
    line: int | None
    before: str = ""
    """Module-level code before the function (formatted like ``body``)."""

    def source(self, w: World) -> str:
        values = dict(mark=w.mark(self.id), secret_file=w.secret_file, victim_file=w.victim_file,
                      victim_pid=w.victim.pid, tcp_port=w.tcp_port, udp_port=w.udp_port, parent=os.getpid(),
                      breach=BREACH)  # fmt: skip
        body = textwrap.indent(textwrap.dedent(self.body).strip("\n").format(**values), "    ")
        before = textwrap.dedent(self.before).format(**values)
        return f"{before}def compute_dense_reward(self, action, obs):\n{body}\n    return 0.0\n"


S, R, T, OUT = "static", "runtime", "timeout", "output"
BREACH = 1234.5
"""What a program returns when a forbidden call it made succeeded (where the effect of the call
itself cannot be seen from outside)."""
OS_IMPORT = "import os\n"
CTYPES = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"

ATTACKS = [
    # --- writing the file system
    Attack("open_write", "open('{mark}', 'w').write('x')", S, "use of 'open' is not allowed", 2),
    Attack("os_open_create", "fd = os.open('{mark}', os.O_CREAT | os.O_WRONLY)", S, "import of 'os' is not allowed", 1, OS_IMPORT),
    Attack("pathlib_write", "import pathlib\npathlib.Path('{mark}').write_text('x')", S, "import of 'pathlib' is not allowed", 2),
    Attack("mkdir", "os.mkdir('{mark}')", S, "import of 'os'", 1, OS_IMPORT),
    Attack("symlink", "os.symlink('/etc/passwd', '{mark}')", S, "import of 'os'", 1, OS_IMPORT),
    Attack("unlink_victim", "os.unlink('{victim_file}')", S, "import of 'os'", 1, OS_IMPORT),
    Attack("rename_victim", "os.rename('{victim_file}', '{mark}')", S, "import of 'os'", 1, OS_IMPORT),
    Attack("chmod_victim", "os.chmod('{victim_file}', 0o777)", S, "import of 'os'", 1, OS_IMPORT),
    Attack("truncate_victim", "open('{victim_file}', 'r+').truncate(0)", S, "use of 'open'", 2),
    Attack("append_victim", "open('{victim_file}', 'a').write('pwned')", S, "use of 'open'", 2),
    Attack("numpy_save", "np.save('{mark}', np.zeros(3))", S, "attribute 'save' is not allowed", 2),
    Attack("ndarray_tofile", "np.zeros(3).tofile('{mark}')", S, "attribute 'tofile' is not allowed", 2),
    Attack("chdir_relative_write", "os.chdir('{mark}/..')\nopen('mark-chdir_relative_write', 'w')", S, "import of 'os'", 1, OS_IMPORT),
    Attack("shm_file", "open('/dev/shm/{secret_file.name}-pwned', 'w')", S, "use of 'open'", 2),
    # --- reading secrets (and handing them back through names or values)
    Attack("read_secret_file", "s = open('{secret_file}').read()\nreturn 0.0, {{'leak_' + s: 1.0}}", S, "use of 'open'", 2),
    Attack("read_proc_environ", "s = open('/proc/self/environ').read()\nreturn 0.0, {{'leak_' + s[:60]: 1.0}}", S, "use of 'open'", 2),
    Attack("read_parent_environ", "s = open('/proc/{parent}/environ').read()\nreturn 0.0, {{'leak_' + s[:60]: 1.0}}", S, "use of 'open'", 2),
    Attack("read_parent_memory", "s = open('/proc/{parent}/mem', 'rb')", S, "use of 'open'", 2),
    Attack("read_etc_shadow", "s = open('/etc/shadow').read()\nreturn 0.0, {{'leak_' + s[:60]: 1.0}}", S, "use of 'open'", 2),
    Attack("read_via_numpy", "a = np.fromfile('{secret_file}', dtype='uint8')", S, "attribute 'fromfile' is not allowed", 2),
    Attack("read_via_loadtxt", "a = np.loadtxt('{secret_file}')", R, "numpy.loadtxt is not available", 2),
    Attack("environ_via_os", "return 0.0, {{'leak_' + str(sorted(os.environ))[:60]: 1.0}}", S, "import of 'os'", 1, OS_IMPORT),
    # --- the network
    Attack("tcp_connect", "import socket\nsocket.create_connection(('127.0.0.1', {tcp_port}), timeout=1)", S, "import of 'socket' is not allowed", 2),
    Attack("udp_send", "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {udp_port}))", S, "import of 'socket'", 2),
    Attack("http_request", "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{tcp_port}/', timeout=1)", S, "import of 'urllib.request'", 2),
    Attack("unix_socket", "import socket\nsocket.socket(socket.AF_UNIX).connect('/run/systemd/private')", S, "import of 'socket'", 2),
    # --- processes
    Attack("subprocess_run", "import subprocess\nsubprocess.run(['touch', '{mark}'])", S, "import of 'subprocess' is not allowed", 2),
    Attack("os_system", "os.system('touch {mark}')", S, "import of 'os'", 1, OS_IMPORT),
    Attack("os_popen", "os.popen('touch {mark}').read()", S, "import of 'os'", 1, OS_IMPORT),
    Attack("fork_child_writes", "if os.fork() == 0:\n    open('{mark}', 'w')\n    os._exit(0)", S, "import of 'os'", 1, OS_IMPORT),
    Attack("fork_bomb", "while True:\n    os.fork()", S, "import of 'os'", 1, OS_IMPORT),
    Attack("exec_shell", "os.execv('/bin/sh', ['sh', '-c', 'touch {mark}'])", S, "import of 'os'", 1, OS_IMPORT),
    Attack("spawn", "os.posix_spawn('/usr/bin/touch', ['touch', '{mark}'], {{}})", S, "import of 'os'", 1, OS_IMPORT),
    Attack("ctypes_system", "libc.system(b'touch {mark}')", S, "import of 'ctypes' is not allowed", 1, CTYPES),
    Attack("multiprocessing", "import multiprocessing\np = multiprocessing.Process(target=print)\np.start()", S, "import of 'multiprocessing'", 2),
    Attack("thread_left_running", "import threading\nthreading.Thread(target=lambda: open('{mark}', 'w')).start()", S, "import of 'threading'", 2),
    Attack("kill_victim", "os.kill({victim_pid}, 9)", S, "import of 'os'", 1, OS_IMPORT),
    Attack("kill_everything", "os.kill(-1, 0)\nreturn {breach}", S, "import of 'os'", 1, OS_IMPORT),
    Attack("signal_parent", "os.kill({parent}, 0)\nreturn {breach}", S, "import of 'os'", 1, OS_IMPORT),
    Attack("ptrace_victim", "if libc.ptrace(16, {victim_pid}, 0, 0) == 0:\n    return {breach}", S, "import of 'ctypes'", 1, CTYPES),
    Attack("process_vm_read", "buf = ctypes.create_string_buffer(8)\nif libc.syscall(310, {victim_pid}, 0, 0, 0, 0, 0) >= 0:\n    return {breach}", S, "import of 'ctypes'", 1, CTYPES),
    Attack("prlimit_victim", "import resource\nresource.prlimit({victim_pid}, resource.RLIMIT_NOFILE, (1, 1))\nreturn {breach}", S, "import of 'resource'", 2),
    Attack("raise_own_limits", "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\nx = bytearray(20 << 30)", S, "import of 'resource'", 2),
    Attack("io_uring", "if libc.syscall(425, 8, ctypes.create_string_buffer(120)) >= 0:\n    return {breach}", S, "import of 'ctypes'", 1, CTYPES),
    Attack("unshare_namespace", "if libc.unshare(0x10000000) == 0:\n    return {breach}", S, "import of 'ctypes'", 1, CTYPES),
    Attack("sysv_shared_memory", "if libc.shmget(0x5EC, 4096, 0o1666) >= 0:\n    return {breach}", S, "import of 'ctypes'", 1, CTYPES),
    Attack("memfd_exec", "fd = os.memfd_create('x')\nos.write(fd, open('/usr/bin/touch', 'rb').read())\nos.execve(fd, ['touch', '{mark}'], {{}})", S, "import of 'os'", 1, OS_IMPORT),
    Attack("terminal_injection", "fd = os.open('/dev/tty', os.O_RDONLY)\nimport fcntl, termios\nfcntl.ioctl(fd, termios.TIOCSTI, b'x')", S, "import of 'os'", 1, OS_IMPORT),
    # --- escaping the vetter's view of Python
    Attack("eval_string", "eval(\"__import__('os').system('touch {mark}')\")", S, "use of 'eval' is not allowed", 2),
    Attack("dunder_import", "__import__('os').system('touch {mark}')", S, "use of '__import__' is not allowed", 2),
    Attack("subclass_walk", "c = [k for k in ().__class__.__base__.__subclasses__() if k.__name__ == '_wrap_close'][0]\nc.__init__.__globals__['system']('touch {mark}')", S, "private/dunder attribute '__class__'", 2),
    Attack("frame_walk", "g = (i for i in [1])\ng.gi_frame.f_back.f_globals['__builtins__']['open']('{mark}', 'w')", S, "attribute 'gi_frame' is not allowed", 3),
    Attack("match_array_ufunc", "match obs:\n    case np.ndarray(__array_ufunc__=f):\n        f.__globals__['__builtins__']['open']('{mark}', 'w')", S, "match class pattern: access to private/dunder attribute", 3),
    Attack("match_str_format", "match 'x':\n    case str(format=f):\n        f('{{0.__class__}}', 1)", S, "match class pattern: attribute 'format'", 3),
    Attack("format_attribute_walk", "'{{0.__class__.__mro__}}'.format(action)", S, "attribute 'format' is not allowed", 2),
    Attack("getattr_builtins", "getattr(action, '__class__')", S, "use of 'getattr' is not allowed", 2),
    Attack("builtins_dict", "__builtins__['open']('{mark}', 'w')", S, "use of '__builtins__'", 2),
    # --- denial of service
    Attack("hang_in_one_c_call", "x = float(sum(map(sum, [range(10**6)] * 10**6)))", T, "did not return within 3 s", 2),
    Attack("eigvals_loop", "for i in range(1000):\n    np.linalg.eigvals(np.ones((700, 700)))", T, "", None),
    Attack("memory_bomb_list", "x = [0.0] * 10**10", R, "sequence repetition would create 10,000,000,000 elements", 2),
    Attack("memory_bomb_numpy", "x = np.ones((10**5, 10**5))", R, "numpy.ones would create", 2),
    Attack("memory_bomb_broadcast", "a = np.ones(10**5)\nb = a[:, None] * a[None, :]", R, "would create 10,000,000,000 elements", 3),
    Attack("huge_format_width", "s = f'{{1:>{{10**9}}}}'", R, "field width 1000000000 is above 10,000", 2),
    Attack("huge_join", "s = ','.join(['x' * 10**6] * 1000)", R, "str.join would create", 2),
    Attack("recursion", "f = lambda n: f(n + 1)\nf(0)", R, "RecursionError", 2),
    Attack("c_stack_overflow", "import sys\nsys.setrecursionlimit(10**7)\nf = lambda n: f(n + 1)\nf(0)", S, "import of 'sys' is not allowed", 2),
    Attack("integer_bomb", "x = 10 ** (10 ** 8)", R, "integer power 10**100000000 is too large", 2),
    # --- the simulator, the agent's observations, the training record
    Attack("obs_write_reaches_agent", "obs[:] = 1e6", OUT, "", None),
    Attack("tamper_simulator", "self.hopper.top._qpos[1] = 5.0", S, "private/dunder attribute '_qpos'", 2),
    Attack("component_named_env", "return 0.0, {{'env': 1e3}}", OUT, "component name 'env' is reserved", None),
    Attack("component_named_error", "return 0.0, {{'error': 0.0}}", OUT, "component name 'error' is reserved", None),
    Attack("component_name_newlines", "return 0.0, {{'a\\nb': 0.0}}", OUT, "is not allowed: use letters", None),
    Attack("object_array", "x = np.zeros(3).clip(0, 1, dtype='O')", R, "ndarray.clip: object dtypes are not allowed", 2),
    Attack("state_grows", "HISTORY.append(list(obs))", R, "'tuple' object has no attribute 'append'", 3, "HISTORY = []\n"),
    Attack("overflow_output", "return 10**400", OUT, "int too large to convert to float", None),
    Attack("exit_worker", "raise SystemExit(3)", S, "name 'SystemExit' is not defined", 2),
    Attack("keyboard_interrupt", "raise KeyboardInterrupt", S, "name 'KeyboardInterrupt' is not defined", 2),
    Attack("write_protocol_garbage", "for fd in range(3, 40):\n    try:\n        os.write(fd, b'RLW1' + b'\\xff' * 12)\n    except OSError:\n        pass", S, "import of 'os'", 1, OS_IMPORT),
]  # fmt: skip


@dataclass
class Outcome:
    """What a run of a program showed from outside its worker."""

    findings: list[str]
    started: bool
    texts: str
    """Every info key and string value, reward and observation printed (for leak checks)."""
    obs_max: float


def run(source: str, steps: int = 3, *, vetter: bool = True) -> Outcome:
    """``source`` as training runs it: vetted and compiled here (``vetter``; else compiled
    unvetted), then one confined worker, ``steps`` vectorised steps."""
    try:
        program: RewardProgram = (
            compile_for_task(source, HOPPER) if vetter else unvetted_program(source)
        )
        venv = ConfinedVecEnv(
            HOPPER, program, n_envs=1, max_error_rate=1.0, call_timeout_s=TIMEOUT_S
        )
    except RewardProgramError as exc:
        return Outcome([str(f) for f in exc.findings], False, "", 0.0)
    except RuntimeError as exc:  # the unvetted program's module code raised in the worker
        return Outcome([f"[start] {exc}"], False, "", 0.0)
    texts, obs_max = [], 0.0
    try:
        assert venv.wall.get("seccomp") and venv.wall.get("landlock_abi", 0) > 0, venv.wall
        venv.seed(0)
        obs = venv.reset()
        for _ in range(steps):
            obs, rewards, _, infos = venv.step(np.zeros((1, 3), dtype=np.float32))
            obs_max = max(obs_max, float(np.abs(obs).max()))
            texts.append(repr((rewards.tolist(), obs.tolist(), infos)))
        findings = list(venv.error_counts)
    except RewardFailure as exc:
        findings = [f"[failure] {exc}"]
    finally:
        venv.close()
    return Outcome(findings, True, "\n".join(texts), obs_max)


def assert_no_side_effect(w: World, attack: Attack, outcome: Outcome) -> None:
    assert not w.mark(attack.id).exists(), "a file was written"
    assert not list(w.root.glob("mark-*")), "a file was written"
    assert not Path(f"/dev/shm/{w.secret_file.name}-pwned").exists()
    assert (
        w.victim_file.read_text() == "untouched"
        and stat.S_IMODE(w.victim_file.stat().st_mode) == w.victim_mode
    )
    assert w.victim.poll() is None, "the victim process was killed"
    assert w.connections == [], "a connection was made"
    assert w.secret not in outcome.texts, "the secret came back"
    assert "REWARDLAB_HOSTILE" not in outcome.texts
    assert outcome.obs_max < 1e5, "a write into obs reached the agent"
    assert str(BREACH) not in outcome.texts, "a forbidden call succeeded"


@pytest.fixture(autouse=True)
def secret_in_environment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWARDLAB_HOSTILE_API_KEY", world.secret)
    monkeypatch.delenv(confine.ALLOW_UNCONFINED_ENV, raising=False)


def test_corpus_covers_the_attack_classes() -> None:
    assert len(ATTACKS) >= 60
    assert len({a.id for a in ATTACKS}) == len(ATTACKS)
    assert {a.id for a in ATTACKS} >= OFF_IN_DEFAULT_SUITE


def _matches(finding: str, attack: Attack) -> bool:
    stage = f"[{attack.stage}] "
    where = f"line {attack.line}: " if attack.line is not None else ""
    return finding.startswith(stage + where) and attack.phrase in finding


SLOW = {"hang_in_one_c_call", "eigvals_loop"}


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(a, marks=pytest.mark.slow)
        if a.id in SLOW and a.id != "hang_in_one_c_call"
        else a
        for a in ATTACKS
    ],
    ids=[a.id for a in ATTACKS],
)
def test_rejected_with_its_line_and_no_side_effect(world: World, attack: Attack) -> None:
    outcome = run(attack.source(world))
    if attack.id == "obs_write_reaches_agent":  # not a finding: the program only saw a copy
        assert outcome.findings == [] and outcome.started
    elif attack.stage == T and attack.line is None:
        assert any(f.startswith("[timeout] ") for f in outcome.findings), outcome.findings
    else:
        assert any(_matches(f, attack) for f in outcome.findings), outcome.findings
    assert_no_side_effect(world, attack, outcome)


OFF_IN_DEFAULT_SUITE = {
    "open_write", "os_open_create", "unlink_victim", "truncate_victim", "read_secret_file",
    "read_parent_environ", "tcp_connect", "udp_send", "subprocess_run", "fork_child_writes",
    "exec_shell", "ctypes_system", "thread_left_running", "kill_victim", "kill_everything",
    "ptrace_victim", "prlimit_victim", "io_uring", "memfd_exec", "subclass_walk",
    "match_array_ufunc", "memory_bomb_numpy", "exit_worker", "write_protocol_garbage",
}  # fmt: skip
"""One attack of each kind runs unvetted in the default suite; all of them with ``-m slow``."""


@pytest.mark.parametrize(
    "attack",
    [
        a if a.id in OFF_IN_DEFAULT_SUITE else pytest.param(a, marks=pytest.mark.slow)
        for a in ATTACKS
    ],
    ids=[a.id for a in ATTACKS],
)
def test_the_os_wall_alone_stops_every_side_effect(world: World, attack: Attack) -> None:
    outcome = run(attack.source(world), vetter=False)
    assert_no_side_effect(world, attack, outcome)
