"""Install a software Vulkan driver for ManiSkill3 / SAPIEN 3, without root and without touching
the system: ``python tools/setup_vulkan.py`` (from a rewardlab checkout; not part of the
installed library, which only selects the driver at run time: :mod:`rewardlab.vulkan`).

ManiSkill3 needs a Vulkan device even for state-only simulation (SAPIEN builds render materials
for every object). On CPU-only Debian machines the system's Mesa lavapipe is either missing or,
on bookworm (Mesa 22.3), too old ("Failed to find a supported physical device"); Mesa 25's
lavapipe from ``<release>-backports`` works. This script

1. checks whether a working Vulkan device exists already (a SAPIEN render system can be made, in
   a child process); if so it does nothing;
2. otherwise reads the machine's own apt sources (``/etc/apt/sources.list``, ``*.list`` and
   ``*.sources`` in ``sources.list.d``) to find the Debian archive and release it already uses,
   and derives that archive's ``<release>-backports`` suite from it (no archive address is
   written in this project);
3. with a *private* apt state (its own source list, package lists and cache in a temporary
   folder; ``apt-get update``, ``apt-get -s install`` and ``apt-get download`` all work as an
   ordinary user) resolves which packages ``mesa-vulkan-drivers`` from backports needs beyond
   what the system has installed, downloads them, and unpacks them with ``dpkg-deb -x`` into the
   user cache (``~/.cache/rewardlab/vulkan``, or ``$REWARDLAB_VULKAN_DIR``);
4. writes ``lvp_icd.json`` (the lavapipe ICD pointing at the unpacked library) and
   ``manifest.json`` (the ICD, the unpacked libraries the driver needs, the package versions),
   verifies the driver in a child process and prints the environment for other programs.

:func:`rewardlab.vulkan.activate` is what rewardlab's ManiSkill adapter calls before SAPIEN
starts: when the cache holds a driver and ``VK_ICD_FILENAMES`` (or ``VK_DRIVER_FILES``) names no
other one, it loads the driver's unpacked dependencies and points ``VK_ICD_FILENAMES`` at the
cached ICD.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.vulkan import (
    ICD_FILE,
    MANIFEST,
    SETUP_COMMAND,
    cache_dir,
    read_manifest,
)

PACKAGE = "mesa-vulkan-drivers"
"""The Debian package holding Mesa's Vulkan drivers, lavapipe (``libvulkan_lvp.so``) among them."""

_LOADER = re.compile(r"^libvulkan\.so")
"""The Vulkan loader itself: SAPIEN ships its own, so an unpacked one is never preloaded."""


# --------------------------------------------------------------------------- apt sources


@dataclass(frozen=True)
class AptSource:
    """One apt source entry (a one-line ``deb`` line or a deb822 stanza)."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Lower-cased option names (``signed-by``, ``arch`` ...) and their values."""


def parse_one_line(text: str) -> list[AptSource]:
    """Parse the one-line format (``/etc/apt/sources.list``, ``*.list``).

    Example:
        >>> parse_one_line("deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib")[0].suites
        ('bookworm',)
    """
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        if kind not in ("deb", "deb-src"):
            continue
        rest = rest.strip()
        options: dict[str, str] = {}
        if rest.startswith("["):
            inside, _, rest = rest[1:].partition("]")
            for item in inside.split():
                key, _, value = item.partition("=")
                options[key.lower()] = value
        words = rest.split()
        if len(words) < 2:
            continue
        sources.append(AptSource((kind,), (words[0],), (words[1],), tuple(words[2:]), options))
    return sources


def parse_deb822(text: str) -> list[AptSource]:
    """Parse the deb822 format (``*.sources``); stanzas with ``Enabled: no`` are skipped.

    Example:
        >>> s = parse_deb822("Types: deb\\nURIs: http://mirror.example/debian\\nSuites: bookworm bookworm-updates\\nComponents: main\\n")
        >>> s[0].suites, s[0].components
        (('bookworm', 'bookworm-updates'), ('main',))
    """
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:  # continuation line (e.g. an inline key)
                fields[key] += "\n" + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if not fields.get("types") or fields.get("enabled", "yes").lower() == "no":
            continue
        options = {
            k: v for k, v in fields.items() if k not in ("types", "uris", "suites", "components")
        }
        sources.append(AptSource(
            tuple(fields["types"].split()), tuple(fields.get("uris", "").split()),
            tuple(fields.get("suites", "").split()), tuple(fields.get("components", "").split()), options,
        ))  # fmt: skip
    return sources


