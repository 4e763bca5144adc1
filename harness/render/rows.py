"""The row code every table format shares: cells -> strings, units per column.

A Table holds only strings, chosen here, so no format (tabulate, LaTeX, HTML)
ever reformats a number or prints nan/None/0 for a missing one: a failed cell
says `failed`, an unavailable or absent one `n/a`. Each numeric
column has one unit, picked from its values and stated in its header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from harness.analyse.metrics import Metric
from harness.analyse.stats import Summary
from harness.render.table import (
    footnotes,
    form_label,
    is_emulated,
    is_stand_in,
    measured_with,
)
from harness.render.units import MISSING, column_unit, fmt_scaled

Align = Literal["left", "right"]


@dataclass
class Table:
    headers: list[str]
    align: list[Align]
    rows: list[list[str]]
    title: str = ""
    notes: list[str] = field(default_factory=list)


def missing_text(cell: dict[str, Any] | None, metric: Metric | None = None) -> str:
    """Why a figure is absent: "failed", or n/a when the cell could not have it (a container's guest)."""
    if metric is not None and metric.name == "guest" and cell is not None and cell.get("family") == "container":
        return MISSING  # no guest kernel to ask, failed or not
    if cell is not None and cell.get("status") == "failed":
        return "failed"
    return MISSING


def marks(cell: dict[str, Any], metric: Metric) -> str:
    """* on every figure of a stand-in; † only on what emulation changes (not a size)."""
    emulated = is_emulated(cell) and metric.source != "size"
    return ("*" if is_stand_in(cell) else "") + ("†" if emulated else "")


def _unit_for(metric: Metric, summaries: list[Summary | None]) -> tuple[str, float]:
    return column_unit(metric.kind, [s.median for s in summaries if s is not None])


def metric_header(metric: Metric, unit: str, with_iqr: bool) -> str:
    if metric.repeated and with_iqr:
        return f"{metric.label} median [p25 – p75] ({unit})"
    if metric.repeated:
        return f"{metric.label} median ({unit})"
    return f"{metric.label} ({unit})"


def metric_text(cell: dict[str, Any] | None, s: Summary | None, metric: Metric, unit: str, scale: float,
                with_iqr: bool) -> str:
    if s is None:
        return missing_text(cell, metric)
    text = fmt_scaled(s.median, scale, unit)
    if metric.repeated and with_iqr:
        text += f" [{fmt_scaled(s.p25, scale, unit)} – {fmt_scaled(s.p75, scale, unit)}]"
    if metric.name == "build" and cell is not None and (cell.get("details") or {}).get("cached"):
        text += " (cached)"  # a cache hit took no build: not comparable with a real one
    return text


def cell_table(results: dict[str, Any], metrics: list[Metric], iqr_for: tuple[str, ...] = ("boot",)) -> Table:
    """One row per cell: workload, form (marked), status, a column per metric, what measured it."""
    cells = results["cells"]
    headers = ["workload", "form", "status"]
    align: list[Align] = ["left", "left", "left"]
    columns: list[list[str]] = []
    for m in metrics:
        sums = [m.summary(c) for c in cells]
        unit, scale = _unit_for(m, sums)
        with_iqr = m.name in iqr_for
        headers.append(metric_header(m, unit, with_iqr))
        align.append("right")
        columns.append([metric_text(c, s, m, unit, scale, with_iqr) for c, s in zip(cells, sums)])
    headers.append("measured with")
    align.append("left")
    rows = []
    for i, c in enumerate(cells):
        rows.append([c["workload"], form_label(c), c["status"]] + [col[i] for col in columns] + [measured_with(c)])
    return Table(headers=headers, align=align, rows=rows, notes=footnotes(results, [m.name for m in metrics]))


def _ordered(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def pivot_tables(results: dict[str, Any], metrics: list[Metric]) -> list[Table]:
    """One table per metric: workloads as rows, forms as columns; marks ride on the values."""
    cells = results["cells"]
    workloads = _ordered([c["workload"] for c in cells])
    forms = _ordered([c["form"] for c in cells])
    by_key = {(c["workload"], c["form"]): c for c in cells}
    tables = []
    for m in metrics:
        sums = {k: m.summary(c) for k, c in by_key.items()}
        unit, scale = _unit_for(m, list(sums.values()))
        title = f"{m.label}, {'median' if m.repeated else 'value'} ({unit})"
        rows = []
        for w in workloads:
            row = [w]
            for f in forms:
                cell = by_key.get((w, f))
                s = sums.get((w, f))
                text = metric_text(cell, s, m, unit, scale, with_iqr=False)
                if cell is not None and s is not None:
                    text += marks(cell, m)
                row.append(text)
            rows.append(row)
        tables.append(Table(headers=["workload"] + forms, align=["left"] + ["right"] * len(forms),
                            rows=rows, title=title))
    if tables:
        tables[-1].notes = footnotes(results, [m.name for m in metrics])
    return tables
