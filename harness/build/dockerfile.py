"""Pre-flight checks of a container recipe, before the engine builds it.

Scratch has no shell and no loader: a shell-form CMD/ENTRYPOINT or a RUN
cannot work there, and the engine would only say so when the container
starts. Refusing early gives the user the reason and the fix.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments), continuation lines joined."""
    out: list[tuple[int, str, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((start, word.upper(), args.strip()))
    return out


def check_scratch(path: Path) -> None:
    """Refuse what a FROM scratch image cannot run: shell-form commands and RUN."""
    for number, word, args in instructions(path.read_text()):
        if word in ("CMD", "ENTRYPOINT") and not args.startswith("["):
            raise UsageError(
                f"{path}:{number}: shell-form {word} ({args}) needs /bin/sh, which scratch lacks; "
                f'use the exec form: {word} ["/workload"]'
            )
        if word == "RUN":
            raise UsageError(f"{path}:{number}: RUN needs a shell, which scratch lacks; build files on the host and COPY them")
