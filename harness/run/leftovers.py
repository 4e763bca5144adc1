"""What a run killed outright leaves behind, and its removal by the next run.

A run that gets SIGINT, SIGTERM or SIGHUP cleans up after itself. One killed
with SIGKILL (or a machine that loses power) cannot: its QEMU children die
with it (parent-death signal), but its containers, parent cgroups, temp
folders and half-built cache entries stay. So every run registers itself in
one place per machine (/run/harness/<run id>.json: its process, start time,
temp folder and results file; when it ends, a note of when, in
/run/harness/ended, kept while a run that was alive then is still measuring)
and keeps its temporary files in one folder of its own; its containers carry
the same facts as labels. The next run removes whatever belongs to a run
whose process is gone, through the same cleanup each form does at the end of
a run, and marks that run's results file as interrupted. /run is emptied at boot, so after a power loss every
registration is gone and every labelled container or harness cgroup is an
orphan.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from harness.build.cache import Cache, remove_tree
from harness.record.results import ResultsWriteError, write_atomic
from harness.run import cgroup, engine

TEMP_PREFIX = "harness-run-"
ENDED = "ended"  # registry subfolder: when each run ended, so a run that began and ended during a cell is seen


def registry() -> Path:
    """Where this machine's runs register: /run/harness (root), else a folder in the temp dir."""
    for candidate in (Path("/run/harness"), Path(tempfile.gettempdir()) / "harness-registry"):
        try:
            candidate.mkdir(mode=0o755, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    raise OSError("no writable place to register the run (/run/harness or the temp folder)")


@dataclass(frozen=True)
class Owner:
    run_id: str
    pid: int
    started: float  # the process's start time, so a reused PID is not taken for the owner
    host: str
    temp: str
    results: str | None = None

    def alive(self) -> bool:
        return process_alive(self.pid, self.started)


def process_alive(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except psutil.Error:
        return False


def me() -> tuple[int, float]:
    proc = psutil.Process()
    return proc.pid, proc.create_time()


def claim(run_id: str, results: Path | None = None) -> Path:
    """Register this run and make its temp folder; returns the folder."""
    folder = Path(tempfile.gettempdir()) / f"{TEMP_PREFIX}{run_id}"
    folder.mkdir(mode=0o700)
    pid, started = me()
    owner = Owner(run_id, pid, started, socket.gethostname(), str(folder), str(results) if results else None)
    (registry() / f"{run_id}.json").write_text(json.dumps(asdict(owner)))
    return folder


def retire(run_id: str, folder: Path | None) -> None:
    """Release a run that ends now, first noting when it ended.

    The note is written before the registration goes, so a run looking at its
    neighbours (live ones first, then ended ones) never misses this one.
    """
    ended = registry() / ENDED
    try:
        ended.mkdir(mode=0o755, exist_ok=True)
        write_atomic(ended / f"{run_id}.json", {"run_id": run_id, "ended": time.time()})
    except (OSError, ResultsWriteError):
        pass  # without the note a neighbour's look may miss this run; the run itself is unharmed
    release(run_id, folder)
    _prune_ended()


def _ended_notes() -> Iterator[tuple[Path, str, float]]:
    """(file, run id, end time) of each readable end note."""
    for entry in (registry() / ENDED).glob("*.json"):
        try:
            note = json.loads(entry.read_text())
            yield entry, str(note["run_id"]), float(note["ended"])
        except (OSError, ValueError, TypeError, KeyError):
            continue  # being written right now, or not ours


def _prune_ended() -> None:
    """Drop the notes no live run can need: those of runs that ended before every live one began."""
    oldest = min((o.started for o in owners() if o.alive()), default=float("inf"))
    for entry, _, ended in _ended_notes():
        if ended < oldest:
            entry.unlink(missing_ok=True)


def release(run_id: str, folder: Path | None) -> None:
    """Remove a run's temp folder and its registration."""
    if folder is not None:
        remove_tree(folder)
    try:
        (registry() / f"{run_id}.json").unlink()
    except OSError:
        pass


def owners() -> list[Owner]:
    found = []
    for entry in sorted(registry().glob("*.json")):
        try:
            found.append(Owner(**json.loads(entry.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # being written right now, or not ours
    return found


def others_running(run_id: str) -> list[Owner]:
    """Other runs measuring on this machine right now: their load disturbs this run's figures."""
    return [o for o in owners() if o.run_id != run_id and o.alive()]


def others_since(run_id: str, since: float) -> set[str]:
    """Other runs alive at any moment from `since` (time.time()) until now, the short ones too."""
    found = {o.run_id for o in others_running(run_id)}  # live ones first: see retire()
    return found | {rid for _, rid, ended in _ended_notes() if ended >= since and rid != run_id}


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


def _orphans(live: set[str]) -> set[str]:
    """Run ids on this host's containers and cgroups whose run is not alive."""
    host = socket.gethostname()
    found = {rid for rid in cgroup.run_ids() if rid not in live}
    for rid, pid, started in engine.labelled_runs(host):
        alive = process_alive(pid, started) if pid is not None and started is not None else rid in live
        if not alive and rid not in live:
            found.add(rid)
    return found


def sweep(cache: Cache, run_id: str, cleanup: Callable[[str], None],
          progress: Callable[[str], None]) -> list[str]:
    """Remove what killed runs left; cleanup(run_id) does the forms' own cleanup. Returns what was removed."""
    removed = []
    everyone = owners()
    dead = [o for o in everyone if o.run_id != run_id and not o.alive()]
    if dead:
        progress(f"removing what {len(dead)} killed run(s) left ...")
    for owner in dead:
        cleanup(owner.run_id)
        _mark_interrupted(owner.results, run_id)
        release(owner.run_id, Path(owner.temp))
        removed.append(f"run {owner.run_id} (pid {owner.pid})")
    live = {o.run_id for o in everyone if o.run_id == run_id or o.alive()}
    for orphan in sorted(_orphans(live) - {o.run_id for o in dead}):
        cleanup(orphan)
        removed.append(f"run {orphan} (no registration left)")
    from harness.run import qemu  # QEMU's own temp dirs: a killed doctor or probe leaves them too

    dirs = qemu.sweep_stale_dirs()
    if dirs:
        removed.append(f"{len(dirs)} QEMU temp folder{'' if len(dirs) == 1 else 's'}")
    works = cache.sweep_stale_work()
    if works:
        removed.append(f"{len(works)} half-built cache entr{'y' if len(works) == 1 else 'ies'}")
    if removed:
        progress(f"removed what killed runs left: {', '.join(removed)}")
    return removed
