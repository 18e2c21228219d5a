"""The OS-level second wall around generated code (:func:`apply_wall`).

A process that is about to run a reward program calls :func:`apply_wall` once, after it has
built everything that needs files, sockets or new processes (the simulator, the task's
environment, renderers) and before the program's first line runs. From then on, whatever the
program manages to execute (even with the vetter out of the way):

* **no_new_privs** and **no capabilities** (effective, permitted, inheritable and the bounding
  set are emptied): a root worker keeps uid 0 but none of root's powers.
* **rlimits**: address space (``memory_mb``), CPU seconds (``cpu_s``, optional), file size 0
  (nothing can grow a file, even one already open), no more open files than a few above those
  open now, no core dumps.
* **Landlock** (where the kernel has it; ABI reported): the file system becomes read-only, and
  readable only beneath the Python installation, ``sys.path`` and the system library
  folders (no home folder, no ``/etc`` secrets, no ``/proc``); TCP bind/connect refused (ABI 4+);
  signals and abstract unix sockets scoped to the worker (ABI 6+).
* **seccomp-bpf** (raw BPF via ``prctl``/``seccomp``, applied to every thread with ``TSYNC``):
  ``execve``/``execveat``, ``fork``/``vfork``, ``clone`` without ``CLONE_THREAD`` (threads
  stay possible where asked for: the rollout core's JAX and multi-threaded MuJoCo; the
  gymnasium workers refuse them too; namespace flags are always refused), ``clone3``
  (``ENOSYS``, so threads fall back to ``clone``), every socket call, ``ptrace``,
  ``process_vm_*``, signals to other processes, opening files for writing or creating, every
  call that changes the file system (rename, unlink, mkdir, link, chmod, truncate ...), SysV
  and POSIX IPC, ``io_uring``, mounts, namespaces, module loading, ``bpf``,
  ``perf_event_open``, ``userfaultfd``, keyrings, ``prlimit``/scheduling of other processes
  and ``TIOCSTI`` terminal injection all fail with ``EPERM`` (a wrong architecture or x32
  call kills the process).

Where the wall cannot be applied (not Linux, an unknown CPU architecture, a kernel without
seccomp), :func:`apply_wall` raises :class:`ConfinementUnavailable`: rewardlab fails closed
unless the user sets ``REWARDLAB_ALLOW_UNCONFINED=1`` (see :func:`unconfined_allowed`), in which
case generated code runs behind the vetter only and every run says so. Landlock missing is
not fatal (the report says which layers were applied).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ALLOW_UNCONFINED_ENV = "REWARDLAB_ALLOW_UNCONFINED"
"""Set to ``1`` to run generated code without the OS wall where it cannot be applied."""


class ConfinementUnavailable(RuntimeError):
    """The OS wall cannot be applied on this system (and running unconfined was not allowed)."""


def unconfined_allowed() -> bool:
    """Whether the user explicitly allowed running generated code without the OS wall."""
    return os.environ.get(ALLOW_UNCONFINED_ENV, "") == "1"


def unavailable_message(problem: str) -> str:
    """The one-line error for a system where the wall cannot be applied."""
    return (
        f"rewardlab: cannot confine generated reward code on this system ({problem}); set "
        f"{ALLOW_UNCONFINED_ENV}=1 to run it behind the static vetter only"
    )


@dataclass
class WallReport:
    """Which layers :func:`apply_wall` applied in this process."""

    seccomp: bool = False
    no_new_privs: bool = False
    capabilities_dropped: bool = False
    landlock_abi: int = 0
    """Landlock ABI version used (0: the kernel has no Landlock; reads are not confined)."""
    rlimits: dict[str, int] = field(default_factory=dict)
    new_threads: bool = True
    """Whether the process may start threads."""
    threads: int = 0
    """Threads of the process when the wall went up (Landlock restricts only the calling
    thread and the ones it starts afterwards; seccomp covers all of them)."""
    unconfined: str = ""
    """Non-empty when the wall was skipped (the reason): only with the explicit opt-out."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------- syscalls

