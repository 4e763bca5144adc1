"""Two `harness run` at once, sharing the build cache and the builds folder, do not collide.

They get different run ids (so different container names and labels), free
host ports for the same service, and one of them builds a new binary while
the other waits on the cache lock and then reuses the very same file.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from leaks import LeakCheck, leak_check  # noqa: F401  (fixture)
from test_faults import HELLO_C, Spawned, write_workload


def test_two_runs_at_once_share_the_cache_without_colliding(tmp_path: Path, leak_check: LeakCheck) -> None:
    builds = tmp_path / "builds"
    # A fresh source, so both runs miss the binary cache at the same moment.
    write_workload(builds, "twin", HELLO_C.replace("return 0", f'return puts("{uuid.uuid4().hex}") < 0'))
    cache = tmp_path / "cache"
    http_builds = Path(__file__).resolve().parent.parent / "builds"
    runs = []
    for name in ("a", "b"):
        runs.append((Spawned(["run", "--matrix", "twin:scratch", "--reps", "3", "--warmup", "0",
                              "--builds", str(builds), "--cache", str(cache), "--out", str(tmp_path / name)],
                             leak_check), tmp_path / name))
    for name in ("c", "d"):
        runs.append((Spawned(["run", "--matrix", "http:scratch", "--reps", "3", "--warmup", "0",
                              "--builds", str(http_builds), "--cache", str(cache),
                              "--out", str(tmp_path / name)], leak_check), tmp_path / name))
    try:
        codes = [run.finish(timeout=300) for run, _ in runs]
    finally:
        for run, _ in runs:
            run.kill()
    for (run, _), code in zip(runs, codes):
        assert code == 0, run.stderr[-3000:]
    docs = [json.loads((out / "results.json").read_text()) for _, out in runs]
    for doc in docs:
        leak_check.watch_run(doc["settings"]["run_id"])
        assert [c["status"] for c in doc["cells"]] == ["ok"], doc["cells"]
    run_ids = {doc["settings"]["run_id"] for doc in docs}
    assert len(run_ids) == 4, "every run has its own id, hence its own container names and labels"
    twins = [doc["cells"][0] for doc in docs[:2]]
    assert twins[0]["binary_sha256"] == twins[1]["binary_sha256"], "one binary, built once, shared"
    assert twins[0]["binary"]["path_in_cache"] == twins[1]["binary"]["path_in_cache"]
    entries = {p for p in (cache / "bin").iterdir() if not p.name.startswith(".")}
    used = {Path(doc["cells"][0]["binary"]["path_in_cache"]).parent for doc in docs}
    assert entries == used and len(used) == 2, "one entry per binary (twin, http): none half-built or doubled"
    leftovers = [p.name for p in (cache / "bin").iterdir() if p.name.startswith(".") and p.is_dir()]
    assert leftovers == [], "no work folders left in the cache"
    for doc in docs[2:]:
        assert all(s["boot_s"] > 0 for s in doc["cells"][0]["samples"]), "both services answered on their ports"
    # Runs at once disturb one another's figures: every cell measured while another run was alive
    # says so, the first ones too. (Started one after another, a run may finish its cell before the
    # last one has begun; such a cell was not disturbed and is not flagged.)
    from datetime import datetime

    def t(stamp: str) -> float:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    margin = 0.0  # a run is registered from before its "created" until after its "finished"
    warned = 0
    for doc in docs:
        cell = doc["cells"][0]
        overlapped = any(t(o["created"]) + margin < t(cell["finished"]) and t(cell["started"]) < t(o["finished"]) - margin
                         for o in docs if o is not doc)
        flagged = any("other harness runs were measuring" in w for w in cell["warnings"])
        assert flagged or not overlapped, f"{doc['settings']['run_id']} overlapped another run and is not flagged"
        warned += flagged
    assert warned >= 2, "four runs started together: at least two overlapped and say so"
    assert any("other harness runs were measuring on this machine" in run.stderr for run, _ in runs)


def test_a_busy_machine_is_warned_about(tmp_path: Path, leak_check: LeakCheck) -> None:
    """Other work loading every CPU before a cell: the cell says its figures may be disturbed."""
    import subprocess
    import sys

    from test_faults import harness

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        proc = harness(["run", "--matrix", "hello:scratch", "--reps", "1", "--warmup", "0",
                        "--out", str(tmp_path / "out")], leak_check, timeout=120)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert proc.returncode == 0, proc.stderr
    [cell] = leak_check.watch_results(tmp_path / "out" / "results.json")["cells"]
    assert cell["details"]["host_cpu_busy_before_percent"] > 20
    assert any("busy just before this cell" in w for w in cell["warnings"]), cell["warnings"]


def test_a_run_that_begins_and_ends_during_a_cell_is_counted(tmp_path: Path) -> None:
    """A short run wholly inside another run's cell is in neither snapshot, yet it disturbed the cell."""
    import subprocess
    import sys

    from harness.run import leftovers
    from harness.run.runner import Disturbance

    me = f"cell-{uuid.uuid4().hex[:8]}"
    short = f"short-{uuid.uuid4().hex[:8]}"
    folder = leftovers.claim(me)
    try:
        before = Disturbance.look(me)
        assert short not in before.others
        subprocess.run([sys.executable, "-c",
                        "import sys; from harness.run import leftovers as l; "
                        "l.retire(sys.argv[1], l.claim(sys.argv[1]))", short], check=True, timeout=60)
        assert short not in {o.run_id for o in leftovers.others_running(me)}, "it is gone by the end of the cell"
        after = before.after(me)
        assert short in after.others
        assert any(short in w for w in after.warnings())
        later = Disturbance.look(me)
        assert short not in later.after(me).others, "a run that ended before a cell began did not disturb it"
    finally:
        leftovers.retire(me, folder)
    assert not (leftovers.registry() / leftovers.ENDED / f"{short}.json").exists(), \
        "once no run alive at its end is left, the note goes"
    assert not (leftovers.registry() / leftovers.ENDED / f"{me}.json").exists()
