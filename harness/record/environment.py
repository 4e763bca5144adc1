"""The environment a run was measured in, stored once per results file.

Figures from different hosts, engines or accelerators are not comparable;
the metadata says which is which (pyperf keeps the same kind of registry).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import psutil

from harness.run import cgroup, engine

REPO = Path(__file__).resolve().parent.parent.parent


def _first_line(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_state() -> dict[str, Any]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return {"commit": None, "dirty": None}
    def run(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=False).stdout.strip()
    commit = run("rev-parse", "HEAD") or None
    dirty = bool(run("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"commit": commit, "dirty": dirty}


def tool_versions(include_engine: bool = True) -> dict[str, str | None]:
    return {
        "docker_engine": engine.version() if include_engine and engine.reachable() else None,
        "qemu": _first_line(["qemu-system-x86_64", "--version"]),
        "kraft": _first_line(["kraft", "version"]),
        "musl_gcc": _first_line(["musl-gcc", "--version"]),
        "mmdebstrap": _first_line(["mmdebstrap", "--version"]),
        "python": platform.python_version(),
    }


def collect(include_engine: bool = True) -> dict[str, Any]:
    """Host, kernel, CPU, memory, tool versions and the source revision."""
    return {
        "host": socket.gethostname(),
        "os": _os_release(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "kvm_device": os.path.exists("/dev/kvm"),
        # Container memory is read from cgroups: their version and the engine's driver shape it.
        "cgroup_version": 1 if cgroup.is_v1() else 2,
        "docker_cgroup_driver": engine.cgroup_driver() if include_engine and engine.reachable() else None,
        "tools": tool_versions(include_engine),
        "git": git_state(),
    }


def _os_release() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return None
