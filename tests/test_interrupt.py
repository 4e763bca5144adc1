"""SIGINT and SIGTERM to `harness run` mid-boot: exit 130, nothing left, finished cells kept.

Both a container boot and a VM boot (a real QEMU guest) are interrupted.

Also inspects the booting container: the workload runs as an unprivileged
user with every capability dropped, and published ports bind 127.0.0.1 only.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import docker
import pytest

from harness.run.qemu import Accelerator, Forward, GuestSpec, build_argv
from leaks import LABEL, LeakCheck, marked_qemu_pids, leak_check  # noqa: F401  (fixture)
from test_faults import HELLO_C, SLOW_C, Spawned, write_workload


def _booting_container(run_id: str, timeout: float = 60):
    """The run's container once the engine says it is running."""
    client = docker.from_env()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.containers.list(filters={"label": f"{LABEL}={run_id}", "status": "running"})
        if found:
            return found[0]
        time.sleep(0.05)
    pytest.fail(f"no running container labelled {LABEL}={run_id} within {timeout} s")


def _stop(run: Spawned, sig: signal.Signals = signal.SIGINT) -> None:
    """Signal the run and wait for it: it must exit 130 without a traceback."""
    try:
        run.proc.send_signal(sig)
        code = run.finish(timeout=60)
    finally:
        run.kill()
    assert code == 130, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_mid_boot_exits_130_and_leaves_nothing(sig: signal.Signals, tmp_path: Path,
                                                       leak_check: LeakCheck) -> None:
    builds = tmp_path / "builds"
    write_workload(builds, "quick", HELLO_C)
    write_workload(builds, "slow", SLOW_C)
    out = tmp_path / "out"
    run = Spawned(["run", "--matrix", "quick,slow:scratch", "--reps", "1", "--warmup", "0",
                   "--timeout", "120", "--builds", str(builds), "--out", str(out)], leak_check)
    try:
        run.wait_for("[2/2] slow:scratch")
        run_id = json.loads((out / "results.json").read_text())["settings"]["run_id"]
        leak_check.watch_run(run_id)
        container = _booting_container(run_id)
        attrs = container.attrs
        assert attrs["Config"]["User"] == "65534:65534", "the workload never runs as root"
        assert attrs["HostConfig"]["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in (attrs["HostConfig"]["SecurityOpt"] or [])
        _stop(run, sig)
    finally:
        run.kill()
    data = json.loads((out / "results.json").read_text())
    assert data["interrupted"] is True
    assert [(c["workload"], c["status"]) for c in data["cells"]] == [("quick", "ok"), ("slow", "failed")]
    assert data["cells"][1]["reason"].startswith(f"interrupted ({sig.name}) after 0 of 1 repetitions")
    assert "run interrupted: 2 of 2 cells recorded" in harness_report(out)
    assert "| quick" in "".join(run.stdout) and "run interrupted" in "".join(run.stdout), "the table is printed"
    assert not docker.from_env().containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})


