"""`harness doctor`: which tools each form needs, whether they are here, how to fix them."""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from harness import forms as form_registry
from harness.build.cache import Cache, default_cache_dir, require_writable
from harness.commands import path
from harness.errors import UsageError
from harness.run import doctor

EXIT_OK, EXIT_CANNOT_RUN = 0, 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check the tools every form needs, and say how to fix what is missing",
        description="Check each tool the deployment forms need (Docker engine, the Alpine base, QEMU "
                    "and whether KVM really boots a guest, mmdebstrap, mkfs.ext4, qemu-img, musl, "
                    "linux-source-6.1, busybox-static, kraft) and print a table with the fix for "
                    "every missing one. 'limited' means the form runs, but not at its best: TCG "
                    "instead of KVM, or the Alpine stand-in instead of Alpine.",
        epilog="exit codes: 0 every form asked for with --forms can run (or no --forms given), "
               "1 some form asked for cannot run here, 2 bad input",
    )
    p.add_argument("--forms", default=None, metavar="LIST",
                   help="forms that must be runnable, comma-separated (forms or groups: "
                        + ", ".join(list(form_registry.ORDER) + list(form_registry.GROUPS))
                        + "); default: report all, never fail")
    p.add_argument("--no-probe", action="store_true",
                   help="do not boot the KVM probe guest; only report /dev/kvm")
    p.add_argument("--cache", type=path, default=None, metavar="DIR",
                   help="cache holding the KVM probe's verdict (default $HARNESS_CACHE or ~/.cache/harness)")
    p.set_defaults(func=main)


def parse_forms(text: str) -> list[str]:
    """Forms and groups, comma-separated, in table order; UsageError naming the bad one."""
    names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise UsageError(f"--forms {text!r} has an empty name; e.g. --forms scratch,vm")
    chosen: set[str] = set()
    for name in names:
        if name in form_registry.GROUPS:
            chosen.update(form_registry.GROUPS[name])
        elif name in form_registry.ORDER:
            chosen.add(name)
        else:
            choices = ", ".join(list(form_registry.ORDER) + list(form_registry.GROUPS))
            raise UsageError(f"unknown form {name!r} in --forms; choose from {choices}")
    return [f for f in form_registry.ORDER if f in chosen]


def render(checks: list[doctor.Check], verdicts: list[doctor.FormVerdict]) -> str:
    """The tools table and one line per form."""
    rows = [[c.tool, c.status, c.detail, c.fix or "-"] for c in checks]
    lines = [tabulate(rows, headers=["tool", "status", "found", "fix"], tablefmt="simple",
                     maxcolwidths=[None, None, 64, 48]), ""]
    for v in verdicts:
        if v.runnable and v.limits:
            lines.append(f"{v.form}: can run (limited: {', '.join(v.limits)})")
        elif v.runnable:
            lines.append(f"{v.form}: can run")
        else:
            lines.append(f"{v.form}: cannot run (missing: {', '.join(v.blockers)})")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    asked = parse_forms(args.forms) if args.forms is not None else None
    names = asked or doctor.all_forms()
    cache_dir = args.cache or default_cache_dir()
    if not args.no_probe:
        require_writable(cache_dir)  # the probe's guest and verdict are kept there
        if any(f in ("vm", "lupine", "unikraft") for f in names):
            print("doctor: probing whether KVM boots a guest (cached after the first time)...",
                  file=sys.stderr, flush=True)
    checks, verdicts = doctor.diagnose(names, Cache(cache_dir), probe=not args.no_probe)
    print(render(checks, verdicts))
    if asked and any(not v.runnable for v in verdicts):
        return EXIT_CANNOT_RUN
    return EXIT_OK
