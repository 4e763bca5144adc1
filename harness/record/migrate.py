"""Schema migrations: older results files are upgraded in small steps.

Each step `migrate_to_N` takes a version N-1 document and returns version N.
A file newer than this harness understands is refused, not guessed at.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.record.results import SCHEMA_VERSION

# Where version 1 said which figure memory_bytes was, when it said so at all.
_V1_SOURCE_DETAILS = {"memory_bytes_source": "{}_bytes", "memory_headline": "{}"}
_V1_CANDIDATES = ("peak_bytes", "working_set_bytes", "vmm_pss_bytes", "vmm_rss_bytes")


def _v1_sample_source(sample: dict[str, Any], is_service: bool | None) -> str | None:
    """Which of a v1 sample's memory figures its memory_bytes was."""
    details = sample.get("details") or {}
    for key, pattern in _V1_SOURCE_DETAILS.items():
        if details.get(key):
            return pattern.format(details.pop(key))
    value, memory = sample.get("memory_bytes"), sample.get("memory") or {}
    if value is None:
        return None
    order = _V1_CANDIDATES
    if is_service:  # a service's working set came first when both were equal
        order = ("working_set_bytes", *[c for c in _V1_CANDIDATES if c != "working_set_bytes"])
    return next((k for k in order if memory.get(k) == value), None)


def migrate_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: every sample and cell says which memory figure memory_bytes is."""
    from harness.run.runner import agreed

    for cell in data.get("cells", []):
        samples = cell.get("samples") or []
        service = any((s.get("memory") or {}).get("working_set_bytes") is not None for s in samples)
        for sample in samples + (cell.get("warmup") or []):
            sample.setdefault("memory_source", _v1_sample_source(sample, service))
        cell.setdefault("memory_source", agreed([s["memory_source"] for s in samples if s["memory_source"]]))
    data["schema_version"] = 2
    return data


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {2: migrate_to_2}


def upgrade(data: dict[str, Any], path: Path) -> dict[str, Any]:
    version = data["schema_version"]
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"{path} has schema_version {version}, newer than this harness reads ({SCHEMA_VERSION}); "
            f"upgrade harness to read it"
        )
    if version < 1:
        raise UsageError(f"{path} has unknown schema_version {version}")
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version + 1](data)
        version = data["schema_version"]
    return data
