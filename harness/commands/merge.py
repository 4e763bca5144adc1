"""`harness merge RUN... --out DIR`: join shards or partial runs into one run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import path
from harness.errors import UsageError
from harness.record import results as results_file
from harness.record.merge import Source, merge


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="join runs (e.g. --shard slices) into one run folder",
                       description="Join run folders into a new one. Refuses runs measured on a different "
                                   "machine, CPU, kernel, accelerators or tool versions (unless --force) and "
                                   "any cell present in two runs.",
                       epilog="exit codes: 0 merged, 2 bad input, runs that differ (without --force) "
                              "or a cell in two runs, 130 interrupted")
    p.add_argument("runs", type=path, nargs="+", metavar="RUN", help="run folders made by harness run")
    p.add_argument("--out", type=path, required=True, metavar="DIR", help="the new run folder; never overwritten")
    p.add_argument("--force", action="store_true", help="merge runs measured in different environments")
    p.set_defaults(func=main)


def merge_runs(runs: list[Path], out: Path, force: bool = False) -> tuple[Path, dict]:
    """Write the merged run; returns its file and what was written."""
    files = [results_file.resolve(r) for r in runs]
    for i, f in enumerate(files):
        if any(f.resolve() == g.resolve() for g in files[:i]):
            raise UsageError(f"{runs[i]} is given twice; pass each run once")
    sources = [Source(f, results_file.load(f)) for f in files]
    doc = merge(sources, force)
    path = results_file.claim_out_dir(out) / results_file.FILENAME
    results_file.write_atomic(path, doc)
    return path, doc


def main(args: argparse.Namespace) -> int:
    path, doc = merge_runs(args.runs, args.out, args.force)
    print(f"merged {len(args.runs)} runs: {path}")
    missing = doc["settings"].get("merge_missing")
    if missing:
        print(f"harness: note: no slice measured {len(missing)} cell(s) of the matrix: {', '.join(missing)}; "
              f"merge the missing slice too", file=sys.stderr)
    return 0
