"""Per-sample parent cgroups: names per engine driver, peaks that outlive the container, cleanup.

The real engine and the host's own cgroup hierarchy are used where this host
has them (cgroupfs driver here). The v2 and systemd layouts are checked on a
folder laid out like /sys/fs/cgroup, because this host has neither; that is
the boundary the test cannot cross for real.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from harness import workloads
from harness.build import binary as binary_build
from harness.forms.scratch import ScratchForm
from harness.run import cgroup, engine
from harness.run.cgroup import PeakCgroup


def test_names_follow_the_engine_driver(tmp_path: Path) -> None:
    fs = PeakCgroup("harness_ab12_3", "cgroupfs", root=tmp_path)
    sd = PeakCgroup("harness_ab12_3", "systemd", root=tmp_path)
    assert fs.engine_parent == "/harness_ab12_3"
    assert sd.engine_parent == "harness_ab12_3.slice"
    assert "-" not in sd.engine_parent.removesuffix(".slice"), "a dash would nest the slice"
    assert fs.memory_dir == tmp_path / "harness_ab12_3"          # v2: one hierarchy
    (tmp_path / "memory").mkdir()
    assert fs.memory_dir == tmp_path / "memory" / "harness_ab12_3"  # v1: the memory hierarchy
    with pytest.raises(ValueError, match="driver"):
        PeakCgroup("x", "lxc", root=tmp_path)


def test_v2_peak_is_read_from_memory_peak_and_the_parent_removed(tmp_path: Path) -> None:
    peak = PeakCgroup(cgroup.prefix("r1") + "1", "cgroupfs", root=tmp_path)
    assert peak.prepare()
    (peak.memory_dir / "memory.peak").write_text("123456\n")
    assert peak.peak() == 123456
    (peak.memory_dir / "memory.peak").unlink()  # rmdir works on a cgroup, not on a folder with files
    other = PeakCgroup(cgroup.prefix("r1") + "10", "cgroupfs", root=tmp_path)
    assert other.prepare()
    peak.remove()
    assert not peak.memory_dir.exists() and other.memory_dir.exists(), "removal is by exact name"
    cgroup.remove_run("r1", "cgroupfs", root=tmp_path)
    assert not other.memory_dir.exists()


def test_unreadable_peak_is_none_never_an_error(tmp_path: Path) -> None:
    peak = PeakCgroup("harness_x_1", "cgroupfs", root=tmp_path)
    assert peak.peak() is None
    assert PeakCgroup("harness_x_1", "cgroupfs", root=tmp_path / "absent").prepare() is False


def test_each_sample_gets_a_fresh_parent_that_is_gone_afterwards(docker_client, ctx) -> None:
    """Two samples of one run: two peaks, both real, and no parent cgroup left behind."""
    w = workloads.load("hello")
    form = ScratchForm()
    try:
        art = form.build(w, binary_build.build(w, ctx.cache), ctx)
        samples = [form.boot(art, w, ctx) for _ in range(2)]
    finally:
        form.cleanup(ctx)
    parents = [s.details["peak_cgroup"] for s in samples]
    assert len(set(parents)) == 2 and all(engine.cgroup_driver() in p for p in parents)
    assert all(s.memory["peak_bytes"] and s.memory["peak_bytes"] > 100_000 for s in samples)
    hierarchies = [cgroup.ROOT] if not cgroup.is_v1() else [p for p in cgroup.ROOT.iterdir() if p.is_dir()]
    left = [str(p) for h in hierarchies for p in h.glob(cgroup.prefix(ctx.run_id) + "*")]
    assert left == []


def test_cleanup_removes_the_parents_an_interrupted_sample_left(docker_client) -> None:
    run_id = "t" + secrets.token_hex(4)
    peak = PeakCgroup(cgroup.prefix(run_id) + "1", engine.cgroup_driver())
    assert peak.prepare(), f"cannot make {peak.memory_dir}: the harness runs as root"
    cgroup.remove_run(run_id, engine.cgroup_driver())
    assert not peak.memory_dir.exists()
