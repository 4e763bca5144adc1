"""Build steps run as child processes: logged, bounded in time, and stopped cleanly.

Every step (mmdebstrap, make, mkfs.ext4, qemu-img, apt-get download, ...)
runs in a process group of its own. When the harness is interrupted, or a
step runs past its limit, the whole group gets SIGTERM first, so that
mmdebstrap unmounts what it mounted in the new root and make stops its
compilers, and SIGKILL only after a grace period. A failed step is
BuildFailed with the tail of its output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from harness.errors import BuildFailed, tail

GRACE_S = 20.0
DEFAULT_TIMEOUT_S = 1800.0


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the step's process group, then SIGKILL what is left after GRACE_S."""
    for sig, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run(cmd: list[str], what: str, *, cwd: Path | None = None, log: Path | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S, env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None) -> str:
    """Run one step to completion and return its output (stdout and stderr, interleaved).

    log, when given, gets the command and its output appended; on_line sees
    each output line as it comes (for progress). Any exception while it runs
    (an interrupt included) stops the step's whole process group first.
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=None if env is None else dict(env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True)
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        stop(proc)

    watchdog = threading.Timer(timeout_s, expire)
    watchdog.daemon = True
    watchdog.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        rc = proc.wait()
    except BaseException:
        stop(proc)
        raise
    finally:
        watchdog.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
        if log is not None:
            with open(log, "a") as fh:
                fh.write(f"$ {' '.join(cmd)}\n{''.join(lines)}")
    output = "".join(lines)
    if timed_out.is_set():
        raise BuildFailed(f"{what} timed out after {timeout_s:.0f} s ({' '.join(cmd[:3])} ...):\n{tail(output)}")
    if rc != 0:
        raise BuildFailed(f"{what} failed (exit {rc}):\n{tail(output)}")
    return output


class Throttled:
    """Calls report with the latest non-empty line at most every every_s seconds (long makes)."""

    def __init__(self, report: Callable[[str], None], every_s: float) -> None:
        self.report = report
        self.every_s = every_s
        self.last = time.monotonic()

    def __call__(self, line: str) -> None:
        now = time.monotonic()
        if line.strip() and now - self.last >= self.every_s:
            self.report(line.strip())
            self.last = now
