"""`harness report DIR`: the tables of a saved run, in the format a reader needs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from harness.analyse.metrics import DEFAULT, METRICS, parse_list
from harness.commands import path
from harness.errors import UsageError
from harness.record import pytest_benchmark
from harness.record import results as results_file
from harness.render import formats

FORMAT_CHOICES = tuple(formats.FORMATS) + ("pytest-benchmark",)
NO_PIVOT = {"csv": "one row per sample", "json": "one entry per cell",
            "pytest-benchmark": "pytest-benchmark's own layout"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print the tables of a saved run",
                       description="Print the table of a run folder (or its results.json) as markdown, "
                                   "a GitHub job summary, LaTeX (booktabs), CSV (one row per sample), "
                                   "JSON, HTML, or pytest-benchmark JSON.",
                       epilog="exit codes: 0 printed (or written with --output), 2 bad input or a "
                              "damaged results file, 130 interrupted")
    p.add_argument("run", type=path, metavar="DIR", help="a run folder made by harness run")
    p.add_argument("--format", default="markdown", metavar="FORMAT",
                   help=f"one of {', '.join(FORMAT_CHOICES)} (default markdown)")
    p.add_argument("--metrics", default=None, metavar="LIST",
                   help=f"comma-separated, from {', '.join(m.name for m in METRICS)} (default {','.join(DEFAULT)})")
    p.add_argument("--pivot", action="store_true",
                   help="one table per metric: workloads as rows, forms as columns")
    p.add_argument("--output", type=path, default=None, metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=main)


def report(path: Path, fmt: str = "markdown", metrics: str | None = None, pivot: bool = False) -> str:
    if fmt not in FORMAT_CHOICES:
        raise UsageError(f"unknown --format {fmt!r}; choose from {', '.join(FORMAT_CHOICES)}")
    if pivot and fmt in NO_PIVOT:
        raise UsageError(f"--pivot shapes tables; --format {fmt} is {NO_PIVOT[fmt]}: drop --pivot, "
                         f"or use markdown, github, latex or html")
    results = results_file.load(path)
    if fmt == "pytest-benchmark":
        return pytest_benchmark.render(results)
    opts = formats.Options(metrics=tuple(parse_list(metrics)), pivot=pivot)
    return formats.render(results, fmt, opts)


def refuse_results_target(output: Path, source: Path) -> None:
    """A report never replaces measured data: not the run it reads, nor any other results file."""
    if output.resolve() == results_file.resolve(source).resolve():
        raise UsageError(f"--output {output} is the results file being reported; write the report elsewhere")
    if output.is_file():
        try:
            is_results = "schema_version" in json.loads(output.read_text(errors="replace"))
        except (ValueError, TypeError, OSError):
            is_results = False
        if is_results:
            raise UsageError(f"--output {output} holds harness results; they are never overwritten: "
                             f"write the report elsewhere")


def main(args: argparse.Namespace) -> int:
    if args.output:
        refuse_results_target(args.output, args.run)
    text = report(args.run, args.format, args.metrics, args.pivot)
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as exc:
            raise UsageError(f"cannot write --output {args.output} ({exc.strerror}); choose a writable path") from None
    else:
        print(text, end="")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if args.format == "github" and summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(text + "\n")
        except OSError as exc:
            raise UsageError(f"cannot append the job summary to GITHUB_STEP_SUMMARY={summary} "
                             f"({exc.strerror}); point it at a writable file or unset it") from None
    return 0
