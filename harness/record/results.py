"""The results file: one JSON document per run, versioned, written atomically.

Contract (schema_version 2): top level `schema_version`, `harness_version`,
`created` (UTC ISO 8601), `environment`, `settings`, `cells`. Each cell has
`workload`, `form`, `status` (ok | failed | unavailable), `reason`,
`binary_sha256`, `size` (with `artifact_bytes`), `memory_source`, `samples`
(each with `boot_s`, `memory_bytes` and `memory_source`: the key of the
sample's `memory` figures that `memory_bytes` is), `warmup`, `summary` and
`details`. Version 1 had no `memory_source`; harness.record.migrate adds it.

The file is rewritten (temp file + rename) after every cell, so a crash or a
Ctrl-C keeps every finished cell; a run folder is never reused.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError, UsageError

SCHEMA_VERSION = 2


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()
FILENAME = "results.json"
STATUSES = ("ok", "failed", "unavailable")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_dir(base: Path) -> Path:
    """results/<UTC timestamp>/, with a suffix if that folder already exists."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        base.mkdir(parents=True, exist_ok=True)
        for i in range(1000):
            candidate = base / (stamp if i == 0 else f"{stamp}-{i}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as exc:
        raise UsageError(f"cannot make a run folder in {base.absolute()} ({exc.strerror or exc}); run from "
                         f"a writable folder or pass --out DIR") from None
    raise UsageError(f"cannot create a run folder in {base}; remove old runs or pass --out")


def claim_out_dir(out: Path) -> Path:
    """Use --out DIR for a new run; refuse one that already holds results."""
    if (out / FILENAME).exists():
        raise UsageError(f"{out / FILENAME} already exists; results are never overwritten: choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise UsageError(f"cannot write to --out {out} ({exc.strerror}); choose a writable folder") from None
    return out


class ResultsWriteError(HarnessError):
    """The results file could not be written (disk full, folder gone); the last good one stays."""


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temp file beside path and rename it over: never a half file.

    An OSError (a full disk, most often) becomes ResultsWriteError; the file
    at path is then still the last complete version.
    """
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, FILE_MODE)  # mkstemp makes it private; results are for reading
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError):
            kept = "the last complete one is kept" if path.exists() else "none was written"
            raise ResultsWriteError(
                f"cannot write {path} ({exc.strerror or exc}); {kept}") from None
        raise


@dataclass
class Results:
    """A run's results in memory, saved to path after every change."""

    path: Path
    environment: dict[str, Any]
    settings: dict[str, Any]
    cells: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=utc_now)
    finished: str | None = None
    interrupted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "harness_version": __version__,
            "created": self.created,
            "finished": self.finished,
            "interrupted": self.interrupted,
            "environment": self.environment,
            "settings": self.settings,
            "cells": self.cells,
        }

    def add(self, cell: dict[str, Any]) -> None:
        self.cells.append(cell)
        self.save()

    def save(self) -> None:
        write_atomic(self.path, self.to_json())


def resolve(path: Path) -> Path:
    """A run folder or a results.json file -> the results.json path."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise UsageError(f"no results at {path}; pass a run folder made by `harness run` (e.g. results/<timestamp>)")
    return path


def load(path: Path) -> dict[str, Any]:
    """Read a results file, upgrading older schemas and refusing newer ones."""
    from harness.record import migrate

    path = resolve(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON (line {exc.lineno}); it may be truncated") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not text (not UTF-8); it is not a harness results file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({exc.strerror})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise UsageError(f"{path} has no schema_version; it is not a harness results file")
    if not isinstance(data["schema_version"], int) or isinstance(data["schema_version"], bool):
        raise UsageError(f"{path} has schema_version = {str(data['schema_version'])[:20]!r}, not a whole number; "
                         f"the file is damaged")
    check_shape(data, path)  # what every version shares, before a migration walks it
    return migrate.upgrade(data, path)


class _Damaged(Exception):
    """What is wrong with one value, said as 'has KEY = VALUE, not WHAT'."""


def _number(value: Any, key: str, minimum: float | None = 0.0) -> None:
    """None, or a finite number (not a bool) at or above minimum."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Damaged(f"has {key} = {value!r}, not a finite number")
    if minimum is not None and value < minimum:
        raise _Damaged(f"has {key} = {value!r}, below {minimum:g}")


def _kind(value: Any, key: str, types: tuple[type, ...], what: str) -> None:
    if value is not None and not isinstance(value, types):
        raise _Damaged(f"has {key} = {str(value)[:40]!r}, not {what}")