def read_apt_sources(etc: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled source of the machine (``sources.list`` and ``sources.list.d``)."""
    sources: list[AptSource] = []
    main = etc / "sources.list"
    if main.is_file():
        sources += parse_one_line(main.read_text(errors="replace"))
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                sources += parse_one_line(path.read_text(errors="replace"))
            elif path.suffix == ".sources":
                sources += parse_deb822(path.read_text(errors="replace"))
    return sources


def release_codename(os_release: str | None = None) -> str | None:
    """``VERSION_CODENAME`` of ``/etc/os-release`` (``bookworm``), or ``None``."""
    if os_release is None:
        path = Path("/etc/os-release")
        os_release = path.read_text() if path.is_file() else ""
    found = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?", os_release, re.MULTILINE)
    return found.group(1) if found else None


def backports_source_lines(sources: Iterable[AptSource], codename: str | None) -> list[str]:
    """One-line entries for a private source list: the release's own archive (so that
    dependencies resolve) and its ``-backports`` suite, both derived from the machine's
    sources (the first binary source that carries the release suite itself).

    Raises:
        LookupError: no source carries the release (or no release could be determined).

    Example:
        >>> src = parse_one_line("deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main")
        >>> backports_source_lines(src, "bookworm")[1]
        'deb [signed-by=/k.gpg] http://mirror.example/debian bookworm-backports main'
    """
    binary = [s for s in sources if "deb" in s.types and s.uris]
    if codename is None:  # fall back to the first plain release name among the suites
        codename = next(
            (suite for s in binary for suite in s.suites if re.fullmatch(r"[a-z]+", suite)), None
        )
    if codename is None:
        raise LookupError(
            "could not tell the Debian release (no VERSION_CODENAME in /etc/os-release)"
        )
    release = next((s for s in binary if codename in s.suites), None)
    if release is not None:
        backports = next((s for s in binary if f"{codename}-backports" in s.suites), release)
        return [_one_line(release, codename), _one_line(backports, f"{codename}-backports")]
    raise LookupError(
        f"none of the machine's apt sources carries the release {codename!r} "
        "(looked in /etc/apt/sources.list and /etc/apt/sources.list.d)"
    )


def _one_line(source: AptSource, suite: str) -> str:
    """``source``'s archive and keyring as a one-line entry for ``suite``, component main."""
    # an inline (multi-line) key cannot go on one line: apt then uses its trusted keyrings
    options = " ".join(
        f"{k}={source.options[k]}"
        for k in ("signed-by", "arch")
        if source.options.get(k) and "\n" not in source.options[k]
    )
    return f"deb {f'[{options}] ' if options else ''}{source.uris[0]} {suite} main"


# --------------------------------------------------------------------------- private apt


class SetupError(RuntimeError):
    """The driver could not be installed; the message says why and what to do."""


