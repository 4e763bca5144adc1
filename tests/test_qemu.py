"""The shared QEMU runner, with real QEMU guests (TCG on machines whose KVM cannot boot one).

The guest is the accelerator probe's: Debian's cloud kernel and a one-file
initramfs whose /init prints a marker (and, with harness_probe=stay, stays up).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from harness.build.cache import Cache
from harness.errors import Unavailable, UsageError
from harness.run import qemu
from leaks import QEMU, no_qemu_left, qemu_children  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("no_qemu_left")


@pytest.fixture(scope="module")
def probe(harness_cache: Cache) -> qemu.ProbeGuest:
    for tool in (QEMU, "apt-get", "dpkg-deb"):
        if not os.access(f"/usr/bin/{tool}", os.X_OK):
            pytest.fail(f"{tool} missing: run scripts/setup.sh")
    return qemu.probe_guest(harness_cache)


TCG = qemu.tcg("test")


# ------------------------------------------------------------------ argv


def test_argv_binds_forwards_to_loopback_and_bounds_tcg() -> None:
    spec = qemu.GuestSpec(accel=TCG, memory_mib=256, kernel=Path("/k/vmlinuz"), initrd=Path("/k/initrd"),
                          append="console=ttyS0", drives=[qemu.Drive(Path("/img/disk.raw"))],
                          forwards=[qemu.Forward(4321, 8080)])
    argv = qemu.build_argv(spec, Path("/tmp/x/qmp.sock"))
    assert argv[0] == QEMU and all(isinstance(a, str) for a in argv)
    assert argv[argv.index("-accel") + 1] == f"tcg,tb-size={qemu.TCG_TB_SIZE_MIB}"
    assert argv[argv.index("-m") + 1] == "256M"
    netdev = argv[argv.index("-netdev") + 1]
    assert "hostfwd=tcp:127.0.0.1:4321-:8080" in netdev
    assert "hostfwd=tcp::" not in netdev  # never on every interface
    assert "-no-reboot" in argv and "-nodefaults" in argv
    assert "virtio-blk-pci,drive=disk0" in argv and "virtio-net-pci,netdev=net0" in argv
    assert "snapshot=on" in argv[argv.index("-drive") + 1]
    assert "unix:/tmp/x/qmp.sock,server=on,wait=off" in argv
    flags = qemu.vmm_flags(argv)
    assert QEMU not in flags and "vmlinuz" in flags
    assert not any(f.startswith("/") or "=/" in f or ":/" in f for f in flags), flags
    assert any("hostfwd=tcp:127.0.0.1:<port>-:8080" in f for f in flags), "a boot's free port is not a flag"


def test_argv_kvm_has_no_tb_size_and_microvm_uses_mmio_devices() -> None:
    spec = qemu.GuestSpec(accel=qemu.Accelerator("kvm", "test"), machine="microvm",
                          kernel=Path("/k/vmlinuz"), drives=[qemu.Drive(Path("/d.raw"), snapshot=False)],
                          forwards=[qemu.Forward(1, 2)])
    argv = qemu.build_argv(spec)
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert "-qmp" not in argv
    assert "virtio-blk-device,drive=disk0" in argv and "virtio-net-device,netdev=net0" in argv
    assert "snapshot=on" not in argv[argv.index("-drive") + 1]


def test_no_forwards_means_no_nic() -> None:
    argv = qemu.build_argv(qemu.GuestSpec(accel=TCG, kernel=Path("/k")))
    assert "-netdev" not in argv and "-nic" not in argv


def test_bad_spec_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        qemu.build_argv(qemu.GuestSpec(accel=TCG, machine="q35", kernel=Path("/k")))
    with pytest.raises(UsageError):
        qemu.build_argv(qemu.GuestSpec(accel=TCG))
    with pytest.raises(UsageError):
        qemu.probe_accelerator(Cache(Path("/nonexistent")), "hvf")


def test_tcg_requested_needs_no_probe(tmp_path: Path) -> None:
    accel = qemu.probe_accelerator(Cache(tmp_path), "tcg")
    assert accel.name == "tcg" and accel.emulated and not accel.probed
    assert accel.tb_size_mib == qemu.TCG_TB_SIZE_MIB
    assert "requested" in accel.reason
    assert accel.to_json()["emulated"] is True
    assert not (tmp_path / "accel").exists()


# ------------------------------------------------------------------ real guests


@pytest.mark.qemu
@pytest.mark.slow
def test_kvm_probe_gives_a_verdict_that_boots_without_hanging_and_is_cached(
        tmp_path: Path, probe: qemu.ProbeGuest, harness_cache: Cache) -> None:
    """Case 07: on these machines /dev/kvm exists but hangs guests; the probe must time out and fall back."""
    cache = Cache(tmp_path)
    # Reuse the machine's probe guest (same key) instead of downloading the kernel again.
    src = probe.kernel.parent
    dst = cache.dir("qemu-probe") / src.name
    dst.mkdir()
    for f in src.iterdir():
        os.link(f, dst / f.name)
    t0 = time.monotonic()
    accel = qemu.probe_accelerator(cache, "auto", timeout_s=10)
    first_s = time.monotonic() - t0
    # A hung KVM probe costs its timeout plus a short TCG confirmation, never an unbounded wait.
    assert first_s < 10 + 45, f"probe took {first_s:.0f} s"
    assert accel.name in ("kvm", "tcg") and accel.reason
    if accel.name == "tcg":
        assert accel.emulated and accel.tb_size_mib == qemu.TCG_TB_SIZE_MIB
        assert "KVM" in accel.reason
        with pytest.raises(Unavailable) as refused:
            qemu.probe_accelerator(cache, "kvm")
        why = str(refused.value)
        assert why.startswith("--accel kvm was asked for, but ") and accel.reason in why
        assert why.endswith("use --accel auto (TCG, marked emulated) or a host where KVM works"), why
    assert not accel.cached
    t0 = time.monotonic()
    again = qemu.probe_accelerator(cache, "auto")
    assert time.monotonic() - t0 < 1.0
    assert again.cached and again.name == accel.name and again.reason == accel.reason
    # The verdict is true: the probe guest boots under the chosen accelerator, as QEMU confirms.
    with qemu.QemuProcess(qemu.probe_spec(probe, accel, stay=True)) as q:
        assert q.wait_for(lambda s: qemu.PROBE_MARKER in s, time.monotonic() + 60) is not None
        assert q.qmp("query-kvm")["enabled"] is (accel.name == "kvm")


@pytest.mark.qemu
@pytest.mark.slow
def test_console_lines_are_timestamped_as_they_arrive(probe: qemu.ProbeGuest) -> None:
    spec = qemu.probe_spec(probe, TCG)
    spec.append = spec.append.replace(" quiet", "")  # kernel messages first, then the marker
    with qemu.QemuProcess(spec) as q:
        assert q.spawn_t is not None
        line = q.wait_for(lambda s: qemu.PROBE_MARKER in s, time.monotonic() + 60)
        assert line is not None, q.tail()
        assert q.first_byte_t is not None and q.spawn_t < q.first_byte_t < line.t
        times = [ln.t for ln in q.lines()]
        assert times == sorted(times) and len(times) > 20
        assert q.pid > 0
        # The guest powers off; QEMU exits by itself and the console closes.
        assert q.wait_for(lambda s: False, time.monotonic() + 30) is None
        deadline = time.monotonic() + 10
        while q.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert q.returncode == 0


@pytest.mark.qemu
@pytest.mark.slow
def test_panicking_guest_exits_zero_without_readiness(probe: qemu.ProbeGuest) -> None:
    """Case 06: exit status 0 proves nothing; the marker was never seen."""
    spec = qemu.GuestSpec(accel=TCG, memory_mib=128, kernel=probe.kernel,
                          append="console=ttyS0 root=/dev/nonexistent panic=-1")
    with qemu.QemuProcess(spec) as q:
        t0 = time.monotonic()
        assert q.wait_for(lambda s: qemu.PROBE_MARKER in s, time.monotonic() + 60) is None
        assert time.monotonic() - t0 < 55, "wait_for must return when QEMU exits, not at the deadline"
        q.proc.wait(10)  # type: ignore[union-attr]
        assert q.returncode == 0
        assert "Kernel panic" in q.tail(), q.tail()


@pytest.mark.qemu
@pytest.mark.slow
def test_timeout_then_cleanup_leaves_nothing(probe: qemu.ProbeGuest) -> None:
    q = qemu.QemuProcess(qemu.probe_spec(probe, TCG, stay=True))
    with q:
        assert q.wait_for(lambda s: qemu.PROBE_MARKER in s, time.monotonic() + 60) is not None
        t0 = time.monotonic()
        assert q.wait_for(lambda s: "never printed" in s, time.monotonic() + 2) is None
        assert 1.9 < time.monotonic() - t0 < 4
        assert q.alive()
        assert q.qmp("query-status")["status"] == "running"
        tmp = q.tmp
        assert tmp is not None and (tmp / "qmp.sock").exists()
    assert not q.alive() and not tmp.exists()


@pytest.mark.qemu
@pytest.mark.slow
def test_exceptions_and_interrupts_still_stop_qemu(probe: qemu.ProbeGuest) -> None:
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        q = qemu.QemuProcess(qemu.probe_spec(probe, TCG, stay=True))
        with pytest.raises(type(exc)):
            with q:
                pid = q.pid
                raise exc
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert q.tmp is not None and not q.tmp.exists()


@pytest.mark.qemu
@pytest.mark.slow
def test_kill_all_stops_tagged_guests_only(probe: qemu.ProbeGuest) -> None:
    a = qemu.QemuProcess(qemu.probe_spec(probe, TCG, stay=True), tag="run-a").start()
    b = qemu.QemuProcess(qemu.probe_spec(probe, TCG, stay=True), tag="run-b").start()
    try:
        assert qemu.kill_all("run-a") == 1
        assert not a.alive() and b.alive()
        assert qemu.kill_all() >= 1
        assert not b.alive()
    finally:
        a.close()
        b.close()


def test_qemu_that_cannot_start_names_its_own_error_first(probe: qemu.ProbeGuest) -> None:
    """QEMU refusing the guest (no memory for it) is the failure's first line, not a bare 'console tail:'."""
    spec = qemu.probe_spec(probe, TCG, memory_mib=100_000 * 1024 * 1024)
    with qemu.QemuProcess(spec) as q:
        deadline = time.monotonic() + 30
        assert q.wait_for(lambda s: qemu.PROBE_MARKER in s, deadline) is None
        first = q.failure("probe", "console", 30, deadline).splitlines()[0]
    assert first.startswith("probe: QEMU exited (status 1) before readiness: "), first
    assert "memory" in first.split("readiness: ", 1)[1].lower(), first


