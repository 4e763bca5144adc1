"""An Alpine-like base built offline from Debian packages, always marked as a stand-in.

No registry is reachable on some machines, so the real Alpine base cannot be
pulled. When the user allows it, the harness lays out busybox-static and the
musl runtime the way Alpine does (/bin/busybox with applet links,
/lib/ld-musl-<arch>.so.1) and imports that as a base image. Every figure
measured on it says so: it is similar in size and shape, not Alpine.
"""

from __future__ import annotations

import io
import platform
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.build.cache import digest
from harness.errors import Unavailable

BUSYBOX = Path("/bin/busybox")
RECIPE_VERSION = "1"
NOTE = ("Alpine-like stand-in built offline from Debian's busybox-static and musl, "
        "laid out like Alpine; not the real Alpine base")


@dataclass(frozen=True)
class StandinFiles:
    busybox: Path
    musl_loader: Path


def locate() -> StandinFiles:
    arch = platform.machine()
    loader_candidates = [Path(f"/lib/ld-musl-{arch}.so.1"), Path(f"/usr/lib/{arch}-linux-musl/libc.so")]
    loader = next((p for p in loader_candidates if p.exists()), None)
    if not BUSYBOX.exists() or loader is None:
        raise Unavailable("the Alpine stand-in needs busybox-static and musl: apt-get install busybox-static musl")
    return StandinFiles(busybox=BUSYBOX, musl_loader=loader.resolve())


def key(files: StandinFiles) -> str:
    return digest(RECIPE_VERSION, files.busybox, files.musl_loader)[:16]


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = 0
    tar.addfile(info)


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mtime = 0
    tar.addfile(info)


def rootfs_tar(files: StandinFiles) -> bytes:
    """A deterministic rootfs tarball (fixed mtimes, sorted entries)."""
    arch = platform.machine()
    applets = subprocess.run([str(files.busybox), "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in ("bin", "dev", "etc", "home", "lib", "proc", "root", "sbin", "sys", "usr",
                  "usr/bin", "usr/sbin", "usr/local", "usr/local/bin", "var", "var/tmp"):
            _add_dir(tar, d)
        _add_dir(tar, "tmp", 0o1777)
        _add_file(tar, "bin/busybox", files.busybox.read_bytes(), 0o755)
        _add_file(tar, f"lib/ld-musl-{arch}.so.1", files.musl_loader.read_bytes(), 0o755)
        _add_link(tar, f"lib/libc.musl-{arch}.so.1", f"ld-musl-{arch}.so.1")
        for applet in sorted(set(applets)):
            # Alpine links every applet to /bin/busybox with an absolute link.
            if applet != "bin/busybox" and applet.split("/")[0] in ("bin", "sbin", "usr"):
                _add_link(tar, applet, "/bin/busybox")
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n")
        _add_file(tar, "etc/group", b"root:x:0:\nnobody:x:65534:\n")
        _add_file(tar, "etc/os-release", (
            'NAME="harness Alpine stand-in"\nID=harness-alpine-standin\n'
            f'PRETTY_NAME="{NOTE}"\n').encode())
    return buf.getvalue()


def have_busybox() -> bool:
    return shutil.which("busybox") is not None or BUSYBOX.exists()
