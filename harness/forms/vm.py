"""The full-VM form: the workload as a service of a stock Debian bookworm guest.

Build, in two cached steps so that a new binary does not rebuild Debian:

1. base (cache kind "vm-base", keyed by the recipe in builds/vm/ and the
   apt sources): mmdebstrap --variant=minbase with builds/vm/packages.txt,
   customised by builds/vm/customize.sh. Only Debian's package mirror (the
   one this host's apt uses) is reached.
2. image (cache kind "vm-image", keyed by the base and the binary's sha256):
   a copy of the base root with the binary at /usr/local/bin/<workload> and
   a systemd unit (builds/vm/add-workload.sh) writing to ttyS0, turned into
   an ext4 disk with mkfs.ext4 -d.

Boot path: the image's own /boot/vmlinuz and initrd are passed to QEMU
directly (-kernel/-initrd, root=/dev/vda: the disk has no partition table and
no boot loader), so no firmware boot-loader time is measured. The disk is
attached with snapshot=on: the cached image is never written.

Boot time is QEMU spawn -> readiness (the workload's console line, or its
first HTTP 200 through a 127.0.0.1 forward); QMP quit afterwards is teardown
and excluded. Phases split it at the first console byte, at the kernel's
"Run /init as init process" line (the kernel hands over to the initramfs)
and at systemd's "Welcome to" banner (the real root's init has started).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.build import steps
from harness.build.binary import Binary
from harness.build.cache import digest
from harness.errors import BootFailed, BuildFailed, Unavailable
from harness.forms.base import Artifact, Context, Sample, headline
from harness.measure import guest
from harness.measure.memory import process_memory
from harness.measure.readiness import free_port, network_probe, poll
from harness.run import qemu
from harness.units import mebibytes
from harness.workloads import Workload, default_builds_dir

SUITE = "bookworm"
DEFAULT_MEMORY_BYTES = 512 * 1024**2
# Bump when the Python side of the build changes what ends up in an image.
IMAGE_RECIPE = "vm-image-v1"
KERNEL_APPEND = "root=/dev/vda rw console=ttyS0 panic=-1"
BOOT_PATH = "direct kernel boot: the image's own vmlinuz + initrd via -kernel/-initrd, root=/dev/vda"
# The kernel hands over to userspace (the initramfs's /init, or /sbin/init without one).
HANDOVER_MARKERS = ("Run /init as init process", "Run /sbin/init as init process")
SYSTEMD_MARKER = "Welcome to"
MEMINFO_WAIT_S = 15.0
HTTP_POLL_S = 0.05
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
}


@dataclass(frozen=True)
class VmImage:
    """The built image: what boot() needs."""

    disk: Path
    kernel: Path
    initrd: Path


def recipe_dir() -> Path:
    return default_builds_dir() / "vm"


def packages(recipe: Path) -> list[str]:
    """The package list of builds/vm/packages.txt (comments and blanks dropped)."""
    names = []
    for line in (recipe / "packages.txt").read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def apt_sources(suite: str = SUITE) -> list[str]:
    """One-line apt sources for suite* from this host's apt configuration, for mmdebstrap.

    The host's apt already reaches Debian's mirror; reusing its URIs keeps the
    build on the only network this machine has.
    """
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    found: list[str] = []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if "deb" not in fields.get("Types", "").split():
                    continue
                for uri in fields.get("URIs", "").split():
                    for s in fields.get("Suites", "").split():
                        if s == suite or s.startswith(suite + "-"):
                            found.append(f"deb {uri} {s} {fields.get('Components', 'main')}")
        else:
            for line in text.splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line.strip())
                if m and (m.group(2) == suite or m.group(2).startswith(suite + "-")):
                    found.append(f"deb {m.group(1)} {m.group(2)} {m.group(3)}")
    return found or [f"deb http://deb.debian.org/debian {suite} main"]


def _tool_version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    return (out.stdout.splitlines() or ["unknown"])[0].strip()


def _du_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class BaseRecipe:
    """What the Debian base is made from; its key names the cached base."""

    key: str
    packages: list[str]
    sources: list[str]
    mmdebstrap: str

    @classmethod
    def read(cls, recipe: Path) -> BaseRecipe:
        sources = apt_sources()
        mmdebstrap = _tool_version(["mmdebstrap", "--version"])
        files = [recipe / n for n in ("packages.txt", "customize.sh", "harness-meminfo",
                                       "harness-meminfo.service", "10-dhcp.network")]
        key = digest(SUITE, "minbase", mmdebstrap, *sources, *files)[:24]
        return cls(key=key, packages=packages(recipe), sources=sources, mmdebstrap=mmdebstrap)


class VmForm:
    """Full VM: Debian with systemd under QEMU, the workload as a service."""

    name: ClassVar[str] = "vm"
    family: ClassVar[str] = "vm"

    def check(self, ctx: Context) -> None:
        missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
        if missing:
            raise Unavailable(f"missing {', '.join(missing)}; or run scripts/setup.sh")
        if not (recipe_dir() / "packages.txt").is_file():
            raise Unavailable(f"no VM recipe at {recipe_dir()} (packages.txt)")

    # ------------------------------------------------------------------ build

    def build(self, workload: Workload, binary: Binary, ctx: Context) -> Artifact:
        self.check(ctx)
        if workload.readiness.type == "tcp":
            # QEMU's user network accepts the host's connect and holds it until the guest's
            # network is up: the instant the workload listens cannot be seen from the host.
            raise Unavailable(f"{workload.name} has tcp readiness, which the full VM cannot time: QEMU "
                              f"holds a connection until the guest's network is up; use http readiness or "
                              f"a console line")
        recipe = recipe_dir()
        base = BaseRecipe.read(recipe)
        network = workload.port is not None
        key = digest(base.key, binary.sha256, workload.name, str(network), IMAGE_RECIPE,
                     recipe / "add-workload.sh", recipe / "harness-workload.service.in")[:24]
        base_hit: bool | None = None  # not even looked up when the image is cached
        with ctx.cache.entry("vm-image", key) as entry:
            if entry.hit:
                ctx.progress(f"vm image cached, no build ({workload.name}, {entry.path.name})")
            else:
                assert entry.work is not None
                base_path, base_hit = self._base(base, recipe, ctx)
                self._image(base_path, recipe, workload, binary, network, entry.work, ctx)
            path = entry.path
            hit = entry.hit
        info = json.loads((path / "image.json").read_text())
        accel = qemu.probe_accelerator(ctx.cache, ctx.options.get("accel", "auto"), progress=ctx.progress)
        image = VmImage(disk=path / "disk.raw", kernel=path / "vmlinuz", initrd=path / "initrd.img")
        spec = self._spec(image, workload, ctx, accel, host_port=0 if network else None)
        details = {
            "cached": hit,
            "base_cached": base_hit,
            "image_key": key,
            "base_key": base.key,
            "distribution": f"Debian {SUITE}",
            "packages": base.packages,
            "kernel_release": info["kernel_release"],
            "boot_path": BOOT_PATH,
            "kernel_cmdline": KERNEL_APPEND,
            "binary_path": f"/usr/local/bin/{workload.name}",
            "binary_sha256": binary.sha256,
            "mmdebstrap": base.mmdebstrap,
            "apt_sources": base.sources,
            **accel.to_json(),
            "vmm": qemu.qemu_version(),
            "vmm_flags": qemu.vmm_flags(qemu.build_argv(spec)),
            "machine": spec.machine,
            "guest_memory_mib": spec.memory_mib,
        }
        return Artifact(size=info["size"], details=details, handle=image, cached=hit)

    def _base(self, base: BaseRecipe, recipe: Path, ctx: Context) -> tuple[Path, bool]:
        """The Debian root filesystem, shared by every workload's image."""
        with ctx.cache.entry("vm-base", base.key) as entry:
            if entry.hit:
                ctx.progress(f"vm base image cached ({base.key}); adding the workload")
            else:
                assert entry.work is not None
                ctx.progress(f"building the Debian {SUITE} base image with mmdebstrap "
                             f"({len(base.packages)} packages; about a minute) ...")
                t0 = time.monotonic()
                rootfs = entry.work / "rootfs"
                rootfs.mkdir()
                hook = f"sh {shlex.quote(str(recipe / 'customize.sh'))} \"$1\" {shlex.quote(str(recipe))}"
                # mmdebstrap's own temp files (its gpg home) go in the entry's
                # work folder too, so an interrupted build leaves nothing in /tmp.
                steps.run(["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
                           f"--include={','.join(base.packages)}", f"--customize-hook={hook}",
                           SUITE, f"{rootfs}/", *base.sources], "mmdebstrap",
                          env={**os.environ, "TMPDIR": str(entry.work)})
                ctx.progress(f"vm base image built in {time.monotonic() - t0:.0f} s")
            return entry.path, entry.hit

    def _image(self, base: Path, recipe: Path, workload: Workload, binary: Binary, network: bool,
               work: Path, ctx: Context) -> None:
        """Base + binary + unit -> ext4 disk, its kernel and initrd, and the sizes."""
        ctx.progress(f"vm image for {workload.name}: copying the base root filesystem")
        rootfs = work / "rootfs"
        steps.run(["cp", "-a", "--reflink=auto", str(base / "rootfs"), str(rootfs)], "copying the base")
        target = rootfs / "usr/local/bin" / workload.name
        shutil.copyfile(binary.path, target)
        os.chmod(target, 0o755)
        steps.run(["sh", str(recipe / "add-workload.sh"), str(rootfs), str(recipe), workload.name,
                   "1" if network else "0"], "add-workload.sh")
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise BuildFailed("the image has no /boot/vmlinuz-*: is linux-image-cloud-amd64 in packages.txt?")
        release = kernels[-1].name.removeprefix("vmlinuz-")
        initrd = rootfs / "boot" / f"initrd.img-{release}"
        if not initrd.is_file():
            raise BuildFailed(f"the image has no /boot/initrd.img-{release}: is initramfs-tools installed?")
        shutil.copyfile(kernels[-1], work / "vmlinuz")
        shutil.copyfile(initrd, work / "initrd.img")

        used = _du_bytes(rootfs)
        size = -(-(int(used * 1.2) + 128 * 1024**2) // (64 * 1024**2)) * 64 * 1024**2
        disk = work / "disk.raw"
        ctx.progress(f"vm image for {workload.name}: mkfs.ext4 -d ({used / 1e6:.0f} MB of files)")
        with open(disk, "wb") as fh:
            fh.truncate(size)
        steps.run(["mkfs.ext4", "-q", "-F", "-L", "harness-root", "-d", str(rootfs), str(disk)], "mkfs.ext4")
        shutil.rmtree(rootfs)
        ctx.progress(f"vm image for {workload.name}: qcow2 and compressed qcow2 (qemu-img)")
        qcow2 = work / "disk.qcow2"
        compressed = work / "disk-compressed.qcow2"
        steps.run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(qcow2)], "qemu-img convert")
        steps.run(["qemu-img", "convert", "-c", "-O", "qcow2", str(disk), str(compressed)],
                  "qemu-img convert -c")
        st = disk.stat()
        sizes = {
            "artifact_bytes": compressed.stat().st_size,
            "raw_apparent_bytes": st.st_size,
            "raw_allocated_bytes": st.st_blocks * 512,
            "qcow2_bytes": qcow2.stat().st_size,
            "qcow2_compressed_bytes": compressed.stat().st_size,
            "kernel_bytes": (work / "vmlinuz").stat().st_size,
            "initrd_bytes": (work / "initrd.img").stat().st_size,
            "rootfs_file_bytes": used,
        }
        qcow2.unlink()  # only its size matters; the compressed one is what ships
        (work / "image.json").write_text(json.dumps({"size": sizes, "kernel_release": release}, indent=2))
        ctx.progress(f"vm image for {workload.name} built: {sizes['artifact_bytes'] / 1e6:.0f} MB compressed qcow2")

    # ------------------------------------------------------------------ boot

    def _spec(self, image: VmImage, workload: Workload, ctx: Context, accel: qemu.Accelerator,
              host_port: int | None) -> qemu.GuestSpec:
        memory = ctx.options.get("memory") or DEFAULT_MEMORY_BYTES
        forwards = []
        if host_port is not None and workload.port is not None:
            forwards.append(qemu.Forward(host_port, workload.port))
        return qemu.GuestSpec(accel=accel, memory_mib=mebibytes(int(memory)), machine="pc",
                              kernel=image.kernel, initrd=image.initrd, append=KERNEL_APPEND,
                              drives=[qemu.Drive(image.disk, "raw", snapshot=True)], forwards=forwards)

    def boot(self, artifact: Artifact, workload: Workload, ctx: Context) -> Sample:
        image: VmImage = artifact.handle
        accel = qemu.probe_accelerator(ctx.cache, ctx.options.get("accel", "auto"), progress=ctx.progress)
        host_port = free_port() if workload.port is not None else None
        spec = self._spec(image, workload, ctx, accel, host_port)
        what = f"{'emulated (TCG)' if accel.emulated else 'KVM'} boot"
        ctx.progress(f"vm: booting {workload.name} ({what}, -m {spec.memory_mib}M, timeout {ctx.timeout_s:.0f} s)")
        with qemu.QemuProcess(spec, tag=ctx.run_id) as q:
            assert q.spawn_t is not None
            deadline = q.spawn_t + ctx.timeout_s
            ready_t = self._wait_ready(q, workload, host_port, deadline)
            if ready_t is None:
                raise BootFailed(q.failure("vm", workload.readiness.type, ctx.timeout_s, deadline))
            meminfo = q.wait_for(guest.has_meminfo,
                                 min(time.monotonic() + MEMINFO_WAIT_S, deadline + MEMINFO_WAIT_S))
            pm = process_memory(q.pid)
            kvm_state = self._query_kvm(q)
            details = q.details()
            details.update(self._phases_details(q, ready_t))
            phases = self._phases(q, ready_t)
            t_quit = time.monotonic()
            graceful = q.quit(5.0)
        teardown_s = time.monotonic() - t_quit
        gm = guest.guest_memory([meminfo.text]) if meminfo is not None else None
        memory = {
            "vmm_pss_bytes": pm.pss_bytes,
            "vmm_rss_bytes": pm.rss_bytes,
            "guest_configured_bytes": spec.memory_mib * 1024**2,
            "guest_total_bytes": gm.total_bytes if gm else None,
            "guest_available_bytes": gm.available_bytes if gm else None,
            "guest_used_bytes": gm.used_bytes if gm else None,
        }
        memory_bytes, source = headline(memory, ("vmm_pss_bytes", "vmm_rss_bytes"))
        details.update({
            "boot_start": "QEMU spawn",
            "boot_end": "readiness (console line)" if workload.readiness.type == "console"
            else f"readiness ({workload.readiness.type} through 127.0.0.1:{host_port})",
            "boot_path": BOOT_PATH,
            "guest_meminfo_seen": meminfo is not None,
            "kvm_query": kvm_state,
            "teardown_s": teardown_s,
            "teardown": "QMP quit" if graceful else "QMP quit, then killed",
            "host_port": host_port,
        })
        return Sample(boot_s=ready_t - q.spawn_t, memory_bytes=memory_bytes, memory_source=source,
                      phases=phases, memory=memory, details=details)

    def _wait_ready(self, q: qemu.QemuProcess, workload: Workload, host_port: int | None,
                    deadline: float) -> float | None:
        """Monotonic instant of readiness, or None (deadline passed or QEMU exited)."""
        r = workload.readiness
        if r.type == "console":
            assert r.line is not None
            line = q.wait_for(lambda s: r.line in s, deadline)
            return None if line is None else line.t
        assert host_port is not None
        return poll(network_probe(r, "127.0.0.1", host_port), deadline, still_alive=q.alive,
                    interval_s=HTTP_POLL_S)

    @staticmethod
    def _markers(q: qemu.QemuProcess) -> tuple[float | None, float | None]:
        now = time.monotonic()
        handover = q.wait_for(lambda s: any(m in s for m in HANDOVER_MARKERS), now)
        systemd = q.wait_for(lambda s: SYSTEMD_MARKER in s, now)
        return (handover.t if handover else None), (systemd.t if systemd else None)

    def _phases(self, q: qemu.QemuProcess, ready_t: float) -> dict[str, float]:
        """Consecutive intervals spawn -> first byte -> kernel handover -> systemd -> ready."""
        assert q.spawn_t is not None
        handover_t, systemd_t = self._markers(q)
        points = [("first_output_s", q.first_byte_t), ("kernel_s", handover_t),
                  ("initramfs_s", systemd_t), ("userspace_s", ready_t)]
        phases: dict[str, float] = {}
        prev = q.spawn_t
        for name, t in points:
            if t is None or t > ready_t or t < prev:
                continue  # a marker not seen (or out of order) merges into the next phase
            phases[name] = t - prev
            prev = t
        return phases

    def _phases_details(self, q: qemu.QemuProcess, ready_t: float) -> dict[str, Any]:
        handover_t, systemd_t = self._markers(q)
        return {"phase_markers": {
            "first_output_s": "first console byte",
            "kernel_s": " or ".join(repr(m) for m in HANDOVER_MARKERS) + f" (seen: {handover_t is not None})",
            "initramfs_s": f"{SYSTEMD_MARKER!r} (systemd banner; seen: {systemd_t is not None})",
            "userspace_s": "readiness",
        }}

    @staticmethod
    def _query_kvm(q: qemu.QemuProcess) -> dict[str, Any] | None:
        """QEMU's own word on whether KVM is in use, to confirm the accelerator recorded."""
        try:
            result = q.qmp("query-kvm", timeout_s=5.0)
            return dict(result) if isinstance(result, dict) else None
        except Exception:
            return None

    def cleanup(self, ctx: Context) -> None:
        qemu.kill_all(tag=ctx.run_id)

