"""What every table says besides its numbers: marks, "measured with", footnotes.

Shared by every format (harness.render.rows builds the cells, formats lay
them out): * marks a stand-in base, † a figure emulated under TCG; the
footnotes explain the marks, what each shown metric is (cell by cell for
memory, whose figures differ by form), every unavailable or failed cell's
reason and every warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.analyse import metrics
from harness.measure.memory import MEMORY_SOURCES


def is_emulated(cell: dict[str, Any]) -> bool:
    """Emulated if the cell or any of its boots says so: one lost field must not drop the mark."""
    sources = [cell.get("details") or {}] + [s.get("details") or {} for s in cell.get("samples") or []
                                             if isinstance(s, dict)]
    return any(bool(d.get("emulated")) or d.get("accelerator") == "tcg" for d in sources if isinstance(d, dict))


def is_stand_in(cell: dict[str, Any]) -> bool:
    return bool((cell.get("details") or {}).get("stand_in"))


def cell_marks(cell: dict[str, Any]) -> str:
    """* for a stand-in base, † for figures emulated under TCG."""
    return ("*" if is_stand_in(cell) else "") + ("†" if is_emulated(cell) else "")


def form_label(cell: dict[str, Any]) -> str:
    return cell["form"] + cell_marks(cell)


def measured_with(cell: dict[str, Any]) -> str:
    d = cell.get("details") or {}
    if cell["status"] == "unavailable":
        return ""
    parts: list[str] = []
    if d.get("accelerator"):
        vmm = str(d.get("vmm") or "qemu").split(" (")[0] + f", {d['accelerator']}"
        if d.get("tcg_tb_size_mib"):
            vmm += f" (tb-size {d['tcg_tb_size_mib']} MiB)"
        if d.get("machine"):
            vmm += f", -M {d['machine']}"
        if d.get("guest_memory_mib"):
            vmm += f", -m {d['guest_memory_mib']} MiB"
        parts.append(vmm)
    elif d.get("engine"):
        parts.append(str(d["engine"]))
    if d.get("base") and d.get("base") != "scratch":
        parts.append(f"base {d.get('stand_in_for', d['base'])}" + (" (stand-in)" if is_stand_in(cell) else "")
                     + (f" (Alpine {d['base_alpine_release']})" if d.get("base_alpine_release") else ""))
    if d.get("distribution"):
        parts.append(f"{d['distribution']}, kernel {d.get('kernel_release', '?')}")
    if d.get("kernel_kind"):
        parts.append(f"{d['kernel_kind']} kernel" + (f" {d['kernel_version']}" if d.get("kernel_version") else ""))
    return "; ".join(parts)


def interrupted_note(results: dict[str, Any]) -> str | None:
    """For a run that did not finish: which cells of its matrix it never measured.

    A file with no 'finished' stamp and no 'interrupted' mark belongs to a run
    still going, or one killed that no later run has found yet: it says so
    rather than passing for a complete run.
    """
    if results.get("interrupted"):
        how = f" ({results['killed']})" if results.get("killed") else ""
        what, verb = f"run interrupted{how}", "not measured"
    elif not results.get("finished"):
        what, verb = "run not finished (still running, or killed before it could say so)", "not yet measured"
    else:
        return None
    done = {f"{c['workload']}:{c['form']}" for c in results["cells"]}
    planned = (results.get("settings") or {}).get("cells") or []
    missing = [key for key in planned if key not in done]
    text = f"{what}: {len(done)} of {len(planned) or len(done)} cells recorded"
    return text + (f"; {verb}: {', '.join(missing)}" if missing else "")


# What each metric a table can show is, in the footnote's words.
METRIC_NOTES = {
    "size": "artifact = bytes shipped to deploy the form (compressed image layers, compressed qcow2, "
            "or kernel + initramfs)",
    "boot": "boot = median of the repetitions (with [p25 – p75] where shown), start request to readiness",
    "guest": "guest used = the guest kernel's MemTotal − MemAvailable after readiness (guests only)",
    "image": "image (unpacked) = the engine's unpacked image size (containers only)",
    "build": "build = this run's time to build the form's artifact; (cached) when the cache already held it",
}


def metric_note(names: Sequence[str], cells: list[dict[str, Any]]) -> str:
    parts = [("memory = " + memory_note(cells)) if n == "memory" else METRIC_NOTES[n]
             for n in names if n == "memory" or n in METRIC_NOTES]
    return "; ".join(parts) + "."


def footnotes(results: dict[str, Any], shown: Sequence[str] = metrics.DEFAULT) -> list[str]:
    """Every footnote of a table that shows the metrics named in shown."""
    cells = results["cells"]
    notes: list[str] = []
    interrupted = interrupted_note(results)
    if interrupted:
        notes.append(interrupted)
    settings = results.get("settings") or {}
    missing = settings.get("merge_missing")
    if isinstance(missing, list) and missing:
        notes.append(f"merged from slices that lack {len(missing)} cell(s) of the matrix; "
                     f"not measured: {', '.join(map(str, missing))}")
    if not cells and not interrupted:
        shard = settings.get("shard") if isinstance(settings.get("shard"), dict) else {}
        notes.append(f"no cell in this run: slice {shard['spec']} of a {len(shard.get('matrix_cells') or [])}"
                     f"-cell matrix is empty" if shard.get("spec") else "no cell in this run")
    if settings.get("merged_with_force"):
        diffs = settings.get("merge_differences") or []
        notes.append("merged with --force from runs measured differently"
                     + (f": {'; '.join(diffs[:6])}" + (f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else "")
                        if diffs else "")
                     + "; set such figures side by side with care")
    standins = {c.get("details", {}).get("stand_in_for") for c in cells if is_stand_in(c)}
    if standins:
        notes.append(f"* stand-in base: an Alpine-like base built offline from Debian packages, "
                     f"not {', '.join(sorted(s for s in standins if s))}; its figures are not Alpine's.")
    if any(is_emulated(c) for c in cells):
        notes.append("† emulated: measured under QEMU TCG (no usable KVM); boot times are one to two "
                     "orders of magnitude slower than under KVM and are not comparable with KVM figures; "
                     "QEMU's memory includes TCG's translation cache (its tb-size bound is given) and "
                     "grows with the guest memory (-m) the guest touches.")
    if shown:
        notes.append(metric_note(shown, cells))
    for c in cells:
        if c["status"] in ("unavailable", "failed") and c.get("reason"):
            first = c["reason"].splitlines()[0]
            notes.append(f"{c['workload']}:{c['form']} {c['status']}: {first}")
    for c in cells:
        for w in c.get("warnings") or []:
            notes.append(f"warning {c['workload']}:{c['form']} {w}")
    return notes


def memory_note(cells: list[dict[str, Any]]) -> str:
    """What the memory column holds, cell by cell, from each cell's memory_source."""
    by_source: dict[str | None, list[str]] = {}
    shown = metrics.get("memory")
    for c in cells:
        if shown.summary(c) is None:  # a figure the table does not show needs no explaining
            continue
        sources = c.get("memory_source")
        for source in sources if isinstance(sources, list) else [sources]:
            by_source.setdefault(source, []).append(f"{c['workload']}:{c['form']}")
    if not by_source:
        # failed cells show no figure, even the samples an interrupted one kept (results.json has them)
        return "no cell here shows a memory figure"
    return "; ".join(f"{MEMORY_SOURCES.get(src, src) if src else 'a figure whose kind the file does not record'}"
                     f" for {', '.join(names)}" for src, names in by_source.items())
