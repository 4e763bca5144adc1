"""Bad input: one line on stderr naming the problem, exit 2, no traceback, nothing built.

The CLI runs as a subprocess, as a user would run it.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from harness import workloads
from harness.errors import UsageError
from leaks import LeakCheck, leak_check  # noqa: F401  (fixture)
from test_faults import HELLO_C, REPO, harness, write_workload


def assert_usage_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("harness: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("extra, needles", [
    (["--matrix", "../x:scratch"], ["unknown workload '../x'"]),
    (["--matrix", "hello;rm -rf /:scratch"], ["rm"]),
    (["--matrix", "$(id):scratch"], ["$(id)"]),
    (["--matrix", "hello:scratch", "--memory", "512"], ["--memory", "no unit", "512Mi"]),
    (["--matrix", "hello:scratch", "--memory", "lots"], ["--memory", "not a size"]),
    (["--matrix", "hello:scratch", "--reps", "0"], ["--reps must be at least 1"]),
    (["--matrix", "hello:scratch", "--reps", "many"], ["--reps", "invalid int"]),
    (["--matrix", "hello::scratch"], ["malformed matrix item"]),
    (["--matrix", "hello:"], ["malformed matrix item"]),
    (["--matrix", " "], ["empty --matrix"]),
    (["--matrix", "nosuch:scratch"], ["unknown workload 'nosuch'"]),
    (["--matrix", "hello:nosuchform"], ["unknown form or workload 'nosuchform'"]),
    (["--matrix", "hello:scratch", "--timeout", "0"], ["--timeout"]),
    (["--matrix", "hello:scratch", "--timeout", "nan"], ["--timeout must be a positive number"]),
    (["--matrix", "hello:scratch", "--timeout", "inf"], ["--timeout must be a positive number"]),
    (["--matrix", "hello:scratch", "--memory", "0"], ["no unit", "e.g. 512Mi"]),
    (["--matrix", "hello:lupine", "--memory", "1Ki"], ["--memory 1Ki", "at least 16Mi"]),
    (["--matrix", "hello:scratch", "--cache", "/proc/nope"], ["/proc/nope", "build cache", "HARNESS_CACHE"]),
    (["--matrix", "hello:scratch", "--builds", ""], ["--builds", "empty path"]),
    (["--matrix", "hello:alpine", "--alpine-base", ""], ["--alpine-base", "not an image name"]),
    (["--matrix", "hello:alpine", "--alpine-base", "bad ref!!"], ["--alpine-base", "not an image name"]),
    (["--matrix", "hello:scratch", "--accel", "fast"], ["--accel"]),
    (["--matrix", "hello:scratch", "--nonsense"], ["unrecognized arguments"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_run_input_is_one_line_and_exit_2(extra: list[str], needles: list[str], tmp_path: Path,
                                              leak_check: LeakCheck) -> None:
    proc = harness(["run", *extra, "--out", str(tmp_path / "out")], leak_check, timeout=60)
    assert_usage_error(proc, *needles)
    assert not (tmp_path / "out").exists(), "nothing is created for bad input"


def test_unwritable_out_is_refused(tmp_path: Path, leak_check: LeakCheck) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = harness(["run", "--matrix", "hello:scratch", "--out", str(blocker / "out")], leak_check, timeout=60)
    assert_usage_error(proc, "cannot write to --out")


def test_existing_results_are_never_overwritten(tmp_path: Path, leak_check: LeakCheck) -> None:
    (tmp_path / "results.json").write_text("{}")
    proc = harness(["run", "--matrix", "hello:scratch", "--out", str(tmp_path)], leak_check, timeout=60)
    assert_usage_error(proc, "already exists")
    assert (tmp_path / "results.json").read_text() == "{}"


def test_unreachable_engine_is_a_usage_error(tmp_path: Path, leak_check: LeakCheck) -> None:
    proc = harness(["run", "--matrix", "hello:scratch", "--out", str(tmp_path / "out")], leak_check,
                   timeout=120, DOCKER_HOST="unix:///nonexistent")
    assert_usage_error(proc, "Docker engine unreachable at unix:///nonexistent", "scripts/setup.sh")


def test_missing_builds_folder(tmp_path: Path, leak_check: LeakCheck) -> None:
    proc = harness(["run", "--matrix", "all", "--builds", str(tmp_path / "none")], leak_check, timeout=60)
    assert_usage_error(proc, "is not a folder")


# ------------------------------------------------------------------ workload.toml


def _defs(tmp_path: Path, toml: str) -> Path:
    builds = tmp_path / "builds"
    write_workload(builds, "wl", HELLO_C)
    (builds / "wl" / "workload.toml").write_text(textwrap.dedent(toml))
    return builds


def test_toml_syntax_error_names_file_and_line(tmp_path: Path, leak_check: LeakCheck) -> None:
    builds = _defs(tmp_path, '''\
        description = "x"
        sources = ["wl.c"]
        kind = run-to-completion
        ''')
    proc = harness(["run", "--matrix", "wl:scratch", "--builds", str(builds),
                    "--out", str(tmp_path / "out")], leak_check, timeout=60)
    assert_usage_error(proc, str(builds / "wl" / "workload.toml"), "line 3")


@pytest.mark.parametrize("toml, key", [
    ('sources = ["wl.c"]\nkind = "daemon"\n[readiness]\ntype = "console"\nline = "x"\n', "'kind'"),
    ('sources = ["wl.c"]\nport = 99999\n[readiness]\ntype = "tcp"\n', "'port'"),
    ('sources = ["../etc/passwd"]\n[readiness]\ntype = "console"\nline = "x"\n', "source '../etc/passwd'"),
    ('sources = ["wl.c"]\n[readiness]\ntype = "console"\n', "'line'"),
    ('sources = ["wl.c"]\ncolour = "red"\n[readiness]\ntype = "console"\nline = "x"\n', "colour"),
    ('sources = ["wl.c"]\n', "[readiness]"),
])
def test_semantic_errors_name_file_and_key(toml: str, key: str, tmp_path: Path) -> None:
    builds = _defs(tmp_path, toml)
    with pytest.raises(UsageError) as err:
        workloads.load("wl", builds)
    message = str(err.value)
    assert message.startswith(str(builds / "wl" / "workload.toml") + ": ")
    assert key in message


@pytest.mark.parametrize("name", ["../x", "a/b", "x;id", "$(id)", "a b", "-rf", "UPPER", ".hidden", ""])
def test_workload_names_are_constrained(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="invalid workload name"):
        workloads.load(name, tmp_path)


def test_folders_with_bad_names_are_not_workloads(tmp_path: Path) -> None:
    write_workload(tmp_path, "good", HELLO_C)
    write_workload(tmp_path, "bad;name", HELLO_C)
    assert workloads.available(tmp_path) == ["good"]


# ------------------------------------------------------------------ the source itself


def test_no_shell_true_anywhere_in_the_package() -> None:
    """Every subprocess gets an argv list: no string is ever handed to a shell."""
    offenders = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"shell\s*=\s*True", line) or re.search(r"\bos\.system\(|\bos\.popen\(", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_hostfwd_is_only_built_by_the_qemu_runner() -> None:
    """QEMU forwards are made in one place, which binds them to 127.0.0.1 (see test_interrupt)."""
    users = [p.relative_to(REPO) for p in (REPO / "harness").rglob("*.py")
             if "hostfwd" in p.read_text() and p.name != "qemu.py"]
    assert users == []


def test_empty_out_is_refused_not_the_current_folder(tmp_path: Path, leak_check: LeakCheck) -> None:
    proc = harness(["run", "--matrix", "hello:scratch", "--out", ""], leak_check, timeout=60)
    assert_usage_error(proc, "--out", "empty path")
    assert not (REPO / "results.json").exists()


def test_tiny_timeout_says_readiness_came_too_late(tmp_path: Path, leak_check: LeakCheck) -> None:
    """A workload that did print its line, after the limit, is a timeout, not 'exited before readiness'."""
    out = tmp_path / "out"
    proc = harness(["run", "--matrix", "hello:scratch", "--reps", "1", "--warmup", "0", "--timeout", "1e-9",
                    "--out", str(out)], leak_check, timeout=120)
    assert proc.returncode == 1, proc.stderr
    [cell] = leak_check.watch_results(out / "results.json")["cells"]
    assert cell["status"] == "failed"
    assert ("beyond the 1e-09 s limit (--timeout)" in cell["reason"]
            or cell["reason"].startswith("no readiness within 1e-09 s")), cell["reason"]


def test_empty_builds_folder_says_what_a_workload_is(tmp_path: Path, leak_check: LeakCheck) -> None:
    empty = tmp_path / "builds"
    empty.mkdir()
    proc = harness(["run", "--matrix", "all", "--builds", str(empty), "--out", str(tmp_path / "out")],
                   leak_check, timeout=60)
    assert_usage_error(proc, f"no workloads in {empty}", "workload.toml")


@pytest.mark.parametrize("blocked", ["a file named results", "a read-only folder"])
def test_an_unwritable_default_results_folder_is_one_line(blocked: str, tmp_path: Path,
                                                          leak_check: LeakCheck) -> None:
    """Without --out the run goes to ./results/<stamp>/: a current folder where that cannot be made
    is refused like a bad --out, before anything is built."""
    import sys

    here = tmp_path / "here"
    here.mkdir()
    if blocked == "a file named results":
        (here / "results").write_text("not a folder")
        mounted = False
    else:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(here)], check=True)
        mounted = True
    try:
        proc = subprocess.run([sys.executable, "-m", "harness", "run", "--matrix", "hello:scratch", "--reps", "1"],
                              cwd=here, env=leak_check.env(), capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    finally:
        if mounted:
            subprocess.run(["umount", str(here)], check=True)
    assert_usage_error(proc, "cannot make a run folder in", "pass --out DIR")


def test_small_input_gaps_are_one_line_errors(tmp_path: Path, leak_check: LeakCheck) -> None:
    """An empty --metrics, a guest bigger than the host, a run merged with itself."""
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"schema_version": 2, "cells": []}))
    assert_usage_error(harness(["report", str(run), "--metrics", ""], leak_check, timeout=60),
                       "empty name in --metrics ''")
    assert_usage_error(harness(["run", "--matrix", "hello:lupine", "--memory", "100000Gi",
                                "--out", str(tmp_path / "out")], leak_check, timeout=60),
                       "--memory 100000Gi is more than this host's", "GiB")
    assert not (tmp_path / "out").exists()
    assert_usage_error(harness(["merge", str(run), str(run / "results.json"), "--out", str(tmp_path / "m")],
                               leak_check, timeout=60), "is given twice; pass each run once")


@pytest.mark.parametrize("args, needle", [
    (["run", "--matrix", "hello:lupine", "--memory", "-5Mi"], "--memory '-5Mi' is not a size"),
    (["run", "--matrix", "hello:scratch", "--reps", "-3"], "--reps"),
    (["run", "--matrix", "hello:scratch", "--timeout", "-1"], "--timeout"),
])
def test_a_negative_value_gets_the_options_own_error(args: list[str], needle: str, tmp_path: Path,
                                                      leak_check: LeakCheck) -> None:
    """Not argparse's bare 'expected one argument': the value reaches the option's own check."""
    proc = harness([*args, "--out", str(tmp_path / "out")], leak_check, timeout=60)
    assert_usage_error(proc, needle)
    assert "expected one argument" not in proc.stderr