def test_sigint_mid_vm_boot_exits_130_with_no_qemu_left(tmp_path: Path, leak_check: LeakCheck) -> None:
    """Ctrl-C while QEMU boots the full VM: exit 130, QEMU gone, the finished cell kept."""
    out = tmp_path / "out"
    run = Spawned(["run", "--matrix", "http:scratch hello:vm", "--reps", "1", "--warmup", "0",
                   "--timeout", "300", "--out", str(out)], leak_check)
    try:
        # The VM image may be built here first (minutes on a new machine).
        run.wait_for("vm: booting hello", timeout=1200)
        leak_check.watch_results(out / "results.json")
        deadline = time.monotonic() + 60
        while not marked_qemu_pids(leak_check.marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marked_qemu_pids(leak_check.marker), "QEMU never started"
        time.sleep(3)  # well inside the boot: a TCG boot of this VM takes tens of seconds
        assert not any("hello:vm rep 1/1" in line for line in run.lines), "the boot finished too soon"
        _stop(run)
    finally:
        run.kill()
    assert not marked_qemu_pids(leak_check.marker), "QEMU outlived the interrupted run"
    data = json.loads((out / "results.json").read_text())
    assert data["interrupted"] is True
    assert [(c["workload"], c["form"], c["status"]) for c in data["cells"]] == [
        ("http", "scratch", "ok"), ("hello", "vm", "failed")]
    assert data["cells"][0]["samples"][0]["boot_s"] > 0
    assert data["cells"][1]["reason"].startswith("interrupted (SIGINT)")


def harness_report(out: Path) -> str:
    from harness.commands.report import report

    return report(out)


def test_published_ports_bind_loopback_only(tmp_path: Path, leak_check: LeakCheck) -> None:
    """The http workload's port is published on 127.0.0.1, never on every interface."""
    out = tmp_path / "out"
    run = Spawned(["run", "--matrix", "http:scratch", "--reps", "3", "--warmup", "0", "--out", str(out)],
                  leak_check)
    try:
        run.wait_for("[1/1] http:scratch")
        run_id = json.loads((out / "results.json").read_text())["settings"]["run_id"]
        leak_check.watch_run(run_id)
        container = _booting_container(run_id)
        bindings = container.attrs["HostConfig"]["PortBindings"]
        hosts = {b["HostIp"] for spec in bindings.values() for b in spec}
        assert hosts == {"127.0.0.1"}, bindings
        code = run.finish()
    finally:
        run.kill()
    assert code == 0, run.stderr[-3000:]


def test_qemu_port_forwards_bind_loopback_only() -> None:
    """Every hostfwd QEMU is given names 127.0.0.1 as its host address."""
    spec = GuestSpec(accel=Accelerator("tcg", "test"), kernel=Path("/boot/vmlinuz"),
                     forwards=[Forward(18080, 8080), Forward(18081, 22)])
    netdev = next(a for a in build_argv(spec) if a.startswith("user,"))
    forwards = [part for part in netdev.split(",") if part.startswith("hostfwd=")]
    assert len(forwards) == 2
    assert all(part.startswith("hostfwd=tcp:127.0.0.1:") for part in forwards), netdev


def _killed_mid_boot(tmp_path: Path, leak_check: LeakCheck) -> tuple[Path, str]:
    """A run SIGKILLed while its container boots; (its builds folder, its run id)."""
    builds = tmp_path / "builds"
    write_workload(builds, "quick", HELLO_C)
    write_workload(builds, "slow", SLOW_C)
    run = Spawned(["run", "--matrix", "slow:scratch", "--reps", "1", "--warmup", "0", "--timeout", "120",
                   "--builds", str(builds), "--out", str(tmp_path / "killed")], leak_check)
    try:
        run.wait_for("[1/1] slow:scratch")
        run_id = json.loads((tmp_path / "killed" / "results.json").read_text())["settings"]["run_id"]
        leak_check.watch_run(run_id)
        _booting_container(run_id)
        run.proc.kill()
        run.proc.wait(10)
    finally:
        run.kill()
    return builds, run_id


def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path: Path, leak_check: LeakCheck) -> None:
    """SIGKILL cannot be caught: the container stays, until the next run finds its owner gone."""
    builds, run_id = _killed_mid_boot(tmp_path, leak_check)
    killed_out, next_out = tmp_path / "killed", tmp_path / "next"
    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"}), "SIGKILL left it, as expected"
    assert leak_check.tmpdir is not None and list(leak_check.tmpdir.glob(f"harness-run-{run_id}"))
    # Before any run has found it, its file has no end: a report must not pass it off as complete.
    assert "run not finished (still running, or killed before it could say so): 0 of 1 cells recorded; " \
           "not yet measured: slow:scratch" in harness_report(killed_out)
    after = Spawned(["run", "--matrix", "quick:scratch", "--reps", "1", "--warmup", "0",
                     "--builds", str(builds), "--out", str(next_out)], leak_check)
    assert after.finish(timeout=120) == 0, after.stderr[-3000:]
    assert f"removed what killed runs left: run {run_id}" in after.stderr
    assert not client.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})
    assert not list(leak_check.tmpdir.glob(f"harness-run-{run_id}"))
    killed = json.loads((killed_out / "results.json").read_text())
    assert killed["interrupted"] is True and "without finishing" in killed["killed"]
    assert "run interrupted (its process ended without finishing" in harness_report(killed_out)


