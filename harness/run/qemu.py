"""The shared QEMU runner: describe a guest, spawn it, watch its console, stop it.

Used by every form that boots a guest kernel (the full VM, the Linux
unikernel). The API is small on purpose:

- GuestSpec (with Drive, Forward, Accelerator) describes one guest;
  build_argv(spec, qmp) turns it into QEMU's argv (never a shell string).
- QemuProcess spawns it (stdin /dev/null, serial console on a pipe,
  -no-reboot), timestamps each console line and the first byte with
  time.monotonic() as they arrive, offers wait_for(predicate, deadline),
  tail(), pid and QMP control, and always cleans up (context manager).
- probe_accelerator() decides once per machine whether KVM really boots a
  guest, falling back to TCG with the reason; the verdict is cached.
- kill_all() stops every QEMU this process started (for signal handlers).

Exit status proves nothing (a guest that panics with -no-reboot and
panic=-1 makes QEMU exit 0): callers judge a boot only by their readiness
signal. Every figure measured with a guest must carry details() of its
accelerator and VMM, because TCG is one to two orders of magnitude slower
than KVM.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from harness.build import initramfs, kernel, steps
from harness.build.cache import Cache, digest, users_of
from harness.errors import BuildFailed, Unavailable, UsageError
from harness.run import leftovers

QEMU = "qemu-system-x86_64"
ACCELERATORS = ("auto", "kvm", "tcg")
MACHINES = ("pc", "microvm")
MIN_MEMORY_MIB = 16
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, the last one a NUL
# Bounds TCG's translation cache, which otherwise counts hundreds of MiB in QEMU's RSS.
TCG_TB_SIZE_MIB = 64
PROBE_TIMEOUT_S = 12.0
PROBE_MARKER = "harness-probe-ok"
PROBE_INIT_SOURCE = Path(__file__).with_name("probe_init.c")
# Bump when the probe guest or its judgement changes, to drop cached verdicts.
PROBE_RECIPE = "probe-v3"
CONSOLE_KEEP_LINES = 5000

# The QMP library logs each refused connect (QEMU not listening yet, or gone) at ERROR, and
# Python prints those on stderr; the harness retries and reports a real failure itself.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)


# --------------------------------------------------------------------------- guest description


@dataclass(frozen=True)
class Accelerator:
    """The accelerator a guest runs under, and why it was chosen.

    name is "kvm" or "tcg"; reason says why (probe verdict, user choice).
    Under TCG the translation cache is bounded to tb_size_mib.
    """

    name: str
    reason: str
    tb_size_mib: int | None = None
    probed: bool = False
    cached: bool = False
    probed_at: str | None = None  # when the probe ran, for a verdict read back from the cache

    @property
    def emulated(self) -> bool:
        return self.name == "tcg"

    def args(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm"]
        if self.name == "tcg":
            size = f",tb-size={self.tb_size_mib}" if self.tb_size_mib else ""
            return ["-accel", f"tcg{size}"]
        raise ValueError(f"unknown accelerator {self.name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "accelerator": self.name,
            "accelerator_reason": self.reason,
            "tcg_tb_size_mib": self.tb_size_mib,
            "accelerator_probe_cached": self.cached,
            "emulated": self.emulated,
        }


def tcg(reason: str, tb_size_mib: int | None = TCG_TB_SIZE_MIB, **kw: Any) -> Accelerator:
    """A TCG accelerator with the translation cache bounded (the default)."""
    return Accelerator("tcg", reason, tb_size_mib=tb_size_mib, **kw)


@dataclass(frozen=True)
class Drive:
    """A virtio disk. snapshot=True keeps the image file untouched: writes go to a temp overlay."""

    path: Path
    format: str = "raw"
    snapshot: bool = True
    readonly: bool = False


@dataclass(frozen=True)
class Forward:
    """A host TCP port on 127.0.0.1 forwarded to a guest port (QEMU user networking)."""

    host_port: int
    guest_port: int


@dataclass
class GuestSpec:
    """Everything that defines one guest boot.

    Boot either a kernel directly (kernel, initrd, append) or firmware from
    drives. Forwards imply a virtio NIC on user networking; no forwards, no NIC.
    """

    accel: Accelerator
    memory_mib: int = 512
    machine: str = "pc"
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    drives: list[Drive] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    smp: int = 1
    extra_args: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.machine not in MACHINES:
            raise UsageError(f"machine {self.machine!r} unknown; use one of {', '.join(MACHINES)}")
        if self.memory_mib < MIN_MEMORY_MIB:
            raise UsageError(f"guest memory {self.memory_mib} MiB is too small; give at least "
                             f"{MIN_MEMORY_MIB}Mi (e.g. --memory 64Mi)")
        if self.kernel is None and not self.drives:
            raise UsageError("a guest needs a kernel or a drive to boot from")


def build_argv(spec: GuestSpec, qmp_socket: Path | None = None) -> list[str]:
    """QEMU's argv for a guest: no defaults, no display, serial console on stdio."""
    spec.validate()
    mmio = spec.machine == "microvm"
    argv = [QEMU, "-M", spec.machine, *spec.accel.args(), "-m", f"{spec.memory_mib}M",
            "-smp", str(spec.smp), "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"]
    if qmp_socket is not None:
        argv += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel)]
        if spec.initrd is not None:
            argv += ["-initrd", str(spec.initrd)]
        if spec.append:
            argv += ["-append", spec.append]
    blk = "virtio-blk-device" if mmio else "virtio-blk-pci"
    for i, drive in enumerate(spec.drives):
        opts = [f"file={drive.path}", f"format={drive.format}", "if=none", f"id=disk{i}"]
        if drive.snapshot:
            opts.append("snapshot=on")
        if drive.readonly:
            opts.append("readonly=on")
        argv += ["-drive", ",".join(opts), "-device", f"{blk},drive=disk{i}"]
    if spec.forwards:
        fwd = "".join(f",hostfwd=tcp:127.0.0.1:{f.host_port}-:{f.guest_port}" for f in spec.forwards)
        net = "virtio-net-device" if mmio else "virtio-net-pci"
        argv += ["-netdev", f"user,id=net0{fwd}", "-device", f"{net},netdev=net0"]
    argv += list(spec.extra_args)
    return argv


