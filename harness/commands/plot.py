"""`harness plot DIR`: PNG and SVG bar charts per metric from a saved run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.analyse.metrics import DEFAULT, METRICS, parse_list
from harness.commands import path
from harness.errors import UsageError
from harness.record import results as results_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw bar charts (PNG and SVG) of a saved run",
                       description="One chart per metric: median bars with p25-p75 whiskers; log scale when "
                                   "the values span more than two orders of magnitude; emulated (TCG) and "
                                   "stand-in cells hatched and named in the legend.",
                       epilog="exit codes: 0 charts written, 2 bad input or a damaged results file, "
                              "130 interrupted")
    p.add_argument("run", type=path, metavar="DIR", help="a run folder made by harness run")
    p.add_argument("--out", type=path, default=None, metavar="DIR", help="where to write (default DIR/plots)")
    p.add_argument("--metrics", default=None, metavar="LIST",
                   help=f"comma-separated, from {', '.join(m.name for m in METRICS)} (default {','.join(DEFAULT)})")
    p.set_defaults(func=main)


def plot(run: Path, out: Path | None = None, metrics: str | None = None) -> list[Path]:
    from harness.render.plot import write_plots  # matplotlib loads only when plotting

    path = results_file.resolve(run)
    results = results_file.load(path)
    target = out or path.parent / "plots"
    asked = parse_list(metrics)
    # A chart of nothing is no chart: only metrics some cell measured are drawn.
    drawn = [m for m in asked if any(m.summary(c) is not None for c in results["cells"])]
    if not drawn:
        raise UsageError(f"nothing to plot in {path}: no cell measured {', '.join(m.name for m in asked)} "
                         f"(every cell unavailable or failed?)")
    for m in asked:
        if m not in drawn:
            print(f"plot: no cell measured {m.name}; no {m.name} chart", file=sys.stderr)
    try:
        return write_plots(results, drawn, target)
    except OSError as exc:
        raise UsageError(f"cannot write plots to {target} ({exc.strerror}); pass a writable --out") from None


def main(args: argparse.Namespace) -> int:
    for p in plot(args.run, args.out, args.metrics):
        print(p)
    return 0
