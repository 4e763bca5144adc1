"""What each deployment form needs from this machine, checked one tool at a time.

`harness doctor` runs these checks so that a user learns, before a long run,
which forms can run here and how to fix the ones that cannot. Each check
returns data (a Check); the command renders it. Checks never raise: a tool
that cannot even be asked for its version is reported as missing with the
reason, like a form's Unavailable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import forms as form_registry
from harness.build.cache import Cache

OK, LIMITED, MISSING = "ok", "limited", "missing"
SETUP = "run scripts/setup.sh"
MUSL_LIB = Path("/usr/lib/x86_64-linux-musl")
LINUX_SOURCE = Path("/usr/src/linux-source-6.1.tar.xz")
BUSYBOX = Path("/bin/busybox")
KRAFT_FIX = ("install kraftkit on a machine with network access (https://unikraft.org/docs/cli); "
             "no registry reachable here carries it")


@dataclass(frozen=True)
class Check:
    """One tool's verdict. A MISSING check stops every form that needs it; LIMITED does not."""

    key: str
    tool: str
    status: str
    detail: str
    fix: str = ""

    @property
    def blocks(self) -> bool:
        return self.status == MISSING


@dataclass(frozen=True)
class FormVerdict:
    """Whether one form can run here, and which checks stop it."""

    form: str
    needs: tuple[str, ...]
    blockers: tuple[str, ...]
    limits: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        return not self.blockers


# Which checks each form depends on. The accelerator never blocks: TCG is a
# slower fallback, reported beside every VM figure.
FORM_NEEDS: dict[str, tuple[str, ...]] = {
    "vm": ("qemu", "accel", "qemu-img", "mmdebstrap", "mkfs.ext4", "musl"),
    "alpine": ("docker", "alpine-base", "musl", "busybox"),
    "scratch": ("docker", "musl"),
    "lupine": ("qemu", "accel", "linux-source", "musl"),
    "unikraft": ("kraft", "qemu", "accel", "musl"),
}