def _numbers(mapping: Any, key: str, minimum: float | None = 0.0) -> None:
    """An object of numbers (size, memory figures, phases), or None."""
    _kind(mapping, key, (dict,), "an object")
    for name, value in (mapping or {}).items():
        _number(value, f"{key}.{name}", minimum)


def _check_sample(sample: dict[str, Any]) -> None:
    if sample.get("boot_s") is None:  # a sample is a boot that reached readiness: it has its time
        raise _Damaged("has no boot_s")
    for key in ("boot_s", "memory_bytes"):
        _number(sample.get(key), key)
    _numbers(sample.get("memory"), "memory")
    _numbers(sample.get("phases"), "phases", minimum=None)  # differences of timestamps
    _kind(sample.get("details"), "details", (dict,), "an object")
    _kind(sample.get("memory_source"), "memory_source", (str,), "text")


def _check_cell(cell: dict[str, Any]) -> None:
    if cell.get("status") not in STATUSES:
        raise _Damaged(f"has status {cell.get('status')!r}, not one of {', '.join(STATUSES)}")
    for key in ("reason", "memory_source", "binary_sha256", "family"):
        _kind(cell.get(key), key, (str,), "text")
    for key in ("details", "binary"):
        _kind(cell.get(key), key, (dict,), "an object")
    for key in ("samples", "warmup", "warnings", "failures"):
        _kind(cell.get(key), key, (list,), "a list")
    for n, warning in enumerate(cell.get("warnings") or [], 1):
        _kind(warning, f"warning {n}", (str,), "text")
    _numbers(cell.get("size"), "size")
    _number(cell.get("build_s"), "build_s")
    _kind(cell.get("summary"), "summary", (dict,), "an object")
    for metric, stats in (cell.get("summary") or {}).items():
        _numbers(stats, f"summary.{metric}", minimum=None)
    for group in ("samples", "warmup"):
        what = "sample" if group == "samples" else "warm-up"
        for n, sample in enumerate(cell.get(group) or [], 1):
            if not isinstance(sample, dict):
                raise _Damaged(f"has {what} {n} = {str(sample)[:40]!r}, not an object")
            try:
                _check_sample(sample)
            except _Damaged as exc:
                raise _Damaged(f"{what} {n} {exc}") from None


def _check_top(env: dict[str, Any], settings: dict[str, Any]) -> None:
    for key in ("tools", "git"):
        _kind(env.get(key), f"environment.{key}", (dict,), "an object")
    _kind((env.get("git") or {}).get("commit"), "environment.git.commit", (str,), "text")
    _kind(env.get("accelerators"), "environment.accelerators", (list,), "a list")
    for n, accel in enumerate(env.get("accelerators") or [], 1):
        if not isinstance(accel, str):
            raise _Damaged(f"has environment.accelerators {n} = {accel!r}, not text")
    for key in ("reps", "warmup", "timeout_s"):
        _number(settings.get(key), f"settings.{key}")
    _kind(settings.get("merged_from"), "settings.merged_from", (list,), "a list")
    for n, merged in enumerate(settings.get("merged_from") or [], 1):
        _kind(merged, f"settings.merged_from {n}", (dict,), "an object")


def check_shape(data: dict[str, Any], path: Path) -> None:
    """The parts every reader relies on, with their types, so that a damaged or hand-edited file
    is one clear error naming the value, not a traceback or a silently wrong figure."""
    for key in ("environment", "settings"):
        if not isinstance(data.get(key, {}), dict):
            raise UsageError(f"{path}: {key} is not an object; the file is damaged (restore it or run again)")
    try:
        _check_top(data.get("environment") or {}, data.get("settings") or {})
    except _Damaged as exc:
        raise UsageError(f"{path}: {exc}; the file is damaged (restore it or run again)") from None
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise UsageError(f"{path} has no list of cells; it is not a complete harness results file")
    seen: dict[tuple[str, str], int] = {}
    for i, cell in enumerate(cells, 1):
        if not isinstance(cell, dict):
            raise UsageError(f"{path}: cell {i} is not an object; the file is damaged")
        for key in ("workload", "form"):
            if not isinstance(cell.get(key), str):
                raise UsageError(f"{path}: cell {i} has no {key!r}; the file is damaged")
        name = (cell["workload"], cell["form"])
        where = f"{path}: cell {i} ({cell['workload']}:{cell['form']})"
        if name in seen:
            raise UsageError(f"{where} is also cell {seen[name]}; the file is damaged (a run measures "
                             f"each cell once; use `harness merge` to join runs)")
        seen[name] = i
        try:
            _check_cell(cell)
        except _Damaged as exc:
            raise UsageError(f"{where} {exc}; the file is damaged (restore it or run again)") from None
