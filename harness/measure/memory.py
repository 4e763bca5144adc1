"""Memory figures: a process's PSS/RSS and a container's cgroup working set.

A container's memory is its working set (usage minus inactive file cache, as
`docker stats` shows), not raw usage, which counts page cache. A VM's is the
VMM process's PSS and RSS, reported beside the configured guest size and the
guest's own view, never instead of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

# What each headline memory figure (a sample's memory_source) is, in the words reports use.
MEMORY_SOURCES = {
    "working_set_bytes": "cgroup working set after readiness (usage minus inactive file cache)",
    "peak_bytes": "cgroup peak (includes the container runtime's own init before exec)",
    "vmm_pss_bytes": "QEMU process PSS after readiness",
    "vmm_rss_bytes": "QEMU process RSS after readiness (PSS unreadable)",
}



@dataclass(frozen=True)
class WorkingSet:
    bytes: int | None
    cache_subtracted: bool
    note: str | None = None


def working_set(memory_stats: dict | None) -> WorkingSet:
    """Working set from the engine's memory_stats, whatever its cgroup layout.

    cgroup v2 names the cache `inactive_file`, cgroup v1 `total_inactive_file`;
    with neither, raw usage is returned and the result says so. Never raises.
    """
    if not isinstance(memory_stats, dict):
        return WorkingSet(None, False, "engine returned no memory stats")
    usage = memory_stats.get("usage")
    if not isinstance(usage, int):
        return WorkingSet(None, False, "engine returned no memory usage")
    stats = memory_stats.get("stats")
    if isinstance(stats, dict):
        for key in ("total_inactive_file", "inactive_file"):
            cache = stats.get(key)
            if isinstance(cache, int):
                if cache < usage:
                    return WorkingSet(usage - cache, True)
                return WorkingSet(usage, False, f"{key} >= usage; cache not subtracted")
    return WorkingSet(usage, False, "no inactive file figure; cache could not be subtracted")


@dataclass(frozen=True)
class ProcessMemory:
    rss_bytes: int | None
    pss_bytes: int | None


def process_memory(pid: int) -> ProcessMemory:
    """RSS and PSS of one process (PSS from smaps_rollup); None where unreadable."""
    try:
        proc = psutil.Process(pid)
        full = proc.memory_full_info()
        return ProcessMemory(rss_bytes=full.rss, pss_bytes=getattr(full, "pss", None))
    except (psutil.Error, OSError):
        try:
            return ProcessMemory(rss_bytes=psutil.Process(pid).memory_info().rss, pss_bytes=None)
        except (psutil.Error, OSError):
            return ProcessMemory(None, None)