_ARCHES: dict[str, dict[str, Any]] = {
    "x86_64": {
        "audit": 0xC000003E,
        "x32_bit": 0x40000000,
        "seccomp": 317,
        "landlock": (444, 445, 446),
        "capset": 126,
        "nr": {
            # process creation and code loading
            "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "clone": 56, "clone3": 435,
            # sockets
            "socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50, "accept": 43,
            "accept4": 288, "sendto": 44, "recvfrom": 45, "sendmsg": 46, "recvmsg": 47,
            "sendmmsg": 307, "recvmmsg": 299, "shutdown": 48, "setsockopt": 54, "getsockopt": 55,
            "getsockname": 51, "getpeername": 52,
            # other processes
            "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
            "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
            "rt_tgsigqueueinfo": 297, "pidfd_open": 434, "pidfd_send_signal": 424,
            "pidfd_getfd": 438, "prlimit64": 302, "setpriority": 141, "sched_setaffinity": 203,
            "sched_setscheduler": 144, "sched_setparam": 142, "ioprio_set": 251,
            "migrate_pages": 256, "move_pages": 279, "process_madvise": 440,
            # files
            "open": 2, "openat": 257, "creat": 85, "openat2": 437, "rename": 82, "renameat": 264,
            "renameat2": 316, "unlink": 87, "unlinkat": 263, "mkdir": 83, "mkdirat": 258,
            "rmdir": 84, "link": 86, "linkat": 265, "symlink": 88, "symlinkat": 266, "chmod": 90,
            "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93,
            "lchown": 94, "fchownat": 260, "truncate": 76, "ftruncate": 77, "fallocate": 285,
            "utime": 132, "utimes": 235, "utimensat": 280, "futimesat": 261, "mknod": 133,
            "mknodat": 259, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
            "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
            "name_to_handle_at": 303, "open_by_handle_at": 304, "ioctl": 16,
            # IPC
            "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65,
            "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70,
            "msgctl": 71, "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242,
            "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
            # the system
            "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "swapon": 167,
            "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172,
            "ioperm": 173, "init_module": 175, "finit_module": 313, "delete_module": 176,
            "kexec_load": 246, "kexec_file_load": 320, "acct": 163, "quotactl": 179,
            "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305,
            "unshare": 272, "setns": 308, "bpf": 321, "perf_event_open": 298,
            "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249,
            "lookup_dcookie": 212, "fanotify_init": 300, "personality": 135, "open_tree": 428,
            "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
            "mount_setattr": 442,
        },
    },
    "aarch64": {
        "audit": 0xC00000B7,
        "x32_bit": None,
        "seccomp": 277,
        "landlock": (444, 445, 446),
        "capset": 91,
        "nr": {
            "execve": 221, "execveat": 281, "clone": 220, "clone3": 435,
            "socket": 198, "socketpair": 199, "bind": 200, "listen": 201, "accept": 202,
            "connect": 203, "getsockname": 204, "getpeername": 205, "sendto": 206,
            "recvfrom": 207, "setsockopt": 208, "getsockopt": 209, "shutdown": 210,
            "sendmsg": 211, "recvmsg": 212, "accept4": 242, "recvmmsg": 243, "sendmmsg": 269,
            "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
            "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
            "rt_tgsigqueueinfo": 240, "pidfd_open": 434, "pidfd_send_signal": 424,
            "pidfd_getfd": 438, "prlimit64": 261, "setpriority": 140, "sched_setaffinity": 122,
            "sched_setscheduler": 119, "sched_setparam": 118, "ioprio_set": 30,
            "migrate_pages": 238, "move_pages": 239, "process_madvise": 440,
            "openat": 56, "openat2": 437, "renameat": 38, "renameat2": 276, "unlinkat": 35,
            "mkdirat": 34, "linkat": 37, "symlinkat": 36, "fchmod": 52, "fchmodat": 53,
            "fchmodat2": 452, "fchown": 55, "fchownat": 54, "truncate": 45, "ftruncate": 46,
            "fallocate": 47, "utimensat": 88, "mknodat": 33, "setxattr": 5, "lsetxattr": 6,
            "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15, "fremovexattr": 16,
            "name_to_handle_at": 264, "open_by_handle_at": 265, "ioctl": 29,
            "shmget": 194, "shmctl": 195, "shmat": 196, "shmdt": 197, "semget": 190,
            "semctl": 191, "semtimedop": 192, "semop": 193, "msgget": 186, "msgctl": 187,
            "msgrcv": 188, "msgsnd": 189, "mq_open": 180, "mq_unlink": 181, "mq_timedsend": 182,
            "mq_timedreceive": 183, "mq_notify": 184, "mq_getsetattr": 185,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
            "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "swapon": 224,
            "swapoff": 225, "reboot": 142, "sethostname": 161, "setdomainname": 162,
            "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104,
            "kexec_file_load": 294, "acct": 89, "quotactl": 60, "settimeofday": 170,
            "clock_settime": 112, "adjtimex": 171, "clock_adjtime": 266, "unshare": 97,
            "setns": 268, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219,
            "add_key": 217, "request_key": 218, "lookup_dcookie": 18, "fanotify_init": 262,
            "personality": 92, "open_tree": 428, "move_mount": 429, "fsopen": 430,
            "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        },
    },
}  # fmt: skip

_DENIED = (
    "execve execveat fork vfork socket socketpair connect bind listen accept accept4 sendto "
    "recvfrom sendmsg recvmsg sendmmsg recvmmsg shutdown setsockopt getsockopt getsockname "
    "getpeername ptrace process_vm_readv process_vm_writev kcmp kill tkill pidfd_open "
    "pidfd_send_signal pidfd_getfd setpriority ioprio_set migrate_pages move_pages "
    "process_madvise creat rename renameat renameat2 unlink unlinkat mkdir mkdirat rmdir link "
    "linkat symlink symlinkat chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat "
    "truncate ftruncate fallocate utime utimes utimensat futimesat mknod mknodat setxattr "
    "lsetxattr fsetxattr removexattr lremovexattr fremovexattr name_to_handle_at "
    "open_by_handle_at shmget shmat shmctl shmdt semget semop semctl semtimedop msgget msgsnd "
    "msgrcv msgctl mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr "
    "io_uring_setup io_uring_enter io_uring_register mount umount2 pivot_root chroot swapon "
    "swapoff reboot sethostname setdomainname iopl ioperm init_module finit_module "
    "delete_module kexec_load kexec_file_load acct quotactl settimeofday clock_settime "
    "adjtimex clock_adjtime unshare setns bpf perf_event_open userfaultfd keyctl add_key "
    "request_key lookup_dcookie fanotify_init personality open_tree move_mount fsopen "
    "fsconfig fsmount fspick mount_setattr"
)
DENIED = _DENIED.split()
"""System calls refused outright (``EPERM``)."""

NOT_IMPLEMENTED = ("clone3", "openat2")
"""Refused with ``ENOSYS`` so that libc falls back to ``clone``/``openat``, which are checked."""

SELF_ONLY = {"tgkill": 0, "rt_sigqueueinfo": 0, "rt_tgsigqueueinfo": 0, "prlimit64": 0,
             "sched_setaffinity": 0, "sched_setscheduler": 0, "sched_setparam": 0}  # fmt: skip
"""Calls allowed only on this process: argument index of the pid (0 also means "self"
except for the signal calls, where it is refused)."""

# open(2) flags that write or create; the same values on x86_64 and aarch64.
O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND, O_TMPFILE_BIT = (
    0o1,
    0o2,
    0o100,
    0o1000,
    0o2000,
    0o20000000,
)
WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_TMPFILE_BIT
CLONE_THREAD = 0x00010000
CLONE_NAMESPACES = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)
TERMINAL_IOCTLS = (0x5412, 0x541C)  # TIOCSTI (inject input), TIOCLINUX

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_LD_W_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_NR, _ARCH = 0, 4


