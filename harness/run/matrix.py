"""The matrix: which workloads in which forms.

SPEC is one or more items separated by spaces or ';':
  all                        every workload in every form
  scratch,alpine             those forms (or groups: container, unikernel) for every workload
  hello,http                 those workloads in every form
  hello:scratch,alpine       workloads before the colon, forms after it (hello:all: every form)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness import forms, workloads
from harness.errors import UsageError

HELP = __doc__.split("\n", 2)[2]


@dataclass(frozen=True, order=True)
class Cell:
    workload: str
    form: str

    def __str__(self) -> str:
        return f"{self.workload}:{self.form}"


def _expand_forms(name: str) -> tuple[str, ...] | None:
    if name == "all":
        return forms.ORDER
    if name in forms.GROUPS:
        return forms.GROUPS[name]
    if name in forms.ORDER:
        return (name,)
    return None


def parse(spec: str, builds_dir: Path | None = None) -> list[Cell]:
    """Cells in table order (workloads as listed, forms heaviest first), each once."""
    known_workloads = workloads.available(builds_dir)
    items = [i for i in re.split(r"[\s;]+", spec.strip()) if i]
    if not items:
        raise UsageError("empty --matrix; try --matrix all (see harness run --help)")
    cells: list[Cell] = []
    for item in items:
        if item == "all":
            cells += [Cell(w, f) for w in known_workloads for f in forms.ORDER]
            continue
        if item.count(":") > 1:
            pairs = item.split(",")
            if all(p.count(":") == 1 for p in pairs):  # hello:alpine,http:scratch: two items, one comma
                raise UsageError(f"matrix item {item!r} holds several WORKLOAD:FORM pairs; separate them "
                                 f"with ';' or a space: --matrix '{';'.join(pairs)}'")
            raise UsageError(f"malformed matrix item {item!r}: use WORKLOAD[,WORKLOAD]:FORM[,FORM]")
        left, colon, right = item.partition(":")
        if colon:
            wl = _names(left, item)
            fm = _names(right, item)
            for w in wl:
                _check_workload(w, known_workloads)
            form_list = [f for name in fm for f in _forms_or_error(name)]
            cells += [Cell(w, f) for w in wl for f in form_list]
            continue
        names = _names(item, item)
        for name in names:
            if name in known_workloads and _expand_forms(name) is not None:
                raise UsageError(f"{name!r} is both a workload and a form; write {name}:all for the "
                                 f"workload in every form, or WORKLOADS:{name} (e.g. hello,http:{name}) for "
                                 f"the form, or rename the workload's folder")
        wl_part = [n for n in names if n in known_workloads]
        form_part = [n for n in names if n not in known_workloads]
        form_list = [f for name in form_part for f in _forms_or_error(name, known_workloads)]
        cells += [Cell(w, f) for w in (wl_part or known_workloads) for f in (form_list or forms.ORDER)]
    return _ordered_unique(cells, known_workloads)


def _names(text: str, item: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise UsageError(f"malformed matrix item {item!r}: empty name; e.g. hello:scratch,alpine")
    return names


def _check_workload(name: str, known: list[str]) -> None:
    if name not in known:
        raise UsageError(f"unknown workload {name!r} in --matrix; workloads: {', '.join(known) or 'none'}")


def _forms_or_error(name: str, known_workloads: list[str] | None = None) -> tuple[str, ...]:
    expanded = _expand_forms(name)
    if expanded is None:
        choices = list(forms.ORDER) + list(forms.GROUPS) + (known_workloads or [])
        raise UsageError(f"unknown form or workload {name!r} in --matrix; choose from {', '.join(choices)}")
    return expanded


def _ordered_unique(cells: list[Cell], known_workloads: list[str]) -> list[Cell]:
    first_seen: dict[str, int] = {}
    for c in cells:
        first_seen.setdefault(c.workload, len(first_seen))
    unique = set(cells)
    return sorted(unique, key=lambda c: (first_seen[c.workload], forms.ORDER.index(c.form)))


SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): the second of four slices; K counts from 1."""
    m = SHARD_RE.match(str(text))
    if not m:
        raise UsageError(f"--shard {text!r} is not K/N; write e.g. --shard 1/2 (the first of two slices)")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise UsageError(f"--shard {text!r}: N must be at least 1; e.g. --shard 1/2")
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text!r}: K must be between 1 and {n}; e.g. --shard 1/{n}")
    return k, n


def shard(cells: list[Cell], k: int, n: int) -> list[Cell]:
    """Round-robin slice K of N over the ordered cells: deterministic, and the N slices cover each cell once.

    With more slices than cells, the last ones are empty: an array job of a
    fixed size still runs (and merges) whatever the matrix.
    """
    return cells[k - 1::n]
