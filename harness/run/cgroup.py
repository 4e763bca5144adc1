"""A parent cgroup per run, so a container's peak memory survives its exit.

A run-to-completion container is gone before the engine's stats can be read.
Its cgroup is placed under a parent that the harness owns; the parent's peak
(cgroup v1 memory.max_usage_in_bytes, v2 memory.peak) counts the child's
charges and outlives it. The parent is reset before each sample and removed
at the end of the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


@dataclass
class PeakCgroup:
    name: str  # what the engine gets as cgroup_parent

    @property
    def v1_memory(self) -> Path:
        return ROOT / "memory" / self.name

    @property
    def v2(self) -> Path:
        return ROOT / self.name

    @staticmethod
    def is_v1() -> bool:
        return (ROOT / "memory").is_dir()

    def reset(self) -> bool:
        """Make the peak start from now; False when this host cannot."""
        try:
            if self.is_v1():
                self.v1_memory.mkdir(exist_ok=True)
                (self.v1_memory / "memory.max_usage_in_bytes").write_text("0")
                return True
            self.v2.mkdir(exist_ok=True)
            # Writing to memory.peak resets it on kernels >= 6.12.
            (self.v2 / "memory.peak").write_text("0")
            return True
        except OSError:
            return False

    def peak(self) -> int | None:
        try:
            if self.is_v1():
                return int((self.v1_memory / "memory.max_usage_in_bytes").read_text())
            return int((self.v2 / "memory.peak").read_text())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Remove the parent in every hierarchy the engine created it in."""
        candidates = [self.v2] if not self.is_v1() else [p / self.name for p in ROOT.iterdir() if p.is_dir()]
        for path in candidates:
            try:
                if path.is_dir():
                    os.rmdir(path)
            except OSError:
                pass
