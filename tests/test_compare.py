"""compare on two real container runs (the Docker engine must be up), then planted changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analyse.compare import compare_metric, parse_threshold
from harness.analyse.metrics import get
from harness.errors import UsageError

MATRIX = "hello:scratch,alpine"


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, docker_client) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cmp")
    for name in ("a", "b"):
        proc = harness("run", "--matrix", MATRIX, "--reps", "5", "--warmup", "1", "--allow-stand-ins",
                       "--quiet", "--out", str(base / name))
        assert proc.returncode == 0, proc.stderr
    return base / "a", base / "b"


def _planted(src: Path, dst: Path, edit) -> Path:
    data = json.loads((src / "results.json").read_text())
    edit(data)
    dst.mkdir()
    (dst / "results.json").write_text(json.dumps(data))
    return dst


def test_same_run_is_unchanged(runs) -> None:
    a, _ = runs
    proc = harness("compare", str(a), str(a), "--fail-on", "worse")
    assert proc.returncode == 0, proc.stdout
    assert "worse |" not in proc.stdout and "0 worse; 0 newly failed; 0 missing" in proc.stdout


def test_two_real_runs_nothing_changed(runs) -> None:
    # Two runs of the same thing on a shared machine can differ by tens of percent in boot
    # time; the images are identical. A wide threshold keeps only real regressions.
    a, b = runs
    proc = harness("compare", str(a), str(b), "--threshold", "200%", "--fail-on", "worse")
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count("artifact_bytes") == 2 and "hello:scratch" in proc.stdout


def test_planted_regression_fails(runs, tmp_path: Path) -> None:
    a, b = runs

    def inflate(data: dict) -> None:
        for c in data["cells"]:
            if c["form"] == "scratch":
                c["size"]["artifact_bytes"] = int(c["size"]["artifact_bytes"] * 1.5)
                for s in c["samples"]:
                    s["boot_s"] *= 20
    worse = _planted(b, tmp_path / "worse", inflate)
    proc = harness("compare", str(a), str(worse), "--threshold", "10%", "--fail-on", "worse")
    assert proc.returncode == 1, proc.stdout
    line = next(x for x in proc.stdout.splitlines() if "hello:scratch" in x and "artifact_bytes" in x)
    assert "worse" in line and "1.500" in line
    boot = next(x for x in proc.stdout.splitlines() if "hello:scratch" in x and "boot_s" in x)
    assert "worse" in boot
    # without --fail-on the comparison is still printed but does not fail
    assert harness("compare", str(a), str(worse)).returncode == 0


def test_different_base_not_compared_unless_forced(runs, tmp_path: Path) -> None:
    a, _ = runs

    def rebase(data: dict) -> None:
        for c in data["cells"]:
            if c["form"] == "alpine":
                c["details"]["stand_in"] = False
                c["details"]["base"] = "alpine:3.20"
                c["size"]["artifact_bytes"] *= 3
    other = _planted(a, tmp_path / "other", rebase)
    proc = harness("compare", str(a), str(other), "--fail-on", "worse")
    assert proc.returncode == 0, proc.stdout
    line = next(x for x in proc.stdout.splitlines() if "hello:alpine" in x)
    assert "not compared" in line and "stand_in True -> False" in line and "--force" in line
    forced = harness("compare", str(a), str(other), "--fail-on", "worse", "--force")
    assert forced.returncode == 1 and "forced: " in forced.stdout


def test_newly_failed_cell_counts_as_worse(runs, tmp_path: Path) -> None:
    a, _ = runs

    def fail(data: dict) -> None:
        c = data["cells"][0]
        c["status"], c["reason"], c["samples"] = "failed", "boot did not reach readiness", []
    broken = _planted(a, tmp_path / "broken", fail)
    proc = harness("compare", str(a), str(broken), "--fail-on", "worse")
    assert proc.returncode == 1 and "status ok -> failed" in proc.stdout
    assert "0 worse; 1 newly failed: hello:alpine; 0 missing" in proc.stdout


@pytest.mark.parametrize("key, value", [("kernel_kind", "cloud"), ("guest_memory_mib", 128)])
def test_guests_measured_differently_are_not_compared(runs, tmp_path: Path, key: str, value: object) -> None:
    """Another kernel or guest memory size changes the figures by itself: say so, do not judge."""
    a, _ = runs

    def other(data: dict) -> None:
        data["cells"][0]["details"][key] = value
    changed = _planted(a, tmp_path / "changed", other)
    proc = harness("compare", str(a), str(changed), "--fail-on", "worse")
    assert proc.returncode == 0 and f"{key} None -> {value}" in proc.stdout, proc.stdout


def test_memory_of_another_kind_is_not_compared_unless_forced(runs, tmp_path: Path) -> None:
    """A cgroup peak is not set against a working set: the memory row says why it is skipped."""
    a, _ = runs

    def other_kind(data: dict) -> None:
        data["cells"][0]["memory_source"] = "working_set_bytes"
    other = _planted(a, tmp_path / "other", other_kind)
    proc = harness("compare", str(a), str(other), "--fail-on", "worse")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "memory_source peak_bytes -> working_set_bytes" in proc.stdout
    forced = harness("compare", str(a), str(other), "--force")
    assert forced.returncode == 0 and "memory_source peak_bytes ->" not in forced.stdout


def test_verdicts_by_hand() -> None:
    boot, size = get("boot"), get("size")
    slow = [1.0, 1.1, 1.05, 0.95, 1.02, 0.98]
    # all six NEW above all six BASE: U = 0, exact two-sided p = 2 / C(12, 6) = 2/924 = 0.0022
    ratio, p, verdict = compare_metric(boot, slow, [x * 2 for x in slow], 0.10)
    assert verdict == "worse" and ratio == pytest.approx(2.0) and p == pytest.approx(2 / 924)
    assert compare_metric(boot, slow, [x * 1.05 for x in slow], 0.10)[2] in ("no change", "not significant")
    assert compare_metric(boot, [1.0, 2.0, 3.0], [3.0, 1.0, 2.0], 0.10)[2] == "not significant"
    # One sample on either side: no spread, so no test; a change of any size is not significant.
    assert compare_metric(boot, [0.196], [0.220], 0.10) == (pytest.approx(0.220 / 0.196), None, "not significant")
    assert compare_metric(boot, slow, [2.0], 0.10)[2] == "not significant"
    assert compare_metric(size, [1000.0], [1050.0], 0.10)[2] == "no change"
    assert compare_metric(size, [1000.0], [800.0], 0.10)[2] == "better"


def test_too_few_samples_to_ever_be_significant_are_said(runs, tmp_path: Path) -> None:
    """3 against 3, every NEW boot slower than every BASE one: p is 0.1 at best, and the output says why."""
    from harness.analyse.compare import min_p_value

    assert min_p_value(3, 3) == pytest.approx(0.1) and min_p_value(4, 4) < 0.05
    a, _ = runs

    def keep(n: int, factor: float):
        def edit(data: dict) -> None:
            for c in data["cells"]:
                c["samples"] = [dict(s, boot_s=s["boot_s"] * factor) for s in c["samples"][:n]]
        return edit
    base = _planted(a, tmp_path / "b3", keep(3, 1.0))
    new = _planted(a, tmp_path / "n3", keep(3, 3.0))
    proc = harness("compare", str(base), str(new), "--fail-on", "worse")
    assert proc.returncode == 0, proc.stdout
    assert "with 3 sample(s) in BASE and 3 in NEW the exact Mann-Whitney test cannot reach p < 0.05" in proc.stdout
    assert "its smallest p is 0.100" in proc.stdout and "at least 4 repetitions on each side" in proc.stdout
    full = harness("compare", str(a), str(a))
    assert "cannot reach" not in full.stdout, "5 against 5 can"


@pytest.mark.parametrize("text", ["10", "x%", "-5%"])
def test_threshold_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_threshold(text)
    assert parse_threshold("10%") == pytest.approx(0.10)


def test_a_cell_no_longer_measured_fails_the_gate(runs, tmp_path: Path) -> None:
    """An empty NEW run (or one that lost a cell) is no pass: the missing cells fail --fail-on worse."""
    a, _ = runs

    def lose_one(data: dict) -> None:
        data["cells"] = data["cells"][1:]
    fewer = _planted(a, tmp_path / "fewer", lose_one)
    proc = harness("compare", str(a), str(fewer), "--fail-on", "worse")
    assert proc.returncode == 1 and "missing" in proc.stdout and "in BASE, not in NEW" in proc.stdout
    assert "0 worse; 0 newly failed; 1 missing: hello:alpine" in proc.stdout, "each kind is counted apart"


def test_a_cell_base_could_not_measure_is_not_missing(runs, tmp_path: Path) -> None:
    """Unavailable in BASE and absent from NEW: nothing was lost, so the gate passes."""
    a, _ = runs

    def add_unavailable(data: dict) -> None:
        extra = dict(data["cells"][0], form="unikraft", status="unavailable", reason="kraft is not installed",
                     samples=[], warmup=[], summary={}, size={}, details={})
        data["cells"].append(extra)
    base = _planted(a, tmp_path / "with-unikraft", add_unavailable)
    proc = harness("compare", str(base), str(a), "--fail-on", "worse")
    assert proc.returncode == 0, proc.stdout
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("| hello:unikraft")]
    assert "not compared" in line and "status unavailable in BASE, not in NEW" in line
    assert "0 worse; 0 newly failed; 0 missing" in proc.stdout
