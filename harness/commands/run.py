"""`harness run`: build and boot the matrix, record results, print the table."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import psutil

from harness import forms as form_registry
from harness import workloads
from harness.build.cache import default_cache_dir, require_writable
from harness.commands import path
from harness.commands.bases import REF_RE
from harness.errors import UsageError
from harness.record import results as results_file
from harness.render.formats import render_markdown
from harness.run import engine
from harness.run import matrix as matrix_mod
from harness.run.qemu import MIN_MEMORY_MIB
from harness.run.runner import Interrupted, RunSettings, run
from harness.units import parse_size

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="build and boot workloads in each form; measure size, boot time, memory",
        description="Build each workload once into a static binary, package it in each form, boot "
                    "each form --reps times (after --warmup boots kept apart), and record size, "
                    "boot time and memory in results.json; then print the table.",
        epilog="matrix SPEC:\n" + matrix_mod.HELP
               + "\nforms: " + ", ".join(form_registry.ORDER)
               + "; groups: " + ", ".join(f"{k} = {','.join(v)}" for k, v in form_registry.GROUPS.items())
               + "\n\nexit codes: 0 every cell ok or unavailable here, 1 some cell failed, "
                 "2 bad input, 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--matrix", required=True, metavar="SPEC", help="what to run, e.g. all, hello:scratch,alpine")
    p.add_argument("--reps", type=int, default=5, help="measured boots per cell (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up boots per cell, stored apart (default 1)")
    p.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS",
                   help="per-boot limit to readiness (default 180; TCG-emulated VMs are slow)")
    p.add_argument("--out", type=path, metavar="DIR",
                   help="run folder (default results/<UTC timestamp>/); never overwritten")
    p.add_argument("--allow-stand-ins", action="store_true",
                   help="when the Alpine base cannot be had, build a marked Alpine-like stand-in "
                        "from Debian packages instead of reporting alpine unavailable")
    p.add_argument("--alpine-base", default=None, metavar="REF",
                   help="Alpine base image (default alpine:3.20); it must hold /etc/alpine-release, "
                        "else the alpine cells are unavailable")
    p.add_argument("--memory", default=None, metavar="SIZE",
                   help="guest memory for VM and unikernel forms, with a unit (e.g. 512Mi); forms have defaults")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="QEMU accelerator: auto probes whether KVM really boots a guest, else TCG")
    p.add_argument("--lupine-kernel", choices=("specialised", "cloud"), default="specialised",
                   help="kernel of the lupine form: one built for the workload, or Debian's cloud kernel")
    p.add_argument("--cache", type=path, default=None, metavar="DIR",
                   help="build cache (default $HARNESS_CACHE or ~/.cache/harness)")
    p.add_argument("--builds", type=path, default=None, metavar="DIR", help="workload definitions (default builds/)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="run only the K-th of N round-robin slices of the matrix (join them with harness merge); "
                        "a slice beyond the matrix is an empty run")
    p.set_defaults(func=main)


def validate(args: argparse.Namespace) -> RunSettings:
    """Check every input before anything is built; UsageError names the fix."""
    if args.reps < 1:
        raise UsageError(f"--reps must be at least 1 (got {args.reps})")
    if args.warmup < 0:
        raise UsageError(f"--warmup must be 0 or more (got {args.warmup})")
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds (got {args.timeout:g})")
    if args.builds is not None and not args.builds.is_dir():
        raise UsageError(f"--builds {args.builds} is not a folder")
    if not workloads.available(args.builds):
        where = args.builds or workloads.default_builds_dir()
        raise UsageError(f"no workloads in {where}: each is a folder holding a workload.toml "
                         f"(see builds/hello/ for one)")
    odd = workloads.misnamed(args.builds)
    if odd:
        where = args.builds or workloads.default_builds_dir()
        raise UsageError(f"{where / odd[0]} holds a workload.toml, but {odd[0]!r} is no workload name: "
                         f"rename the folder with lowercase letters, digits, '-' and '_'")
    cells = matrix_mod.parse(args.matrix, args.builds)
    if not cells:
        raise UsageError(f"--matrix {args.matrix!r} selects nothing; try --matrix all")
    for name in dict.fromkeys(c.workload for c in cells):
        workloads.load(name, args.builds)  # a bad workload.toml is bad input: say so before building
    whole_matrix = cells
    if getattr(args, "shard", None):
        k, n = matrix_mod.parse_shard(args.shard)
        args.matrix_cells = [str(c) for c in cells]
        cells = matrix_mod.shard(cells, k, n)
        if not cells:
            print(f"harness: --shard {k}/{n} holds no cell: the matrix has {len(whole_matrix)}, "
                  f"taken by slices 1 to {len(whole_matrix)}; this slice records an empty run", file=sys.stderr)
    options: dict = {"accel": args.accel, "lupine_kernel": args.lupine_kernel}
    if args.memory is not None:
        memory = parse_size(args.memory, "--memory")
        if memory < MIN_MEMORY_MIB * 1024**2:
            raise UsageError(f"--memory {args.memory} is below what a guest can boot in; "
                             f"give at least {MIN_MEMORY_MIB}Mi (e.g. --memory 64Mi)")
        host = psutil.virtual_memory().total
        if memory > host:
            raise UsageError(f"--memory {args.memory} is more than this host's {host / 1024**3:.1f} GiB; "
                             f"give a guest less (e.g. --memory 512Mi)")
        # Judged on the whole matrix, so every shard of it records the same settings.
        if any(form_registry.get(c.form).family != "container" for c in whole_matrix):
            options["memory"] = memory
        else:  # containers get no memory setting: recording one would say otherwise
            print("harness: note: --memory applies to the VM and unikernel forms; "
                  "this matrix has none, so it is ignored", file=sys.stderr)
    if args.alpine_base is not None:
        if not REF_RE.match(args.alpine_base):
            raise UsageError(f"--alpine-base {args.alpine_base!r} is not an image name; write e.g. alpine:3.20")
        options["alpine_base"] = args.alpine_base
    if any(form_registry.get(c.form).family == "container" for c in cells) and not engine.reachable():
        raise UsageError(engine.engine_hint())
    cache_dir = args.cache or default_cache_dir()
    require_writable(cache_dir)
    return RunSettings(
        cells=cells, out_dir=args.out or Path("results"), cache_dir=cache_dir,
        reps=args.reps, warmup=args.warmup, timeout_s=args.timeout, allow_standins=args.allow_stand_ins,
        builds_dir=args.builds, options=options, matrix_spec=args.matrix, quiet=args.quiet,
    )


def main(args: argparse.Namespace) -> int:
    settings = validate(args)
    run_dir = results_file.claim_out_dir(args.out) if args.out else results_file.new_run_dir(settings.out_dir)
    path = run_dir / results_file.FILENAME
    try:
        res = run(settings, path)
        if getattr(args, "shard", None):
            # merge puts the slices back in the matrix's order with this
            res.settings["shard"] = {"spec": args.shard, "matrix_cells": args.matrix_cells}
            res.save()
    except Interrupted:
        try:  # what was measured before the interrupt is still a table
            print(render_markdown(results_file.load(path)), end="")
        except UsageError:
            pass
        print(f"interrupted; finished cells are in {path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except results_file.ResultsWriteError as exc:
        unsaved = getattr(exc, "results", None)
        if unsaved is not None and unsaved.cells:  # not on disk: at least the table is not lost
            print(render_markdown(unsaved.to_json()), end="")
            print(f"harness: error: {exc}; the table above holds cells that are not in it", file=sys.stderr)
        else:
            print(f"harness: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(render_markdown(res.to_json()), end="")
    print(f"results: {path}", file=sys.stderr)
    return EXIT_FAILED if any(c["status"] == "failed" for c in res.cells) else EXIT_OK
