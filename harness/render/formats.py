"""One `render(results) -> str` per report format, the table formats sharing rows.py.

markdown and github go through tabulate with every cell already a string
(disable_numparse), LaTeX and HTML escape every string they print, CSV is one
row per measured sample, JSON is the per-cell summary for other programs.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from harness.analyse.metrics import DEFAULT, Metric, cell_key, parse_list
from harness.render.rows import Table, cell_table, pivot_tables
from harness.render.table import cell_marks, is_emulated, is_stand_in, measured_with
from harness.render.units import MISSING


@dataclass(frozen=True)
class Options:
    metrics: tuple[Metric, ...] = tuple(parse_list(None))
    pivot: bool = False


def tables(results: dict[str, Any], opts: Options) -> list[Table]:
    if opts.pivot:
        return pivot_tables(results, list(opts.metrics))
    return [cell_table(results, list(opts.metrics))]


# --- markdown ---------------------------------------------------------------------------

def _md_table(t: Table) -> str:
    return tabulate(t.rows, headers=t.headers, tablefmt="pipe", colalign=t.align, disable_numparse=True)


def render_markdown(results: dict[str, Any], opts: Options = Options()) -> str:
    parts = []
    for t in tables(results, opts):
        block = (f"**{t.title}**\n\n" if t.title else "") + _md_table(t)
        parts.append(block)
    notes = [n for t in tables(results, opts) for n in t.notes]
    return "\n\n".join(parts) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def environment_line(results: dict[str, Any]) -> str:
    env = results.get("environment") or {}
    tools = env.get("tools") or {}
    git = env.get("git") or {}
    bits = [f"host {env.get('host', MISSING)}", f"kernel {env.get('kernel', MISSING)}",
            f"{env.get('cpu_model', MISSING)} x{env.get('cpu_count', MISSING)}"]
    accels = env.get("accelerators") or []
    if accels:
        bits.append("accelerators " + ", ".join(accels))
    if tools.get("docker_engine"):
        bits.append(f"docker {tools['docker_engine']}")
    if git.get("commit"):
        bits.append(f"commit {git['commit'][:12]}" + (" (dirty)" if git.get("dirty") else ""))
    return "; ".join(bits)


def _merged_values(settings: dict[str, Any], key: str) -> str:
    """A setting of the run, or of each merged run when they differ ("5 / 3 (differ)")."""
    values = [str((m.get("settings") or {}).get(key)) for m in settings.get("merged_from") or [] if m.get("settings")]
    if len(set(values)) > 1:
        return " / ".join(values) + " (differ)"
    return str(settings.get(key, MISSING))


def render_github(results: dict[str, Any], opts: Options = Options()) -> str:
    """A job summary: heading, counts, the tables, then where it ran."""
    cells = results["cells"]
    counts = {s: sum(1 for c in cells if c["status"] == s) for s in ("ok", "failed", "unavailable")}
    head = (f"## harness: {len(cells)} cells — {counts['ok']} ok, {counts['failed']} failed, "
            f"{counts['unavailable']} unavailable"
            + (" — **interrupted**" if results.get("interrupted") else
               " — **not finished**" if not results.get("finished") else "") + "\n\n")
    settings = results.get("settings") or {}
    reps = _merged_values(settings, "reps")
    warmup = _merged_values(settings, "warmup")
    meta = (f"matrix `{settings.get('matrix', MISSING)}`, {reps} reps after "
            f"{warmup} warm-up; {environment_line(results)}\n\n")
    return head + meta + render_markdown(results, opts)


# --- LaTeX ------------------------------------------------------------------------------

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "†": r"\textsuperscript{\textdagger}", "*": r"\textsuperscript{*}", "–": "--", "—": "---",
        "<": r"\textless{}", ">": r"\textgreater{}", "−": "$-$", "×": r"$\times$", "≥": r"$\geq$",
        "≤": r"$\leq$"}


def tex_escape(text: str) -> str:
    out = "".join(_TEX.get(ch, ch) for ch in text)
    return out.encode("ascii", "replace").decode("ascii")


def _tex_table(t: Table) -> str:
    # "measured with" is prose: a wrapping column. A table still wider than the text is scaled
    # down to it (never up), so that it fits a paper's column.
    spec = "".join(r"p{11em}" if h == "measured with" else "r" if a == "right" else "l"
                   for h, a in zip(t.headers, t.align))
    lines = [r"\begin{table}[htbp]", r"\centering", r"\small"]
    if t.title:
        lines.append(rf"\caption{{{tex_escape(t.title)}}}")
    lines += [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
              rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(tex_escape(h) for h in t.headers) + r" \\", r"\midrule"]
    lines += [" & ".join(tex_escape(v) for v in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if t.notes:
        lines.append(r"\par\medskip\footnotesize")
        lines += [r"\noindent " + tex_escape(n) + r"\par" for n in t.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines)


def render_latex(results: dict[str, Any], opts: Options = Options()) -> str:
    """Table floats for a paper; the preamble needs \\usepackage{booktabs,graphicx}."""
    body = "\n\n".join(_tex_table(t) for t in tables(results, opts))
    return "% harness report; needs \\usepackage{booktabs,graphicx}\n" + body + "\n"


# --- HTML -------------------------------------------------------------------------------

def _html_table(t: Table) -> str:
    esc = html.escape
    style = {"left": "text-align:left", "right": "text-align:right"}
    out = ["<table>"]
    if t.title:
        out.append(f"<caption>{esc(t.title)}</caption>")
    out.append("<thead><tr>" + "".join(f'<th style="{style[a]}">{esc(h)}</th>'
                                        for h, a in zip(t.headers, t.align)) + "</tr></thead>")
    out.append("<tbody>")
    for row in t.rows:
        out.append("<tr>" + "".join(f'<td style="{style[a]}">{esc(v)}</td>' for v, a in zip(row, t.align))
                   + "</tr>")
    out.append("</tbody></table>")
    if t.notes:
        out.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in t.notes) + "</ul>")
    return "\n".join(out)


def render_html(results: dict[str, Any], opts: Options = Options()) -> str:
    body = "\n".join(_html_table(t) for t in tables(results, opts))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>harness results</title>\n"
            "<style>table{border-collapse:collapse;font-family:sans-serif}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ccc;font-variant-numeric:tabular-nums}</style>\n"
            f"</head><body>\n<p>{html.escape(environment_line(results))}</p>\n{body}\n</body></html>\n")


# --- CSV: one row per sample ------------------------------------------------------------

CSV_COLUMNS = ("workload", "form", "status", "rep", "boot_s", "memory_bytes", "memory_source",
               "vmm_rss_bytes", "guest_used_bytes", "guest_memory_mib", "artifact_bytes",
               "accelerator", "emulated", "stand_in", "base", "vmm", "reason")
_SAMPLE_MEMORY = ("vmm_rss_bytes", "guest_used_bytes")


def render_csv(results: dict[str, Any], opts: Options = Options()) -> str:
    """Raw samples for other tools; a cell with none still gets one row saying why (n/a, failed)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for c in results["cells"]:
        d = c.get("details") or {}
        size = (c.get("size") or {}).get("artifact_bytes")
        common = {
            "workload": c["workload"], "form": c["form"], "status": c["status"],
            "artifact_bytes": MISSING if size is None else str(size),
            "accelerator": d.get("accelerator") or MISSING,
            "emulated": str(is_emulated(c)).lower(), "stand_in": str(is_stand_in(c)).lower(),
            "base": d.get("stand_in_for") or d.get("base") or MISSING, "vmm": d.get("vmm") or MISSING,
            "guest_memory_mib": MISSING if d.get("guest_memory_mib") is None else str(d["guest_memory_mib"]),
            "reason": (c.get("reason") or "").splitlines()[0] if c.get("reason") else "",
        }
        samples = c.get("samples") or []
        if not samples:
            miss = "failed" if c["status"] == "failed" else MISSING
            w.writerow([{**common, "rep": MISSING, "boot_s": miss, "memory_bytes": miss, "memory_source": MISSING,
                         **{k: miss for k in _SAMPLE_MEMORY}}[k] for k in CSV_COLUMNS])
        for i, s in enumerate(samples, 1):
            memory = s.get("memory") or {}
            row = {**common, "rep": str(i),
                   "boot_s": MISSING if s.get("boot_s") is None else repr(float(s["boot_s"])),
                   "memory_bytes": MISSING if s.get("memory_bytes") is None else str(int(s["memory_bytes"])),
                   "memory_source": s.get("memory_source") or MISSING,
                   **{k: MISSING if memory.get(k) is None else str(int(memory[k])) for k in _SAMPLE_MEMORY}}
            w.writerow([row[k] for k in CSV_COLUMNS])
    return buf.getvalue()