def _errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def _arg(i: int) -> int:
    return 16 + 8 * i  # low 32 bits of args[i] (little endian)


def seccomp_program(
    arch: str, pid: int, *, threads: bool = True
) -> list[tuple[int, int, int, int]]:
    """The BPF filter (a list of ``(code, jt, jf, k)``) for ``arch``, with ``pid`` as "self";
    without ``threads`` even ``clone(CLONE_THREAD)`` is refused."""
    table = _ARCHES[arch]
    nr = table["nr"]
    eperm, enosys = _errno(errno.EPERM), _errno(errno.ENOSYS)
    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, table["audit"]),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if table["x32_bit"]:
        prog += [(_JGE, 0, 1, table["x32_bit"]), (_RET, 0, 0, _RET_KILL_PROCESS)]

    def refuse(name: str, ret: int) -> None:
        if name in nr:
            prog.extend([(_JEQ, 0, 1, nr[name]), (_RET, 0, 0, ret)])

    def block(name: str, body: list[tuple[int, int, int, int]]) -> None:
        """``if nr == name: <body>`` (the body ends in returns; it reloads nothing after)."""
        if name in nr:
            prog.append((_JEQ, 0, len(body), nr[name]))
            prog.extend(body)

    for name in DENIED:
        refuse(name, eperm)
    for name in NOT_IMPLEMENTED:
        refuse(name, enosys)
    for name, flags_arg in (("open", 1), ("openat", 2)):
        block(name, [(_LD_W_ABS, 0, 0, _arg(flags_arg)), (_JSET, 0, 1, WRITE_FLAGS),
                     (_RET, 0, 0, eperm), (_RET, 0, 0, _RET_ALLOW)])  # fmt: skip
    if threads:
        block("clone", [(_LD_W_ABS, 0, 0, _arg(0)), (_JSET, 1, 0, CLONE_THREAD), (_RET, 0, 0, eperm),
                        (_JSET, 0, 1, CLONE_NAMESPACES), (_RET, 0, 0, eperm), (_RET, 0, 0, _RET_ALLOW)])  # fmt: skip
    else:
        refuse("clone", eperm)
    block("ioctl", [(_LD_W_ABS, 0, 0, _arg(1)), (_JEQ, 1, 0, TERMINAL_IOCTLS[0]),
                    (_JEQ, 0, 1, TERMINAL_IOCTLS[1]), (_RET, 0, 0, eperm), (_RET, 0, 0, _RET_ALLOW)])  # fmt: skip
    for name, pid_arg in SELF_ONLY.items():
        zero_is_self = name.startswith(("prlimit", "sched"))
        body = [(_LD_W_ABS, 0, 0, _arg(pid_arg)), (_JEQ, 2 if zero_is_self else 1, 0, pid)]
        body += [(_JEQ, 1, 0, 0)] if zero_is_self else []
        body += [(_RET, 0, 0, eperm), (_RET, 0, 0, _RET_ALLOW)]
        block(name, body)
    prog.append((_RET, 0, 0, _RET_ALLOW))
    return prog


