"""ELF facts that decide whether a binary can run in a given form.

A dynamically linked binary needs its loader (PT_INTERP), which a scratch
image or a bare initramfs lacks; a binary for another machine fails with
"exec format error". pyelftools reads both without running the file.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from harness.errors import UsageError

# e_machine names as pyelftools spells them, per `platform.machine()`.
HOST_MACHINES = {
    "x86_64": "EM_X86_64",
    "amd64": "EM_X86_64",
    "aarch64": "EM_AARCH64",
    "arm64": "EM_AARCH64",
    "riscv64": "EM_RISCV",
    "i686": "EM_386",
}


@dataclass(frozen=True)
class ElfInfo:
    machine: str
    interpreter: str | None
    elf_type: str  # ET_EXEC (static), ET_DYN (PIE / static-pie)
    needed: tuple[str, ...]

    @property
    def is_static(self) -> bool:
        return self.interpreter is None and not self.needed

    @property
    def linkage(self) -> str:
        if not self.is_static:
            return "dynamic"
        return "static-pie" if self.elf_type == "ET_DYN" else "static"


def inspect(path: Path) -> ElfInfo:
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            interp = None
            needed: list[str] = []
            for seg in elf.iter_segments():
                if seg.header.p_type == "PT_INTERP":
                    interp = seg.get_interp_name()
            dyn = elf.get_section_by_name(".dynamic")
            if dyn is not None:
                needed = [t.needed for t in dyn.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
            return ElfInfo(
                machine=elf["e_machine"],
                interpreter=interp,
                elf_type=elf["e_type"],
                needed=tuple(needed),
            )
    except (ELFError, OSError) as exc:
        raise UsageError(f"{path}: not a readable ELF executable ({exc})") from None


def host_machine() -> str:
    return HOST_MACHINES.get(platform.machine(), platform.machine())


def require_self_contained(path: Path, info: ElfInfo, where: str) -> None:
    """Refuse a binary that cannot start alone in `where` (scratch, initramfs)."""
    if info.interpreter:
        raise UsageError(
            f"{path.name} is dynamically linked (needs its loader {info.interpreter}), which "
            f"{where} does not contain; link it statically (link = \"static-pie\" in workload.toml)"
        )
    if info.needed:
        raise UsageError(
            f"{path.name} needs shared libraries ({', '.join(info.needed)}) that {where} does "
            f"not contain; link it statically (link = \"static-pie\" in workload.toml)"
        )


def require_host_machine(path: Path, info: ElfInfo) -> None:
    """Refuse a binary for another CPU architecture before it fails with 'exec format error'."""
    host = host_machine()
    if info.machine != host:
        raise UsageError(
            f"{path.name} is built for {info.machine} but this host is {host} "
            f"(it would fail with 'exec format error'); build it for {platform.machine()}"
        )
