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

MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


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
