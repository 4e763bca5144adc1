"""A fresh parent cgroup per container sample, so the peak survives the container's exit.

A run-to-completion container is gone before the engine's stats can be read.
Its cgroup is placed under a parent that the harness owns; the parent's peak
(cgroup v1 memory.max_usage_in_bytes, v2 memory.peak) counts the child's
charges and outlives it. Each sample gets a new parent, whose peak starts at
zero, so no kernel support for resetting a peak is needed (v2 kernels before
6.12 cannot), and the parent is removed once read.

The engine's cgroup driver decides how the parent is named and made:
- cgroupfs: an absolute path (/harness_<run>_<n>), a folder the harness makes
  and removes in every hierarchy the engine used;
- systemd: a slice (harness_<run>_<n>.slice, no dashes: a dash nests slices),
  which systemd makes when the engine asks and `systemctl stop` removes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
DRIVERS = ("cgroupfs", "systemd")


def is_v1(root: Path = ROOT) -> bool:
    return (root / "memory").is_dir()


def prefix(run_id: str) -> str:
    """Name prefix of every parent cgroup of one run (cleanup finds them by it)."""
    return f"harness_{run_id}_"


@dataclass
class PeakCgroup:
    """One sample's parent cgroup: what the engine is told, where its peak is read."""

    name: str
    driver: str = "cgroupfs"
    root: Path = ROOT

    def __post_init__(self) -> None:
        if self.driver not in DRIVERS:
            raise ValueError(f"cgroup driver {self.driver!r} not known; one of {', '.join(DRIVERS)}")

    @property
    def unit(self) -> str:
        return self.name + ".slice" if self.driver == "systemd" else self.name

    @property
    def engine_parent(self) -> str:
        """The engine's cgroup_parent for the container."""
        return self.unit if self.driver == "systemd" else f"/{self.name}"

    @property
    def memory_dir(self) -> Path:
        base = self.root / "memory" if is_v1(self.root) else self.root
        return base / self.unit

    def prepare(self) -> bool:
        """Make the parent (cgroupfs; systemd makes its slice itself); False when this host cannot."""
        if self.driver == "systemd":
            return True
        try:
            self.memory_dir.mkdir()
            return True
        except OSError:
            return False

    def peak(self) -> int | None:
        name = "memory.max_usage_in_bytes" if is_v1(self.root) else "memory.peak"
        try:
            return int((self.memory_dir / name).read_text())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Remove the parent from every hierarchy it is in; never raises."""
        _remove_matching(self.name, self.driver, self.root)


def remove_run(run_id: str, driver: str, root: Path = ROOT) -> None:
    """Remove every parent a run left (an interrupted sample's, say); never raises."""
    _remove_matching(prefix(run_id) + "*", driver, root)


def _remove_matching(pattern: str, driver: str, root: Path) -> None:
    if driver == "systemd":
        if shutil.which("systemctl"):
            try:
                subprocess.run(["systemctl", "stop", f"{pattern}.slice"], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=30, check=False)
            except (OSError, subprocess.TimeoutExpired):
                pass
        return
    hierarchies = [p for p in root.iterdir() if p.is_dir()] if is_v1(root) else [root]
    for hierarchy in hierarchies:
        for path in hierarchy.glob(pattern):
            try:
                if path.is_dir():
                    os.rmdir(path)
            except OSError:
                pass


def run_ids(root: Path = ROOT) -> set[str]:
    """Run ids of the parent cgroups present (cgroupfs layout), for finding a killed run's."""
    base = root / "memory" if is_v1(root) else root
    found = set()
    for path in base.glob("harness_*_*"):
        parts = path.name.removesuffix(".slice").split("_")
        if len(parts) == 3 and path.is_dir():
            found.add(parts[1])
    return found
