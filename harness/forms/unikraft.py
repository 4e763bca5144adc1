"""The Unikraft unikernel form, driven through kraftkit's `kraft` CLI.

The workload's own static-pie binary runs on Unikraft's binary-compatible
runtime (app-elfloader), so this form boots the very file the container and VM
forms package. builds/unikraft/<workload>/Kraftfile names the runtime; the
binary becomes the initramfs that `kraft build` serialises.

Boot time runs from spawning `kraft run --detach` to readiness (a console line
seen with `kraft logs`, or an answer on the published port); kraft run's own
wall time is recorded beside it, since it includes kraft's catalog lookups.
Teardown (`kraft rm`) is excluded from boot time and always done. Memory is
the VMM process's PSS/RSS, the PID taken from `kraft ps`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psutil

from harness.build.binary import Binary, sha256_file
from harness.build.cache import digest
from harness.errors import BootFailed, BuildFailed, Unavailable, UsageError, tail
from harness.forms.base import Artifact, Context, Sample, headline
from harness.measure import guest, readiness
from harness.measure.memory import process_memory
from harness.units import mebibytes, parse_size
from harness.workloads import Workload

PLATFORM = "qemu"
ARCH = "x86_64"
DEFAULT_MEMORY_BYTES = 64 * 1024**2
BUILD_TIMEOUT_S = 1800.0
COMMAND_TIMEOUT_S = 60.0
CONSOLE_POLL_S = 0.05
INSTALL_HINT = (
    "install kraftkit (https://unikraft.org/docs/cli: its release binaries or "
    "distribution packages); unavailable on this machine"
)
# kraft's own switches, so it never waits on a prompt or draws a TUI in a pipe.
KRAFT_ENV = {"KRAFTKIT_NO_PROMPT": "true", "KRAFTKIT_LOG_TYPE": "basic", "KRAFTKIT_NO_COLOR": "true"}


class KraftOutputError(BootFailed):
    """kraft printed something this form cannot read (another kraft version?)."""


@dataclass(frozen=True)
class MemoryFlag:
    """The -M value passed to kraft: whole MiB with an explicit binary unit."""

    text: str
    requested_bytes: int
    passed_bytes: int

    @property
    def rounded_up(self) -> bool:
        return self.passed_bytes != self.requested_bytes


def memory_flag(n_bytes: Any) -> MemoryFlag:
    """-M for a size in bytes; rounded up to whole MiB, never a bare number.

    kraft has read a bare number as something other than MiB, so the
    unit is always written out.
    """
    if isinstance(n_bytes, str):
        n_bytes = parse_size(n_bytes, "unikraft memory")
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes <= 0:
        raise UsageError(f"unikraft memory must be a positive size in bytes, not {n_bytes!r}")
    mib = mebibytes(n_bytes)
    return MemoryFlag(text=f"{mib}Mi", requested_bytes=n_bytes, passed_bytes=mib * 1024**2)


@dataclass(frozen=True)
class Machine:
    """One row of `kraft ps --all --long --output json`."""

    name: str
    status: str
    pid: int | None
    plat: str | None = None


def parse_ps(text: str) -> list[Machine]:
    """Rows of kraft's ps JSON (a list of objects whose values are strings).

    kraft prints `null` for no machines; a PID of 0 means the VMM is gone.
    A missing field raises KraftOutputError naming it, never a KeyError.
    """
    try:
        data = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise KraftOutputError(f"kraft ps did not print JSON ({exc}): {text.strip()[:200]!r}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise KraftOutputError(f"kraft ps JSON is not a list of machines: {text.strip()[:200]!r}")
    machines = []
    for row in data:
        if not isinstance(row, dict):
            raise KraftOutputError(f"kraft ps JSON row is not an object: {row!r}")
        missing = [k for k in ("name", "status", "pid") if k not in row]
        if missing:
            raise KraftOutputError(
                f"kraft ps JSON row lacks {', '.join(missing)} (has: {', '.join(sorted(row)) or 'nothing'}); "
                "the form asks for --long, which adds the pid"
            )
        try:
            pid = int(str(row["pid"]).strip() or 0)
        except ValueError:
            raise KraftOutputError(f"kraft ps gave a non-numeric pid {row['pid']!r} for {row['name']!r}") from None
        machines.append(Machine(name=str(row["name"]), status=str(row["status"]),
                                pid=pid if pid > 0 else None, plat=row.get("plat")))
    return machines


def accelerator(run_output: str, vmm_cmdline: list[str] | None) -> tuple[str, bool | None]:
    """(accelerator, emulated) from the VMM's command line or kraft's own words.

    kraft warns "using hardware emulation" when it falls back to TCG; QEMU's
    arguments say it directly. Neither: ("unknown", None), never a guess.
    """
    if vmm_cmdline:
        joined = " ".join(vmm_cmdline)
        if "-enable-kvm" in vmm_cmdline or re.search(r"accel[= ]kvm|-accel\s+kvm", joined):
            return "kvm", False
        if re.search(r"accel[= ]tcg|-accel\s+tcg", joined):
            return "tcg", True
    if "hardware emulation" in run_output:
        return "tcg", True
    return "unknown", None


def instance_prefix(run_id: str) -> str:
    """Name prefix of every instance a run starts, so cleanup finds them all."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-") or "run"
    return f"harness-{slug}-"