def test_sigkill_mid_guest_boot_takes_qemu_with_it(leak_check: LeakCheck, tmp_path: Path) -> None:
    """QEMU gets the parent-death signal: a harness killed outright leaves no guest running."""
    run = Spawned(["run", "--matrix", "hello:lupine", "--reps", "5", "--warmup", "0",
                   "--out", str(tmp_path / "out")], leak_check)
    try:
        run.wait_for("[1/1] hello:lupine", timeout=900)
        deadline = time.monotonic() + 600  # the kernel may be built first on a new machine
        while not marked_qemu_pids(leak_check.marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marked_qemu_pids(leak_check.marker), "QEMU never started"
        run.proc.kill()
        run.proc.wait(10)
    finally:
        run.kill()
    deadline = time.monotonic() + 5
    while marked_qemu_pids(leak_check.marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not marked_qemu_pids(leak_check.marker), "QEMU outlived a harness killed with SIGKILL"
    # Its temp folder is the next run's to remove; do that here, as a next run would.
    from harness.run import leftovers

    for owner in leftovers.owners():
        if not owner.alive() and leak_check.tmpdir is not None and str(leak_check.tmpdir) in owner.temp:
            leftovers.release(owner.run_id, Path(owner.temp))


@pytest.mark.parametrize("forget", ["temp folder", "registration"])
def test_sigkill_leftovers_are_found_even_when_their_records_are_gone(tmp_path: Path, leak_check: LeakCheck,
                                                                    forget: str) -> None:
    """A tmp cleaner (or a reboot's empty /run) took the run's records: labels and cgroup names still tell."""
    from harness.run import cgroup, leftovers

    builds, run_id = _killed_mid_boot(tmp_path, leak_check)
    [owner] = [o for o in leftovers.owners() if o.run_id == run_id]
    if forget == "temp folder":
        shutil.rmtree(owner.temp)
    else:
        leftovers.release(run_id, Path(owner.temp))
    assert run_id in cgroup.run_ids(), "the killed sample's parent cgroup is still there"
    after = Spawned(["run", "--matrix", "quick:scratch", "--reps", "1", "--warmup", "0",
                     "--builds", str(builds), "--out", str(tmp_path / "next")], leak_check)
    assert after.finish(timeout=120) == 0, after.stderr[-3000:]
    assert f"run {run_id}" in after.stderr
    assert not docker.from_env().containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})
    assert run_id not in cgroup.run_ids()
    assert not [o for o in leftovers.owners() if o.run_id == run_id]


def test_sigint_mid_image_build_says_what_it_stopped_and_leaves_nothing(tmp_path: Path,
                                                                       leak_check: LeakCheck) -> None:
    """Interrupted while the engine builds the image: the reason names the build, not repetitions."""
    builds = tmp_path / "builds"
    write_workload(builds, "slowbuild", HELLO_C)
    (builds / "slowbuild" / "alpine.Dockerfile").write_text(
        "ARG BASE=alpine:3.20\nFROM ${BASE}\nRUN sleep 30\nCOPY workload /usr/local/bin/workload\n"
        'ENTRYPOINT ["/usr/local/bin/workload"]\n')
    out = tmp_path / "out"
    client = docker.from_env()
    containers_before = {c.id for c in client.containers.list(all=True)}
    dangling_before = {i.id for i in client.images.list(filters={"dangling": True})}
    run = Spawned(["run", "--matrix", "slowbuild:alpine", "--reps", "1", "--warmup", "0", "--allow-stand-ins",
                   "--builds", str(builds), "--out", str(out)], leak_check)
    try:
        run.wait_for("slowbuild:alpine building image")
        leak_check.watch_run(json.loads((out / "results.json").read_text())["settings"]["run_id"])
        time.sleep(2)  # the engine is in the RUN step now
        _stop(run)
    finally:
        run.kill()
    [cell] = json.loads((out / "results.json").read_text())["cells"]
    assert cell["reason"] == "interrupted (SIGINT) while building the alpine artifact; nothing was measured"
    def left() -> tuple[set[str], set[str]]:
        return ({c.id for c in client.containers.list(all=True)} - containers_before,
                {i.id for i in client.images.list(filters={"dangling": True})} - dangling_before)
    deadline = time.monotonic() + 45  # the engine may finish the step it was in; nothing of it may stay
    while time.monotonic() < deadline and left() != (set(), set()):
        time.sleep(1)
    assert left() == (set(), set()), "the build's step container and layers are gone"