def vmm_flags(argv: list[str]) -> list[str]:
    """argv without the binary, file paths reduced to their names and host ports to <port>, for the record."""
    out = []
    for arg in argv[1:]:
        if arg.startswith("/"):
            arg = Path(arg).name
        arg = re.sub(r"(file=|unix:)/[^,]*/", r"\1", arg)
        arg = re.sub(r"(hostfwd=tcp:127\.0\.0\.1:)\d+-", r"\1<port>-", arg)  # a new free port each boot
        out.append(arg)
    return out


@lru_cache(maxsize=1)
def qemu_version() -> str:
    """'QEMU 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)', or raise Unavailable."""
    if shutil.which(QEMU) is None:
        raise Unavailable(f"{QEMU} not found: apt-get install qemu-system-x86")
    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=False,
                         stdin=subprocess.DEVNULL, timeout=30)
    first = (out.stdout.splitlines() or ["unknown"])[0]
    return first.replace("QEMU emulator version", "QEMU").strip()


# --------------------------------------------------------------------------- running a guest


def dies_with_parent(argv: list[str]) -> list[str]:
    """argv prefixed so that the kernel kills QEMU if the harness dies without cleaning up.

    Signals are caught and QEMU is quit properly; this covers SIGKILL and
    crashes. setpriv (util-linux, always on Debian) sets the parent-death
    signal and execs QEMU, so the PID is QEMU's own.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


@dataclass(frozen=True)
class ConsoleLine:
    """One console line and the monotonic instant its newline arrived."""

    t: float
    text: str


_LIVE: set[QemuProcess] = set()
_LIVE_LOCK = threading.Lock()


TEMP_PREFIX = "harness-qemu-"
OWNER_FILE = "owner.json"


def _claim_dir(folder: Path) -> None:
    """Write who owns a QEMU temp dir, so that sweep_stale_dirs() can tell a killed owner's."""
    pid, started = leftovers.me()
    (folder / OWNER_FILE).write_text(json.dumps({"pid": pid, "started": started}))


def _dir_in_use(folder: Path) -> bool:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
        return leftovers.process_alive(owner["pid"], owner["started"])
    except (OSError, ValueError, KeyError, TypeError):  # no owner file: in use while a QEMU names it
        try:
            if time.time() - folder.stat().st_mtime < 60:  # just made; its owner file comes next
                return True
        except OSError:
            return False
        return bool(users_of(folder))