class PrivateApt:
    """apt-get with its own source list, package lists and cache (works as an ordinary user)."""

    def __init__(self, workdir: Path, source_lines: Sequence[str]) -> None:
        self.workdir = workdir
        (workdir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (workdir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (workdir / "sources.list.d").mkdir(exist_ok=True)
        self.source_list = workdir / "sources.list"
        self.source_list.write_text("\n".join(source_lines) + "\n")
        self.options = [
            "-o", f"Dir::Etc::SourceList={self.source_list}",
            "-o", f"Dir::Etc::SourceParts={workdir / 'sources.list.d'}",
            "-o", f"Dir::State::Lists={workdir / 'lists'}",
            "-o", f"Dir::Cache={workdir / 'cache'}",
            "-o", "Debug::NoLocking=1",
        ]  # fmt: skip
        if os.geteuid() == 0:  # root's apt downloads as _apt, who cannot write our private folders
            self.options += ["-o", "APT::Sandbox::User=root"]

    def run(self, *args: str, cwd: Path | None = None) -> str:
        command = ["apt-get", *self.options, *args]
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SetupError(
                f"`apt-get {' '.join(args)}` failed:\n{done.stderr.strip() or done.stdout.strip()}"
            )
        return done.stdout

    def update(self) -> None:
        self.run("-q", "update")

    def missing_packages(self, spec: str) -> list[tuple[str, str]]:
        """``(package, version)`` of everything installing ``spec`` would add or upgrade
        on this system (``apt-get -s install``: a simulation, no root needed)."""
        out = self.run("-s", "-q", "install", "--no-install-recommends", spec)
        return parse_simulated_installs(out)

    def download(self, packages: Iterable[tuple[str, str]], into: Path) -> list[Path]:
        into.mkdir(parents=True, exist_ok=True)
        self.run("-q", "download", *(f"{name}={version}" for name, version in packages), cwd=into)
        return sorted(into.glob("*.deb"))


def parse_simulated_installs(output: str) -> list[tuple[str, str]]:
    """``(package, version)`` of the ``Inst`` lines of ``apt-get -s install``.

    Example:
        >>> parse_simulated_installs("Inst libdrm2 [2.4.114-1] (2.4.123-1~bpo12+1 Debian Backports [amd64])\\n"
        ...                          "Inst mesa-vulkan-drivers (25.0.7-2~bpo12+1 Debian Backports [amd64])")
        [('libdrm2', '2.4.123-1~bpo12+1'), ('mesa-vulkan-drivers', '25.0.7-2~bpo12+1')]
    """
    found = re.findall(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+)", output, re.MULTILINE)
    return [(name.split(":")[0], version) for name, version in found]


# --------------------------------------------------------------------------- unpacking


def unpack(debs: Iterable[Path], root: Path) -> None:
    """``dpkg-deb -x`` every package into ``root``."""
    for deb in debs:
        done = subprocess.run(
            ["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SetupError(f"dpkg-deb -x {deb.name} failed: {done.stderr.strip()}")


def library_dirs(root: Path) -> list[Path]:
    """The unpacked folders holding shared libraries (``usr/lib/<multiarch>`` ...)."""
    dirs = {p.parent for p in root.rglob("*.so*") if p.is_file() and "/dri" not in str(p.parent)}
    return sorted(dirs)


def write_icd(root: Path, into: Path) -> tuple[Path, Path]:
    """Rewrite the unpacked lavapipe ICD so that it names the unpacked library by absolute
    path; return ``(icd file, driver library)``."""
    icds = sorted(root.glob("usr/share/vulkan/icd.d/lvp_icd*.json"))
    if not icds:
        raise SetupError(
            f"{PACKAGE} unpacked without a lavapipe ICD (usr/share/vulkan/icd.d/lvp_icd*.json)"
        )
    data = json.loads(icds[0].read_text())
    name = Path(data["ICD"]["library_path"]).name
    library = next((p for p in root.rglob(name) if p.is_file()), None)
    if library is None:
        raise SetupError(f"the lavapipe ICD names {name}, which the package did not contain")
    data["ICD"]["library_path"] = str(library)
    icd = into / ICD_FILE
    icd.write_text(json.dumps(data, indent=2) + "\n")
    return icd, library


def preload_list(library: Path, root: Path) -> list[Path]:
    """The unpacked libraries ``library`` loads (``ldd`` with the unpacked folders first in the
    search path), dependencies of each listed before it; the Vulkan loader excluded.

    Raises:
        SetupError: a library the driver needs is found neither unpacked nor on the system.
    """
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(str(d) for d in library_dirs(root))}
    done = subprocess.run(["ldd", str(library)], capture_output=True, text=True, env=env)
    missing = re.findall(r"^\s*(\S+) => not found", done.stdout, re.MULTILINE)
    if done.returncode != 0 or missing:
        raise SetupError(
            f"{library.name} needs libraries that are not available: {', '.join(missing) or done.stderr.strip()}"
        )
    resolved = [Path(p) for p in re.findall(r"=> (/\S+) \(", done.stdout)]
    ours = [p for p in resolved if p.is_relative_to(root) and not _LOADER.match(p.name)]
    return list(reversed(ours))  # ldd lists breadth-first from the driver: load the deepest first


# --------------------------------------------------------------------------- activation


def shell_exports(manifest: dict[str, Any]) -> list[str]:
    """The lines other programs need to use the cached driver."""
    libs = ":".join(str(d) for d in manifest.get("library_dirs") or [])
    lines = [f"export VK_ICD_FILENAMES={manifest['icd']}"]
    if libs:
        lines.append(f"export LD_LIBRARY_PATH={libs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}")
    return lines


# --------------------------------------------------------------------------- probing

_PROBE = """
import sys, warnings
warnings.simplefilter("ignore")
if sys.argv[1] == "cache":
    from rewardlab.vulkan import activate
    activate()
try:
    import sapien
except ImportError:
    print("NO-SAPIEN"); sys.exit(3)
try:
    sapien.render.RenderSystem()
except RuntimeError as exc:
    print(f"FAIL {exc}"); sys.exit(1)
print("OK " + sapien.render.get_device_summary().splitlines()[0])
"""


@dataclass
class ProbeResult:
    ok: bool
    detail: str
    """The device (``GPU: llvmpipe ...``) when ``ok``, else the error."""
    sapien_missing: bool = False


def probe(use_cache: bool, timeout_s: float = 120.0) -> ProbeResult:
    """Can SAPIEN make a Vulkan render system (in a child process)? ``use_cache``: with the
    cached driver activated (else with the environment as it is)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, "cache" if use_cache else "system"],
            capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return ProbeResult(False, f"creating a Vulkan device took longer than {timeout_s:g} s")
    out = done.stdout.strip().splitlines()
    last = (
        out[-1]
        if out
        else (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    )
    if last == "NO-SAPIEN":
        return ProbeResult(
            False, "sapien is not installed (pip install 'rewardlab[maniskill]')", True
        )
    if done.returncode == 0 and last.startswith("OK "):
        return ProbeResult(True, last[3:])
    return ProbeResult(False, last.removeprefix("FAIL "))


# --------------------------------------------------------------------------- install


def install(directory: Path, *, say: Callable[[str], object] = print) -> dict[str, Any]:
    """Download and unpack lavapipe from the release's backports into ``directory``; return
    the manifest (see the module docs)."""
    for tool in ("apt-get", "dpkg-deb", "ldd"):
        if shutil.which(tool) is None:
            raise SetupError(f"`{tool}` is not available: this installer needs Debian's apt tools")
    codename = release_codename()
    lines = backports_source_lines(read_apt_sources(), codename)
    suite = f"{lines[1].split()[-2]}"
    say(f"using the machine's archive for {suite} (derived from its apt sources)")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rewardlab-apt-") as tmp:
        apt = PrivateApt(Path(tmp), lines)
        apt.update()
        packages = apt.missing_packages(f"{PACKAGE}/{suite}")
        if not any(name == PACKAGE for name, _ in packages):
            raise SetupError(f"apt would not install {PACKAGE} from {suite}")
        say("downloading " + ", ".join(f"{n} {v}" for n, v in packages))
        debs = apt.download(packages, Path(tmp) / "debs")
        root = directory / "root"
        if root.exists():
            shutil.rmtree(root)
        unpack(debs, root)
    icd, library = write_icd(root, directory)
    manifest: dict[str, Any] = {
        "icd": str(icd),
        "driver": str(library),
        "preload": [str(p) for p in preload_list(library, root)],
        "library_dirs": [str(d) for d in library_dirs(root)],
        "suite": suite,
        "packages": dict(packages),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=SETUP_COMMAND, description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--check", action="store_true", help="only report whether a Vulkan device works"
    )
    parser.add_argument(
        "--force", action="store_true", help="install even if a Vulkan device works already"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help=f"cache folder (default {cache_dir()})"
    )
    args = parser.parse_args(argv)
    directory = args.dir or cache_dir()
    if args.dir is not None:
        os.environ["REWARDLAB_VULKAN_DIR"] = str(directory)

    system = probe(use_cache=False)
    cached = probe(use_cache=True) if read_manifest(directory) and not system.ok else None
    if args.check:
        working = system if system.ok else cached
        if working is not None and working.ok:
            print(
                f"Vulkan works: {working.detail}"
                + (" (cached driver)" if working is cached else "")
            )
            return 0
        print(f"no working Vulkan device: {system.detail}\ninstall one with: {SETUP_COMMAND}")
        return 1
    if system.ok and not args.force:
        print(f"a Vulkan device works already ({system.detail}); nothing to install")
        return 0
    if cached is not None and cached.ok and not args.force:
        print(f"the cached driver works ({cached.detail}): {directory}")
        print("\n".join(shell_exports(read_manifest(directory) or {})))
        return 0
    try:
        manifest = install(directory)
    except (SetupError, LookupError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = probe(use_cache=True)
    if result.sapien_missing:
        print(f"driver unpacked into {directory}; not verified: {result.detail}")
    elif not result.ok:
        print(f"error: the unpacked driver does not work: {result.detail}", file=sys.stderr)
        return 1
    else:
        print(f"Vulkan works with the cached driver: {result.detail}")
    print(
        "rewardlab selects it automatically; for other programs:\n"
        + "\n".join(shell_exports(manifest))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
