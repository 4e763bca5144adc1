"""Workload definitions: the built-in ones load; bad ones name file and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import workloads
from harness.errors import UsageError


def test_builtin_workloads_load():
    assert workloads.available() == ["hello", "http"]
    hello = workloads.load("hello")
    assert hello.kind == "run-to-completion" and hello.readiness.type == "console"
    assert hello.readiness.line == "harness-ready hello"
    http = workloads.load("http")
    assert http.is_service and http.port == 8080
    assert http.readiness.type == "http" and http.readiness.status == 200


def _write(tmp_path: Path, name: str, toml: str, source: str = "a.c") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / source).write_text("int main(void){return 0;}\n")
    (d / "workload.toml").write_text(toml)
    return tmp_path


@pytest.mark.parametrize("name", ["../etc", "a/b", "x;rm -rf", "UPPER", "", "-dash"])
def test_names_are_constrained(name, tmp_path):
    with pytest.raises(UsageError, match="invalid workload name"):
        workloads.load(name, tmp_path)


def test_unknown_workload_lists_known(tmp_path):
    _write(tmp_path, "one", 'sources=["a.c"]\n[readiness]\ntype="console"\nline="x"\n')
    with pytest.raises(UsageError, match="unknown workload 'two'.*known workloads: one"):
        workloads.load("two", tmp_path)


def test_syntax_error_names_file_and_line(tmp_path):
    _write(tmp_path, "bad", 'sources=["a.c"]\n[readiness\n')
    with pytest.raises(UsageError) as err:
        workloads.load("bad", tmp_path)
    assert "bad/workload.toml" in str(err.value) and "line 2" in str(err.value)


@pytest.mark.parametrize("toml,message", [
    ('sources=["a.c"]\n', "missing \\[readiness\\]"),
    ('sources=["a.c"]\nkind="daemon"\n[readiness]\ntype="console"\nline="x"\n', "'kind' must be one of"),
    ('sources=["../a.c"]\n[readiness]\ntype="console"\nline="x"\n', "must be a file beside"),
    ('sources=["a.c"]\n[readiness]\ntype="http"\n', "needs a top-level 'port'"),
    ('sources=["a.c"]\nport=99999\n[readiness]\ntype="tcp"\n', "'port' must be an integer"),
    ('sources=["a.c"]\ncolour="red"\n[readiness]\ntype="console"\nline="x"\n', "unknown key"),
    ('sources=["a.c"]\nport=80\n[readiness]\ntype="http"\nstatus="abc"\n',
     "readiness 'status' must be an HTTP status 100-599, not 'abc'"),
    ('sources=["a.c"]\nport=80\n[readiness]\ntype="http"\nstatus=2000\n', "HTTP status 100-599, not 2000"),
    ('sources=["a.c"]\nport=80\n[readiness]\ntype="http"\npath="index"\n', "'path' must start with '/'"),
    ('sources=["a.c"]\nport=80\n[readiness]\ntype="tcp"\ntimeout=5\n',
     "unknown key\\(s\\) timeout in \\[readiness\\] for type 'tcp'; allowed there: type"),
    ('sources=["a.c"]\n[readiness]\ntype="console"\nline="x"\ncflags=["-O3"]\n',
     "cflags in \\[readiness\\].*top-level keys go before \\[readiness\\]"),
    ('sources=["a.c"]\n[readiness]\ntype="console"\nline=""\n', "non-empty text"),
])
def test_semantic_errors_name_the_key(tmp_path, toml, message):
    _write(tmp_path, "w", toml)
    with pytest.raises(UsageError, match=message):
        workloads.load("w", tmp_path)


def test_a_copied_workload_builds_under_its_own_name(tmp_path):
    """builds/hello copied as hello2 (the README's way to add a workload): the same sources give
    the same binary, and each workload's build holds the file under its own name."""
    import shutil

    from harness.build import binary
    from harness.build.cache import Cache

    builds = Path(workloads.default_builds_dir())
    mine = tmp_path / "builds"
    shutil.copytree(builds / "common", mine / "common")
    shutil.copytree(builds / "hello", mine / "hello")
    shutil.copytree(builds / "hello", mine / "hello2")
    cache = Cache(tmp_path / "cache")
    first = binary.build(workloads.load("hello", mine), cache)
    second = binary.build(workloads.load("hello2", mine), cache)
    assert first.path.name == "hello" and second.path.name == "hello2" and second.path.is_file()
    assert first.sha256 == second.sha256


def test_a_workload_folder_with_an_impossible_name_is_said_not_skipped(tmp_path):
    """`W sp/workload.toml` is meant as a workload: the run names it and the fix, instead of leaving it out."""
    import subprocess
    import sys

    _write(tmp_path, "fine", 'sources=["a.c"]\n[readiness]\ntype="console"\nline="x"\n')
    _write(tmp_path, "W sp", 'sources=["a.c"]\n[readiness]\ntype="console"\nline="x"\n')
    assert workloads.misnamed(tmp_path) == ["W sp"]
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--matrix", "fine:scratch", "--builds",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "'W sp' is no workload name: rename the folder" in proc.stderr
