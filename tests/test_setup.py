"""scripts/setup.sh's own repairs, run on real processes and files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_pid_files_left_by_a_dead_dockerd_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """A PID reused by another process is stale; a live containerd's is not touched."""
    fake = tmp_path / "containerd"  # a process whose name is containerd: a copy of sleep
    shutil.copy(shutil.which("sleep"), fake)
    live = subprocess.Popen([str(fake), "60"])
    other = subprocess.Popen(["sleep", "60"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        files = {}
        for name, pid in (("live", live.pid), ("reused", other.pid), ("dead", gone.pid), ("empty", "")):
            files[name] = tmp_path / f"{name}.pid"
            files[name].write_text(f"{pid}\n")
        proc = subprocess.run([REPO / "scripts" / "clear-stale-pidfiles", *map(str, files.values()),
                               str(tmp_path / "absent.pid")], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert files["live"].exists(), "a live containerd's pid file stays"
        for name in ("reused", "dead", "empty"):
            assert not files[name].exists(), f"the {name} pid file is removed"
            assert str(files[name]) in proc.stderr, "each removal is said"
    finally:
        for p in (live, other):
            p.kill()
            p.wait()
