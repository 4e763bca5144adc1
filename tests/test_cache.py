"""The build cache: entries appear whole or not at all, and what a killed build left is swept."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import pytest

from harness.build.cache import Cache, mounts_under, remove_tree


def test_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    with pytest.raises(RuntimeError):
        with cache.entry("kind", "k1") as entry:
            assert not entry.hit and entry.work is not None
            (entry.work / "half").write_text("x")
            raise RuntimeError("build failed")
    assert not (tmp_path / "kind" / "k1").exists()
    assert [p.name for p in (tmp_path / "kind").iterdir()] == [".k1.lock"]
    with cache.entry("kind", "k1") as entry:
        (entry.work / "whole").write_text("y")
    with cache.entry("kind", "k1") as entry:
        assert entry.hit and (entry.path / "whole").read_text() == "y"


def test_sweep_removes_unlocked_work_folders_only(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    stale = cache.dir("kind") / ".dead.abc123"
    busy = cache.dir("kind") / ".busy.def456"
    for work in (stale, busy):
        work.mkdir()
        (work / "partial").write_text("x")
    with open(cache.dir("kind") / ".busy.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a build filling .busy.* right now
        removed = cache.sweep_stale_work()
    assert removed == [stale] and not stale.exists() and busy.exists()


def test_remove_tree_detaches_mounts_first(tmp_path: Path) -> None:
    """A killed chroot build leaves /proc mounted in its root: never delete through a mount."""
    work = tmp_path / ".key.xyz"
    (work / "rootfs" / "proc").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(work / "rootfs" / "proc")], check=True)
    keep = work / "rootfs" / "proc" / "host-file"
    keep.write_text("on another filesystem")
    assert mounts_under(work) == [work / "rootfs" / "proc"]
    assert remove_tree(work) and not work.exists()
    assert mounts_under(tmp_path) == []


def test_sweep_kills_a_killed_harness_build_steps_before_removing_their_folder(tmp_path: Path) -> None:
    """SIGKILL on the harness leaves its build step running (mmdebstrap chrooted in the work
    folder, its apt and dpkg children, make in the kernel tree): the sweep stops them first."""
    import os
    import shutil
    import time

    import psutil

    cache = Cache(tmp_path / "cache")
    work = cache.dir("kind") / ".orphan.abc123"
    work.mkdir()
    shutil.copy2("/bin/busybox", work / "busybox")
    # a step in its own session whose parent is gone: a shell working in the folder, a child of
    # it working from elsewhere but writing into the folder, and a process chrooted into it
    step = subprocess.Popen(
        ["sh", "-c", f"(cd /; while :; do echo x >> {work}/log; sleep 0.1; done) & "
                     f"chroot {work} /busybox sleep 600 & wait"],
        cwd=work, start_new_session=True, stdin=subprocess.DEVNULL)
    def tree() -> list[psutil.Process]:
        return [psutil.Process(step.pid), *psutil.Process(step.pid).children(recursive=True)]

    def chrooted() -> bool:
        for p in tree():
            try:
                if os.readlink(f"/proc/{p.pid}/root") == str(work):
                    return True
            except OSError:
                continue  # a short-lived `sleep 0.1` of the writer
        return False

    deadline = time.monotonic() + 10
    while not (chrooted() and (work / "log").exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert chrooted(), "one is chrooted in the folder"
    steps = tree()
    removed = cache.sweep_stale_work()
    step.wait(10)  # reap the shell; its children were adopted by init
    assert removed == [work] and not work.exists()
    assert not [p for p in steps if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
