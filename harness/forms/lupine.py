"""The Lupine-style Linux unikernel: a kernel specialised for one application.

The artifact is a kernel (harness.build.kernel: tinyconfig + builds/lupine/,
or Debian's cloud kernel) and an initramfs holding only /init = the workload
binary, byte for byte, plus the /dev/console node the kernel opens for init's
stdio. It boots under QEMU (harness.run.qemu) by direct kernel boot on
-M microvm with ACPI off.

Where a boot starts and stops: spawn of QEMU -> first console byte -> the
kernel's "Run /init as init process" line (printed just before it execs init)
-> readiness (the workload's console line, or HTTP 200 through a forwarded
port, polled from the hand-over on). boot_s is spawn -> readiness; teardown
is excluded. The specialised
kernel has no ACPI, so the guest halts rather than powers off; the harness
quits QEMU over QMP after measuring (builds/lupine/README.md).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.build import elf, initramfs, kernel
from harness.build.binary import Binary
from harness.build.cache import Cache, digest
from harness.errors import BootFailed, Unavailable, UsageError
from harness.forms.base import Artifact, Context, Sample, headline
from harness.measure import guest, readiness
from harness.measure.memory import process_memory
from harness.run import qemu
from harness.units import mebibytes
from harness.workloads import Workload

# Guest memory unless ctx.options["memory"] says otherwise. Debian's cloud
# kernel (14 MB, decompressed in the guest) resets silently with 64 MiB.
DEFAULT_MEMORY_BYTES = {"specialised": 64 * 1024**2, "cloud": 128 * 1024**2}
DEFAULT_MACHINE = "microvm"
# QEMU user networking always gives the guest this address and gateway.
GUEST_IP = "10.0.2.15::10.0.2.2:255.255.255.0::eth0:off"
INIT_MARKER = "Run /init as init process"
PANIC_MARKER = "Kernel panic - not syncing"
HALT_MARKER = "reboot: System halted"
MEMINFO_WAIT_S = 5.0
INITRAMFS_RECIPE = "newc uncompressed: dev/, dev/console c 5 1, init; v1"
# Neither kernel sees ACPI (none built in; microvm runs with acpi=off), so the
# workload's reboot(RB_POWER_OFF) halts the guest and the harness quits QEMU.
POWEROFF = "halt+qmp-quit"


# --- initramfs ----------------------------------------------------------------


def build_initramfs(binary: Binary, cache: Cache) -> tuple[Path, bool]:
    """The initramfs for this binary, from the cache or written into it; (path, cached)."""
    elf.require_self_contained(binary.path, binary.info, "a one-file initramfs")
    key = digest(binary.sha256, INITRAMFS_RECIPE)[:24]
    with cache.entry("lupine-initramfs", key) as entry:
        if not entry.hit:
            assert entry.work is not None
            data = initramfs.newc_archive(initramfs.init_only(binary.path.read_bytes()))
            (entry.work / "initramfs.cpio").write_bytes(data)
        hit = entry.hit
    return entry.path / "initramfs.cpio", hit


# --- the form -----------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """The form's private handle: what boot() needs."""

    kernel: kernel.Kernel
    initramfs: Path


def _kernel_kind(ctx: Context) -> str:
    kind = ctx.options.get("lupine_kernel", "specialised")
    if kind not in kernel.KINDS:
        raise UsageError(f"lupine_kernel must be one of {', '.join(kernel.KINDS)}, not {kind!r}")
    return kind


def _guest_shape(ctx: Context, kernel_kind: str) -> tuple[int, str]:
    """(guest memory in MiB, QEMU machine): the user's, or the defaults for this kernel."""
    memory = int(ctx.options.get("memory") or DEFAULT_MEMORY_BYTES[kernel_kind])
    return mebibytes(memory), str(ctx.options.get("lupine_machine", DEFAULT_MACHINE))


def _tag(ctx: Context) -> str:
    return f"lupine-{ctx.run_id}"


