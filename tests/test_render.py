"""Report formats against golden files made from a fixed results fixture.

Regenerate the golden files after an intended change with
`UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py` and review the diff.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analyse.metrics import METRICS

from harness.commands.report import report
from harness.render.units import column_unit, fmt_scaled

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = FIXTURES / "results-v1.json"
GOLDEN = FIXTURES / "golden"
CASES = {
    "report.md": ("markdown", None, False),
    "report-github.md": ("github", None, False),
    "report.tex": ("latex", None, False),
    "report.csv": ("csv", None, False),
    "report.json": ("json", None, False),
    "report.html": ("html", None, False),
    "pivot.md": ("markdown", "boot,memory,size", True),
    "pivot.tex": ("latex", "boot,size", True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    fmt, metrics, pivot = CASES[name]
    text = report(RESULTS, fmt, metrics, pivot)
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_nan_none_or_bare_zero(name: str) -> None:
    text = (GOLDEN / name).read_text()
    for bad in ("nan", "None", "NaN", "null |"):
        assert bad not in text.replace("unavailable", "")


def test_missing_markers_in_markdown() -> None:
    text = report(RESULTS, "markdown")
    lupine = next(line for line in text.splitlines() if "| lupine" in line)
    unikraft = next(line for line in text.splitlines() if "| unikraft" in line)
    assert lupine.count("failed") >= 3 and "9.44" in lupine  # the built size is still shown
    assert unikraft.count("n/a") == 4  # size, boot, memory, guest used


def test_units_in_headers_and_marks() -> None:
    text = report(RESULTS, "markdown")
    header = text.splitlines()[0]
    assert "artifact (MB)" in header and "(s)" in header and "memory median (MB)" in header
    assert "debian-vm†" in text and "alpine*" in text


def test_column_unit_choice() -> None:
    assert column_unit("bytes", [29298, 1485768]) == ("MB", 1e6)
    assert column_unit("bytes", [512]) == ("B", 1.0)
    assert column_unit("seconds", [0.25, 0.3]) == ("ms", 1e-3)
    assert column_unit("seconds", [0.0004]) == ("us", 1e-6)
    assert column_unit("seconds", [18.4, 0.25]) == ("s", 1.0)
    assert fmt_scaled(1.2, 1.0, "s") == "1.20"
    assert fmt_scaled(29298, 1e6, "MB") == "0.0293"
    assert fmt_scaled(None, 1.0, "s") == "n/a"


def test_csv_one_row_per_sample() -> None:
    rows = list(csv.DictReader(io.StringIO(report(RESULTS, "csv"))))
    assert len(rows) == 5 + 5 + 5 + 1 + 1  # vm, alpine, scratch samples; failed and unavailable once each
    vm = [r for r in rows if r["form"] == "debian-vm"]
    assert [r["rep"] for r in vm] == ["1", "2", "3", "4", "5"]
    assert vm[0]["accelerator"] == "tcg" and vm[0]["emulated"] == "true"
    failed = next(r for r in rows if r["form"] == "lupine")
    assert failed["boot_s"] == "failed" and failed["rep"] == "n/a"
    alpine = next(r for r in rows if r["form"] == "alpine")
    assert alpine["stand_in"] == "true"


def test_json_round_trips() -> None:
    doc = json.loads(report(RESULTS, "json"))
    cells = {c["cell"]: c for c in doc["cells"]}
    assert cells["hello:debian-vm"]["metrics"]["boot_s"]["median"] == pytest.approx(18.41)
    assert cells["hello:unikraft"]["metrics"]["boot_s"] is None


def test_latex_compiles_and_fits_the_page(tmp_path: Path) -> None:
    """In a plain article (a paper's text width), with every metric: nothing runs off the page."""
    pdflatex = shutil.which("pdflatex")
    assert pdflatex, "pdflatex missing: scripts/setup.sh installs texlive-latex-base and -recommended"
    every = ",".join(m.name for m in METRICS)
    body = (report(RESULTS, "latex") + "\n" + report(RESULTS, "latex", every) + "\n"
            + report(RESULTS, "latex", "boot,size", True))
    assert "needs \\usepackage{booktabs,graphicx}" in body
    doc = "\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n" + body + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000
    log = (tmp_path / "t.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log, log[log.find("Overfull"):][:600]


def test_cli_unknown_format_is_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(RESULTS), "--format", "docx"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "choose from" in proc.stderr


@pytest.mark.parametrize("fmt", ["csv", "json", "pytest-benchmark"])
def test_pivot_with_a_format_that_has_no_tables_is_refused(fmt: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(RESULTS), "--pivot", "--format", fmt],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "drop --pivot" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_cli_unknown_metric_is_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(RESULTS), "--metrics", "boot,speed"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown metric 'speed'" in proc.stderr


def test_github_appends_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(RESULTS), "--format", "github"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n## harness: 5 cells") and proc.stdout in text


def test_pytest_benchmark_compare_reads_export(tmp_path: Path) -> None:
    out = tmp_path / "0001_harness.json"
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(RESULTS), "--format",
                           "pytest-benchmark", "--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert {b["name"] for b in doc["benchmarks"]} == {"boot[hello-debian-vm]", "boot[hello-alpine-stand-in]",
                                                      "boot[hello-scratch]"}
    groups = {b["name"]: b["group"] for b in doc["benchmarks"]}
    assert groups["boot[hello-debian-vm]"] == "hello, emulated (TCG)" != groups["boot[hello-scratch]"]
    tool = Path(sys.executable).parent / "pytest-benchmark"
    cmp = subprocess.run([str(tool), "compare", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert cmp.returncode == 0, cmp.stderr
    assert "Failed to load" not in cmp.stdout + cmp.stderr
    assert "boot[hello-debian-vm]" in cmp.stdout and "boot[hello-scratch]" in cmp.stdout


def test_memory_footnote_says_what_each_cells_figure_is() -> None:
    """Peak, working set and VMM PSS share the memory column; the footnote names each cell's."""
    text = report(FIXTURES / "results-v1-run.json", "markdown", None, False)
    note = next(line for line in text.splitlines() if "memory =" in line)
    assert "QEMU process PSS after readiness for hello:vm, hello:lupine, http:vm, http:lupine" in note
    assert "cgroup peak (includes the container runtime's own init before exec) for hello:alpine, hello:scratch" in note
    assert "cgroup working set after readiness (usage minus inactive file cache) for http:alpine, http:scratch" in note
    assert "unikraft" not in note  # nothing measured, nothing claimed


def test_output_never_replaces_results(tmp_path: Path) -> None:
    """Writing a report onto the run's own results.json, or onto any results file, is refused."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(RESULTS, run / "results.json")
    other = tmp_path / "other.json"
    shutil.copy(RESULTS, other)
    before = (run / "results.json").read_bytes()
    for target in (run / "results.json", other):
        proc = subprocess.run([sys.executable, "-m", "harness", "report", str(run), "--format", "csv",
                               "--output", str(target)], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "write the report elsewhere" in proc.stderr
    assert (run / "results.json").read_bytes() == before and other.read_bytes() == RESULTS.read_bytes()
    ok = subprocess.run([sys.executable, "-m", "harness", "report", str(run), "--format", "csv",
                         "--output", str(tmp_path / "samples.csv")], capture_output=True, text=True)
    assert ok.returncode == 0 and (tmp_path / "samples.csv").read_text().startswith("workload")


def test_unwritable_step_summary_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(RESULTS), "--format", "github"],
                          capture_output=True, text=True, env={**os.environ, "GITHUB_STEP_SUMMARY": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "GITHUB_STEP_SUMMARY" in proc.stderr


def test_the_tcg_mark_survives_a_cell_that_lost_its_accelerator_field() -> None:
    """The boots still say tcg: the row keeps its † though the cell's own field is gone."""
    from harness.render.table import form_label

    sample = {"boot_s": 1.0, "details": {"accelerator": "tcg", "emulated": True}}
    for details in (None, {}, {"vmm": "QEMU 7.2"}):
        assert form_label({"form": "vm", "status": "ok", "details": details, "samples": [sample]}) == "vm†"
    kvm = {"boot_s": 1.0, "details": {"accelerator": "kvm", "emulated": False}}
    assert form_label({"form": "vm", "status": "ok", "details": {}, "samples": [kvm]}) == "vm"


def test_a_failed_container_has_no_guest_figure_to_miss() -> None:
    """A container has no guest kernel: its guest column is n/a, failed or not; other columns say failed."""
    from harness.analyse.metrics import get
    from harness.render.rows import missing_text

    failed = {"form": "scratch", "family": "container", "status": "failed"}
    assert missing_text(failed, get("guest")) == "n/a"
    assert missing_text(failed, get("boot")) == "failed"
    assert missing_text({"form": "vm", "family": "vm", "status": "failed"}, get("guest")) == "failed"
