"""Schema versions: the kept v1 fixture loads; a newer file is refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.record import results as results_file

V1 = Path(__file__).parent / "fixtures" / "results-v1.json"


def test_v1_fixture_loads() -> None:
    data = results_file.load(V1)
    assert data["schema_version"] == results_file.SCHEMA_VERSION == 1
    assert [c["form"] for c in data["cells"]] == ["debian-vm", "alpine", "scratch", "lupine", "unikraft"]


def _write(tmp_path: Path, version: object) -> Path:
    data = json.loads(V1.read_text())
    data["schema_version"] = version
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(data))
    return run


def test_newer_schema_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="newer than this harness reads"):
        results_file.load(_write(tmp_path, 99))


@pytest.mark.parametrize("command", ["report", "plot", "check"])
def test_newer_schema_refused_by_cli(tmp_path: Path, command: str) -> None:
    run = _write(tmp_path, 99)
    extra = ["--baseline", str(Path(__file__).parent.parent / "builds" / "baselines" / "ci.toml")] \
        if command == "check" else []
    proc = subprocess.run([sys.executable, "-m", "harness", command, str(run), *extra],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "schema_version 99" in proc.stderr and "upgrade harness" in proc.stderr


def test_version_zero_and_missing_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown schema_version 0"):
        results_file.load(_write(tmp_path, 0))
    data = json.loads(V1.read_text())
    del data["schema_version"]
    p = tmp_path / "b.json"
    p.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="no schema_version"):
        results_file.load(p)
