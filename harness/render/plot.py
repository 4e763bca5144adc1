"""Bar charts per metric from a saved run: median bars, IQR whiskers, marks you can see.

Drawn from the results file only (never from live state), with the Agg
backend so it works on a headless CI machine. Emulated (TCG) cells are
hatched `//` and stand-in bases `..`, both named in the legend, since a
TCG boot is one to two orders of magnitude slower than a KVM one (a size is
not emulated: its bars carry no hatch). A metric whose medians span more than
a factor of twenty gets a log axis, so the small bars stay visible. The
legend sits outside the axes, where it covers no bar. The memory chart's
footer says which kind of figure each bar is (cgroup working set or peak,
QEMU PSS), as the table's footnote does.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from harness.analyse.metrics import Metric, cell_key  # noqa: E402
from harness.render.rows import missing_text  # noqa: E402
from harness.render.table import is_emulated, is_stand_in, measured_with, memory_note  # noqa: E402
from harness.render.units import column_unit  # noqa: E402

EMULATED_HATCH = "//"
STAND_IN_HATCH = ".."
COLORS = {"vm": "#4c72b0", "container": "#55a868", "unikernel": "#c44e52"}
LOG_SPAN = 20.0


@dataclass(frozen=True)
class Bar:
    label: str
    median: float | None
    low: float | None
    high: float | None
    emulated: bool
    stand_in: bool
    family: str
    missing: str


def bars(results: dict[str, Any], metric: Metric) -> list[Bar]:
    out = []
    for c in results["cells"]:
        s = metric.summary(c)
        emulated = is_emulated(c) and metric.source != "size"  # emulation does not change a size
        out.append(Bar(cell_key(c), s.median if s else None, s.p25 if s else None, s.p75 if s else None,
                       emulated, is_stand_in(c), str(c.get("family", "")), missing_text(c, metric)))
    return out


def wants_log(values: list[float]) -> bool:
    positive = [v for v in values if v and v > 0]
    return bool(positive) and max(positive) / min(positive) > LOG_SPAN


def draw(results: dict[str, Any], metric: Metric):
    """One figure for one metric; the caller saves it."""
    data = bars(results, metric)
    present = [b.median for b in data if b.median is not None]
    unit, scale = column_unit(metric.kind, present)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(data) + 2), 4.5), dpi=100)
    xs = list(range(len(data)))
    log = wants_log(present)
    for x, b in zip(xs, data):
        if b.median is None:
            ax.annotate(b.missing, (x, 0), xytext=(0, 4), textcoords="offset points", ha="center",
                        va="bottom", fontsize=9, color="#777777", xycoords=("data", "axes fraction"))
            continue
        hatch = EMULATED_HATCH if b.emulated else STAND_IN_HATCH if b.stand_in else None
        err = None
        if metric.repeated and b.low is not None and b.high is not None:
            err = [[(b.median - b.low) / scale], [(b.high - b.median) / scale]]
        ax.bar(x, b.median / scale, yerr=err, capsize=4, color=COLORS.get(b.family, "#8172b2"),
               edgecolor="black", linewidth=0.6, hatch=hatch)
    ax.set_xlim(-0.6, len(data) - 0.4)
    ax.set_xticks(xs)
    ax.set_xticklabels([b.label + ("†" if b.emulated else "") + ("*" if b.stand_in else "") for b in data],
                       rotation=30, ha="right", rotation_mode="anchor")
    what = "median, whiskers p25–p75" if metric.repeated else "one value per cell"
    ax.set_ylabel(f"{metric.label} ({unit}){', log scale' if log else ''}")
    if log:
        ax.set_yscale("log")
        # From the decade below the smallest bar, so that every bar's height can be read off a tick.
        ax.set_ylim(bottom=10 ** math.floor(math.log10(min(v for v in present if v > 0) / scale)))
    tools = sorted({m for m in (measured_with(c) for c in results["cells"]) if m})
    ax.set_title(f"{metric.label}: {what}", fontsize=11)
    lines = ["measured with: " + (" | ".join(tools) if tools else "n/a")]
    if metric.key == "memory_bytes":  # bars of different kinds of figure: say which is which
        lines.insert(0, f"memory = {memory_note(results['cells'])}")
    width = int(fig.get_figwidth() * 18)
    footer = "\n".join(textwrap.fill(line, width=width) for line in lines)
    fig.text(0.01, 0.01, footer, fontsize=7, color="#444444", va="bottom")
    legend = [Patch(facecolor=color, edgecolor="black", label=family) for family, color in COLORS.items()
              if any(b.family == family for b in data)]
    if any(b.emulated for b in data):
        legend.append(Patch(facecolor="white", edgecolor="black", hatch=EMULATED_HATCH,
                            label="† emulated (QEMU TCG, no KVM)"))
    if any(b.stand_in for b in data):
        legend.append(Patch(facecolor="white", edgecolor="black", hatch=STAND_IN_HATCH, label="* stand-in base"))
    right = 1.0
    if legend:
        ax.legend(handles=legend, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        right = 0.78
    fig.tight_layout(rect=(0, 0.03 * (footer.count("\n") + 1) + 0.01, right, 1))
    # A long first label, slanted, can still reach past the left edge: move the axes over by that much.
    renderer = fig.canvas.get_renderer()
    overhang = -min((t.get_window_extent(renderer).x0 for t in ax.get_xticklabels()), default=0.0)
    if overhang > 0:
        box = ax.get_position()
        fig.subplots_adjust(left=box.x0 + (overhang + 4) / (fig.get_figwidth() * fig.dpi))
    return fig


def write_plots(results: dict[str, Any], metrics: list[Metric], out: Path) -> list[Path]:
    """metric.png and metric.svg per metric in out/; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for m in metrics:
        fig = draw(results, m)
        try:
            for ext in ("png", "svg"):
                path = out / f"{m.key}.{ext}"
                fig.savefig(path, format=ext)
                written.append(path)
        finally:
            plt.close(fig)
    return written
