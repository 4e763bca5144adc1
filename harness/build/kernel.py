"""The Linux kernel the lupine form boots: specialised, or Debian's cloud kernel.

The specialised kernel is Debian's linux-source-6.1 configured with
`make tinyconfig` plus the fragment(s) in builds/lupine/, merged with
merge_config.sh and settled with `make olddefconfig`. olddefconfig drops an
option whose dependencies are unmet without a word, so every option of the
fragment is checked in the final .config and a miss fails the build.

Both kinds are cached (harness.build.cache) by what went into them, so a
kernel is built or downloaded once per machine and configuration: the key is
the source package's version, the fragment's text, the compiler and a recipe
tag; a change to any of them gives a new entry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.build import steps
from harness.build.cache import Cache, digest
from harness.errors import BuildFailed, Unavailable, UsageError

SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
CLOUD_META_PACKAGE = "linux-image-cloud-amd64"
KINDS = ("specialised", "cloud")
# Bump when the build steps change in a way the key would not see.
RECIPE = "tinyconfig+fragment/olddefconfig/bzImage v1"
PROGRESS_EVERY_S = 15.0
BUILD_TOOLS = {"make": "make", "gcc": "build-essential", "flex": "flex", "bison": "bison",
               "bc": "bc", "tar": "tar", "xz": "xz-utils"}

_OPTION_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def default_fragments_dir() -> Path:
    """builds/lupine/ of this checkout."""
    return Path(__file__).resolve().parent.parent.parent / "builds" / "lupine"


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel image and what it is, for the cell's details."""

    kind: str  # "specialised" or "cloud"
    image: Path
    version: str
    config_hash: str  # the cache key: what the kernel was made from
    config: Path | None
    cached: bool
    source: str  # source package or binary package, with its version
    build_s: float | None = None

    @property
    def size_bytes(self) -> int:
        return self.image.stat().st_size

    def details(self) -> dict[str, object]:
        return {
            "kernel_kind": self.kind,
            "kernel_version": self.version,
            "kernel_config_hash": self.config_hash,
            "kernel_source": self.source,
            "kernel_cached": self.cached,
            "kernel_build_s": self.build_s,
        }


# --- configuration -----------------------------------------------------------


def parse_config(text: str) -> dict[str, str]:
    """Options of a .config or fragment: name -> value, 'n' for '# ... is not set'."""
    options: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        m = _OPTION_RE.match(line)
        if m:
            options[m.group(1)] = m.group(2)
            continue
        m = _UNSET_RE.match(line)
        if m:
            options[m.group(1)] = "n"
    return options