# ----------------------------------------------------------------------------------- landlock

_LL_FS = [1 << i for i in range(16)]
_LL_EXECUTE, _LL_WRITE_FILE, _LL_READ_FILE, _LL_READ_DIR = 1, 2, 4, 8
_LL_FS_BY_ABI = {
    1: (1 << 13) - 1,
    2: (1 << 14) - 1,
    3: (1 << 15) - 1,
    4: (1 << 15) - 1,
    5: (1 << 16) - 1,
}
_LL_NET_ALL = 0b11  # bind_tcp, connect_tcp (ABI 4)
_LL_SCOPE_ALL = 0b11  # abstract unix sockets, signals (ABI 6)

SYSTEM_READ_PATHS = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/local/lib",
    "/usr/share/zoneinfo",
)
SYSTEM_READ_FILES = ("/etc/ld.so.cache", "/dev/null", "/dev/urandom")


def default_read_paths() -> list[str]:
    """Folders a confined worker may read beneath: the Python installation, ``sys.path``
    (not the current folder), the rewardlab package and the system library folders."""
    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    paths |= {p for p in sys.path if p and os.path.isabs(p)}
    paths.add(str(Path(__file__).resolve().parents[1]))  # the rewardlab package
    paths |= set(SYSTEM_READ_PATHS)
    for var in ("VK_ICD_FILENAMES", "VK_DRIVER_FILES"):  # ManiSkill's Vulkan driver, if any
        for icd in filter(None, os.environ.get(var, "").split(os.pathsep)):
            paths.add(str(Path(icd).parent))
    return sorted(p for p in paths if os.path.isdir(p))


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 when it has none)."""
    if platform.system() != "Linux" or platform.machine() not in _ARCHES:
        return 0
    create = _ARCHES[platform.machine()]["landlock"][0]
    version = _libc().syscall(ctypes.c_long(create), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def _landlock(paths: Iterable[str], files: Iterable[str], abi: int) -> None:
    libc = _libc()
    create, add_rule, restrict = _ARCHES[platform.machine()]["landlock"]
    fs = _LL_FS_BY_ABI.get(abi, _LL_FS_BY_ABI[5])
    net = _LL_NET_ALL if abi >= 4 else 0
    scoped = _LL_SCOPE_ALL if abi >= 6 else 0
    attr = struct.pack("<QQQ", fs, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(
        ctypes.c_long(create), buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path, access in [*((p, _LL_READ_FILE | _LL_READ_DIR | _LL_EXECUTE) for p in paths),
                             *((f, _LL_READ_FILE) for f in files)]:  # fmt: skip
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rule = ctypes.create_string_buffer(struct.pack("<Qi", access, fd), 12)
                if (
                    libc.syscall(
                        ctypes.c_long(add_rule),
                        ctypes.c_int(ruleset),
                        ctypes.c_int(1),
                        rule,
                        ctypes.c_uint32(0),
                    )
                    < 0
                ):
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.syscall(ctypes.c_long(restrict), ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


# ----------------------------------------------------------------------------------- the wall

_PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP, _PR_SET_PDEATHSIG = 38, 24, 1
_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 1, 1


def confinement_problem() -> str | None:
    """Why the wall cannot be applied here (``None``: it can)."""
    if platform.system() != "Linux":
        return f"seccomp needs Linux, this is {platform.system()}"
    if platform.machine() not in _ARCHES:
        return f"no system call table for the {platform.machine()} architecture"
    try:
        with open("/proc/self/status") as fh:
            status = fh.read()
    except OSError as exc:
        return f"cannot read /proc/self/status: {exc}"
    if "Seccomp:" not in status:
        return "the kernel has no seccomp"
    return None


def _set_rlimit(kind: int, value: int, grace: int = 0) -> None:
    """Lower soft and hard limit to ``value`` (hard: ``value + grace``); never raise them."""
    _, hard = resource.getrlimit(kind)
    soft, new_hard = value, value + grace
    if hard != resource.RLIM_INFINITY:
        soft, new_hard = min(soft, hard), min(new_hard, hard)
    resource.setrlimit(kind, (soft, new_hard))


def _rlimits(memory_mb: int, cpu_s: float | None) -> dict[str, int]:
    limits: dict[str, int] = {}
    if memory_mb > 0:
        limits["RLIMIT_AS"] = int(memory_mb) << 20
    if cpu_s is not None and cpu_s > 0:
        limits["RLIMIT_CPU"] = max(1, int(-(-cpu_s // 1)))
    limits["RLIMIT_FSIZE"] = 0
    limits["RLIMIT_CORE"] = 0
    open_fds = [int(n) for n in os.listdir("/proc/self/fd") if n.isdigit()]
    limits["RLIMIT_NOFILE"] = max(open_fds, default=2) + 32
    for name, value in limits.items():  # CPU: SIGXCPU at the soft limit, SIGKILL 2 s later
        _set_rlimit(getattr(resource, name), value, grace=2 if name == "RLIMIT_CPU" else 0)
    return limits


def _drop_capabilities(libc: Any) -> bool:
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability the kernel knows
    header = struct.pack("<Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two empty {effective, permitted, inheritable} sets
    capset = _ARCHES[platform.machine()]["capset"]
    return (
        libc.syscall(
            ctypes.c_long(capset),
            ctypes.create_string_buffer(header, 8),
            ctypes.create_string_buffer(data, 24),
        )
        == 0
    )


def _seccomp(libc: Any, threads: bool) -> None:
    prog = seccomp_program(platform.machine(), os.getpid(), threads=threads)
    filters = (ctypes.c_uint64 * len(prog))()
    for i, (code, jt, jf, k) in enumerate(prog):
        filters[i] = struct.unpack("<Q", struct.pack("<HBBI", code, jt, jf, k))[0]
    fprog = struct.pack("<HxxxxxxQ", len(prog), ctypes.addressof(filters))
    buf = ctypes.create_string_buffer(fprog, len(fprog))
    nr = _ARCHES[platform.machine()]["seccomp"]
    if (
        libc.syscall(
            ctypes.c_long(nr),
            ctypes.c_uint(_SECCOMP_SET_MODE_FILTER),
            ctypes.c_uint(_SECCOMP_FILTER_FLAG_TSYNC),
            buf,
        )
        != 0
    ):
        raise OSError(ctypes.get_errno(), "seccomp(SET_MODE_FILTER, TSYNC) failed")


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux; else a no-op)."""
    if platform.system() == "Linux":
        _libc().prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)


