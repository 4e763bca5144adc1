"""A leak check for tests that run the harness: nothing may outlive a run.

Counts, before and after a test, what a run can leave behind: containers and
images labelled harness.run in the main engine, qemu-system-x86_64 processes,
and temp folders named harness-* in /tmp. Other people's runs may share the
machine, so the check is narrowed to what this test made: containers by the
run ids the test registers (read from its results.json), QEMU processes by a
marker put in the environment of the harness subprocesses, and temp folders
in a private TMPDIR given to the harness subprocesses (in-process tests fall
back to a name-diff of /tmp confirmed over a short settle period: a live
run's folder goes away, a leak stays).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import psutil
import pytest

LABEL = "harness.run"
MARKER_VAR = "HARNESS_LEAK_MARKER"
QEMU = "qemu-system-x86_64"
MAIN_ENGINE = "unix:///var/run/docker.sock"


def _engine() -> docker.DockerClient:
    """The engine the machine's runs use, whatever DOCKER_HOST a test sets for its subprocess."""
    return docker.DockerClient(base_url=os.environ.get("DOCKER_HOST", MAIN_ENGINE), timeout=30)


def _labelled(run_ids: set[str] | None) -> tuple[set[str], set[str]]:
    client = _engine()
    try:
        containers = client.containers.list(all=True, filters={"label": LABEL})
        images = client.images.list(filters={"label": LABEL})
    finally:
        client.close()
    def mine(labels: dict[str, str] | None) -> bool:
        return run_ids is None or (labels or {}).get(LABEL) in run_ids
    return ({c.id for c in containers if mine(c.labels)},
            {i.id for i in images if mine(i.labels)})


def marked_qemu_pids(marker: str) -> set[int]:
    """QEMU guests carrying this test's marker, or descended from this process.

    A `qemu-system-x86_64 --version` (doctor and the environment record ask
    QEMU its version) lives a few milliseconds and is not a guest.
    """
    me = os.getpid()
    found: set[int] = set()
    for proc in psutil.process_iter(["name", "pid"]):
        try:
            argv = proc.cmdline()
            if proc.info["name"] != QEMU and QEMU not in " ".join(argv[:1]):
                continue
            if argv[1:] in (["--version"], ["-version"]):
                continue
            if proc.environ().get(MARKER_VAR) == marker or any(p.pid == me for p in proc.parents()):
                found.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _temp_dirs(root: Path = Path("/tmp")) -> set[str]:
    return {str(p) for p in root.glob("harness-*")}


@dataclass
class LeakCheck:
    """Snapshot at creation; `leaks()` says what is new and belongs to this test."""

    marker: str = field(default_factory=lambda: "leak-" + secrets.token_hex(6))
    run_ids: set[str] = field(default_factory=set)
    before_temps: set[str] = field(default_factory=_temp_dirs)
    before_containers: set[str] = field(default_factory=lambda: _labelled(None)[0])
    before_images: set[str] = field(default_factory=lambda: _labelled(None)[1])
    tmpdir: Path | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a harness subprocess: the marker, plus the test's overrides."""
        if self.tmpdir is None:
            self.tmpdir = Path(f"/tmp/leakcheck-{self.marker}")
            self.tmpdir.mkdir()
        env = dict(os.environ)
        env[MARKER_VAR] = self.marker
        env["TMPDIR"] = str(self.tmpdir)
        env.update(extra)
        return env

    def watch_run(self, run_id: str) -> None:
        self.run_ids.add(run_id)

    def watch_results(self, path: Path) -> dict | None:
        """Register the run id in a results.json (if readable); returns the document."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        run_id = data.get("settings", {}).get("run_id")
        if run_id:
            self.watch_run(run_id)
        return data

    def leaks(self) -> dict[str, list]:
        containers, images = _labelled(self.run_ids or None)
        if not self.run_ids:
            containers -= self.before_containers
            images -= self.before_images
        return {
            "containers": sorted(containers),
            "images": sorted(images),
            "qemu": sorted(marked_qemu_pids(self.marker)),
            "temp_dirs": sorted(self._new_temp_dirs()),
        }

    def _new_temp_dirs(self) -> set[str]:
        if self.tmpdir is not None:
            return _temp_dirs(self.tmpdir)
        return _temp_dirs() - self.before_temps

    def close(self) -> None:
        """Remove the private TMPDIR (only once it holds no harness-* leftovers)."""
        if self.tmpdir is not None and not _temp_dirs(self.tmpdir):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def assert_clean(self, settle_s: float = 5.0) -> None:
        """Fail naming every leak that is still there after settle_s."""
        deadline = time.monotonic() + settle_s
        while True:
            found = {k: v for k, v in self.leaks().items() if v}
            if not found or time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        assert not found, f"left behind after the test: {found}"


@pytest.fixture
def leak_check() -> Iterator[LeakCheck]:
    """A LeakCheck that must be at zero when the test ends."""
    check = LeakCheck()
    yield check
    try:
        check.assert_clean()
    finally:
        check.close()


def qemu_children() -> list[int]:
    """QEMU processes started by this test process (directly or through the harness)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == QEMU:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture
def no_qemu_left() -> Iterator[None]:
    """The test must leave no QEMU of its own behind, whatever happened in it."""
    yield
    deadline = time.monotonic() + 5
    while qemu_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert qemu_children() == [], "a QEMU process outlived the test"
