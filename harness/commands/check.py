"""`harness check DIR --baseline FILE.toml`: the CI gate; exit 1 if any band is missed."""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from harness.analyse.gates import Outcome, evaluate, load_baseline
from harness.analyse.metrics import cell_key
from harness.commands import path
from harness.record import results as results_file
from harness.render.table import cell_marks
from harness.render.units import MISSING


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="gate a run against a baseline of bands (CI)",
                       description="Check each [[check]] of the baseline TOML (workload, form, metric, "
                                   "statistic; midval with minpercent/maxpercent, or min/max) against the "
                                   "run. A missing result fails.",
                       epilog="exit codes: 0 all pass, 1 some check failed, 2 bad input")
    p.add_argument("run", type=path, metavar="DIR", help="a run folder made by harness run")
    p.add_argument("--baseline", type=path, required=True, metavar="FILE.toml", help="e.g. builds/baselines/ci.toml")
    p.set_defaults(func=main)


def _value(o: Outcome) -> str:
    if o.value is None:
        return MISSING
    if o.check.metric.kind == "bytes" and o.check.statistic not in ("n", "outliers"):
        return f"{o.value:.0f}"
    return f"{o.value:.6g}"


def format_outcomes(outcomes: list[Outcome], results: dict | None = None) -> str:
    cells = {cell_key(c): c for c in (results or {}).get("cells", [])}
    marks = {o.check.key: cell_marks(cells[o.check.key]) for o in outcomes if o.check.key in cells}
    rows = [[o.check.workload, o.check.form + marks.get(o.check.key, ""), o.check.metric.key, o.check.statistic,
             _value(o), o.check.band(),
             "pass" if o.passed else "FAIL", o.why] for o in outcomes]
    table = tabulate(rows, headers=["workload", "form", "metric", "statistic", "value", "band", "result", "why"],
                     tablefmt="pipe", disable_numparse=True,
                     colalign=("left", "left", "left", "left", "right", "left", "left", "left"))
    failed = sum(1 for o in outcomes if not o.passed)
    notes = []
    if any("*" in m for m in marks.values()):
        notes.append("* measured on the Alpine-like stand-in base, not Alpine")
    if any("†" in m for m in marks.values()):
        notes.append("† emulated under QEMU TCG: not comparable with KVM figures")
    return (table + f"\n\n{len(outcomes) - failed} passed, {failed} failed (values in s and bytes)\n"
            + "".join(f"{n}\n" for n in notes))


def check(run: Path, baseline: Path) -> tuple[str, bool]:
    checks = load_baseline(baseline)
    results = results_file.load(run)
    outcomes = evaluate(results, checks)
    return format_outcomes(outcomes, results), all(o.passed for o in outcomes)


def main(args: argparse.Namespace) -> int:
    text, ok = check(args.run, args.baseline)
    print(text, end="")
    return 0 if ok else 1
