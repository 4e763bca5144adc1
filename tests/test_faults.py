"""Faults during a run: each becomes that cell's failure with its reason, and the run goes on.

The CLI runs as a subprocess against the real Docker engine. Fault workloads
live in a temporary builds folder (--builds), so the project's own workloads
are untouched. The engine-stop test kills a second dockerd started here with
its own sockets and folders, never the machine's engine that other runs use.
Every test ends with the leak check at zero.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.record import results as results_file
from leaks import LeakCheck, leak_check  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness"]

HELLO_C = r'''
#include <stdio.h>
int main(void) { printf("%s\n", "READY_LINE"); fflush(stdout); return 0; }
'''
HANG_C = r'''
#include <stdio.h>
#include <unistd.h>
int main(void) { puts("waiting for nothing"); fflush(stdout); for (;;) pause(); }
'''
CRASH_C = r'''
#include <stdio.h>
int main(void) { puts("about to fail: no config"); fflush(stdout); return 3; }
'''
SLOW_C = r'''
#include <stdio.h>
#include <unistd.h>
int main(void) { puts("starting slowly"); fflush(stdout); sleep(60); puts("READY_LINE"); return 0; }
'''
BROKEN_C = "int main(void) { return this_is_not_c }\n"


def write_workload(builds: Path, name: str, source: str, ready_line: str | None = None) -> None:
    """A run-to-completion workload with console readiness, in builds/<name>/."""
    line = ready_line or f"ready {name}"
    d = builds / name
    d.mkdir(parents=True)
    (d / f"{name}.c").write_text(source.replace("READY_LINE", line))
    (d / "workload.toml").write_text(textwrap.dedent(f'''\
        description = "fault test workload {name}"
        sources = ["{name}.c"]
        kind = "run-to-completion"

        [readiness]
        type = "console"
        line = "{line}"
        '''))


def harness(args: list[str], leaks: LeakCheck, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run the CLI with the leak marker in its environment."""
    return subprocess.run(HARNESS + args, cwd=REPO, env=leaks.env(**env), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class Spawned:
    """A harness subprocess whose stderr lines are read as they come, to act mid-run."""

    def __init__(self, args: list[str], leaks: LeakCheck, wrapper: tuple[str, ...] = (), **env: str) -> None:
        self.lines: list[str] = []
        self.stdout: list[str] = []
        self.proc = subprocess.Popen([*wrapper, *HARNESS, *args], cwd=REPO, env=leaks.env(**env), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self._threads = [threading.Thread(target=self._drain, args=(s, dest), daemon=True)
                         for s, dest in ((self.proc.stderr, self.lines), (self.proc.stdout, self.stdout))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _drain(stream, dest: list[str]) -> None:
        for line in stream:
            dest.append(line)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        """Block until a stderr line holds text; fail with what was seen otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                for t in self._threads:
                    t.join(timeout=5)
                if any(text in line for line in self.lines):
                    return
                break
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"never saw {text!r}; stderr:\n{self.stderr[-3000:]}")

    def finish(self, timeout: float = 240) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"harness did not finish within {timeout} s; stderr:\n{self.stderr[-3000:]}")
        for t in self._threads:
            t.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def cells_of(out: Path, leaks: LeakCheck) -> dict[str, dict]:
    data = leaks.watch_results(out / "results.json")
    assert data is not None, f"no valid results.json in {out}"
    return {f"{c['workload']}:{c['form']}": c for c in data["cells"]}


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ------------------------------------------------------------------ build, crash, hang


def test_build_failure_is_the_cells_failure_and_the_run_goes_on(tmp_path: Path, leak_check: LeakCheck) -> None:
    builds = tmp_path / "builds"
    write_workload(builds, "broken", BROKEN_C)
    write_workload(builds, "fine", HELLO_C)
    out = tmp_path / "out"
    proc = harness(["run", "--matrix", "broken,fine:scratch", "--reps", "1", "--warmup", "0",
                    "--builds", str(builds), "--out", str(out)], leak_check)
    assert_no_traceback(proc)
    assert proc.returncode == 1, proc.stderr[-2000:]
    cells = cells_of(out, leak_check)
    broken = cells["broken:scratch"]
    assert broken["status"] == "failed"
    assert "compiling broken failed" in broken["reason"]
    assert "this_is_not_c" in broken["reason"], "the compiler's own words (its tail) are kept"
    first = broken["reason"].splitlines()[0]
    assert "error" in first and "this_is_not_c" in first, f"the first line names the cause: {first}"
    assert cells["fine:scratch"]["status"] == "ok"
    assert "broken: compiling the workload binary (musl-gcc, static-pie)" in proc.stderr, "each compile is shown"
    again = harness(["run", "--matrix", "fine:scratch", "--reps", "1", "--warmup", "0",
                     "--builds", str(builds), "--out", str(tmp_path / "again")], leak_check)
    assert again.returncode == 0 and "fine: binary cached" in again.stderr, again.stderr[-2000:]
    cells_of(tmp_path / "again", leak_check)


def test_workload_crash_before_readiness_records_exit_code_and_output(tmp_path: Path,
                                                                      leak_check: LeakCheck) -> None:
    builds = tmp_path / "builds"
    write_workload(builds, "crasher", CRASH_C)
    out = tmp_path / "out"
    proc = harness(["run", "--matrix", "crasher:scratch", "--reps", "1", "--warmup", "0", "--timeout", "30",
                    "--builds", str(builds), "--out", str(out)], leak_check)
    assert_no_traceback(proc)
    assert proc.returncode == 1
    cell = cells_of(out, leak_check)["crasher:scratch"]
    assert cell["status"] == "failed"
    assert "exited with code 3" in cell["reason"], cell["reason"]
    assert "about to fail: no config" in cell["reason"]


def test_hanging_workload_fails_after_timeout_and_its_container_is_removed(tmp_path: Path,
                                                                           leak_check: LeakCheck) -> None:
    builds = tmp_path / "builds"
    write_workload(builds, "hanger", HANG_C)
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = harness(["run", "--matrix", "hanger:scratch", "--reps", "1", "--warmup", "0", "--timeout", "3",
                    "--builds", str(builds), "--out", str(out)], leak_check)
    assert_no_traceback(proc)
    assert proc.returncode == 1
    cell = cells_of(out, leak_check)["hanger:scratch"]
    assert cell["status"] == "failed"
    assert "no readiness within 3 s" in cell["reason"]
    assert "waiting for nothing" in cell["reason"], "the console tail is kept"
    assert time.monotonic() - t0 < 60


# ------------------------------------------------------------------ full disk


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs, unmounted afterwards (the tests run as root)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path) -> None:
    """Write until the filesystem is full."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_results_write_on_a_full_disk_fails_cleanly_and_keeps_the_last_file(tiny_fs: Path) -> None:
    path = tiny_fs / results_file.FILENAME
    res = results_file.Results(path=path, environment={}, settings={"run_id": "x"})
    res.add({"workload": "hello", "form": "scratch", "status": "ok"})
    good = path.read_text()
    fill(tiny_fs)
    with pytest.raises(results_file.ResultsWriteError, match="No space left on device.*last complete one is kept"):
        res.add({"workload": "hello", "form": "alpine", "status": "ok", "pad": "x" * 65536})
    assert path.read_text() == good
    assert json.loads(good)["cells"][0]["form"] == "scratch"
    assert [p.name for p in tiny_fs.iterdir() if p.name.startswith(".")] == [], "no temp file left"


def test_run_on_a_disk_that_fills_stops_with_a_clear_message(tmp_path: Path, tiny_fs: Path,
                                                             leak_check: LeakCheck) -> None:
    builds = tmp_path / "builds"
    write_workload(builds, "slow", SLOW_C)
    out = tiny_fs / "run"
    run = Spawned(["run", "--matrix", "slow:scratch", "--reps", "1", "--warmup", "0", "--timeout", "4",
                   "--builds", str(builds), "--out", str(out)], leak_check)
    try:
        run.wait_for("[1/1] slow:scratch")  # printed after the first results.json is written
        first = (out / "results.json").read_text()
        fill(tiny_fs)
        code = run.finish()
    finally:
        run.kill()
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert code == 1
    assert "harness: error: cannot write" in run.stderr and "No space left on device" in run.stderr
    assert "| slow" in "".join(run.stdout), "the cell measured but not saved is still shown"
    assert "the table above holds cells that are not in it" in run.stderr
    kept = json.loads((out / "results.json").read_text())
    assert kept == json.loads(first), "the last complete results.json is kept as it was"
    leak_check.watch_run(kept["settings"]["run_id"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ the engine stops


@dataclass
class SecondEngine:
    """A dockerd of the test's own: own sockets, data, pid file; killable without harm."""

    root: Path
    process: subprocess.Popen

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    def kill(self) -> None:
        """Kill dockerd, then its containerd and shims (all found by this engine's folder)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(str(self.root) in arg for arg in proc.info["cmdline"] or []):
                    proc.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue


@pytest.fixture
def second_engine() -> Iterator[SecondEngine]:
    """A throwaway dockerd on a bridge of its own.

    Never `--bridge=none`: a dockerd started that way deletes the host's
    docker0, which the machine's own engine needs.
    """
    root = Path(tempfile.mkdtemp(prefix="engine-fault-", dir="/tmp"))
    bridge = "hfault" + secrets.token_hex(3)
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", "192.168.251.1/24", "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    log = open(root / "dockerd.log", "w")
    process = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{root / 'docker.sock'}",
         f"--bridge={bridge}", "--iptables=false", "--ip-masq=false", "--storage-driver=vfs"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    engine = SecondEngine(root, process)
    try:
        import docker

        deadline = time.monotonic() + 60
        while True:
            try:
                docker.DockerClient(base_url=engine.host, timeout=5).ping()
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"the test's own dockerd did not start: {(root / 'dockerd.log').read_text()[-2000:]}")
                time.sleep(0.25)
        yield engine
    finally:
        engine.kill()
        log.close()
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(root))]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)
        subprocess.run(["ip", "link", "del", bridge], check=False)
        assert Path("/sys/class/net/docker0").exists(), "the machine's docker0 must survive"


def test_engine_that_stops_mid_run_fails_the_cells_and_the_run_goes_on(
        tmp_path: Path, second_engine: SecondEngine, leak_check: LeakCheck) -> None:
    builds = tmp_path / "builds"
    write_workload(builds, "first", HELLO_C)
    write_workload(builds, "second", HELLO_C)
    out = tmp_path / "out"
    run = Spawned(["run", "--matrix", "first,second:scratch", "--reps", "30", "--warmup", "0",
                   "--timeout", "20", "--builds", str(builds), "--out", str(out)],
                  leak_check, DOCKER_HOST=second_engine.host)
    try:
        run.wait_for("first:scratch rep 2/30")
        second_engine.kill()
        code = run.finish()
    finally:
        run.kill()
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert code == 1, run.stderr[-3000:]
    cells = cells_of(out, leak_check)
    first, second = cells["first:scratch"], cells["second:scratch"]
    assert first["status"] == "failed"
    assert "engine" in first["reason"].lower(), first["reason"]
    assert len(first["samples"]) >= 2, "boots measured before the engine stopped are kept"
    assert second["status"] in ("failed", "unavailable")
    assert "engine" in second["reason"].lower() or "docker" in second["reason"].lower(), second["reason"]