def sweep_stale_dirs(roots: tuple[Path, ...] = ()) -> list[Path]:
    """Remove the private temp dirs of QEMUs whose harness was killed outright (SIGKILL, power loss).

    The QEMU itself died with its parent (dies_with_parent); its dir stayed.
    """
    removed = []
    for root in set(roots or (Path(tempfile.gettempdir()), Path("/tmp"))):
        for folder in root.glob(f"{TEMP_PREFIX}*"):
            if folder.is_dir() and not folder.is_symlink() and not _dir_in_use(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def kill_all(tag: str | None = None) -> int:
    """Kill every QEMU this process started and still running (only those with tag, if given).

    Safe to call from a signal handler's follow-up code; returns how many were killed.
    """
    with _LIVE_LOCK:
        victims = [q for q in _LIVE if tag is None or q.tag == tag]
    killed = 0
    for q in victims:
        if q.kill():
            killed += 1
        q.close()  # QEMU is dead by now: this only joins threads and removes the temp dir
    return killed


atexit.register(kill_all)


def _quiet_when_qemu_is_gone(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """QEMU quitting (or killed) closes the QMP socket under the library's reader task; that
    EOF is how every guest ends, not an error to print. Anything else goes to the default."""
    if isinstance(context.get("exception"), (EOFError, ConnectionError, BrokenPipeError)):
        return
    loop.default_exception_handler(context)


async def _cancel_the_rest() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _QmpLoop:
    """A private asyncio loop in a thread, so synchronous callers can use QMPClient."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_quiet_when_qemu_is_gone)
        self.thread = threading.Thread(target=self.loop.run_forever, name="qmp-loop", daemon=True)
        self.thread.start()
        self.client: QMPClient | None = None

    def run(self, coro: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        if self.client is not None:
            try:
                self.run(self.client.disconnect(), 2.0)
            except Exception:
                pass
            self.client = None
        try:
            self.run(_cancel_the_rest(), 2.0)  # nothing left pending to complain when collected
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(2.0)
        if not self.thread.is_alive():
            self.loop.close()


class QemuProcess:
    """One running QEMU guest; use it as a context manager so it is always stopped.

    Leaving the block (normally, on an exception, a timeout or
    KeyboardInterrupt) quits QEMU through QMP, kills it if it lingers and
    removes its private temp dir. tag groups processes for kill_all(tag).
    """

    def __init__(self, spec: GuestSpec, tag: str | None = None) -> None:
        self.spec = spec
        self.tag = tag
        self.tmp: Path | None = None  # private dir (QMP socket, stderr), made by start()
        self.argv = build_argv(spec, Path("qmp.sock"))  # validates now; final paths in start()
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawn_t: float | None = None
        self.first_byte_t: float | None = None
        self.exit_t: float | None = None
        self._lines: list[ConsoleLine] = []
        self._partial = ""
        self._eof = False
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._qmp: _QmpLoop | None = None

    # -- lifecycle

    def start(self) -> QemuProcess:
        """Spawn QEMU and start reading its console; returns self."""
        if shutil.which(QEMU) is None:
            raise Unavailable(f"{QEMU} not found: apt-get install qemu-system-x86")
        self.tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        if len(str(self.qmp_socket)) > UNIX_PATH_MAX:  # a long TMPDIR: the socket could not be bound
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir="/tmp"))
        try:
            _claim_dir(self.tmp)
            self.argv = build_argv(self.spec, self.qmp_socket)
            with _LIVE_LOCK:
                _LIVE.add(self)
            with open(self.tmp / "qemu.stderr", "wb") as err:
                self.spawn_t = time.monotonic()
                self.proc = subprocess.Popen(dies_with_parent(self.argv), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=err, start_new_session=True)
            self._reader = threading.Thread(target=self._read_console, name=f"qemu-console-{self.pid}",
                                            daemon=True)
            self._reader.start()
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ fails
            raise
        return self

    def __enter__(self) -> QemuProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("QEMU was not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def console_closed(self) -> bool:
        """True once QEMU's serial output has ended (QEMU exited or is exiting)."""
        with self._cond:
            return self._eof

    def wait_exit(self, timeout_s: float) -> int | None:
        """QEMU's exit status once it has exited (waiting up to timeout_s), else None."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    @property
    def qmp_socket(self) -> Path:
        if self.tmp is None:
            raise RuntimeError("QEMU was not started")
        return self.tmp / "qmp.sock"

    def stderr(self) -> str:
        if self.tmp is None:
            return ""
        try:
            return (self.tmp / "qemu.stderr").read_text(errors="replace")
        except OSError:
            return ""

    # -- console

    def _read_console(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            t = time.monotonic()
            if not chunk:
                break
            text = chunk.decode("utf-8", errors="replace").replace("\r", "")
            with self._cond:
                if self.first_byte_t is None:
                    self.first_byte_t = t
                parts = (self._partial + text).split("\n")
                self._partial = parts.pop()
                self._lines.extend(ConsoleLine(t, p) for p in parts)
                if len(self._lines) > CONSOLE_KEEP_LINES:
                    del self._lines[: len(self._lines) - CONSOLE_KEEP_LINES]
                self._cond.notify_all()
        with self._cond:
            if self._partial:
                self._lines.append(ConsoleLine(time.monotonic(), self._partial))
                self._partial = ""
            self._eof = True
            self.exit_t = time.monotonic()
            self._cond.notify_all()

    def lines(self) -> list[ConsoleLine]:
        with self._cond:
            return list(self._lines)

    def wait_for(self, predicate: Callable[[str], bool], deadline: float) -> ConsoleLine | None:
        """The first console line (from the start) matching predicate, waiting until deadline.

        Returns None at the deadline or as soon as QEMU's console closes (QEMU exited).
        """
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if predicate(line.text):
                        return line
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.5))

    def tail(self, lines: int = 20) -> str:
        """The last non-empty console lines (and QEMU's own stderr if it wrote any)."""
        with self._cond:
            texts = [ln.text for ln in self._lines] + ([self._partial] if self._partial else [])
        kept = [t for t in texts if t.strip()][-lines:]
        err = self.stderr().strip()
        if err:
            kept.append(f"[qemu stderr] {err.splitlines()[-1]}")
        return "\n".join(kept)

    def last_words(self) -> str:
        """The likeliest cause of a failure in one line: QEMU's own last error, else the console's last line."""
        err = [ln for ln in self.stderr().splitlines() if ln.strip() and "warning:" not in ln]
        if err:
            return err[-1].strip()
        with self._cond:
            texts = [ln.text for ln in self._lines] + ([self._partial] if self._partial else [])
        kept = [t.strip() for t in texts if t.strip()]
        panics = [t for t in kept if "Kernel panic - not syncing" in t]
        if panics:  # the kernel goes on printing (offsets, traces) after saying why it stops
            return panics[-1]
        return kept[-1] if kept else "(no console output)"

    def failure(self, form: str, readiness: str, timeout_s: float, deadline: float) -> str:
        """Why a boot failed: a first line that names the cause, then the console tail."""
        # A guest that ended (panic, bad init) makes QEMU exit a moment after its console closes.
        status = self.wait_exit(0.0 if time.monotonic() >= deadline else 3.0)
        if status is None:
            why = f"no readiness ({readiness}) within {timeout_s:g} s (QEMU still running)"
        else:
            why = f"QEMU exited (status {status}) before readiness"
        words = self.last_words()
        if status == 0 and self.first_byte_t is None and not self.stderr().strip():
            words = (f"the guest reset before printing anything (with -no-reboot QEMU then exits); often too "
                     f"little guest memory for its kernel (-m {self.spec.memory_mib} MiB)")
        return f"{form}: {why}: {words}\nconsole tail:\n{self.tail(15)}"

    # -- QMP

    def qmp(self, command: str, arguments: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
        """Run one QMP command and return its result (connecting on first use)."""
        if self._qmp is None:
            self._qmp = _QmpLoop()
        loop = self._qmp
        if loop.client is None:
            deadline = time.monotonic() + timeout_s
            while not self.qmp_socket.exists():  # not yet created, or QEMU is gone: no noisy connects
                if time.monotonic() >= deadline or not self.alive():
                    raise ConnectionError(f"QMP socket of QEMU {self.pid} not available")
                time.sleep(0.02)
            while True:
                client = QMPClient(f"harness-{self.pid}")
                try:
                    loop.run(client.connect(str(self.qmp_socket)), max(deadline - time.monotonic(), 0.1))
                    loop.client = client
                    break
                except Exception:
                    if time.monotonic() >= deadline or not self.alive():
                        raise
                    time.sleep(0.05)
        return loop.run(loop.client.execute(command, arguments), timeout_s)

    def details(self) -> dict[str, Any]:
        """What every figure measured with this guest must record."""
        return {**self.spec.accel.to_json(), "vmm": qemu_version(), "vmm_flags": vmm_flags(self.argv),
                "machine": self.spec.machine, "guest_memory_mib": self.spec.memory_mib}

    # -- teardown

    def quit(self, timeout_s: float = 5.0) -> bool:
        """Ask QEMU to quit through QMP and wait for it; True if it exited by itself."""
        if not self.alive():
            return True
        try:
            self.qmp("quit", timeout_s=min(timeout_s, 3.0))
        except Exception:
            pass  # QEMU closes the socket as it quits; any error is judged by wait() below.
        try:
            assert self.proc is not None
            self.proc.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> bool:
        """Kill QEMU now (no QMP); True if it was still running."""
        if self.proc is None:
            return False
        was_alive = self.proc.poll() is None
        if was_alive:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                pass
        return was_alive

    def close(self) -> None:
        """Quit gracefully, then kill; join the reader; remove the temp dir. Idempotent."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                if not self.quit(5.0):
                    self.proc.terminate()
                    try:
                        self.proc.wait(2.0)
                    except subprocess.TimeoutExpired:
                        self.kill()
        finally:
            self.kill()
            if self._qmp is not None:
                self._qmp.close()
                self._qmp = None
            if self._reader is not None:
                self._reader.join(2.0)
            if self.proc is not None and self.proc.stdout is not None:
                self.proc.stdout.close()
            with _LIVE_LOCK:
                _LIVE.discard(self)
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- accelerator choice


@dataclass(frozen=True)
class ProbeGuest:
    """The probe's kernel and one-file initramfs (its /init prints PROBE_MARKER)."""

    kernel: Path
    initrd: Path
    kernel_package: str


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    return steps.run(cmd, cmd[0], cwd=cwd, timeout_s=600)


def probe_guest(cache: Cache, progress: Callable[[str], None] | None = None) -> ProbeGuest:
    """Debian's cloud kernel (the same cache entry the lupine form's cloud kernel uses) and the
    probe's one-file initramfs, both built once."""
    cloud = kernel.fetch_cloud(cache, progress or (lambda _message: None))
    key = digest(PROBE_INIT_SOURCE, PROBE_RECIPE)[:24]
    with cache.entry("qemu-probe-init", key) as entry:
        if not entry.hit:
            assert entry.work is not None
            work = entry.work
            cc = "musl-gcc" if shutil.which("musl-gcc") else "gcc"
            _run([cc, "-static", "-O2", "-s", "-o", str(work / "init"), str(PROBE_INIT_SOURCE)])
            cpio = initramfs.newc_archive(initramfs.init_only((work / "init").read_bytes()))
            (work / "initrd.cpio").write_bytes(cpio)
            (work / "init").unlink()
        path = entry.path
    return ProbeGuest(kernel=cloud.image, initrd=path / "initrd.cpio", kernel_package=cloud.source)


def probe_spec(guest: ProbeGuest, accel: Accelerator, stay: bool = False, memory_mib: int = 128) -> GuestSpec:
    """The probe guest's spec; stay=True keeps it running after the marker (for tests)."""
    append = "console=ttyS0 panic=-1 quiet" + (" harness_probe=stay" if stay else "")
    return GuestSpec(accel=accel, memory_mib=memory_mib, kernel=guest.kernel, initrd=guest.initrd,
                     append=append)


def _boots(guest: ProbeGuest, accel: Accelerator, timeout_s: float) -> tuple[bool, str]:
    """Does the probe guest reach its marker under accel within timeout_s? (verdict, reason)."""
    with QemuProcess(probe_spec(guest, accel), tag="accel-probe") as q:
        seen = q.wait_for(lambda s: PROBE_MARKER in s, time.monotonic() + timeout_s)
        if seen is not None:
            assert q.spawn_t is not None
            return True, f"probe guest reached init in {seen.t - q.spawn_t:.1f} s"
        why = "QEMU exited" if not q.alive() else f"no init marker within {timeout_s:.0f} s"
        return False, f"{why}: {q.last_words()}"  # QEMU's own error or the guest's last line, not warnings


def tcg_boots(cache: Cache, timeout_s: float = 60.0) -> tuple[bool | None, str]:
    """Does QEMU boot the probe guest under TCG? For doctor, where KVM could not even be tried.

    None: not known, because the probe guest itself could not be had.
    """
    try:
        guest = probe_guest(cache)
    except (RuntimeError, BuildFailed, Unavailable, OSError) as exc:
        return None, f"no probe guest: {exc}"
    return _boots(guest, tcg("probe"), timeout_s)


class _NotCacheable(Exception):
    def __init__(self, verdict: Accelerator) -> None:
        self.verdict = verdict


def probe_accelerator(cache: Cache, requested: str = "auto", timeout_s: float = PROBE_TIMEOUT_S,
                      progress: Callable[[str], None] | None = None) -> Accelerator:
    """The accelerator to use: KVM only if a probe guest really boots under it, else TCG.

    requested is the user's "auto", "kvm" or "tcg". "kvm" that does not boot
    raises Unavailable; "auto" falls back to TCG with the reason. The verdict
    is cached per host kernel and QEMU version; a KVM probe that hangs is
    stopped after timeout_s.
    """
    if requested not in ACCELERATORS:
        raise UsageError(f"accelerator {requested!r} unknown; use one of {', '.join(ACCELERATORS)}")
    if requested == "tcg":
        return tcg("requested by the user (accel=tcg)")
    verdict = _kvm_verdict(cache, timeout_s, progress)
    if verdict.name != "kvm" and requested == "kvm":
        raise Unavailable(f"--accel kvm was asked for, but {verdict.reason}; use --accel auto (TCG, "
                          f"marked emulated) or a host where KVM works")
    return verdict


def _kvm_verdict(cache: Cache, timeout_s: float, progress: Callable[[str], None] | None = None) -> Accelerator:
    if not os.path.exists("/dev/kvm"):
        return tcg("no /dev/kvm on this host")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return tcg("/dev/kvm is not readable and writable by this user")
    key = digest(os.uname().release, qemu_version(), PROBE_RECIPE)[:24]
    try:
        with cache.entry("accel", key) as entry:
            if entry.hit:
                verdict_file = entry.path / "verdict.json"
                data = json.loads(verdict_file.read_text())
                when = data.get("probed_at") or datetime.fromtimestamp(
                    verdict_file.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
                return Accelerator(data["name"], data["reason"], tb_size_mib=data.get("tb_size_mib"),
                                   probed=True, cached=True, probed_at=when)
            assert entry.work is not None
            if progress is not None:
                progress(f"probing whether KVM really boots a guest (once per machine; up to "
                         f"{timeout_s:.0f} s, else TCG)")
            verdict = _probe_kvm(cache, timeout_s)
            (entry.work / "verdict.json").write_text(json.dumps({
                "name": verdict.name, "reason": verdict.reason, "tb_size_mib": verdict.tb_size_mib,
                "host_kernel": os.uname().release, "vmm": qemu_version(),
                "probed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }, indent=2))
            return verdict
    except _NotCacheable as exc:
        return exc.verdict


def _probe_kvm(cache: Cache, timeout_s: float) -> Accelerator:
    """Boot the probe guest under KVM; on failure check it boots under TCG, to blame the right one."""
    try:
        guest = probe_guest(cache)
    except (RuntimeError, BuildFailed, Unavailable, OSError) as exc:
        raise _NotCacheable(tcg(f"KVM not probed (no probe guest: {exc})")) from None
    ok, why = _boots(guest, Accelerator("kvm", "probe"), timeout_s)
    if ok:
        return Accelerator("kvm", f"KVM probe: {why}", probed=True)
    tcg_ok, tcg_why = _boots(guest, tcg("probe"), max(timeout_s, 30.0))
    if not tcg_ok:
        raise _NotCacheable(tcg(f"KVM probe failed ({why}) but the probe guest fails under TCG too "
                                f"({tcg_why}); KVM not judged"))
    return tcg(f"KVM does not boot a guest here ({why}); under TCG {tcg_why}", probed=True)
