"""The metrics a report, plot, comparison or gate can ask for, and where each lives in a cell.

Boot time and memory are repeated samples (a distribution per cell); sizes are
one value per cell. Keeping the lookup in one place means `report --metrics
boot`, `compare` and a baseline's `metric = "boot_s"` all read the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.analyse.stats import Summary, summarize
from harness.errors import UsageError


@dataclass(frozen=True)
class Metric:
    name: str          # what the user types: boot, memory, size
    key: str           # the field in the results file: boot_s, memory_bytes, artifact_bytes
    label: str         # column and axis title
    kind: Literal["seconds", "bytes"]
    source: Literal["samples", "sample-memory", "size", "cell"]

    @property
    def repeated(self) -> bool:
        """Samples form a distribution; a size is one value and has no spread."""
        return self.source in ("samples", "sample-memory")

    def values(self, cell: dict[str, Any]) -> list[float]:
        if self.source == "samples":
            return [float(s[self.key]) for s in cell.get("samples") or [] if s.get(self.key) is not None]
        if self.source == "sample-memory":
            found = [(s.get("memory") or {}).get(self.key) for s in cell.get("samples") or []]
            return [float(v) for v in found if v is not None]
        holder = cell.get("size") or {} if self.source == "size" else cell
        value = holder.get(self.key)
        return [] if value is None else [float(value)]

    def summary(self, cell: dict[str, Any]) -> Summary | None:
        """Recomputed from the raw values, so old files and merged runs agree with new code."""
        if self.repeated and cell.get("status") != "ok":
            return None  # a failed cell's few samples are not a measurement; its built size still is
        return summarize(self.values(cell))


METRICS: tuple[Metric, ...] = (
    Metric("size", "artifact_bytes", "artifact", "bytes", "size"),
    Metric("boot", "boot_s", "boot", "seconds", "samples"),
    Metric("memory", "memory_bytes", "memory", "bytes", "samples"),
    # The guest kernel's own view (MemTotal - MemAvailable): beside a VMM's PSS, the figure
    # to set against a container's working set.
    Metric("guest", "guest_used_bytes", "guest used", "bytes", "sample-memory"),
    Metric("image", "image_bytes", "image (unpacked)", "bytes", "size"),
    Metric("build", "build_s", "build", "seconds", "cell"),
)
DEFAULT = ("size", "boot", "memory", "guest")
COMPARED = ("boot", "memory", "size")


def get(name: str) -> Metric:
    """By name (boot) or by results-file key (boot_s)."""
    for m in METRICS:
        if name in (m.name, m.key):
            return m
    choices = ", ".join(f"{m.name} ({m.key})" for m in METRICS)
    raise UsageError(f"unknown metric {name!r}; choose from {choices}")


def parse_list(text: str | None, default: Sequence[str] = DEFAULT) -> list[Metric]:
    """`--metrics size,boot` -> metrics in the order given, each once."""
    names = [n.strip() for n in text.split(",")] if text is not None else list(default)
    if any(not n for n in names):
        raise UsageError(f"empty name in --metrics {text!r}; e.g. --metrics size,boot,memory")
    picked: list[Metric] = []
    for n in names:
        m = get(n)
        if m not in picked:
            picked.append(m)
    return picked


def cell_key(cell: dict[str, Any]) -> str:
    return f"{cell['workload']}:{cell['form']}"
