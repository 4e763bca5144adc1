"""`harness doctor`: every tool each form needs, with status and fix; exit 1 when an asked-for form cannot run.

On the project's machines (after scripts/setup.sh) everything is present
except kraft, and KVM does not boot a guest, so VMs run under TCG. The kraft
verdict is checked against this machine, so these tests also fail when
scripts/setup.sh did not install something.
"""

from __future__ import annotations

import os
import secrets
import signal
import shutil
import time
from pathlib import Path

import pytest

from harness.build.cache import Cache
from harness.commands.doctor import parse_forms, render
from harness.errors import UsageError
from harness.run import doctor
from leaks import LeakCheck, leak_check  # noqa: F401  (fixture)
from test_faults import harness

KRAFT_HERE = shutil.which("kraft") is not None


def _by_tool(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.key: c for c in checks}


def test_every_form_lists_what_it_needs(tmp_path: Path) -> None:
    checks, verdicts = doctor.diagnose(doctor.all_forms(), Cache(tmp_path), probe=False)
    found = _by_tool(checks)
    assert set(found) == {"docker", "alpine-base", "qemu", "accel", "qemu-img", "mmdebstrap", "mkfs.ext4",
                          "musl", "linux-source", "busybox", "kraft"}
    for key in ("docker", "qemu", "qemu-img", "mmdebstrap", "mkfs.ext4", "musl", "linux-source", "busybox"):
        assert found[key].status == doctor.OK, f"{found[key]} (run scripts/setup.sh)"
    assert "docker 20" in found["docker"].detail or "docker " in found["docker"].detail
    assert found["qemu"].detail.startswith("QEMU emulator version")
    assert found["accel"].status == doctor.LIMITED and "not probed" in found["accel"].detail
    verdict = {v.form: v for v in verdicts}
    assert verdict["scratch"].runnable and verdict["alpine"].runnable and verdict["vm"].runnable
    assert verdict["lupine"].runnable
    assert verdict["unikraft"].runnable == KRAFT_HERE
    if not KRAFT_HERE:
        assert found["kraft"].status == doctor.MISSING and "kraftkit" in found["kraft"].fix
        assert verdict["unikraft"].blockers == ("kraft",)


def test_accelerator_uses_the_qemu_probe(tmp_path: Path) -> None:
    """The probe's verdict, not /dev/kvm's presence: here KVM exists but boots nothing."""
    check = doctor.check_accelerator(Cache(tmp_path / "c"), probe=True)
    assert check.status in (doctor.OK, doctor.LIMITED)
    if check.status == doctor.LIMITED:
        assert check.detail.startswith("TCG only:") and check.fix
    else:
        assert check.detail.startswith("KVM:")
    # Read back from the cache, the verdict says so, with when it was reached and how to probe again.
    again = doctor.check_accelerator(Cache(tmp_path / "c"), probe=True)
    if os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert "the probe's verdict from 20" in again.detail and str(tmp_path / "c" / "accel") in again.detail
        assert "verdict from" not in check.detail, "the first one was a fresh probe"


def test_alpine_base_missing_limits_alpine_to_the_stand_in(monkeypatch: pytest.MonkeyPatch,
                                                           docker_client, tmp_path) -> None:
    from harness.forms import alpine

    monkeypatch.setattr(alpine, "DEFAULT_BASE", "alpine:0.0-not-here")
    check = doctor.check_alpine_base()
    assert check.status == doctor.LIMITED and not check.blocks
    assert "stand-in" in check.detail and "harness bases import alpine:0.0-not-here" in check.fix
    text = render([check], [doctor.FormVerdict("alpine", ("alpine-base",), (), ("alpine-base",))])
    assert text.rstrip().endswith("alpine: can run (limited: alpine-base)")
    # In the engine it is ok only if it is Alpine: an image without /etc/alpine-release is not.
    from harness.commands.bases import import_base
    from test_bases import minirootfs

    for alpine_like, status in ((False, doctor.LIMITED), (True, doctor.OK)):
        tag = "harness-test/doctor-alpine:" + secrets.token_hex(4)
        import_base(tag, minirootfs(tmp_path / f"{alpine_like}.tar.gz", alpine=alpine_like))
        try:
            monkeypatch.setattr(alpine, "DEFAULT_BASE", tag)
            check = doctor.check_alpine_base()
            assert check.status == status, check
            assert ("Alpine 3.20.0" in check.detail) if alpine_like else ("is not Alpine" in check.detail)
        finally:
            docker_client.images.remove(tag)


def test_missing_tool_names_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    check = doctor.check_qemu()
    assert check.status == doctor.MISSING and "apt-get install qemu-system-x86" in check.fix
    musl = doctor.check_musl()
    assert musl.blocks and "musl-tools" in musl.fix


def test_unreachable_engine_is_missing_with_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.run import engine

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    engine.client.cache_clear()
    try:
        check = doctor.check_docker()
    finally:
        engine.client.cache_clear()
    assert check.status == doctor.MISSING and "unix:///nonexistent" in check.detail and check.fix


def test_forms_list_parsing() -> None:
    assert parse_forms("container,vm") == ["vm", "alpine", "scratch"]
    assert parse_forms("unikernel") == ["lupine", "unikraft"]
    with pytest.raises(UsageError, match="unknown form 'nope'"):
        parse_forms("scratch,nope")
    with pytest.raises(UsageError, match="empty name"):
        parse_forms("scratch,")


