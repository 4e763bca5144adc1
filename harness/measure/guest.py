"""The guest's own view of its memory, as its PID 1 or a service reports it.

Guests print one console line after readiness (builds/common/pid1.h for the
Linux unikernel, builds/vm/harness-meminfo in the full VM):
``harness-meminfo total=<bytes> available=<bytes>``. Used memory is
MemTotal - MemAvailable; it stands beside the VMM's PSS/RSS, never instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MEMINFO_RE = re.compile(r"harness-meminfo total=(\d+) available=(\d+)")


@dataclass(frozen=True)
class GuestMemory:
    total_bytes: int
    available_bytes: int

    @property
    def used_bytes(self) -> int:
        return self.total_bytes - self.available_bytes


def has_meminfo(line: str) -> bool:
    return MEMINFO_RE.search(line) is not None


def guest_memory(lines: Iterable[str]) -> GuestMemory | None:
    """The first meminfo report among console lines, or None when the guest printed none."""
    for line in lines:
        m = MEMINFO_RE.search(line)
        if m:
            return GuestMemory(int(m.group(1)), int(m.group(2)))
    return None