def _first_line(cmd: list[str], timeout: float = 20) -> str | None:
    """First non-empty output line of a version command, or None if it fails to run."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if line.strip():
            return line.strip()
    return None


def _binary(key: str, tool: str, package: str, version_cmd: list[str] | None = None) -> Check:
    path = shutil.which(tool)
    if path is None:
        return Check(key, tool, MISSING, "not on PATH", f"apt-get install {package} (or {SETUP})")
    version = _first_line(version_cmd) if version_cmd else None
    return Check(key, tool, OK, version or path)


def check_docker() -> Check:
    from harness.run import engine

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not engine.reachable():
        fix = (f"{SETUP} (installs docker.io and starts dockerd)" if "DOCKER_HOST" not in os.environ
               else "start the engine DOCKER_HOST points at, or unset DOCKER_HOST")
        return Check("docker", "Docker engine", MISSING, f"unreachable at {host}", fix)
    version = engine.version()
    return Check("docker", "Docker engine", OK, f"docker {version or '?'} at {host}")


def check_alpine_base() -> Check:
    """The real Alpine base in the engine; without it only the marked stand-in can run."""
    from harness.build import image
    from harness.errors import Unavailable
    from harness.forms.alpine import DEFAULT_BASE, alpine_release
    from harness.forms.base import run_labels
    from harness.run import engine

    tool = f"Alpine base ({DEFAULT_BASE})"
    fix = (f"harness bases import {DEFAULT_BASE} alpine-minirootfs-3.20.x-x86_64.tar.gz; "
           f"or run with --allow-stand-ins")
    found: str | None = None
    try:
        client = engine.client()
        found = image.exists(client, DEFAULT_BASE)
        if found is None:
            return Check("alpine-base", tool, LIMITED,
                         "not in the engine: only the offline stand-in (alpine*) can run", fix)
        release = alpine_release(client, found, DEFAULT_BASE, run_labels(f"doctor-{os.getpid()}"))
    except Unavailable as exc:
        if found is None:
            return Check("alpine-base", tool, LIMITED, "engine unreachable; not checked", fix)
        return Check("alpine-base", tool, LIMITED, f"{str(exc).split(';')[0]}: only the stand-in can run", fix)
    return Check("alpine-base", tool, OK, f"{DEFAULT_BASE} ({found[:19]}), Alpine {release}")


def check_qemu() -> Check:
    return _binary("qemu", "qemu-system-x86_64", "qemu-system-x86", ["qemu-system-x86_64", "--version"])


def check_accelerator(cache: Cache, probe: bool = True) -> Check:
    """KVM only when a guest really boots under it (the QEMU runner's probe); else TCG."""
    tool = "accelerator (KVM/TCG)"
    kvm = "present" if os.path.exists("/dev/kvm") else "absent"
    if shutil.which("qemu-system-x86_64") is None:
        return Check("accel", tool, MISSING, f"no QEMU to probe with; /dev/kvm {kvm}",
                     f"apt-get install qemu-system-x86 (or {SETUP})")
    if not probe:
        return Check("accel", tool, LIMITED, f"/dev/kvm {kvm}; not probed (--no-probe); VMs may fall "
                     f"back to TCG")
    from harness.run.qemu import probe_accelerator, tcg_boots
    try:
        verdict = probe_accelerator(cache, "auto")
    except Exception as exc:  # the probe is best effort here; a run probes again
        return Check("accel", tool, LIMITED, f"/dev/kvm {kvm}; probe failed: {exc}; TCG assumed")
    when = (f" (the probe's verdict from {verdict.probed_at}, cached for this host kernel and QEMU; "
            f"remove {cache.root / 'accel'} to probe again)") if verdict.cached else ""
    if verdict.name == "kvm":
        return Check("accel", tool, OK, f"KVM: {verdict.reason}{when}")
    reason = verdict.reason + when
    if not verdict.probed:  # KVM was never tried, so nothing has booted yet: try TCG itself
        ok, why = tcg_boots(cache)
        if ok is False:
            return Check("accel", tool, MISSING, f"QEMU boots no guest, not even under TCG ({reason}; "
                         f"{why})", "reinstall QEMU (apt-get install --reinstall qemu-system-x86); "
                         "its error is quoted")
        reason = f"{reason}; under TCG {why}" if ok else f"{reason}; not booted ({why})"
    return Check("accel", tool, LIMITED, f"TCG only: {reason}",
                 "VM figures are emulated (slower by a large factor); a host with working KVM "
                 "gives comparable figures")


def check_musl() -> Check:
    if shutil.which("musl-gcc") is None:
        return Check("musl", "musl-gcc + rcrt1.o", MISSING, "musl-gcc not on PATH",
                     f"apt-get install musl-tools musl-dev (or {SETUP})")
    if not (MUSL_LIB / "rcrt1.o").is_file():
        return Check("musl", "musl-gcc + rcrt1.o", MISSING, f"no {MUSL_LIB / 'rcrt1.o'}",
                     "apt-get install musl-dev")
    return Check("musl", "musl-gcc + rcrt1.o", OK, f"musl-gcc, {MUSL_LIB / 'rcrt1.o'}")


def check_linux_source() -> Check:
    if not LINUX_SOURCE.is_file():
        return Check("linux-source", "linux-source-6.1", MISSING, f"no {LINUX_SOURCE}",
                     f"apt-get install linux-source-6.1 (or {SETUP})")
    return Check("linux-source", "linux-source-6.1", OK,
                 f"{LINUX_SOURCE} ({LINUX_SOURCE.stat().st_size / 1e6:.0f} MB)")


def check_busybox() -> Check:
    if not BUSYBOX.is_file():
        return Check("busybox", "busybox-static", MISSING, f"no {BUSYBOX}",
                     f"apt-get install busybox-static (or {SETUP}); needed for the Alpine stand-in")
    return Check("busybox", "busybox-static", OK, _first_line([str(BUSYBOX)]) or str(BUSYBOX))


def check_kraft() -> Check:
    if shutil.which("kraft") is None:
        return Check("kraft", "kraft (kraftkit)", MISSING, "not on PATH", KRAFT_FIX)
    return Check("kraft", "kraft (kraftkit)", OK, _first_line(["kraft", "version"]) or "kraft")


def _checkers(cache: Cache, probe: bool) -> dict[str, Callable[[], Check]]:
    return {
        "docker": check_docker,
        "alpine-base": check_alpine_base,
        "qemu": check_qemu,
        "accel": lambda: check_accelerator(cache, probe),
        "qemu-img": lambda: _binary("qemu-img", "qemu-img", "qemu-utils", ["qemu-img", "--version"]),
        "mmdebstrap": lambda: _binary("mmdebstrap", "mmdebstrap", "mmdebstrap", ["mmdebstrap", "--version"]),
        "mkfs.ext4": lambda: _binary("mkfs.ext4", "mkfs.ext4", "e2fsprogs", ["mkfs.ext4", "-V"]),
        "musl": check_musl,
        "linux-source": check_linux_source,
        "busybox": check_busybox,
        "kraft": check_kraft,
    }


def diagnose(form_names: list[str], cache: Cache, probe: bool = True) -> tuple[list[Check], list[FormVerdict]]:
    """Every check the given forms need (each run once), and each form's verdict."""
    needed: list[str] = []
    for form in form_names:
        for key in FORM_NEEDS[form]:
            if key not in needed:
                needed.append(key)
    checkers = _checkers(cache, probe)
    order = list(checkers)
    checks = {key: checkers[key]() for key in sorted(needed, key=order.index)}
    verdicts = [
        FormVerdict(form, FORM_NEEDS[form], tuple(k for k in FORM_NEEDS[form] if checks[k].blocks),
                    tuple(k for k in FORM_NEEDS[form] if checks[k].status == LIMITED))
        for form in form_names
    ]
    return list(checks.values()), verdicts


def all_forms() -> list[str]:
    return list(form_registry.ORDER)
