"""Compile a workload once into the one binary every form packages.

The binary is cached by the hash of its sources, the shared headers, the
compiler's version and the flags, so every form of a run (and every later run)
gets the very same file with the same sha256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.build import elf
from harness.build.cache import Cache, digest
from harness.errors import BuildFailed, Unavailable, tail
from harness.workloads import Workload

LINK_FLAGS = {
    # static-pie: Unikraft's ELF loader needs a position-independent executable.
    "static-pie": ["-static-pie", "-fPIE"],
    "static": ["-static", "-no-pie"],
    "dynamic": [],
}
BASE_CFLAGS = ["-O2", "-s", "-Wall"]
MUSL_LIB = Path("/usr/lib/x86_64-linux-musl")


@dataclass(frozen=True)
class Binary:
    workload: str
    path: Path
    sha256: str
    size_bytes: int
    compiler: str
    flags: tuple[str, ...]
    info: elf.ElfInfo


def compiler_for(link: str) -> str:
    """musl-gcc for static builds (small, no glibc NSS surprises); gcc for dynamic."""
    cc = "gcc" if link == "dynamic" else "musl-gcc"
    if shutil.which(cc) is None:
        pkg = "gcc" if cc == "gcc" else "musl-tools"
        raise Unavailable(f"{cc} not found: install it (apt-get install {pkg})")
    return cc


def compiler_version(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout.splitlines() or ["unknown"])[0]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(workload: Workload, cache: Cache, progress: Callable[[str], None] | None = None) -> Binary:
    """Compile (or fetch from the cache) the workload's binary, saying which on progress."""
    cc = compiler_for(workload.link)
    flags = tuple(BASE_CFLAGS + LINK_FLAGS[workload.link] + list(workload.cflags))
    common = sorted((workload.directory.parent / "common").glob("*.h"))
    # The name too: the entry holds the binary under the workload's name, and a copied
    # workload (same sources, new name) must not find another workload's entry.
    key = digest(workload.name, compiler_version(cc), " ".join(flags), *workload.source_paths(), *common)[:24]
    with cache.entry("bin", key) as entry:
        if progress is not None:
            progress(f"{workload.name}: binary cached ({entry.path.name})" if entry.hit else
                     f"{workload.name}: compiling the workload binary ({os.path.basename(cc)}, {workload.link})")
        if not entry.hit:
            assert entry.work is not None
            out = entry.work / workload.name
            if workload.link == "static-pie":
                commands = static_pie_commands(workload, flags, out, entry.work)
            else:
                commands = [[cc, *flags, "-o", str(out), *map(str, workload.source_paths())]]
            for cmd in commands:
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise BuildFailed(f"compiling {workload.name} failed: {first_error(proc.stderr)}\n"
                                      f"$ {' '.join(cmd)}\n{tail(proc.stderr)}")
        path = entry.path / workload.name
    return Binary(
        workload=workload.name,
        path=path,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        compiler=cc,
        flags=flags,
        info=elf.inspect(path),
    )


def first_error(stderr: str) -> str:
    """The compiler's first error line (what a table shows), else its last line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no compiler output"])[0]


def _gcc_file(name: str) -> str:
    return subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                          check=True).stdout.strip()


def static_pie_commands(workload: Workload, flags: tuple[str, ...], out: Path, work: Path) -> list[list[str]]:
    """Compile with musl-gcc, then link a static PIE by hand.

    Debian's musl-gcc specs always pass a dynamic linker and start from
    Scrt1.o, so `musl-gcc -static-pie` yields a dynamic binary. A static PIE
    needs musl's self-relocating rcrt1.o and no interpreter.
    """
    if not (MUSL_LIB / "rcrt1.o").is_file():
        raise Unavailable(f"musl's rcrt1.o not found in {MUSL_LIB}: apt-get install musl-dev musl-tools")
    compile_flags = [f for f in flags if f not in ("-static-pie", "-s")]
    objects = [work / (Path(src).stem + ".o") for src in workload.sources]
    commands = [
        ["musl-gcc", *compile_flags, "-c", "-o", str(obj), str(src)]
        for obj, src in zip(objects, workload.source_paths())
    ]
    libgcc = subprocess.run(["gcc", "-print-libgcc-file-name"], capture_output=True, text=True,
                            check=True).stdout.strip()
    commands.append([
        "gcc", "-static-pie", "-nostdlib", "-nostartfiles", "-s", "-o", str(out),
        str(MUSL_LIB / "rcrt1.o"), str(MUSL_LIB / "crti.o"), _gcc_file("crtbeginS.o"),
        *map(str, objects), f"-L{MUSL_LIB}", "-lc", libgcc, _gcc_file("crtendS.o"),
        str(MUSL_LIB / "crtn.o"),
    ])
    return commands
