"""What a run killed outright leaves behind, and its removal by the next run.

A run that gets SIGINT, SIGTERM or SIGHUP cleans up after itself. One killed
with SIGKILL (or a machine that loses power) cannot: its QEMU children die
with it (parent-death signal), but its containers, parent cgroups, temp
folders and half-built cache entries stay. So every run keeps its temporary
files in one folder, <tmp>/harness-run-<run id>/, with owner.json naming the
process that owns it; the next run removes whatever belongs to a run whose
owner is gone, through the same cleanup each form does at the end of a run,
and marks that run's results file as interrupted.
"""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from harness.build.cache import Cache, remove_tree
from harness.record.results import ResultsWriteError, write_atomic

PREFIX = "harness-run-"
OWNER = "owner.json"


@dataclass(frozen=True)
class Owner:
    run_id: str
    pid: int
    started: float  # the process's start time, so a reused PID is not taken for the owner
    host: str
    results: str | None = None

    def alive(self) -> bool:
        if self.host != socket.gethostname():
            return True  # another machine's run (a shared /tmp): not ours to judge
        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) < 1.0
        except psutil.Error:
            return False


def claim(run_id: str, results: Path | None = None) -> Path:
    """Make this run's temp folder and say who owns it."""
    folder = Path(tempfile.gettempdir()) / f"{PREFIX}{run_id}"
    folder.mkdir(mode=0o700)
    me = psutil.Process()
    owner = Owner(run_id, me.pid, me.create_time(), socket.gethostname(), str(results) if results else None)
    (folder / OWNER).write_text(json.dumps(asdict(owner)))
    return folder


def release(folder: Path) -> None:
    remove_tree(folder)


def stale(root: Path | None = None) -> list[tuple[Path, Owner]]:
    """Temp folders of runs whose owner process is gone."""
    found = []
    for folder in sorted(Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*")):
        try:
            owner = Owner(**json.loads((folder / OWNER).read_text()))
        except (OSError, ValueError, TypeError):
            continue  # being made right now, or not ours
        if not owner.alive():
            found.append((folder, owner))
    return found


def others_running(own: Path) -> list[Owner]:
    """Other runs measuring on this machine right now: their load disturbs this run's figures."""
    found = []
    for folder in sorted(own.parent.glob(f"{PREFIX}*")):
        if folder == own:
            continue
        try:
            owner = Owner(**json.loads((folder / OWNER).read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if owner.host == socket.gethostname() and owner.alive():
            found.append(owner)
    return found


def _mark_interrupted(results: str | None, by_run: str) -> None:
    if not results:
        return
    path = Path(results)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and not data.get("finished") and not data.get("interrupted"):
        data["interrupted"] = True
        data["killed"] = f"its process ended without finishing; found and cleaned up by run {by_run}"
        try:
            write_atomic(path, data)
        except ResultsWriteError:
            pass


def sweep(cache: Cache, own: Path, cleanup: Callable[[str], None],
          progress: Callable[[str], None]) -> list[str]:
    """Remove what killed runs left beside this run's folder `own`; cleanup(run_id) does the forms'
    own cleanup. Returns what was removed."""
    run_id = own.name.removeprefix(PREFIX)
    removed = []
    for folder, owner in stale(own.parent):
        cleanup(owner.run_id)
        _mark_interrupted(owner.results, run_id)
        release(folder)
        removed.append(f"run {owner.run_id} (pid {owner.pid})")
    works = cache.sweep_stale_work()
    if works:
        removed.append(f"{len(works)} half-built cache entr{'y' if len(works) == 1 else 'ies'}")
    if removed:
        progress(f"removed what killed runs left: {', '.join(removed)}")
    return removed
