"""Schema versions: kept v1 files are upgraded on every load; a newer file is refused in one line."""

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
    assert data["schema_version"] == results_file.SCHEMA_VERSION == 2
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


V1_RUN = Path(__file__).parent / "fixtures" / "results-v1-run.json"


def test_v1_run_is_upgraded_to_v2_with_memory_sources() -> None:
    """A whole v1 run of every form (kept as written then): each memory figure gets its source."""
    assert json.loads(V1_RUN.read_text())["schema_version"] == 1
    data = results_file.load(V1_RUN)
    assert data["schema_version"] == results_file.SCHEMA_VERSION == 2
    sources = {f"{c['workload']}:{c['form']}": c["memory_source"] for c in data["cells"]}
    assert sources == {
        "hello:vm": "vmm_pss_bytes", "hello:alpine": "peak_bytes", "hello:scratch": "peak_bytes",
        "hello:lupine": "vmm_pss_bytes", "hello:unikraft": None,
        "http:vm": "vmm_pss_bytes", "http:alpine": "working_set_bytes", "http:scratch": "working_set_bytes",
        "http:lupine": "vmm_pss_bytes", "http:unikraft": None,
    }
    for cell in data["cells"]:
        for sample in cell["samples"]:
            assert sample["memory_bytes"] == sample["memory"][sample["memory_source"]]
            assert "memory_bytes_source" not in sample["details"]


def test_v1_without_memory_figures_gets_no_source_rather_than_a_guess() -> None:
    data = results_file.load(V1)
    assert all(c["memory_source"] is None for c in data["cells"])
    assert all(s["memory_source"] is None for c in data["cells"] for s in c["samples"])


def _cell(d: dict, form: str) -> dict:
    return next(c for c in d["cells"] if c["form"] == form and c["status"] == "ok")


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.pop("cells"), "no list of cells"),
    (lambda d: d.update(environment=[]), "environment is not an object"),
    (lambda d: d.update(settings="fast"), "settings is not an object"),
    (lambda d: d["cells"][1].pop("form"), "cell 2 has no 'form'"),
    (lambda d: d["cells"][0].update(status="great"), "has status 'great'"),
    (lambda d: d["cells"][0].update(samples={}), "has samples = '{}', not a list"),
    (lambda d: d["cells"][0].update(size="big"), "has size = 'big', not an object"),
    (lambda d: d["cells"][0].update(details=[1]), "has details = '[1]', not an object"),
    (lambda d: d["cells"][0].update(reason=123), "has reason = '123', not text"),
    (lambda d: _cell(d, "scratch")["size"].update(artifact_bytes="big"),
     "has size.artifact_bytes = 'big', not a finite number"),
    (lambda d: _cell(d, "scratch")["size"].update(artifact_bytes=-5), "has size.artifact_bytes = -5, below 0"),
    (lambda d: d["cells"][0]["samples"][0].update(boot_s=float("nan")), "sample 1 has boot_s = nan, not a finite"),
    (lambda d: d["cells"][0]["samples"][0].update(boot_s=-1.5), "sample 1 has boot_s = -1.5, below 0"),
    (lambda d: d["cells"][0]["samples"][0].update(memory=[1]), "sample 1 has memory = '[1]', not an object"),
    (lambda d: d["cells"][0]["samples"][0].update(memory={"guest_used_bytes": "x"}),
     "sample 1 has memory.guest_used_bytes = 'x', not a finite number"),
    (lambda d: d["cells"][0]["samples"].append("x"), "= 'x', not an object"),
    (lambda d: d["cells"].append(dict(d["cells"][0])), "is also cell 1"),
    (lambda d: d["cells"][0]["samples"][0].update(boot_s=None), "sample 1 has no boot_s"),
    (lambda d: d.update(schema_version="2"), "has schema_version = '2', not a whole number"),
])
@pytest.mark.parametrize("command", ["report", "report --format html", "report --format pytest-benchmark",
                                     "plot", "compare"])
def test_damaged_file_is_one_line_for_every_reader(tmp_path: Path, damage, message: str, command: str,
                                                   capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, for speed: the CLI's main() with its signal handlers left to pytest."""
    from harness import cli

    data = json.loads(V1.read_text())
    damage(data)
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(data))
    verb, *options = command.split()
    args = [str(run)] + ([str(run)] if verb == "compare" else []) + options
    monkeypatch.setattr(cli.signal, "signal", lambda *_: None)
    monkeypatch.chdir(tmp_path)
    code = cli.main([verb, *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert message in err


def test_a_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_bytes(b"\xff\xfe" + bytes(range(128, 256)))
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_bytes((run / "results.json").read_bytes())
    for command in (["report", str(run)], ["compare", str(run), str(other)], ["merge", str(run), str(other),
                                                                              "--out", str(tmp_path / "m")]):
        proc = subprocess.run([sys.executable, "-m", "harness", *command], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not text" in proc.stderr, proc.stderr