# --- JSON: per-cell summaries -----------------------------------------------------------

def render_json(results: dict[str, Any], opts: Options = Options()) -> str:
    cells = []
    for c in results["cells"]:
        entry: dict[str, Any] = {
            "cell": cell_key(c), "workload": c["workload"], "form": c["form"], "status": c["status"],
            "reason": c.get("reason"), "marks": cell_marks(c), "emulated": is_emulated(c),
            "stand_in": is_stand_in(c), "measured_with": measured_with(c),
            "memory_source": c.get("memory_source"), "warnings": list(c.get("warnings") or []), "metrics": {},
        }
        for m in opts.metrics:
            s = m.summary(c)
            unit = "s" if m.kind == "seconds" else "B"
            entry["metrics"][m.key] = None if s is None else {"unit": unit, **s.to_json()}
        cells.append(entry)
    doc = {"schema_version": results.get("schema_version"), "environment": results.get("environment"),
           "settings": results.get("settings"), "cells": cells}
    return json.dumps(doc, indent=2) + "\n"


Renderer = Callable[[dict[str, Any], Options], str]
FORMATS: dict[str, Renderer] = {
    "markdown": render_markdown, "github": render_github, "latex": render_latex,
    "csv": render_csv, "json": render_json, "html": render_html,
}


def render(results: dict[str, Any], fmt: str = "markdown", opts: Options = Options()) -> str:
    return FORMATS[fmt](results, opts)


__all__ = ["DEFAULT", "FORMATS", "Options", "render"]