@pytest.mark.qemu
def test_a_killed_owners_temp_dir_is_swept_and_a_live_ones_is_not(probe: qemu.ProbeGuest, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL takes QEMU with its owner but leaves the QEMU's private dir: the sweep removes only that one."""
    import json
    import signal
    import subprocess
    import sys
    import tempfile

    owner = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from harness.run import qemu\n"
         f"g = qemu.ProbeGuest(Path({str(probe.kernel)!r}), Path({str(probe.initrd)!r}), 'test')\n"
         "q = qemu.QemuProcess(qemu.probe_spec(g, qemu.tcg('test'), stay=True)).start()\n"
         "print(q.tmp, flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert owner.stdout is not None
    killed_dir = Path(owner.stdout.readline().strip())
    assert killed_dir.parent == tmp_path and json.loads((killed_dir / qemu.OWNER_FILE).read_text())["pid"] == owner.pid
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    orphan = tmp_path / f"{qemu.TEMP_PREFIX}from-an-older-version"  # no owner file, no QEMU naming it
    orphan.mkdir()
    os.utime(orphan, (time.time() - 3600, time.time() - 3600))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this process's guest too, in the same root
    with qemu.QemuProcess(qemu.probe_spec(probe, TCG, stay=True)) as live:
        assert live.tmp is not None and live.tmp.parent == tmp_path
        assert set(qemu.sweep_stale_dirs((tmp_path,))) == {killed_dir, orphan}
        assert live.tmp.exists() and live.alive()


@pytest.mark.qemu
@pytest.mark.parametrize("end", ["quit", "killed"])
def test_qemu_going_away_under_qmp_prints_nothing(probe: qemu.ProbeGuest, end: str, capfd: pytest.CaptureFixture) -> None:
    """QEMU closing the QMP socket (quit, or killed by a signal) must not make asyncio print a
    traceback ("exception was never retrieved"): an interrupted run's stderr stays clean."""
    import gc

    for _ in range(3):
        with qemu.QemuProcess(qemu.probe_spec(probe, TCG, stay=True)) as q:
            assert q.wait_for(lambda s: qemu.PROBE_MARKER in s, time.monotonic() + 60) is not None
            assert q.qmp("query-status")["status"] == "running"
            if end == "killed":
                q.proc.kill()  # type: ignore[union-attr]
                q.proc.wait(10)  # type: ignore[union-attr]
                time.sleep(0.2)  # the library's reader sees EOF
        gc.collect()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "never retrieved" not in err, err


def test_an_unretrieved_connection_loss_is_not_printed_but_other_errors_are(caplog: pytest.LogCaptureFixture) -> None:
    """The QMP library keeps its reader's EOF in a future that only disconnect() retrieves; an
    interrupt can abandon that (a connect cut short). asyncio would print it as a traceback on
    an interrupted run's stderr; a real error still is printed."""
    import asyncio
    import gc

    loop = qemu._QmpLoop()

    async def failing(exc: BaseException) -> None:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(exc)  # never retrieved: reported when collected

    for exc in (EOFError(), ConnectionResetError(104, "reset"), ValueError("a real bug")):
        loop.run(failing(exc), 5.0)
    loop.close()
    gc.collect()
    # asyncio reports through logging ("asyncio"); without a handler Python prints it to stderr
    reported = [(r.getMessage().splitlines()[0], r.exc_info[0] if r.exc_info else None)
                for r in caplog.records if r.name == "asyncio"]
    assert reported == [("Future exception was never retrieved", ValueError)], reported
