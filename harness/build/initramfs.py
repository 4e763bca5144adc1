"""One-file initramfs archives in the kernel's newc cpio format.

Both guests the harness boots from an initramfs (the Lupine-style unikernel
and the accelerator probe) need nothing but a console node and /init, so the
archive is written here directly: reproducible (owner 0, mtime 0), no cpio
tool, no compression for the kernel to undo.
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = b"070701"
DIR_MODE = 0o040000
TYPE_MASK = 0o170000


@dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive: a directory, a device node or a regular file."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def newc_archive(entries: list[CpioEntry]) -> bytes:
    """An uncompressed newc archive; headers and data padded to 4 bytes as the format requires."""
    out = bytearray()

    def put(ino: int, e: CpioEntry) -> None:
        name = e.name.encode() + b"\0"
        nlink = 2 if e.mode & TYPE_MASK == DIR_MODE else 1
        fields = (ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0,
                  e.rdev_major, e.rdev_minor, len(name), 0)
        out.extend(MAGIC + b"".join(b"%08X" % f for f in fields) + name)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(e.data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, entry in enumerate(entries, start=1):
        put(ino, entry)
    put(0, CpioEntry("TRAILER!!!", 0))
    return bytes(out)


def read_newc(data: bytes) -> dict[str, CpioEntry]:
    """Members of a newc archive by name (for checks and tests)."""
    members: dict[str, CpioEntry] = {}
    pos = 0
    while pos < len(data):
        if data[pos:pos + 6] != MAGIC:
            raise ValueError(f"bad newc magic at offset {pos}")
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        start = pos + 110
        name = data[start:start + namesize - 1].decode()
        pos = start + namesize
        pos += -pos % 4
        body = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            break
        members[name] = CpioEntry(name, mode, body, rmaj, rmin)
    return members


def init_only(init: bytes) -> list[CpioEntry]:
    """Nothing but /init and the console node its stdin, stdout and stderr are opened on."""
    return [
        CpioEntry("dev", 0o040755),
        CpioEntry("dev/console", 0o020600, rdev_major=5, rdev_minor=1),
        CpioEntry("init", 0o100755, init),
    ]