def missing_options(fragment: dict[str, str], final: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Fragment options the final .config does not hold as asked: name -> (wanted, got)."""
    missing: dict[str, tuple[str, str]] = {}
    for name, wanted in fragment.items():
        got = final.get(name, "n")
        if got != wanted:
            missing[name] = (wanted, got)
    return missing


def fragment_paths(fragments_dir: Path | None = None) -> list[Path]:
    directory = fragments_dir or default_fragments_dir()
    paths = sorted(directory.glob("*.config"))
    if not paths:
        raise UsageError(f"no kernel config fragment (*.config) in {directory}")
    return paths


def fragment_options(paths: list[Path]) -> dict[str, str]:
    """Merged options of the fragments, later files winning, as merge_config.sh does."""
    merged: dict[str, str] = {}
    for path in paths:
        merged.update(parse_config(path.read_text()))
    return merged


# --- host facts ---------------------------------------------------------------


def _dpkg_version(package: str) -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def source_version() -> str:
    """Version of the installed linux-source package; Unavailable without it."""
    if shutil.which("dpkg-query") is None:
        raise Unavailable("dpkg-query not found: the specialised kernel is built from Debian's "
                          f"{SOURCE_PACKAGE} package")
    version = _dpkg_version(SOURCE_PACKAGE)
    if version is None or not SOURCE_TARBALL.is_file():
        raise Unavailable(f"{SOURCE_TARBALL} missing: install it (apt-get install {SOURCE_PACKAGE}, "
                          "or run scripts/setup.sh)")
    return version


def check_build_tools() -> None:
    """Unavailable naming the package of the first missing build tool."""
    for tool, package in BUILD_TOOLS.items():
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} not found: install it (apt-get install {package}, "
                              "or run scripts/setup.sh)")


def _compiler_version() -> str:
    proc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False)
    return (proc.stdout.splitlines() or ["unknown"])[0]


def specialised_key(fragments: list[Path], version: str | None = None) -> str:
    """Cache key of the specialised kernel: source version, fragments, compiler, recipe."""
    version = version or source_version()
    return digest(SOURCE_PACKAGE, version, RECIPE, _compiler_version(), *fragments)[:24]


# --- building -----------------------------------------------------------------


def _run(cmd: list[str], cwd: Path, log: Path, what: str) -> str:
    """A short build step, appended to the log; BuildFailed with its tail."""
    return steps.run(cmd, what, cwd=cwd, log=log)


def _extract_source(dest: Path) -> Path:
    """Unpack the source tarball into dest; return the tree's top folder."""
    steps.run(["tar", "-xf", str(SOURCE_TARBALL), "-C", str(dest)], f"unpacking {SOURCE_TARBALL}")
    tops = [p for p in dest.iterdir() if p.is_dir()]
    top = tops[0] if len(tops) == 1 else dest
    if not (top / "Makefile").is_file():
        raise BuildFailed(f"{SOURCE_TARBALL} did not unpack into a kernel tree ({top})")
    return top


def configure(tree: Path, fragments: list[Path], log: Path) -> dict[str, str]:
    """tinyconfig + fragments + olddefconfig in tree; BuildFailed if an option was dropped."""
    make = ["make", "ARCH=x86_64"]
    _run([*make, "tinyconfig"], tree, log, "make tinyconfig")
    env_merge = ["env", "ARCH=x86_64", "scripts/kconfig/merge_config.sh", "-m", ".config",
                 *map(str, fragments)]
    _run(env_merge, tree, log, "merge_config.sh")
    _run([*make, "olddefconfig"], tree, log, "make olddefconfig")
    final = parse_config((tree / ".config").read_text())
    missing = missing_options(fragment_options(fragments), final)
    if missing:
        listed = ", ".join(f"{k}={w} (got {g})" for k, (w, g) in sorted(missing.items()))
        raise BuildFailed(f"olddefconfig dropped fragment options (unmet dependencies?): {listed}")
    return final


def build_specialised(cache: Cache, progress: Callable[[str], None],
                      fragments_dir: Path | None = None) -> Kernel:
    """The specialised kernel from the cache, or built into it (minutes) on a miss."""
    version = source_version()
    check_build_tools()
    fragments = fragment_paths(fragments_dir)
    key = specialised_key(fragments, version)
    source = f"{SOURCE_PACKAGE} {version}"
    with cache.entry("kernel", key) as entry:
        if entry.hit:
            meta = json.loads((entry.path / "kernel.json").read_text())
            progress(f"kernel: specialised {meta['version']} from the cache ({key}); no build")
            return Kernel("specialised", entry.path / "bzImage", meta["version"], key,
                          entry.path / "config", True, source, meta.get("build_s"))
        assert entry.work is not None
        work = entry.work
        log = work / "build.log"
        t0 = time.monotonic()
        progress(f"kernel: building specialised kernel from {source} (key {key}); takes minutes")
        # The source tree is unpacked inside the entry's work folder, so a build
        # that is stopped (or killed) leaves nothing outside it.
        src = work / "src"
        src.mkdir()
        progress(f"kernel: unpacking {SOURCE_TARBALL.name}")
        tree = _extract_source(src)
        progress("kernel: make tinyconfig + " + ", ".join(p.name for p in fragments))
        configure(tree, fragments, log)
        jobs = str(os.cpu_count() or 1)
        progress(f"kernel: make -j{jobs} bzImage")
        steps.run(["make", "ARCH=x86_64", f"-j{jobs}", "bzImage"], "kernel build", cwd=tree, log=log,
                  on_line=steps.Throttled(lambda line: progress(f"kernel: make: {line}"), PROGRESS_EVERY_S))
        release = (tree / "include" / "config" / "kernel.release").read_text().strip()
        shutil.copy2(tree / "arch" / "x86" / "boot" / "bzImage", work / "bzImage")
        shutil.copy2(tree / ".config", work / "config")
        shutil.rmtree(src)
        build_s = round(time.monotonic() - t0, 1)
        (work / "kernel.json").write_text(json.dumps(
            {"kind": "specialised", "version": release, "source": source, "key": key,
             "build_s": build_s}, indent=2))
        size = (work / "bzImage").stat().st_size
        progress(f"kernel: built {release} in {build_s:.0f} s ({size} bytes bzImage)")
    return Kernel("specialised", entry.path / "bzImage", release, key, entry.path / "config",
                  False, source, build_s)


# --- Debian's cloud kernel ------------------------------------------------------


def cloud_package() -> tuple[str, str]:
    """The concrete linux-image-6.1*-cloud-amd64 package the meta package points at, and its version."""
    if shutil.which("apt-cache") is None or shutil.which("apt-get") is None:
        raise Unavailable("apt-get not found: the cloud kernel comes from Debian's archive")
    proc = subprocess.run(["apt-cache", "depends", CLOUD_META_PACKAGE],
                          capture_output=True, text=True, check=False)
    names = re.findall(r"Depends:\s+(linux-image-6\.1[^\s]*-cloud-amd64)", proc.stdout)
    if not names:
        raise Unavailable(f"apt-cache knows no {CLOUD_META_PACKAGE} (run apt-get update)")
    name = names[0]
    policy = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True,
                            check=False)
    m = re.search(r"Candidate:\s+(\S+)", policy.stdout)
    if not m or m.group(1) == "(none)":
        raise Unavailable(f"no installable version of {name} (run apt-get update)")
    return name, m.group(1)


