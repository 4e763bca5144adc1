"""A content-addressed build cache with atomic, locked entries.

Each entry is a folder named by a key (a hash of everything that went into
it). It is built in a temporary sibling folder and renamed into place, under
an exclusive file lock, so two runs at once never see half an entry and never
build the same thing twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.errors import UsageError


def default_cache_dir() -> Path:
    env = os.environ.get("HARNESS_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "harness"


def digest(*parts: bytes | str | Path) -> str:
    """sha256 over strings, bytes and file contents, in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.name.encode())
            h.update(part.read_bytes())
        elif isinstance(part, str):
            h.update(part.encode())
        else:
            h.update(part)
        h.update(b"\0")
    return h.hexdigest()


@dataclass
class Entry:
    """A cache entry being looked up or filled."""

    path: Path
    hit: bool
    work: Path | None = None


@dataclass
class Cache:
    root: Path
    # Told when a lookup has to wait for another run that is building the same entry.
    on_wait: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def dir(self, kind: str) -> Path:
        d = self.root / kind
        d.mkdir(parents=True, exist_ok=True)
        return d

    @contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """An exclusive lock on one key, held while it is looked up and built."""
        lock_path = self.dir(kind) / f".{key}.lock"
        with open(lock_path, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if self.on_wait is not None:
                    self.on_wait(f"waiting for another run that is building {kind} {key} ...")
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def sweep_stale_work(self) -> list[Path]:
        """Remove work folders no build is filling (their key's lock is free): a killed build's."""
        removed = []
        if not self.root.is_dir():
            return removed
        for work in sorted(self.root.glob("*/.*.*")):
            if not work.is_dir():
                continue
            key = work.name.split(".")[1]
            lock_path = work.parent / f".{key}.lock"
            with open(lock_path, "a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a build is filling it right now
                try:
                    stop_users(work)  # a killed harness's build steps (mmdebstrap, make) live on
                    if remove_tree(work):
                        removed.append(work)
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        return removed

    @contextmanager
    def entry(self, kind: str, key: str) -> Iterator[Entry]:
        """Look up kind/key; on a miss, give a work folder that becomes the entry on success.

        The caller fills `entry.work` when `entry.hit` is false. If the block
        raises, the work folder is removed and nothing is cached.
        """
        final = self.dir(kind) / key
        with self.lock(kind, key):
            if final.is_dir():
                yield Entry(path=final, hit=True)
                return
            work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.dir(kind)))
            try:
                yield Entry(path=final, hit=False, work=work)
                os.replace(work, final)
            finally:
                if work.exists():
                    remove_tree(work)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path (a build root can hold /proc, /sys, /dev mounts)."""
    root = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                point = line.split()[4].encode().decode("unicode_escape")  # octal escapes: \040
                if point == root or point.startswith(root + "/"):
                    found.append(Path(point))
    except OSError:
        pass
    return found


def require_writable(cache_dir: Path) -> None:
    """The build cache must take files before anything is built into it (run, doctor's probe)."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=cache_dir).close()
    except OSError as exc:
        why = "a file, not a folder" if cache_dir.exists() and not cache_dir.is_dir() else exc.strerror
        raise UsageError(f"cannot use {cache_dir} as the build cache ({why}); pass --cache DIR "
                         f"or set HARNESS_CACHE to a writable folder") from None


def _inside(candidate: str, root: str) -> bool:
    return candidate == root or candidate.startswith(root + "/")


def users_of(path: Path) -> list[psutil.Process]:
    """Processes working in path: their cwd or root (a chroot) inside it, or path on their command line."""
    root = os.path.realpath(path)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid == os.getpid():
                continue
            places = [proc.cwd(), os.readlink(f"/proc/{proc.pid}/root")]
            if any(_inside(p, root) for p in places) or any(root in arg for arg in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def stop_users(path: Path, timeout_s: float = 10.0) -> int:
    """Kill the build steps still working in an abandoned work folder, and what they started
    (apt's download methods run elsewhere), before the folder is removed under them."""
    users = users_of(path)
    for proc in users:
        try:
            for victim in [proc, *proc.children(recursive=True)]:
                victim.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
    deadline = time.monotonic() + timeout_s
    while users_of(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(users)


def remove_tree(path: Path) -> bool:
    """Remove a work folder, first detaching anything mounted inside it; True when it is gone.

    A build killed mid-way (mmdebstrap in a chroot) can leave mounts behind;
    deleting through a mount would reach into another filesystem, so a folder
    whose mounts cannot be detached is left in place instead.
    """
    for point in sorted(mounts_under(path), key=lambda p: len(p.parts), reverse=True):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, stdin=subprocess.DEVNULL,
                       check=False, timeout=30)
    if mounts_under(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()
