"""`harness report DIR`: the tables of a saved run."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.record import results as results_file
from harness.render.table import render_markdown


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print the tables of a saved run",
                       description="Print the table of a run folder (or its results.json).")
    p.add_argument("run", type=Path, metavar="DIR", help="a run folder made by harness run")
    p.set_defaults(func=main)


def report(path: Path) -> str:
    return render_markdown(results_file.load(path))


def main(args: argparse.Namespace) -> int:
    print(report(args.run), end="")
    return 0