def kernel_append(workload: Workload) -> str:
    """The kernel command line: serial console, panic exits QEMU, static address if networked."""
    parts = ["console=ttyS0", "panic=-1", "rdinit=/init"]
    if workload.port is not None:
        parts.append(f"ip={GUEST_IP}")
    return " ".join(parts)


class LupineForm:
    name: ClassVar[str] = "lupine"
    family: ClassVar[str] = "unikernel"

    def check(self, ctx: Context) -> None:
        qemu.qemu_version()
        if _kernel_kind(ctx) == "specialised":
            kernel.source_version()
            kernel.check_build_tools()
        elif shutil.which("apt-get") is None or shutil.which("dpkg") is None:
            raise Unavailable("apt-get/dpkg not found: the cloud kernel comes from Debian's archive")

    def build(self, workload: Workload, binary: Binary, ctx: Context) -> Artifact:
        elf.require_host_machine(binary.path, binary.info)
        elf.require_self_contained(binary.path, binary.info, "a one-file initramfs")
        kind = _kernel_kind(ctx)
        kern = kernel.ensure(kind, ctx.cache, ctx.progress)
        if workload.port is not None and kern.config is not None:
            options = kernel.parse_config(kern.config.read_text(errors="replace"))
            if options.get("CONFIG_VIRTIO_NET", "n") != "y":
                raise Unavailable(
                    f"the {kind} kernel {kern.version} has virtio-net as "
                    f"{options.get('CONFIG_VIRTIO_NET', 'n')!r}, not built in; a one-file "
                    f"initramfs cannot load modules, so {workload.name} gets no network")
        initrd, initramfs_cached = build_initramfs(binary, ctx.cache)
        kernel_bytes = kern.size_bytes
        initramfs_bytes = initrd.stat().st_size
        details: dict[str, Any] = {
            **kern.details(),
            "kernel_format": "bzImage",
            "initramfs": "newc cpio, uncompressed: /init + /dev/console",
            "init_sha256": binary.sha256,
            "initramfs_cached": initramfs_cached,
            "poweroff": POWEROFF,
        }
        details["guest_memory_mib"], details["machine"] = _guest_shape(ctx, kind)
        # How it will be booted, known before any boot: a cell whose every boot fails is still
        # marked with its accelerator (TCG's †), VMM and flags.
        placeholder = qemu.Forward(0, workload.port) if workload.port is not None else None
        spec = self._spec(Built(kern, initrd), workload, ctx, placeholder)
        details.update({**spec.accel.to_json(), "vmm": qemu.qemu_version(),
                        "vmm_flags": qemu.vmm_flags(qemu.build_argv(spec))})
        return Artifact(
            size={"artifact_bytes": kernel_bytes + initramfs_bytes, "kernel_bytes": kernel_bytes,
                  "initramfs_bytes": initramfs_bytes, "binary_bytes": binary.size_bytes},
            details=details,
            handle=Built(kern, initrd),
            cached=kern.cached and initramfs_cached,
        )

    def _spec(self, built: Built, workload: Workload, ctx: Context,
              forward: qemu.Forward | None) -> qemu.GuestSpec:
        accel = qemu.probe_accelerator(ctx.cache, str(ctx.options.get("accel", "auto")), progress=ctx.progress)
        memory, machine = _guest_shape(ctx, built.kernel.kind)
        # microvm describes virtio-mmio devices either in ACPI tables or on the
        # kernel command line; the specialised kernel has no ACPI, so off.
        extra = ["-M", "acpi=off"] if machine == "microvm" else []
        return qemu.GuestSpec(
            accel=accel, memory_mib=memory, machine=machine,
            kernel=built.kernel.image, initrd=built.initramfs, append=kernel_append(workload),
            forwards=[forward] if forward else [], extra_args=extra)

    def boot(self, artifact: Artifact, workload: Workload, ctx: Context) -> Sample:
        built: Built = artifact.handle
        forward = None
        if workload.readiness.type in ("http", "tcp"):
            assert workload.port is not None
            forward = qemu.Forward(readiness.free_port(), workload.port)
        spec = self._spec(built, workload, ctx, forward)
        deadline_s = ctx.timeout_s
        with qemu.QemuProcess(spec, tag=_tag(ctx)) as q:
            deadline = time.monotonic() + deadline_s
            ready_t = self._wait_ready(q, workload, forward, deadline)
            if ready_t is None:
                raise BootFailed(q.failure("lupine guest failed", workload.readiness.type, deadline_s, deadline))
            meminfo = q.wait_for(guest.has_meminfo,
                                 min(deadline, time.monotonic() + MEMINFO_WAIT_S))
            vmm = process_memory(q.pid)
            lines = q.lines()
            details = {**q.details(), "kernel_kind": built.kernel.kind,
                       "kernel_version": built.kernel.version,
                       "kernel_config_hash": built.kernel.config_hash,
                       "append": spec.append, "poweroff": POWEROFF,
                       "meminfo_seen": meminfo is not None}
            if forward is not None:
                details["forward"] = f"127.0.0.1:{forward.host_port}->{forward.guest_port}"
        return self._sample(q, lines, ready_t, vmm, spec, details)

    def _wait_ready(self, q: qemu.QemuProcess, workload: Workload, forward: qemu.Forward | None,
                    deadline: float) -> float | None:
        """The monotonic instant of readiness, or None (QEMU exited, panic or deadline)."""
        r = workload.readiness
        if r.type == "console":
            hit = q.wait_for(lambda s: readiness.console_matches(r, s) or PANIC_MARKER in s, deadline)
            if hit is None or PANIC_MARKER in hit.text:
                return None
            return hit.t
        assert forward is not None
        # Poll only from the kernel's hand-over to init: a connection opened
        # before the guest's NIC is up is held by QEMU's user network stack
        # and its SYN resent about a second later, which would add the
        # probe's own retry delay to the boot time.
        handover = q.wait_for(lambda s: INIT_MARKER in s or PANIC_MARKER in s, deadline)
        if handover is None or PANIC_MARKER in handover.text:
            return None
        probe = readiness.network_probe(r, "127.0.0.1", forward.host_port)
        # Poll while the guest lives (a panic makes QEMU exit: -no-reboot).
        return readiness.poll(probe, deadline, still_alive=q.alive, interval_s=0.02)

    def _sample(self, q: qemu.QemuProcess, lines: list[qemu.ConsoleLine], ready_t: float,
                vmm: Any, spec: qemu.GuestSpec, details: dict[str, Any]) -> Sample:
        assert q.spawn_t is not None
        spawn = q.spawn_t
        phases: dict[str, float] = {}
        first = q.first_byte_t
        init = next((ln.t for ln in lines if INIT_MARKER in ln.text), None)
        if first is not None and first <= ready_t:
            phases["spawn_to_first_output_s"] = first - spawn
            if init is not None and first <= init <= ready_t:
                phases["kernel_s"] = init - first
                phases["init_to_ready_s"] = ready_t - init
        details["init_marker"] = INIT_MARKER if init is not None else None
        mem = guest.guest_memory(ln.text for ln in lines)
        memory: dict[str, int | None] = {
            "vmm_pss_bytes": vmm.pss_bytes,
            "vmm_rss_bytes": vmm.rss_bytes,
            "guest_configured_bytes": spec.memory_mib * 1024**2,
            "guest_total_bytes": mem.total_bytes if mem else None,
            "guest_available_bytes": mem.available_bytes if mem else None,
            "guest_used_bytes": mem.used_bytes if mem else None,
        }
        memory_bytes, source = headline(memory, ("vmm_pss_bytes", "vmm_rss_bytes"))
        return Sample(boot_s=ready_t - spawn, memory_bytes=memory_bytes, memory_source=source,
                      phases=phases, memory=memory, details=details)

    def cleanup(self, ctx: Context) -> None:
        qemu.kill_all(_tag(ctx))
