"""Join several runs (e.g. the shards of one matrix) into one results document.

Runs are joined only when measured alike: the key environment (machine, CPU
model, kernel, accelerators, tool versions, wherever both runs recorded them)
and the settings (repetitions, warm-ups, timeout, stand-ins, options) must
match, or the figures would sit side by side in one table without saying
they are not comparable. Each source's own settings and environment are kept. A cell
measured twice is refused outright: which one to keep is the user's call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import UsageError
from harness.record.results import SCHEMA_VERSION, utc_now

KEY_ENVIRONMENT = ("machine", "cpu_model", "kernel", "accelerators", "tools")


@dataclass(frozen=True)
class Source:
    path: Path
    data: dict[str, Any]

    @property
    def shard(self) -> dict[str, Any]:
        """What `run --shard` recorded: the slice's spec and the whole matrix it was cut from."""
        shard = (self.data.get("settings") or {}).get("shard")
        return shard if isinstance(shard, dict) else {}


# Settings that change what a figure means: runs that differ in them are not one experiment.
KEY_SETTINGS = ("reps", "warmup", "timeout_s", "allow_stand_ins", "options")


def environment_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Where two runs' key environment disagree.

    A value only one run recorded is no disagreement: a slice with no
    container cell records no Docker version, one with no VM cell no
    accelerator.
    """
    ea, eb = a.get("environment") or {}, b.get("environment") or {}
    diffs = []
    for k in KEY_ENVIRONMENT:
        va, vb = ea.get(k), eb.get(k)
        if k == "tools" and isinstance(va, dict) and isinstance(vb, dict):
            diffs += [f"tools.{t}: {va[t]} vs {vb[t]}" for t in sorted(set(va) & set(vb))
                      if va[t] is not None and vb[t] is not None and va[t] != vb[t]]
        elif k == "accelerators":
            if va and vb and sorted(va) != sorted(vb):
                diffs.append(f"accelerators: {sorted(va)} vs {sorted(vb)}")
        elif va is not None and vb is not None and va != vb:
            diffs.append(f"{k}: {va} vs {vb}")
    return diffs


def settings_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    sa, sb = a.get("settings") or {}, b.get("settings") or {}
    return [f"{k}: {sa.get(k)} vs {sb.get(k)}" for k in KEY_SETTINGS if sa.get(k) != sb.get(k)]


def _full_matrix(sources: list[Source]) -> tuple[str, ...]:
    """The whole matrix, when every source is a slice of the same one; else empty."""
    fulls = {tuple(s.shard.get("matrix_cells") or ()) for s in sources}
    return next(iter(fulls)) if len(fulls) == 1 else ()


def _order(full: tuple[str, ...], cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Back into the matrix's order when the slices recorded it; else as given."""
    if not full:
        return cells
    rank = {key: i for i, key in enumerate(full)}
    return sorted(cells, key=lambda c: rank.get(f"{c['workload']}:{c['form']}", len(rank)))


def merge(sources: list[Source], force: bool = False) -> dict[str, Any]:
    if len(sources) < 2:
        raise UsageError("merge needs at least two runs; e.g. harness merge results/a results/b --out results/all")
    first = sources[0]
    forced: list[str] = []  # what --force let through, said in every report of the merged run
    for s in sources[1:]:
        diffs = environment_differences(first.data, s.data)
        # Every difference reads "first's value vs this one's", in the order the paths are named.
        if diffs and not force:
            raise UsageError(f"{first.path} and {s.path} were measured on different machines "
                             f"({'; '.join(diffs[:3])}); merge only alike runs, or pass --force")
        forced += [f"{first.path} vs {s.path}: {d}" for d in diffs]
        diffs = settings_differences(first.data, s.data)
        if diffs and not force:
            raise UsageError(f"{first.path} and {s.path} were measured with different settings "
                             f"({'; '.join(diffs[:3])}); merge only alike runs, or pass --force")
        forced += [f"{first.path} vs {s.path}: {d}" for d in diffs]
    specs = [str(s.shard["spec"]) for s in sources if s.shard.get("spec")]
    if len({spec.split("/")[-1] for spec in specs}) > 1:
        if not force:
            raise UsageError(f"the runs are slices of different splits ({', '.join(specs)}); "
                             f"merge the slices of one --shard K/N, or pass --force")
        forced.append(f"slices of different splits: {', '.join(specs)}")
    seen: dict[str, Path] = {}
    cells: list[dict[str, Any]] = []
    for s in sources:
        for c in s.data["cells"]:
            key = f"{c['workload']}:{c['form']}"
            if key in seen:
                raise UsageError(f"cell {key} is in both {seen[key]} and {s.path}; merge each cell from one run only")
            seen[key] = s.path
            cells.append({**c, "merged_from": str(s.path)})
    full = _full_matrix(sources)
    cells = _order(full, cells)
    env = dict(first.data.get("environment") or {})
    env["accelerators"] = sorted({a for s in sources for a in (s.data.get("environment") or {}).get("accelerators") or []})
    settings = dict(first.data.get("settings") or {})
    settings.pop("shard", None)
    settings["cells"] = [f"{c['workload']}:{c['form']}" for c in cells]
    if full:  # a cell of the matrix that no slice measured is named, not lost
        settings["merge_missing"] = [key for key in full if key not in settings["cells"]]
    settings["merged_from"] = [{"path": str(s.path), "run_id": (s.data.get("settings") or {}).get("run_id"),
                                "shard": s.shard.get("spec"),
                                "created": s.data.get("created"),
                                "settings": {k: (s.data.get("settings") or {}).get(k) for k in KEY_SETTINGS},
                                "environment": s.data.get("environment")} for s in sources]
    if force:
        settings["merged_with_force"] = True
        settings["merge_differences"] = forced
    return {
        "schema_version": SCHEMA_VERSION, "harness_version": __version__,
        "created": min(str(s.data.get("created")) for s in sources), "finished": utc_now(),
        "interrupted": any(s.data.get("interrupted") for s in sources),
        "environment": env, "settings": settings, "cells": cells,
    }