def run_argv(name: str, memory: MemoryFlag, rootfs: Path | None, project: Path,
             ports: list[tuple[int, int]]) -> list[str]:
    """The `kraft run` arguments for one detached boot."""
    argv = ["run", "--detach", "--name", name, "--plat", PLATFORM, "--arch", ARCH, "-M", memory.text]
    for host_port, guest_port in ports:
        argv += ["-p", f"{host_port}:{guest_port}"]
    if rootfs is not None:
        argv += ["--rootfs", str(rootfs)]
    argv.append(str(project))
    return argv


@dataclass
class Kraft:
    """The kraft executable and the environment it always runs with."""

    path: str
    env: dict[str, str] = field(default_factory=lambda: {**os.environ, **KRAFT_ENV})

    def run(self, args: list[str], timeout: float = COMMAND_TIMEOUT_S,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run kraft; a timeout becomes a CompletedProcess with returncode -1."""
        try:
            return subprocess.run([self.path, *args], capture_output=True, text=True,
                                  timeout=timeout, cwd=cwd, env=self.env, check=False)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return subprocess.CompletedProcess([self.path, *args], -1, out, f"timed out after {timeout:.0f}s")


@dataclass(frozen=True)
class Built:
    """Where a build's files are, kept in Artifact.handle."""

    project: Path
    kernel: Path
    rootfs: Path | None


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"{proc.stdout or ''}\n{proc.stderr or ''}".strip()


class UnikraftForm:
    name: ClassVar[str] = "unikraft"
    family: ClassVar[str] = "unikernel"

    def __init__(self) -> None:
        self._kraft: Kraft | None = None
        self._version: str | None = None
        self._started: set[str] = set()
        self._serial = itertools.count(1)

    # -- availability --------------------------------------------------------

    def check(self, ctx: Context) -> None:
        self._require_kraft()

    def _require_kraft(self) -> Kraft:
        if self._kraft is not None:
            return self._kraft
        path = shutil.which("kraft")
        if path is None:
            raise Unavailable(f"kraft (kraftkit) not found on PATH; {INSTALL_HINT}")
        kraft = Kraft(path)
        proc = kraft.run(["version"], timeout=30)
        if proc.returncode != 0:
            raise Unavailable(
                f"`kraft version` failed (exit {proc.returncode}): {tail(_output(proc), 3) or 'no output'}; "
                f"reinstall kraftkit ({path})"
            )
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        self._version = lines[0] if lines else "unknown"
        self._kraft = kraft
        return kraft

    # -- build ---------------------------------------------------------------

    @staticmethod
    def kraftfile_for(workload: Workload) -> Path:
        """builds/unikraft/<workload>/Kraftfile, checked to run the workload's binary."""
        path = workload.directory.parent / "unikraft" / workload.name / "Kraftfile"
        if not path.is_file():
            raise Unavailable(f"no Kraftfile for workload {workload.name!r}: write {path} (see builds/unikraft/README.md)")
        text = path.read_text()
        if not re.search(r"^spec(ification)?:\s*v0\.[56]\s*$", text, re.M):
            raise UsageError(f"{path}: needs 'spec: v0.6' at the top level")
        if not re.search(rf'^cmd:.*"/{re.escape(workload.name)}"', text, re.M):
            raise UsageError(f'{path}: cmd must run the workload binary, e.g. cmd: ["/{workload.name}"]')
        if not re.search(r"^rootfs:\s*\./rootfs\s*$", text, re.M):
            raise UsageError(f"{path}: rootfs must be ./rootfs, where the harness puts the binary")
        return path

    def build(self, workload: Workload, binary: Binary, ctx: Context) -> Artifact:
        kraftfile = self.kraftfile_for(workload)
        if binary.info.linkage != "static-pie":
            raise UsageError(
                f"{binary.path.name} is {binary.info.linkage}; Unikraft's ELF loader runs a static-pie "
                "binary (link = \"static-pie\" in workload.toml)"
            )
        kraft = self._require_kraft()
        text = kraftfile.read_text()
        runtime = _kraftfile_value(text, "runtime")
        key = digest(binary.sha256, text, self._version or "", PLATFORM, ARCH)[:24]
        with ctx.cache.entry("unikraft", key) as entry:
            if not entry.hit:
                assert entry.work is not None
                self._build_into(entry.work, kraftfile, binary, workload, runtime, kraft, ctx)
            project = entry.path
        built = _locate(project)
        size = {"kernel_bytes": built.kernel.stat().st_size, "binary_bytes": binary.size_bytes}
        if built.rootfs is not None:
            size["rootfs_bytes"] = built.rootfs.stat().st_size
        size["artifact_bytes"] = size["kernel_bytes"] + size.get("rootfs_bytes", 0)
        details = {
            "kraft_version": self._version,
            "kraftfile": str(kraftfile),
            "kraftfile_sha256": digest(text),
            "platform": f"{PLATFORM}/{ARCH}",
            "runtime": runtime,
            "kernel": str(built.kernel.relative_to(project)),
            "kernel_source": "built" if built.kernel.parent.name == "build" else "runtime package",
            "rootfs": str(built.rootfs.relative_to(project)) if built.rootfs else None,
            "binary_sha256": binary.sha256,
            "vmm": "qemu (through kraft)",
        }
        return Artifact(size=size, details=details, handle=built, cached=entry.hit)

    def _build_into(self, work: Path, kraftfile: Path, binary: Binary, workload: Workload,
                    runtime: str | None, kraft: Kraft, ctx: Context) -> None:
        """Stage Kraftfile + binary in `work`, run kraft build, fetch the runtime kernel."""
        shutil.copy2(kraftfile, work / "Kraftfile")
        (work / "rootfs").mkdir()
        staged = work / "rootfs" / workload.name
        shutil.copy2(binary.path, staged)
        staged.chmod(0o755)
        if sha256_file(staged) != binary.sha256:
            raise BuildFailed(f"staged {staged} differs from {binary.path} (sha256 mismatch)")
        timeout = float(ctx.options.get("build_timeout_s", BUILD_TIMEOUT_S))
        ctx.progress(f"unikraft: kraft build {workload.name} ({PLATFORM}/{ARCH}, up to {timeout:.0f}s)")
        proc = kraft.run(["build", "--plat", PLATFORM, "--arch", ARCH, str(work)], timeout=timeout, cwd=work)
        (work / "kraft-build.log").write_text(_output(proc) + "\n")
        if proc.returncode != 0:
            raise BuildFailed(f"kraft build failed (exit {proc.returncode}):\n{tail(_output(proc))}")
        if _find_kernel(work) is None:
            if not runtime:
                raise BuildFailed(f"kraft build made no kernel in {work}/.unikraft/build and the Kraftfile names no runtime")
            ctx.progress(f"unikraft: kraft pkg pull {runtime}")
            out = work / "runtime"
            proc = kraft.run(["pkg", "pull", runtime, "--plat", PLATFORM, "--arch", ARCH, "--output", str(out)],
                             timeout=timeout, cwd=work)
            if proc.returncode != 0:
                raise BuildFailed(f"kraft pkg pull {runtime} failed (exit {proc.returncode}):\n{tail(_output(proc))}")
        _locate(work)  # fail the build, not a later boot, when a file is missing

    # -- boot ----------------------------------------------------------------

    def boot(self, artifact: Artifact, workload: Workload, ctx: Context) -> Sample:
        kraft = self._require_kraft()
        built: Built = artifact.handle
        memory = memory_flag(ctx.options.get("memory", DEFAULT_MEMORY_BYTES))
        name = f"{instance_prefix(ctx.run_id)}{workload.name}-{next(self._serial)}-{uuid.uuid4().hex[:4]}"
        network = workload.readiness.type in ("http", "tcp")
        host_port = readiness.free_port() if workload.port else None
        ports = [(host_port, workload.port)] if host_port and workload.port else []
        argv = run_argv(name, memory, built.rootfs, built.project, ports)
        deadline_s = ctx.timeout_s
        ctx.progress(f"unikraft: kraft run {name} (-M {memory.text})")
        self._started.add(name)
        console = ""
        with tempfile.TemporaryFile(mode="w+") as run_log:
            t0 = time.monotonic()
            proc = subprocess.Popen([kraft.path, *argv], cwd=built.project, env=kraft.env,
                                    stdout=run_log, stderr=subprocess.STDOUT, text=True)
            try:
                probe = readiness.network_probe(workload.readiness, "127.0.0.1", host_port) if network and host_port else None
                t_run, t_ready, console = self._await_ready(kraft, proc, name, workload, probe, t0, deadline_s, run_log)
                sample = self._measure(kraft, name, workload, memory, t0, t_run, t_ready, console, run_log, argv)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                self._remove(kraft, name, ctx)
        return sample

    def _await_ready(self, kraft: Kraft, proc: subprocess.Popen, name: str, workload: Workload,
                     probe, t0: float, timeout_s: float, run_log) -> tuple[float, float, str]:
        """(kraft-run-returned, ready, console) instants; BootFailed on failure or timeout."""
        deadline = t0 + timeout_s
        t_run: float | None = None
        t_ready: float | None = None
        console = ""
        while time.monotonic() < deadline:
            if t_run is None and proc.poll() is not None:
                t_run = time.monotonic()
                if proc.returncode != 0:
                    raise BootFailed(f"kraft run failed (exit {proc.returncode}):\n{tail(_read(run_log))}")
            if t_ready is None:
                if probe is not None:
                    t_ready = probe()
                elif t_run is not None:
                    logs = kraft.run(["logs", name], timeout=10)
                    if logs.returncode == 0:
                        console = logs.stdout
                        if any(readiness.console_matches(workload.readiness, ln) for ln in console.splitlines()):
                            t_ready = time.monotonic()
            if t_ready is not None and t_run is not None:
                return t_run, t_ready, console
            time.sleep(readiness.POLL_INTERVAL_S if probe is not None else CONSOLE_POLL_S)
        logs = kraft.run(["logs", name], timeout=10)
        seen = logs.stdout if logs.returncode == 0 else console
        what = "kraft run did not return" if t_run is None else "no readiness"
        raise BootFailed(
            f"{what} within {timeout_s:.0f}s for {name} "
            f"({workload.readiness.type} readiness):\n{tail(_read(run_log) + chr(10) + seen)}"
        )

    def _measure(self, kraft: Kraft, name: str, workload: Workload, memory: MemoryFlag, t0: float,
                 t_run: float, t_ready: float, console: str, run_log, argv: list[str]) -> Sample:
        """Memory of the VMM named by kraft ps, and the sample's phases and details."""
        ps = kraft.run(["ps", "--all", "--long", "--output", "json"], timeout=30)
        if ps.returncode != 0:
            raise KraftOutputError(f"kraft ps failed (exit {ps.returncode}): {tail(_output(ps), 3)}")
        row = next((m for m in parse_ps(ps.stdout) if m.name == name), None)
        if row is None:
            raise KraftOutputError(f"kraft ps does not list {name}, which kraft run just started")
        mem = process_memory(row.pid) if row.pid else None
        cmdline = _cmdline(row.pid)
        run_out = _read(run_log)
        accel, emulated = accelerator(run_out, cmdline)
        if not console:
            logs = kraft.run(["logs", name], timeout=10)
            console = logs.stdout if logs.returncode == 0 else ""
        memory_figures: dict[str, int | None] = {
            "vmm_pss_bytes": mem.pss_bytes if mem else None,
            "vmm_rss_bytes": mem.rss_bytes if mem else None,
            "guest_configured_bytes": memory.passed_bytes,
        }
        gm = guest.guest_memory(console.splitlines())
        if gm:
            memory_figures["guest_total_bytes"] = gm.total_bytes
            memory_figures["guest_available_bytes"] = gm.available_bytes
            memory_figures["guest_used_bytes"] = gm.used_bytes
        memory_bytes, source = headline(memory_figures, ("vmm_pss_bytes", "vmm_rss_bytes"))
        details: dict[str, Any] = {
            "instance": name,
            "kraft_argv": ["kraft", *argv],
            "memory_flag": memory.text,
            "memory_requested_bytes": memory.requested_bytes,
            "memory_rounded_up": memory.rounded_up,
            "accelerator": accel,
            "emulated": emulated,
            "vmm_pid": row.pid,
            "vmm_cmdline": cmdline,
            "boot_start": "kraft run spawned",
            "boot_end": f"{workload.readiness.type} readiness seen from the host",
        }
        if row.pid is None:
            details["memory_note"] = "the VMM had exited when kraft ps was read"
        return Sample(
            boot_s=t_ready - t0,
            memory_bytes=memory_bytes,
            memory_source=source,
            phases={"kraft_run_s": t_run - t0, "ready_after_run_s": max(0.0, t_ready - t_run)},
            memory=memory_figures,
            details=details,
        )

    # -- teardown ------------------------------------------------------------

    def _remove(self, kraft: Kraft, name: str, ctx: Context) -> None:
        """kraft rm NAME (it stops a running instance first); kept for cleanup if it fails."""
        proc = kraft.run(["rm", name], timeout=COMMAND_TIMEOUT_S)
        if proc.returncode == 0:
            self._started.discard(name)
        else:
            ctx.progress(f"unikraft: kraft rm {name} failed: {tail(_output(proc), 2)}")

    def cleanup(self, ctx: Context) -> None:
        if shutil.which("kraft") is None and self._kraft is None:
            return
        try:
            kraft = self._require_kraft()
        except Unavailable:
            return
        prefix = instance_prefix(ctx.run_id)
        names = set(self._started)
        ps = kraft.run(["ps", "--all", "--long", "--output", "json"], timeout=30)
        try:
            if ps.returncode == 0:
                names |= {m.name for m in parse_ps(ps.stdout) if m.name.startswith(prefix)}
        except KraftOutputError as exc:
            ctx.progress(f"unikraft: cleanup could not read kraft ps: {exc}")
        for name in sorted(names):
            self._remove(kraft, name, ctx)


def _kraftfile_value(text: str, key: str) -> str | None:
    found = re.search(rf"^{key}:\s*(\S+)\s*$", text, re.M)
    return found.group(1).strip("'\"") if found else None


def _find_kernel(project: Path) -> Path | None:
    """A kernel built from source: .unikraft/build/<name>_qemu-x86_64."""
    build = project / ".unikraft" / "build"
    if not build.is_dir():
        return None
    found = sorted(p for p in build.glob(f"*_{PLATFORM}-{ARCH}") if p.is_file())
    return found[0] if found else None


def _locate(project: Path) -> Built:
    """The kernel (built, or the pulled runtime's) and the initramfs of a build."""
    kernel = _find_kernel(project)
    if kernel is None:
        pulled = project / "runtime" / "unikraft" / "bin" / "kernel"
        kernel = pulled if pulled.is_file() else None
    if kernel is None:
        raise BuildFailed(f"no kernel in {project}/.unikraft/build or {project}/runtime/unikraft/bin after kraft build")
    rootfs = project / ".unikraft" / "build" / f"initramfs-{ARCH}.cpio"
    return Built(project=project, kernel=kernel, rootfs=rootfs if rootfs.is_file() else None)


def _cmdline(pid: int | None) -> list[str] | None:
    if not pid:
        return None
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return None


def _read(handle) -> str:
    handle.flush()
    handle.seek(0)
    return handle.read()
