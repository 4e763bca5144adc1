"""The few error types the pipeline speaks in.

The CLI turns a UsageError into one line and exit code 2; a form raising
Unavailable, BuildFailed or BootFailed becomes that cell's status and the run
goes on (failures are data, as in asv).
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class UsageError(HarnessError):
    """Bad input from the user: printed as one line naming the problem and the fix."""


class Unavailable(HarnessError):
    """A form cannot run on this machine (missing tool, no base image, ...)."""


class BuildFailed(HarnessError):
    """Building a form's artifact failed; the message carries the log's tail."""


class BootFailed(HarnessError):
    """A boot did not reach readiness; the message carries the console's tail."""


def tail(text: str, lines: int = 12) -> str:
    """Last lines of a log or console, for a failure's reason."""
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept)
