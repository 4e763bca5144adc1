"""`harness compare BASE NEW`: what changed between two runs, and is it real."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from harness.analyse.compare import ALPHA, GATE_VERDICTS, Comparison, compare, parse_threshold
from harness.analyse.metrics import get
from harness.commands import path
from harness.record import results as results_file
from harness.render.units import MISSING, column_unit, fmt_scaled


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two runs cell by cell",
                       description="For each cell in both runs and each metric (boot_s, memory_bytes, "
                                   "artifact_bytes): median ratio NEW/BASE, Mann-Whitney U p-value on the "
                                   f"raw samples (alpha {ALPHA}), and a verdict. A change is better/worse only "
                                   "when significant and beyond --threshold; one sample on a side is never "
                                   "significant. A cell measured in BASE that NEW lacks is 'missing'.",
                       epilog="exit codes: 0 compared, 1 --fail-on worse and some cell is worse, newly "
                              "failed or missing, 2 bad input")
    p.add_argument("base", type=path, metavar="BASE", help="the reference run folder")
    p.add_argument("new", type=path, metavar="NEW", help="the run folder to judge")
    p.add_argument("--threshold", default="10%", metavar="PCT", help="smallest change that counts (default 10%%)")
    p.add_argument("--fail-on", choices=("worse",), default=None,
                   help="exit 1 when some cell is worse, newly failed, or measured in BASE and absent from NEW")
    p.add_argument("--force", action="store_true",
                   help="also compare cells measured differently (accelerator, base image, stand-in, "
                        "kernel, guest memory, TCG cache, machine type; memory figures of another kind)")
    p.set_defaults(func=main)


def _fmt(metric_key: str, v: float | None) -> str:
    if v is None:
        return MISSING
    if metric_key == "*":
        return MISSING
    unit, scale = column_unit(get(metric_key).kind, [v])
    return f"{fmt_scaled(v, scale, unit)} {unit}"


def format_comparison(c: Comparison, threshold: float) -> str:
    rows = []
    for r in c.rows:
        rows.append([r.cell, r.metric if r.metric != "*" else "all", _fmt(r.metric, r.base), _fmt(r.metric, r.new),
                     MISSING if r.ratio is None else f"{r.ratio:.3f}",
                     MISSING if r.p_value is None else f"{r.p_value:.3f}", r.verdict, r.why])
    table = tabulate(rows, headers=["cell", "metric", "base median", "new median", "ratio", "p", "verdict", "why"],
                     tablefmt="pipe", disable_numparse=True,
                     colalign=("left", "left", "right", "right", "right", "right", "left", "left"))
    notes = [f"threshold {threshold:.0%}; Mann-Whitney U two-sided, alpha {ALPHA}; size has one value per "
             f"cell, so a change beyond the threshold counts as significant; lower is better"]
    notes += [f"only in NEW (nothing to compare with): {k}" for k in c.only_new] + c.notes
    counts = []
    for verdict, words in GATE_VERDICTS.items():
        hits = [r for r in c.worse if r.verdict == verdict]
        counts.append(f"{len(hits)} {words}" + (": " + ", ".join(
            r.cell if r.metric == "*" else f"{r.cell} {r.metric}" for r in hits) if hits else ""))
    notes.append("; ".join(counts))
    return table + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def main(args: argparse.Namespace) -> int:
    threshold = parse_threshold(args.threshold)
    base, new = results_file.load(args.base), results_file.load(args.new)
    result = compare(base, new, threshold, args.force)
    print(format_comparison(result, threshold), end="")
    return 1 if args.fail_on == "worse" and result.worse else 0
