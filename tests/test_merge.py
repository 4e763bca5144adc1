"""--shard slices and merge, with real container runs (the Docker engine must be up)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.record.merge import Source, merge
from harness.run.matrix import Cell, parse_shard, shard

MATRIX = "hello:scratch,alpine"


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=600)


def _run(out: Path, *extra: str, matrix: str = MATRIX) -> dict:
    proc = harness("run", "--matrix", matrix, "--reps", "1", "--warmup", "0", "--allow-stand-ins", "--quiet",
                   "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "results.json").read_text())


def test_shard_round_robin_covers_once() -> None:
    cells = [Cell("w", str(i)) for i in range(7)]
    slices = [shard(cells, k, 3) for k in (1, 2, 3)]
    assert slices[0] == [cells[0], cells[3], cells[6]]
    assert sorted(c for s in slices for c in s) == sorted(cells)


@pytest.mark.parametrize("spec, message", [
    ("1", "not K/N"), ("a/b", "not K/N"), ("0/2", "between 1 and 2"), ("3/2", "between 1 and 2"),
    ("1/0", "at least 1"),
])
def test_parse_shard_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_shard(spec)


def test_a_slice_beyond_the_matrix_is_an_empty_run_that_merges(tmp_path: Path, docker_client) -> None:
    """An array of fixed size over a smaller matrix: the extra slices succeed, empty, and merge."""
    proc = harness("run", "--matrix", MATRIX, "--reps", "1", "--warmup", "0", "--allow-stand-ins",
                   "--shard", "3/3", "--out", str(tmp_path / "s3"))
    assert proc.returncode == 0, proc.stderr
    assert "--shard 3/3 holds no cell: the matrix has 2" in proc.stderr
    empty = json.loads((tmp_path / "s3" / "results.json").read_text())
    assert empty["cells"] == [] and empty["finished"] and empty["settings"]["shard"]["spec"] == "3/3"
    assert "no cell in this run: slice 3/3 of a 2-cell matrix is empty" in proc.stdout
    one = _run(tmp_path / "s1", "--shard", "1/3", matrix=MATRIX)
    merged = harness("merge", str(tmp_path / "s1"), str(tmp_path / "s3"), "--out", str(tmp_path / "m"))
    assert merged.returncode == 0, merged.stderr
    cells = json.loads((tmp_path / "m" / "results.json").read_text())["cells"]
    assert [c["form"] for c in cells] == [c["form"] for c in one["cells"]]


@pytest.mark.docker
def test_shards_merge_to_the_single_run(tmp_path: Path, docker_client) -> None:
    """A container slice and a guest slice (each records its own tools) merge without --force."""
    mixed = "hello:scratch,lupine"
    whole = _run(tmp_path / "whole", matrix=mixed)
    one = _run(tmp_path / "s1", "--shard", "1/2", matrix=mixed)
    two = _run(tmp_path / "s2", "--shard", "2/2", matrix=mixed)
    assert one["environment"]["accelerators"] == [] and two["environment"]["accelerators"]
    keys = lambda d: [f"{c['workload']}:{c['form']}" for c in d["cells"]]  # noqa: E731
    assert set(keys(one)).isdisjoint(keys(two))
    assert sorted(keys(one) + keys(two)) == sorted(keys(whole))
    # merged in reverse order on purpose: the shard's recorded matrix puts cells back in order
    proc = harness("merge", str(tmp_path / "s2"), str(tmp_path / "s1"), "--out", str(tmp_path / "merged"))
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert keys(merged) == keys(whole) == whole["settings"]["cells"]
    assert merged["settings"]["cells"] == whole["settings"]["cells"]
    assert [m["shard"] for m in merged["settings"]["merged_from"]] == ["2/2", "1/2"]
    report = harness("report", str(tmp_path / "merged"))
    assert report.returncode == 0 and "scratch" in report.stdout

    dup = harness("merge", str(tmp_path / "s1"), str(tmp_path / "whole"), "--out", str(tmp_path / "dup"))
    assert dup.returncode == 2 and dup.stderr.count("\n") == 1 and "is in both" in dup.stderr
    again = harness("merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "merged"))
    assert again.returncode == 2 and "never overwritten" in again.stderr


def _doc(cells: list[tuple[str, str]], **env) -> dict:
    base_env = {"machine": "x86_64", "cpu_model": "AMD EPYC", "kernel": "6.1", "accelerators": [],
                "tools": {"docker_engine": "20.10"}}
    return {"schema_version": 1, "created": "2026-01-01T00:00:00Z", "environment": {**base_env, **env},
            "settings": {"run_id": "x"},
            "cells": [{"workload": w, "form": f, "status": "ok", "samples": []} for w, f in cells]}


def test_merge_refuses_other_environment_unless_forced() -> None:
    a = Source(Path("a"), _doc([("hello", "scratch")]))
    b = Source(Path("b"), _doc([("hello", "alpine")], tools={"docker_engine": "24.0"}))
    with pytest.raises(UsageError, match=r"tools.docker_engine: 20.10 vs 24.0.*--force"):
        merge([a, b])
    tcg = Source(Path("tcg"), _doc([("hello", "vm")], accelerators=["tcg"]))
    kvm = Source(Path("kvm"), _doc([("hello", "lupine")], accelerators=["kvm"]))
    with pytest.raises(UsageError, match=r"accelerators: \['tcg'\] vs \['kvm'\]"):
        merge([tcg, kvm])
    forced = merge([a, b], force=True)
    assert forced["settings"]["merged_with_force"] is True
    assert [x["form"] for x in forced["cells"]] == ["scratch", "alpine"]


def test_merge_needs_two() -> None:
    with pytest.raises(UsageError, match="at least two"):
        merge([Source(Path("a"), _doc([]))])


def test_slices_that_recorded_different_parts_of_the_environment_merge() -> None:
    """A container-only slice has no accelerator, a guest-only slice no Docker version: still alike."""
    containers = Source(Path("s1"), _doc([("hello", "scratch")]))
    guests = Source(Path("s2"), _doc([("hello", "lupine")], accelerators=["tcg"],
                                     tools={"docker_engine": None, "qemu": "QEMU 7.2"}))
    merged = merge([containers, guests])
    assert merged["environment"]["accelerators"] == ["tcg"]
    assert [m["environment"]["tools"] for m in merged["settings"]["merged_from"]] == [
        {"docker_engine": "20.10"}, {"docker_engine": None, "qemu": "QEMU 7.2"}]


def test_merge_refuses_other_settings_unless_forced() -> None:
    a = _doc([("hello", "scratch")])
    b = _doc([("hello", "lupine")])
    a["settings"].update(reps=3, options={"memory": 67108864})
    b["settings"].update(reps=1, options={"memory": 268435456})
    with pytest.raises(UsageError, match=r"^a and b were measured with different settings \(reps: 3 vs 1;.*--force"):
        merge([Source(Path("a"), a), Source(Path("b"), b)])
    forced = merge([Source(Path("a"), a), Source(Path("b"), b)], force=True)
    assert [m["settings"]["reps"] for m in forced["settings"]["merged_from"]] == [3, 1]


def test_a_forced_merge_says_so_in_every_report() -> None:
    from harness.render import formats

    a = _doc([("hello", "scratch")])
    b = _doc([("hello", "alpine")], cpu_model="Intel Xeon")
    a["settings"].update(reps=5, warmup=1, matrix="hello:scratch")
    b["settings"].update(reps=3, warmup=0, matrix="hello:alpine")
    for doc in (a, b):
        for cell in doc["cells"]:
            cell.update(reason=None, size={}, details={}, summary={}, warmup=[], warnings=[])
    merged = merge([Source(Path("a"), a), Source(Path("b"), b)], force=True)
    github = formats.render(merged, "github", formats.Options(metrics=()))
    assert "5 / 3 (differ) reps after 1 / 0 (differ) warm-up" in github
    assert "merged with --force from runs measured differently" in github
    assert "cpu_model: AMD EPYC vs Intel Xeon" in github and "reps: 5 vs 3" in github


def test_merged_slices_name_the_cells_no_slice_measured(tmp_path: Path, docker_client) -> None:
    """Slices 1 and 2 of 3 merge into a run that says which cell slice 3 would have measured."""
    matrix = "hello:scratch,alpine"
    whole = ["hello:alpine", "hello:scratch"]
    one = _run(tmp_path / "s1", "--shard", "1/3", matrix=matrix)
    _run(tmp_path / "s2", "--shard", "2/3", matrix=matrix)
    merged = harness("merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m"))
    assert merged.returncode == 0, merged.stderr
    doc = json.loads((tmp_path / "m" / "results.json").read_text())
    measured = sorted(f"{c['workload']}:{c['form']}" for c in doc["cells"])
    assert measured == whole, "a 2-cell matrix: slices 1 and 2 of 3 hold both, slice 3 is empty"
    assert doc["settings"]["merge_missing"] == []
    assert "no slice measured" not in merged.stderr
    # Without slice 2, its cell is named by merge and by every report of the merged run.
    lone = harness("merge", str(tmp_path / "s1"), str(tmp_path / "m"), "--out", str(tmp_path / "x"))
    assert lone.returncode == 2, "s1's cell is in both: refused"
    empty = _run(tmp_path / "s3", "--shard", "3/3", matrix=matrix)
    assert empty["cells"] == []
    part = harness("merge", str(tmp_path / "s1"), str(tmp_path / "s3"), "--out", str(tmp_path / "part"))
    assert part.returncode == 0, part.stderr
    lost = [k for k in whole if k not in [f"{c['workload']}:{c['form']}" for c in one["cells"]]]
    assert f"no slice measured 1 cell(s) of the matrix: {lost[0]}" in part.stderr
    report = harness("report", str(tmp_path / "part"))
    assert f"merged from slices that lack 1 cell(s) of the matrix; not measured: {lost[0]}" in report.stdout
    # Slices of different splits are not parts of one whole.
    other = _run(tmp_path / "h2", "--shard", "2/2", matrix=matrix)
    assert other["cells"]
    mixed = harness("merge", str(tmp_path / "s3"), str(tmp_path / "h2"), "--out", str(tmp_path / "mixed"))
    assert mixed.returncode == 2 and "slices of different splits (3/3, 2/2)" in mixed.stderr, mixed.stderr
