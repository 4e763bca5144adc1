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