def _download(name: str, version: str, work: Path, log: Path) -> None:
    """apt-get download, with a first line that names the usual cause of its failure.

    Lists read days ago can name a version the archive has since replaced (a
    404). The harness does not refresh them itself: it writes nothing outside
    its results and cache folders.
    """
    try:
        _run(["apt-get", "download", f"{name}={version}"], work, log, "apt-get download")
    except BuildFailed as exc:
        if re.search(r"\b404\s+Not Found", str(exc)):
            cause = ("404, the archive no longer has this version: this machine's package lists "
                     "are stale; run apt-get update (scripts/setup.sh does)")
        else:
            cause = "is Debian's archive reachable? (the error follows)"
        raise BuildFailed(f"apt-get download {name}={version} failed: {cause}\n{exc}") from None


def fetch_cloud(cache: Cache, progress: Callable[[str], None]) -> Kernel:
    """Debian's generic cloud kernel: apt-get download + dpkg -x into the cache, once."""
    if shutil.which("dpkg") is None:
        raise Unavailable("dpkg not found: the cloud kernel is unpacked with dpkg -x")
    name, version = cloud_package()
    key = digest(name, version, "cloud v1")[:24]
    source = f"{name} {version}"
    with cache.entry("kernel-cloud", key) as entry:
        if entry.hit:
            meta = json.loads((entry.path / "kernel.json").read_text())
            progress(f"kernel: cloud {meta['version']} from the cache; no download")
            return Kernel("cloud", entry.path / "vmlinuz", meta["version"], key,
                          entry.path / "config", True, source)
        assert entry.work is not None
        work = entry.work
        log = work / "fetch.log"
        progress(f"kernel: downloading {source}")
        _download(name, version, work, log)
        debs = sorted(work.glob("*.deb"))
        if not debs:
            raise BuildFailed(f"apt-get download {name} left no .deb")
        unpacked = work / "unpacked"
        _run(["dpkg", "-x", str(debs[0]), str(unpacked)], work, log, "dpkg -x")
        images = sorted((unpacked / "boot").glob("vmlinuz-*"))
        if not images:
            raise BuildFailed(f"{debs[0].name} holds no boot/vmlinuz-*")
        release = images[0].name.removeprefix("vmlinuz-")
        shutil.copy2(images[0], work / "vmlinuz")
        config = unpacked / "boot" / f"config-{release}"
        if config.is_file():
            shutil.copy2(config, work / "config")
        # Modules are of no use to a one-file initramfs; keep the entry small.
        shutil.rmtree(unpacked)
        debs[0].unlink()
        (work / "kernel.json").write_text(json.dumps(
            {"kind": "cloud", "version": release, "source": source, "key": key}, indent=2))
    return Kernel("cloud", entry.path / "vmlinuz", release, key,
                  entry.path / "config" if (entry.path / "config").is_file() else None,
                  False, source)


def ensure(kind: str, cache: Cache, progress: Callable[[str], None]) -> Kernel:
    """The kernel of the given kind, built or fetched only when not cached."""
    if kind == "specialised":
        return build_specialised(cache, progress)
    if kind == "cloud":
        return fetch_cloud(cache, progress)
    raise UsageError(f"lupine_kernel must be one of {', '.join(KINDS)}, not {kind!r}")
