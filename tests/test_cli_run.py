"""`harness run` and `harness report` as a user calls them: a subprocess, real engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.record import results as results_file

REPO = Path(__file__).resolve().parent.parent


def harness(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.mark.docker
def test_hello_scratch_results_contract(docker_client, tmp_path):
    out = tmp_path / "run"
    proc = harness("run", "--matrix", "hello:scratch", "--reps", "5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "results.json").read_text())
    assert (out / "results.json").stat().st_mode & 0o044 == 0o044, "results are readable by others"
    assert data["schema_version"] == 2 and data["harness_version"]
    assert data["created"].endswith("Z") and data["finished"]
    env = data["environment"]
    for key in ("host", "kernel", "cpu_model", "cpu_count", "memory_bytes", "tools", "git"):
        assert env[key] is not None, key
    assert env["tools"]["docker_engine"] and "commit" in env["git"] and "dirty" in env["git"]
    [cell] = data["cells"]
    assert (cell["workload"], cell["form"], cell["status"], cell["reason"]) == ("hello", "scratch", "ok", None)
    assert len(cell["binary_sha256"]) == 64
    assert 0 < cell["size"]["artifact_bytes"] < 100_000
    assert len(cell["samples"]) == 5 and len(cell["warmup"]) == 1
    assert all(s["boot_s"] > 0 and s["memory_bytes"] > 0 for s in cell["samples"])
    # A run-to-completion container's headline memory is its cgroup peak, and says so.
    assert cell["memory_source"] == "peak_bytes"
    assert all(s["memory_bytes"] == s["memory"][s["memory_source"]] for s in cell["samples"])
    for metric in ("boot_s", "memory_bytes"):
        summary = cell["summary"][metric]
        assert summary["n"] == 5
        assert summary["min"] <= summary["p25"] <= summary["median"] <= summary["p75"] <= summary["max"]
    # The table printed at the end is the report of the saved run.
    assert "| hello" in proc.stdout and "scratch" in proc.stdout
    report = harness("report", str(out))
    assert report.returncode == 0 and report.stdout == proc.stdout
    # Never overwritten.
    again = harness("run", "--matrix", "hello:scratch", "--reps", "1", "--out", str(out))
    assert again.returncode == 2 and "never overwritten" in again.stderr


@pytest.mark.docker
def test_every_form_is_listed_and_unavailable_ones_say_why(docker_client, tmp_path):
    """No form is ever missing from the table; unavailable ones carry their reason."""
    out = tmp_path / "run"
    proc = harness("run", "--matrix", "hello:unikraft,scratch", "--reps", "1", "--warmup", "0",
                   "--out", str(out), env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stderr
    cells = {c["form"]: c for c in json.loads((out / "results.json").read_text())["cells"]}
    assert cells["unikraft"]["status"] == "unavailable" and "kraft" in cells["unikraft"]["reason"]
    assert cells["scratch"]["status"] == "ok"
    assert "hello:unikraft unavailable:" in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["run", "--matrix", "nope:scratch"], "unknown workload 'nope'"),
    (["run", "--matrix", "hello:podman"], "unknown form or workload 'podman'"),
    (["run", "--matrix", "hello::"], "malformed matrix item"),
    (["run", "--matrix", "hello:scratch", "--reps", "0"], "--reps must be at least 1"),
    (["run", "--matrix", "hello:scratch", "--out", "/proc/harness-out"], "cannot write to --out"),
    (["run", "--matrix", "hello:vm", "--memory", "512"], "has no unit"),
    (["run"], "the following arguments are required: --matrix"),
    (["report", "/nonexistent-run"], "no results at"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    proc = harness(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_engine_unreachable_is_one_line_exit_2():
    proc = harness("run", "--matrix", "hello:scratch", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert proc.returncode == 2
    assert "Docker engine unreachable" in proc.stderr and "scripts/setup.sh" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_newer_schema_is_refused(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 99, "cells": []}))
    proc = harness("report", str(tmp_path))
    assert proc.returncode == 2 and "newer than this harness reads" in proc.stderr


def test_truncated_results_file_is_a_clear_error(tmp_path):
    (tmp_path / results_file.FILENAME).write_text('{"schema_version": 1, "cells": [')
    proc = harness("report", str(tmp_path))
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr


def test_help_explains_matrix_and_exit_codes():
    proc = harness("run", "--help")
    assert proc.returncode == 0
    for text in ("hello:scratch,alpine", "unikernel", "--allow-stand-ins", "exit codes", "--reps"):
        assert text in proc.stdout
