"""The one small interface every deployment form implements.

A form turns the workload binary into a deployable artifact (an image, a disk,
a kernel) and boots it, one repetition at a time. The runner owns ordering,
repetitions, statistics and recording; a form only builds, boots, measures one
sample and cleans up after itself. Like asv's environments, a form whose tool
is missing raises Unavailable with the reason and the run goes on.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import psutil

from harness.build.binary import Binary
from harness.build.cache import Cache
from harness.workloads import Workload


@dataclass
class Sample:
    """One boot of one artifact.

    boot_s is the headline boot time (the form documents its start and end
    instants); phases holds named sub-intervals in seconds; memory holds named
    byte counts, memory_bytes being the headline one.
    """

    boot_s: float
    memory_bytes: int | None
    phases: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    memory_source: str | None = None  # the key of memory that memory_bytes is

    def to_json(self) -> dict[str, Any]:
        return {
            "boot_s": self.boot_s,
            "memory_bytes": self.memory_bytes,
            "memory_source": self.memory_source,
            "phases": self.phases,
            "memory": self.memory,
            "details": self.details,
        }


def headline(memory: dict[str, int | None], prefer: tuple[str, ...]) -> tuple[int | None, str | None]:
    """(memory_bytes, memory_source): the first figure of prefer that was measured.

    Forms prefer the figure that answers "what does this form cost", and fall
    back to the next one rather than report nothing; the source says which.
    """
    for key in prefer:
        if memory.get(key) is not None:
            return memory[key], key
    return None, None


@dataclass
class Artifact:
    """What a form built: its sizes and how it was made.

    size must hold artifact_bytes (what one ships to deploy this form).
    details is recorded in the cell as is: base image, stand-in, accelerator,
    VMM and flags, kernel, cache hit. handle is private to the form.
    """

    size: dict[str, int]
    details: dict[str, Any] = field(default_factory=dict)
    handle: Any = None
    cached: bool = False


class Progress:
    """Progress lines on stderr: long builds and boots must show they are alive."""

    def __init__(self, stream=None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.t0
        print(f"[{elapsed:7.1f}s] {message}", file=self.stream, flush=True)


@dataclass
class Context:
    """What a form may use: the cache, the run's identity, the user's settings."""

    cache: Cache
    run_id: str
    timeout_s: float = 120.0
    allow_standins: bool = False
    progress: Progress = field(default_factory=Progress)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> dict[str, str]:
        return run_labels(self.run_id)


def run_labels(run_id: str) -> dict[str, str]:
    """Labels on every container the harness creates: which run, whose process, on which host.

    A later run removes the container when that process is gone (it was killed).
    """
    me = psutil.Process()
    return {"harness.run": run_id, "harness.host": socket.gethostname(),
            "harness.pid": str(me.pid), "harness.started": repr(me.create_time())}


class Form(Protocol):
    name: ClassVar[str]
    family: ClassVar[str]  # "container", "vm" or "unikernel"

    def check(self, ctx: Context) -> None:
        """Raise Unavailable (with the fix) when this form cannot run here."""

    def build(self, workload: Workload, binary: Binary, ctx: Context) -> Artifact:
        """Package the binary; raise BuildFailed, UsageError or Unavailable."""

    def boot(self, artifact: Artifact, workload: Workload, ctx: Context) -> Sample:
        """Boot once to readiness, measure, tear down; raise BootFailed on failure."""

    def cleanup(self, ctx: Context) -> None:
        """Remove everything this run's boots left (called on success, failure and signals)."""
