"""The --matrix language: every documented spelling, and one-line errors."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.forms import ORDER
from harness.run.matrix import Cell, parse


def names(cells):
    return [str(c) for c in cells]


def test_all_is_every_workload_in_every_form():
    cells = parse("all")
    assert len(cells) == 2 * len(ORDER)
    assert {c.form for c in cells} == set(ORDER)
    assert names(cells)[:len(ORDER)] == [f"hello:{f}" for f in ORDER]


def test_pairs_and_forms_and_workloads():
    assert parse("hello:scratch,alpine") == [Cell("hello", "alpine"), Cell("hello", "scratch")]
    assert names(parse("scratch")) == ["hello:scratch", "http:scratch"]
    assert names(parse("http")) == [f"http:{f}" for f in ORDER]
    assert names(parse("unikernel")) == ["hello:lupine", "hello:unikraft", "http:lupine", "http:unikraft"]
    assert names(parse("http:container hello:vm")) == ["http:alpine", "http:scratch", "hello:vm"]
    assert names(parse("hello:all")) == [f"hello:{f}" for f in ORDER]


def test_duplicates_collapse():
    assert names(parse("hello:scratch hello:scratch;scratch")) == ["hello:scratch", "http:scratch"]


@pytest.mark.parametrize("spec,message", [
    ("", "empty --matrix"), ("hello:", "empty name"), ("a:b:c", "malformed"),
    ("nope", "unknown form or workload 'nope'"), ("nope:scratch", "unknown workload 'nope'"),
    ("hello:podman", "unknown form or workload 'podman'"),
    ("hello:alpine,http:scratch", "separate them with ';' or a space: --matrix 'hello:alpine;http:scratch'"),
])
def test_malformed_specs(spec, message):
    with pytest.raises(UsageError, match=message):
        parse(spec)


def test_a_workload_named_like_a_form_is_never_silently_taken_for_one(tmp_path):
    """builds/scratch/ beside the form scratch: a bare 'scratch' is ambiguous and refused with the
    two spellings that are not; those work."""
    import shutil
    from pathlib import Path

    from harness import workloads

    builds = Path(workloads.default_builds_dir())
    mine = tmp_path / "builds"
    shutil.copytree(builds / "common", mine / "common")
    shutil.copytree(builds / "hello", mine / "hello")
    shutil.copytree(builds / "hello", mine / "scratch")
    with pytest.raises(UsageError, match="'scratch' is both a workload and a form; write scratch:all"):
        parse("scratch", mine)
    assert [str(c) for c in parse("scratch:alpine", mine)] == ["scratch:alpine"]
    assert [str(c) for c in parse("hello,scratch:scratch", mine)] == ["hello:scratch", "scratch:scratch"]
