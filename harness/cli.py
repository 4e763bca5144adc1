"""The `harness` command: parse, dispatch, and turn user errors into one line.

Every subcommand lives in harness/commands/. A UsageError anywhere becomes
`harness: error: ...` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys

from harness import __version__
from harness.commands import bases, check, compare, doctor, merge, plot, report, run
from harness.errors import UsageError

SUBCOMMANDS = (run, report, plot, compare, check, merge, bases, doctor)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at --help."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="harness",
        description="Build one workload as a VM, containers and unikernels; boot each; measure "
                    "image size, boot time and memory.",
        epilog="Start with `harness doctor`, then `harness run --matrix all`. Each command's --help "
               "gives its own exit codes; for all: 0 success, 2 bad input (a one-line error), "
               "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def glue_negative_values(argv: list[str]) -> list[str]:
    """`--memory -5Mi` -> `--memory=-5Mi`: argparse takes a value that starts with '-' (and is not
    a plain number) for an option and says only "expected one argument"; glued, the option's
    own check names what is wrong with the value."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        following = argv[i + 1] if i + 1 < len(argv) else ""
        if token.startswith("--") and "=" not in token and len(following) > 1 and following[0] == "-" \
                and (following[1].isdigit() or following[1] == "."):
            out.append(f"{token}={following}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def _stop(signum: int, frame: object) -> None:  # noqa: ARG001
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    # Every subcommand stops cleanly (its finally blocks run) on Ctrl-C, SIGTERM or SIGHUP,
    # also when started in the background, where SIGINT would otherwise be ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        args = build_parser().parse_args(glue_negative_values(sys.argv[1:] if argv is None else argv))
        return int(args.func(args))
    except UsageError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
