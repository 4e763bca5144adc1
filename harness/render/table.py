"""The run's table: a row per workload and form, in markdown (tabulate).

Cells render as strings chosen here, so the table library never reformats a
number or prints nan/None: a missing figure is `n/a`, a failed or unavailable
cell says so, and footnotes explain every mark (* stand-in base, † emulated
under TCG, unavailable and failed reasons).
"""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from harness.measure.memory import MEMORY_SOURCES
from harness.render.units import MISSING, fmt_bytes, fmt_seconds

HEADERS = ("workload", "form", "status", "artifact (shipped)", "boot median [IQR]", "memory median", "measured with")
ALIGN = ("left", "left", "left", "right", "right", "right", "left")


def is_emulated(cell: dict[str, Any]) -> bool:
    details = cell.get("details") or {}
    return bool(details.get("emulated")) or details.get("accelerator") == "tcg"


def is_stand_in(cell: dict[str, Any]) -> bool:
    return bool((cell.get("details") or {}).get("stand_in"))


def cell_marks(cell: dict[str, Any]) -> str:
    """* for a stand-in base, † for figures emulated under TCG."""
    return ("*" if is_stand_in(cell) else "") + ("†" if is_emulated(cell) else "")


def form_label(cell: dict[str, Any]) -> str:
    return cell["form"] + cell_marks(cell)


def boot_text(cell: dict[str, Any]) -> str:
    s = (cell.get("summary") or {}).get("boot_s")
    if cell["status"] != "ok" or not s:
        return _status_marker(cell)
    return f"{fmt_seconds(s['median'])} [{fmt_seconds(s['p25'])} – {fmt_seconds(s['p75'])}]"


def memory_text(cell: dict[str, Any]) -> str:
    s = (cell.get("summary") or {}).get("memory_bytes")
    if cell["status"] != "ok":
        return _status_marker(cell)
    if not s:
        return MISSING
    return fmt_bytes(s["median"])


def size_text(cell: dict[str, Any]) -> str:
    size = (cell.get("size") or {}).get("artifact_bytes")
    if size is None:
        return _status_marker(cell)
    return fmt_bytes(size)


def _status_marker(cell: dict[str, Any]) -> str:
    return {"failed": "failed", "unavailable": MISSING}.get(cell["status"], MISSING)


def measured_with(cell: dict[str, Any]) -> str:
    d = cell.get("details") or {}
    if cell["status"] == "unavailable":
        return ""
    parts: list[str] = []
    if d.get("accelerator"):
        vmm = str(d.get("vmm") or "qemu").split(" (")[0] + f", {d['accelerator']}"
        if d.get("tcg_tb_size_mib"):
            vmm += f" (tb-size {d['tcg_tb_size_mib']} MiB)"
        if d.get("guest_memory_mib"):
            vmm += f", -m {d['guest_memory_mib']} MiB"
        parts.append(vmm)
    elif d.get("engine"):
        parts.append(str(d["engine"]))
    if d.get("base") and d.get("base") != "scratch":
        parts.append(f"base {d.get('stand_in_for', d['base'])}" + (" (stand-in)" if is_stand_in(cell) else ""))
    if d.get("kernel_kind"):
        parts.append(f"{d['kernel_kind']} kernel")
    return "; ".join(parts)


def rows(results: dict[str, Any]) -> list[list[str]]:
    return [
        [c["workload"], form_label(c), c["status"], size_text(c), boot_text(c), memory_text(c), measured_with(c)]
        for c in results["cells"]
    ]


def interrupted_note(results: dict[str, Any]) -> str | None:
    """For a run that did not finish: which cells of its matrix it never measured."""
    if not results.get("interrupted"):
        return None
    done = {f"{c['workload']}:{c['form']}" for c in results["cells"]}
    planned = (results.get("settings") or {}).get("cells") or []
    missing = [key for key in planned if key not in done]
    how = f" ({results['killed']})" if results.get("killed") else ""
    text = f"run interrupted{how}: {len(done)} of {len(planned) or len(done)} cells recorded"
    return text + (f"; not measured: {', '.join(missing)}" if missing else "")


def footnotes(results: dict[str, Any]) -> list[str]:
    cells = results["cells"]
    notes: list[str] = []
    interrupted = interrupted_note(results)
    if interrupted:
        notes.append(interrupted)
    settings = results.get("settings") or {}
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
    notes.append("artifact = bytes shipped to deploy the form (compressed image layers, compressed "
                 "qcow2, or kernel + initramfs); boot = median of the repetitions [p25 – p75], "
                 "start request to readiness; memory = " + memory_note(cells) + "; guest used = the "
                 "guest kernel's MemTotal − MemAvailable after readiness (guests only).")
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
    for c in cells:
        if not (c.get("summary") or {}).get("memory_bytes"):
            continue
        sources = c.get("memory_source")
        for source in sources if isinstance(sources, list) else [sources]:
            by_source.setdefault(source, []).append(f"{c['workload']}:{c['form']}")
    if not by_source:
        return "no memory figure was measured"
    return "; ".join(f"{MEMORY_SOURCES.get(src, src) if src else 'a figure whose kind the file does not record'}"
                     f" for {', '.join(names)}" for src, names in by_source.items())


def render_markdown(results: dict[str, Any], tablefmt: str = "pipe") -> str:
    """The run's table: size, boot [IQR] and memory per cell, one unit per column, then footnotes."""
    from harness.render import formats  # formats builds on this module's labels

    if tablefmt != "pipe":
        return tabulate(rows(results), headers=HEADERS, tablefmt=tablefmt, colalign=ALIGN,
                        disable_numparse=True) + "\n\n" + "\n".join(f"- {n}" for n in footnotes(results)) + "\n"
    return formats.render_markdown(results)