def test_render_has_a_row_per_tool_and_a_line_per_form() -> None:
    checks = [doctor.Check("kraft", "kraft (kraftkit)", doctor.MISSING, "not on PATH", "install kraftkit"),
              doctor.Check("qemu", "qemu-system-x86_64", doctor.OK, "QEMU 7.2")]
    text = render(checks, [doctor.FormVerdict("unikraft", ("kraft", "qemu"), ("kraft",))])
    assert "kraft (kraftkit)" in text and "missing" in text and "install kraftkit" in text
    assert text.rstrip().endswith("unikraft: cannot run (missing: kraft)")


def test_cli_exit_codes(leak_check: LeakCheck) -> None:
    ok = harness(["doctor", "--forms", "scratch,alpine", "--no-probe"], leak_check, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "Docker engine" in ok.stdout and "scratch: can run" in ok.stdout
    everything = harness(["doctor", "--no-probe"], leak_check, timeout=120)
    assert everything.returncode == 0, "without --forms doctor reports and never fails"
    for tool in ("Docker engine", "qemu-system-x86_64", "accelerator", "mmdebstrap", "mkfs.ext4", "qemu-img",
                 "musl-gcc", "linux-source-6.1", "busybox-static", "kraft"):
        assert tool in everything.stdout
    uk = harness(["doctor", "--forms", "unikraft", "--no-probe"], leak_check, timeout=120)
    assert uk.returncode == (0 if KRAFT_HERE else 1), uk.stdout
    gone = harness(["doctor", "--forms", "scratch", "--no-probe"], leak_check, timeout=120,
                   DOCKER_HOST="unix:///nonexistent")
    assert gone.returncode == 1 and "scratch: cannot run (missing: docker)" in gone.stdout
    bad = harness(["doctor", "--forms", "bogus"], leak_check, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("harness: error: unknown form 'bogus'")
    assert "Traceback" not in ok.stderr + everything.stderr + uk.stderr + gone.stderr + bad.stderr


WITHOUT_KVM = ("unshare", "-m", "--propagation", "private", str(Path(__file__).parent / "helpers" / "without-kvm"))


def test_without_kvm_doctor_checks_that_a_guest_boots_under_tcg(tmp_path: Path, leak_check: LeakCheck) -> None:
    """No /dev/kvm (a container, a cloud VM without nesting): doctor still boots the probe guest, under TCG."""
    from test_faults import Spawned

    run = Spawned(["doctor", "--forms", "lupine", "--cache", str(tmp_path / "cache")], leak_check,
                  wrapper=WITHOUT_KVM)
    code = run.finish(timeout=600)
    out = "".join(run.stdout)
    assert code == 0, out + run.stderr
    assert found_column(out, "accelerator (KVM/TCG)").startswith(
        "TCG only: no /dev/kvm on this host; under TCG probe guest reached init in"), out
    assert "lupine: can run (limited: accel)" in out
    assert Path("/dev/kvm").exists() == HOST_HAS_KVM, "the host's own /dev is untouched"


HOST_HAS_KVM = Path("/dev/kvm").exists()


def found_column(table: str, tool: str) -> str:
    """The 'found' cell of tool's row in doctor's table, its wrapped lines joined."""
    lines = table.splitlines()
    start, end = lines[0].index("found"), lines[0].index("fix")
    cell: list[str] = []
    for line in lines[2:]:
        if line.startswith(tool) or (cell and line[:start].strip() == ""):
            cell.append(line[start:end].strip())
        elif cell:
            break
    return " ".join(cell)


@pytest.mark.parametrize("kvm", ["host", "hidden"])
def test_signal_during_the_kvm_probe_stops_it_cleanly(kvm: str, tmp_path: Path, leak_check: LeakCheck) -> None:
    """SIGTERM (or a Ctrl-C) while doctor boots its probe guest (KVM's or, with no /dev/kvm, TCG's):
    exit 130, the guest gone."""
    from leaks import marked_qemu_pids
    from test_faults import Spawned

    run = Spawned(["doctor", "--forms", "lupine", "--cache", str(tmp_path / "cache")], leak_check,
                  wrapper=WITHOUT_KVM if kvm == "hidden" else ())
    try:
        deadline = time.monotonic() + 300  # the probe guest may be fetched and built first
        while not marked_qemu_pids(leak_check.marker) and time.monotonic() < deadline and run.proc.poll() is None:
            time.sleep(0.05)
        assert marked_qemu_pids(leak_check.marker), (
            f"doctor never booted its probe guest (exit {run.proc.poll()}); stdout:\n"
            f"{''.join(run.stdout)[-2000:]}\nstderr:\n{run.stderr[-2000:]}")
        run.proc.send_signal(signal.SIGTERM)
        code = run.finish(timeout=60)
    finally:
        run.kill()
    assert code == 130 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert not marked_qemu_pids(leak_check.marker)


def test_an_unusable_cache_is_a_usage_error_not_a_guess(tmp_path: Path, leak_check: LeakCheck) -> None:
    """doctor keeps its probe guest and verdict in the cache: one it cannot use is refused, rather
    than reporting 'can run' without having booted anything."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = harness(["doctor", "--forms", "vm", "--cache", str(blocker)], leak_check, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.startswith(f"harness: error: cannot use {blocker} as the build cache (a file, not a folder)")
    assert proc.stderr.count("\n") == 1, proc.stderr
    skipped = harness(["doctor", "--forms", "scratch", "--no-probe", "--cache", str(blocker)], leak_check, timeout=60)
    assert skipped.returncode == 0, "with --no-probe the cache is not used"