def apply_wall(
    *,
    memory_mb: int,
    cpu_s: float | None = None,
    threads: bool = True,
    read_paths: Sequence[str] | None = None,
) -> WallReport:
    """Confine this process for good (see the module docstring); return what was applied.

    Call it after everything that needs files, sockets or processes has been built and before
    any generated code runs.

    Args:
        memory_mb: address-space limit (MiB; 0: none).
        cpu_s: CPU-time limit of the process (``None``: none; workers that live as long as a
            training rely on the parent's per-call watchdog instead).
        threads: whether new threads may be started (the rollout core's JAX and multi-threaded
            MuJoCo need them; the gymnasium environments do not, so their workers refuse
            them: no thread bomb, no work left running after a call returns).
        read_paths: folders that stay readable under Landlock (default
            :func:`default_read_paths`).

    Raises:
        ConfinementUnavailable: the wall cannot be applied here and ``REWARDLAB_ALLOW_UNCONFINED``
            is not set.
    """
    problem = confinement_problem()
    if problem is not None:
        if unconfined_allowed():
            return WallReport(unconfined=problem, rlimits=_rlimits(memory_mb, cpu_s))
        raise ConfinementUnavailable(unavailable_message(problem))
    libc = _libc()
    report = WallReport(threads=_threads(), new_threads=threads)
    paths = list(read_paths) if read_paths is not None else default_read_paths()
    abi = landlock_abi()  # probe before the filter and the rlimits
    report.rlimits = _rlimits(memory_mb, cpu_s)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise ConfinementUnavailable(
            unavailable_message(f"prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}")
        )
    report.no_new_privs = True
    if abi > 0:
        _landlock(paths, SYSTEM_READ_FILES, abi)
        report.landlock_abi = abi
    report.capabilities_dropped = _drop_capabilities(libc)
    try:
        _seccomp(libc, threads)
    except OSError as exc:
        raise ConfinementUnavailable(
            unavailable_message(f"seccomp filter refused: {exc}")
        ) from None
    report.seccomp = True
    return report


_SAFE_ENV_PREFIXES = ("PYTHON", "MUJOCO_", "PYOPENGL", "EGL_", "VK_", "JAX_", "XLA_", "LC_", "OMP_",
                      "OPENBLAS_", "MKL_", "NUMEXPR_", "REWARDLAB_ALLOW_UNCONFINED")  # fmt: skip
_SAFE_ENV_NAMES = ("PATH", "HOME", "LANG", "LD_LIBRARY_PATH", "TMPDIR", "TZ", "MANISKILL_ASSET_DIR",
                   "REWARDLAB_TASK_PATH")  # fmt: skip
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")


def worker_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process that will run generated code: only what Python, numpy and
    the simulators need (``PATH``, ``PYTHONPATH``, ``MUJOCO_GL``, ``VK_*``, thread counts ...),
    never anything whose name looks like a secret (``*KEY*``, ``*TOKEN*`` ...); one BLAS thread."""
    base = dict(os.environ if base is None else base)
    env = {
        k: v for k, v in base.items()
        if (k in _SAFE_ENV_NAMES or k.startswith(_SAFE_ENV_PREFIXES))
        and not any(word in k.upper() for word in _SECRET_WORDS)
    }  # fmt: skip
    env.update(
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env
