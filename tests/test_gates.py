"""Baseline bands: pass, fail above/below, a missing result fails, bad baselines are one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analyse.gates import evaluate, load_baseline
from harness.errors import UsageError
from harness.record import results as results_file

REPO = Path(__file__).parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "results-v1.json"


def _baseline(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "b.toml"
    p.write_text(text)
    return p


def test_bands_midval_and_bounds(tmp_path: Path) -> None:
    checks = load_baseline(_baseline(tmp_path, """
[[check]]
workload = "hello"
form = "debian-vm"
metric = "boot"
midval = 18.0
minpercent = 10
maxpercent = 10
[[check]]
workload = "hello"
form = "debian-vm"
metric = "boot_s"
statistic = "max"
max = 18.5
[[check]]
workload = "hello"
form = "alpine"
metric = "size"
min = 2_000_000
[[check]]
workload = "hello"
form = "lupine"
metric = "boot"
max = 100
[[check]]
workload = "hello"
form = "vm"
metric = "memory"
max = 1
"""))
    assert (checks[0].low, checks[0].high) == (pytest.approx(16.2), pytest.approx(19.8))
    outcomes = evaluate(results_file.load(FIXTURE), checks)
    # debian-vm median boot 18.41 in [16.2, 19.8]; its max 19.02 > 18.5; alpine 1.49 MB < 2 MB
    assert [o.passed for o in outcomes] == [True, False, False, False, False]
    assert [o.why for o in outcomes] == ["", "above band", "below band", "missing: cell failed",
                                         "missing: cell not in this run"]


@pytest.mark.parametrize("text, message", [
    ("[[check]]\nworkload='hello'\nform='scratch'\nmax=1\n", "missing metric"),
    ("[[check]]\nworkload='hello'\nform='scratch'\nmetric='speed'\nmax=1\n",
     "check 1: unknown metric 'speed'; choose from size (artifact_bytes), boot (boot_s), "),
    ("[[check]]\nworkload='hello'\nform='scratch'\nmetric='boot'\n", "no band"),
    ("[[check]]\nworkload='hello'\nform='scratch'\nmetric='boot'\nmidval=1\n", "needs minpercent"),
    ("[[check]]\nworkload='hello'\nform='scratch'\nmetric='boot'\nmin=2\nmax=1\n", "band is empty"),
    ("[[check]]\nworkload='hello'\nform='scratch'\nmetric='boot'\nstatistic='p99'\nmax=1\n", "unknown statistic"),
    ("nothing = 1\n", "no [[check]] entries"),
    ("[[check]\n", "not valid TOML"),
    ("[[check]]\nworkload='hello'\nform='scratch'\nmetric='boot'\nmaxx=1\n", "unknown key 'maxx'"),
    ("[[check]]\nworkload='hello'\nform='scratch'\nmetric='boot'\nmax=nan\n", "finite number"),
    ("[[check]]\nworkload='hello'\nform='scratch'\nmetric='boot'\nmidval=1\nminpercent=-5\nmaxpercent=5\n",
     "0 or more"),
])
def test_bad_baselines(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        load_baseline(_baseline(tmp_path, text))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "check", *args], capture_output=True, text=True)


def test_cli_example_baseline_passes_and_fails(tmp_path: Path) -> None:
    ok = _cli(str(FIXTURE), "--baseline", str(REPO / "builds" / "baselines" / "ci.toml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "4 passed, 0 failed" in ok.stdout
    data = json.loads(FIXTURE.read_text())
    scratch = next(c for c in data["cells"] if c["form"] == "scratch")
    scratch["size"]["artifact_bytes"] *= 3
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(data))
    bad = _cli(str(run), "--baseline", str(REPO / "builds" / "baselines" / "ci.toml"))
    assert bad.returncode == 1
    assert "FAIL" in bad.stdout and "above band" in bad.stdout and "1 failed" in bad.stdout


def test_cli_missing_baseline_is_one_line(tmp_path: Path) -> None:
    proc = _cli(str(FIXTURE), "--baseline", str(tmp_path / "none.toml"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "pass --baseline" in proc.stderr


@pytest.mark.parametrize("kind", ["folder", "binary"])
def test_cli_unreadable_baseline_is_one_line(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "b"
    if kind == "folder":
        target.mkdir()
    else:
        target.write_bytes(bytes(range(256)) * 4)
    proc = _cli(str(FIXTURE), "--baseline", str(target))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and str(target) in proc.stderr


def test_cli_marks_stand_in_and_emulated_cells(tmp_path: Path) -> None:
    baseline = _baseline(tmp_path, """
[[check]]
workload = "hello"
form = "alpine"
metric = "boot_s"
max = 10

[[check]]
workload = "hello"
form = "debian-vm"
metric = "boot_s"
max = 100
""")
    proc = _cli(str(FIXTURE), "--baseline", str(baseline))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| alpine*" in proc.stdout and "| debian-vm†" in proc.stdout
    assert "* measured on the Alpine-like stand-in base" in proc.stdout and "† emulated under QEMU TCG" in proc.stdout


def test_a_check_on_a_form_nobody_knows_is_bad_input(tmp_path: Path) -> None:
    """A typo in form is not a failed check (exit 1) but a baseline to fix (exit 2), naming where."""
    baseline = tmp_path / "b.toml"
    baseline.write_text("[[check]]\nworkload='hello'\nform='scratch'\nmetric='size'\nmax=1e9\n"
                        "[[check]]\nworkload='hello'\nform='toaster'\nmetric='boot_s'\nmax=1\n")
    proc = _cli(str(FIXTURE), "--baseline", str(baseline))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{baseline} check 2: unknown form 'toaster'; choose from vm, alpine, scratch" in proc.stderr
