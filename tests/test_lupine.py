"""The lupine form: its initramfs, and real boots of the real kernel under QEMU.

The boot tests build the specialised kernel (cached per machine) and boot it
with whatever accelerator the machine's probe chose (TCG on the project's
machines). A missing tool (QEMU, the kernel source, musl-gcc) fails them.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from harness.build import binary as binary_build
from harness.build import elf, initramfs
from harness.build.binary import Binary
from harness.build.cache import Cache, default_cache_dir
from harness.errors import BootFailed, UsageError
from harness.forms import lupine
from harness.forms.base import Context, Progress
from harness.measure import guest
from harness.workloads import load

QEMU_NAMES = ("qemu-system-x86_64", "qemu-system-x86")


def lupine_qemu_pids() -> list[int]:
    """QEMUs this test process started, or any booting a lupine initramfs.

    Other forms' tests may run QEMU on the same machine at the same time;
    they are not this form's to account for.
    """
    mine = {p.pid for p in psutil.Process().children(recursive=True)}
    pids = []
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] not in QEMU_NAMES:
            continue
        if p.pid in mine or any("lupine-initramfs" in a for a in p.info["cmdline"] or ()):
            pids.append(p.pid)
    return pids


@pytest.fixture
def no_qemu_left():
    """Every test must leave no QEMU of its own running."""
    yield
    left = lupine_qemu_pids()
    assert not left, f"QEMU processes left running: {sorted(left)}"


def context(**options) -> Context:
    cache = Cache(default_cache_dir())
    return Context(cache=cache, run_id="test-lupine", timeout_s=120.0,
                   progress=Progress(), options=options)


def make_binary(path: Path, name: str = "broken", info: elf.ElfInfo | None = None) -> Binary:
    return Binary(workload=name, path=path, sha256=binary_build.sha256_file(path),
                  size_bytes=path.stat().st_size, compiler="musl-gcc", flags=(),
                  info=info or elf.inspect(path))


def compile_c(tmp_path: Path, source: str, *flags: str, cc: str = "musl-gcc") -> Path:
    assert shutil.which(cc), f"{cc} is missing: run scripts/setup.sh"
    src = tmp_path / "prog.c"
    src.write_text(source)
    out = tmp_path / "prog"
    subprocess.run([cc, "-O2", *flags, "-o", str(out), str(src)], check=True)
    return out


# --- initramfs -------------------------------------------------------------------


def test_newc_archive_round_trips_and_cpio_reads_it(tmp_path) -> None:
    payload = b"\x7fELF" + bytes(range(256)) * 3 + b"odd"
    data = initramfs.newc_archive(initramfs.init_only(payload))
    assert len(data) % 4 == 0
    members = initramfs.read_newc(data)
    assert set(members) == {"dev", "dev/console", "init"}
    assert members["init"].data == payload and members["init"].mode == 0o100755
    console = members["dev/console"]
    assert (console.mode, console.rdev_major, console.rdev_minor) == (0o020600, 5, 1)
    assert shutil.which("cpio"), "cpio is missing: run scripts/setup.sh"
    listed = subprocess.run(["cpio", "-itv"], input=data, capture_output=True, check=True)
    names = [line.split()[-1] for line in listed.stdout.decode().splitlines()]
    assert names == ["dev", "dev/console", "init"]


def test_initramfs_holds_the_very_binary(tmp_path) -> None:
    wl = load("hello")
    binary = binary_build.build(wl, Cache(tmp_path))
    path, cached = lupine.build_initramfs(binary, Cache(tmp_path))
    assert not cached
    init = initramfs.read_newc(path.read_bytes())["init"].data
    assert hashlib.sha256(init).hexdigest() == binary.sha256
    assert lupine.build_initramfs(binary, Cache(tmp_path)) == (path, True)


def test_dynamic_binary_is_refused(tmp_path) -> None:
    dyn = compile_c(tmp_path, "int main(void){return 0;}\n", cc="gcc")
    with pytest.raises(UsageError, match="dynamically linked"):
        lupine.build_initramfs(make_binary(dyn), Cache(tmp_path))


def test_kernel_command_line() -> None:
    assert lupine.kernel_append(load("hello")) == "console=ttyS0 panic=-1 rdinit=/init"
    http = lupine.kernel_append(load("http"))
    assert "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off" in http


def test_guest_memory_from_meminfo_line() -> None:
    lines = ["x", "harness-meminfo total=1000 available=600", "harness-meminfo total=9 available=1"]
    mem = guest.guest_memory(lines)
    assert mem is not None and (mem.total_bytes, mem.available_bytes, mem.used_bytes) == (1000, 600, 400)
    assert guest.guest_memory(lines[:1]) is None
    assert not guest.has_meminfo("harness-meminfo total=x available=1")


# --- real boots ----------------------------------------------------------------------


def boot_workload(name: str, ctx: Context):
    form = lupine.LupineForm()
    form.check(ctx)
    wl = load(name)
    binary = binary_build.build(wl, ctx.cache)
    artifact = form.build(wl, binary, ctx)
    try:
        return artifact, form.boot(artifact, wl, ctx)
    finally:
        form.cleanup(ctx)


@pytest.mark.slow
@pytest.mark.qemu
def test_hello_boots_to_readiness(no_qemu_left) -> None:
    artifact, sample = boot_workload("hello", context())
    assert artifact.size["artifact_bytes"] < 8_000_000
    assert artifact.size["artifact_bytes"] == artifact.size["kernel_bytes"] + artifact.size["initramfs_bytes"]
    assert artifact.details["kernel_kind"] == "specialised"
    assert sample.boot_s > 0
    assert sample.details["accelerator"] in ("kvm", "tcg")
    assert sample.details["emulated"] == (sample.details["accelerator"] == "tcg")
    assert sample.details["vmm"].startswith("QEMU")
    assert sample.details["kernel_config_hash"] == artifact.details["kernel_config_hash"]
    phases = sample.phases
    assert set(phases) == {"spawn_to_first_output_s", "kernel_s", "init_to_ready_s"}
    assert abs(sum(phases.values()) - sample.boot_s) < 1e-6
    mem = sample.memory
    assert mem["guest_configured_bytes"] == 64 * 1024**2
    assert mem["vmm_rss_bytes"] and mem["vmm_rss_bytes"] > 0
    assert mem["guest_used_bytes"] and 0 < mem["guest_used_bytes"] < mem["guest_configured_bytes"]
    print(f"\nhello:lupine boot {sample.boot_s:.3f} s phases {phases} memory {mem} "
          f"size {artifact.size} accel {sample.details['accelerator']}")


@pytest.mark.slow
@pytest.mark.qemu
def test_memory_option_sets_guest_memory(no_qemu_left) -> None:
    _, sample = boot_workload("hello", context(memory=96 * 1024**2))
    assert sample.memory["guest_configured_bytes"] == 96 * 1024**2
    assert "96M" in sample.details["vmm_flags"]


@pytest.mark.slow
@pytest.mark.qemu
def test_too_little_memory_is_a_failure_that_says_so(no_qemu_left) -> None:
    """A kernel that cannot unpack itself in 17 MiB resets silently: the reason names the likely cause."""
    ctx = context(memory=17 * 1024**2)
    form = lupine.LupineForm()
    wl = load("hello")
    artifact = form.build(wl, binary_build.build(wl, ctx.cache), ctx)
    assert artifact.details["guest_memory_mib"] == 17, "the failed row can still say what it was given"
    assert artifact.details["accelerator"] in ("kvm", "tcg") and artifact.details["vmm"].startswith("QEMU")
    assert "17M" in artifact.details["vmm_flags"], "and how it was booted, though no boot succeeds"
    from harness.render.table import form_label, measured_with
    failed = {"form": "lupine", "status": "failed", "details": artifact.details, "samples": []}
    assert form_label(failed).endswith("†") == (artifact.details["accelerator"] == "tcg")
    assert f", {artifact.details['accelerator']}" in measured_with(failed).split(';')[0]
    try:
        with pytest.raises(BootFailed) as info:
            form.boot(artifact, wl, ctx)
    finally:
        form.cleanup(ctx)
    first = str(info.value).splitlines()[0]
    assert "QEMU exited (status 0)" in first and "too little guest memory" in first and "-m 17 MiB" in first


@pytest.mark.slow
@pytest.mark.qemu
def test_http_answers_200_through_the_forward(no_qemu_left) -> None:
    artifact, sample = boot_workload("http", context())
    assert sample.boot_s > 0
    assert sample.details["forward"].endswith("->8080")
    assert "ip=10.0.2.15" in sample.details["append"]
    assert sample.memory["guest_used_bytes"] is not None
    print(f"\nhttp:lupine boot {sample.boot_s:.3f} s phases {sample.phases} memory {sample.memory}")


def _boot_broken(binary: Binary) -> BootFailed:
    ctx = context()
    form = lupine.LupineForm()
    wl = load("hello")
    artifact = form.build(wl, binary, ctx)
    try:
        with pytest.raises(BootFailed) as info:
            form.boot(artifact, wl, ctx)
    finally:
        form.cleanup(ctx)
    return info.value


@pytest.mark.slow
@pytest.mark.qemu
def test_init_that_exits_is_a_failed_boot_with_console_tail(tmp_path, no_qemu_left) -> None:
    exits = compile_c(tmp_path, "int main(void){return 3;}\n", "-static", "-s")
    err = _boot_broken(make_binary(exits))
    assert "Kernel panic" in str(err) and "Attempted to kill init" in str(err)
    assert "console tail" in str(err)
    assert "Kernel panic" in str(err).splitlines()[0], "the first line (the one tables show) names the cause"


@pytest.mark.slow
@pytest.mark.qemu
def test_init_that_cannot_execute_is_a_failed_boot(tmp_path, no_qemu_left) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is not an executable\n")
    # A corrupt file that passed the ELF check: the facts are stated, not read.
    info = elf.ElfInfo(machine=elf.host_machine(), interpreter=None, elf_type="ET_DYN", needed=())
    err = _boot_broken(make_binary(junk, info=info))
    assert "Kernel panic" in str(err)
    assert "init" in str(err)


@pytest.mark.slow
@pytest.mark.qemu
def test_cloud_kernel_boots_hello_and_refuses_http(no_qemu_left) -> None:
    from harness.errors import Unavailable

    ctx = context(lupine_kernel="cloud")
    artifact, sample = boot_workload("hello", ctx)
    assert artifact.details["kernel_kind"] == "cloud"
    assert sample.details["kernel_kind"] == "cloud"
    assert "cloud" in sample.details["kernel_version"]
    assert sample.memory["guest_configured_bytes"] == 128 * 1024**2
    assert sample.boot_s > 0
    with pytest.raises(Unavailable, match="virtio-net"):
        boot_workload("http", ctx)
    print(f"\nhello:lupine(cloud) boot {sample.boot_s:.3f} s size {artifact.size}")
