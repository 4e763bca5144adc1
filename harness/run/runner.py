"""The runner: walks the matrix cell by cell and records each as data.

For each cell: is the form available here, build the one binary (once per
workload), build the artifact, boot it warm-up + reps times, summarise.
Whatever happens becomes the cell's status (ok, failed, unavailable) and the
run goes on; the results file is rewritten after every cell. SIGINT and
SIGTERM (and SIGHUP) stop the run cleanly: forms clean up, finished cells stay on disk.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psutil

from harness import forms as form_registry
from harness import workloads
from harness.analyse.stats import spread_warning, summarize
from harness.build import binary as binary_build
from harness.build.cache import Cache
from harness.errors import (
    BootFailed,
    BuildFailed,
    HarnessError,
    Unavailable,
    UsageError,
)
from harness.forms.base import Context, Form, Progress
from harness.record import environment
from harness.record.results import Results, ResultsWriteError, utc_now
from harness.run import leftovers
from harness.run.matrix import Cell

SUMMARY_METRICS = ("boot_s", "memory_bytes")


@dataclass
class RunSettings:
    cells: list[Cell]
    out_dir: Path
    cache_dir: Path
    reps: int = 5
    warmup: int = 1
    timeout_s: float = 120.0
    allow_standins: bool = False
    builds_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    matrix_spec: str = ""
    quiet: bool = False


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived; the run stops after cleaning up."""


# SIGHUP too: a closed terminal or a dropped SSH session must clean up like Ctrl-C.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _signals_raise(progress: Progress) -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into an exception so every finally block runs."""
    def handler(signum, frame):  # noqa: ARG001
        name = signal.Signals(signum).name
        if not progress.quiet:  # os.write: a print here could re-enter one in progress
            os.write(2, f"{name}: stopping what is running and cleaning up ...\n".encode())
        raise Interrupted(name)
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def new_run_id() -> str:
    return secrets.token_hex(4)


def run(settings: RunSettings, results_path: Path) -> Results:
    """Measure every cell; returns the results (also on disk at results_path)."""
    progress = Progress(quiet=settings.quiet)
    run_id = new_run_id()
    ctx = Context(
        cache=Cache(settings.cache_dir, on_wait=progress), run_id=run_id, timeout_s=settings.timeout_s,
        allow_standins=settings.allow_standins, progress=progress, options=settings.options,
    )
    wants_engine = any(form_registry.get(c.form).family == "container" for c in settings.cells)
    environment_now = environment.collect(include_engine=wants_engine)
    # Registered before the results exist, so the run is visible to its neighbours for all of
    # the time between the file's 'created' and 'finished'.
    run_tmp = leftovers.claim(run_id, results_path)
    results = Results(
        path=results_path,
        environment=environment_now,
        settings={
            "matrix": settings.matrix_spec, "cells": [str(c) for c in settings.cells],
            "reps": settings.reps, "warmup": settings.warmup, "timeout_s": settings.timeout_s,
            "allow_stand_ins": settings.allow_standins, "options": _jsonable(settings.options),
            "run_id": run_id,
        },
    )
    try:
        results.save()
    except BaseException:
        leftovers.retire(run_id, run_tmp)
        raise
    used: dict[str, Form] = {}
    completed = False
    binaries: dict[str, binary_build.Binary | Exception] = {}
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(run_tmp)  # every temp folder of the run in one
    try:
        with _signals_raise(progress):
            leftovers.sweep(ctx.cache, run_id, lambda stale_id: _cleanup_run(stale_id, ctx), progress)
            for index, cell in enumerate(settings.cells, 1):
                progress(f"[{index}/{len(settings.cells)}] {cell}")
                form = used.setdefault(cell.form, form_registry.get(cell.form))
                before = Disturbance.look(run_id)
                for line in before.warnings():
                    progress(f"warning: {line}")
                record = measure_cell(cell, form, ctx, settings, binaries)
                record["details"]["host_cpu_busy_before_percent"] = before.busy_percent
                record["warnings"] += before.after(run_id).warnings()
                results.add(record)
                progress(f"[{index}/{len(settings.cells)}] {cell}: {record['status']}"
                         + (f" ({record['reason'].splitlines()[0]})" if record["reason"] else ""))
        completed = True
    except (Interrupted, KeyboardInterrupt) as exc:
        results.interrupted = True
        partial = getattr(exc, "cell_record", None)
        if partial is not None:
            results.cells.append(partial)  # its finished repetitions are measurements too
        progress(f"interrupted ({exc or 'SIGINT'}); cleaning up, finished cells are kept")
        raise Interrupted(str(exc) or "SIGINT") from None
    except ResultsWriteError as exc:
        progress("cannot write the results file; stopping (finished cells are in the last complete file)")
        exc.results = results  # type: ignore[attr-defined]  # what was measured, for the caller to show
        raise
    finally:
        _cleanup(used, ctx)
        tempfile.tempdir = saved_tempdir
        results.finished = utc_now()
        leftovers.retire(run_id, run_tmp)  # after 'finished': neighbours see the run until then
        results.environment["accelerators"] = sorted(
            {c["details"]["accelerator"] for c in results.cells if c.get("details", {}).get("accelerator")})
        try:
            results.save()
        except ResultsWriteError:
            if completed:
                raise  # nothing else is on its way out: this is the run's error
    return results


def _cleanup(used: dict[str, Form], ctx: Context) -> None:
    """Every form cleans up, even when another one's cleanup fails or a signal arrives."""
    with _signals_ignored():
        for form in used.values():
            try:
                form.cleanup(ctx)
            except Exception as exc:  # cleanup must not hide the run's outcome
                ctx.progress(f"cleanup of {form.name} failed: {exc}")


@dataclass
class Disturbance:
    """What else loads the machine around a cell: other harness runs, busy CPUs.

    Looked at just before a cell (when this run is idle) and again just after
    it, counting every run alive at any moment in between: one that started,
    ended, or did both during the cell is caught.
    """

    others: set[str]
    busy_percent: float | None = None
    at: float = 0.0

    BUSY_WARN_PERCENT: ClassVar[float] = 20.0

    @classmethod
    def look(cls, run_id: str) -> Disturbance:
        at = time.time()
        others = {o.run_id for o in leftovers.others_running(run_id)}
        return cls(others, psutil.cpu_percent(interval=0.5), at)

    def after(self, run_id: str) -> Disturbance:
        """The same look extended to now: every other run alive since this one was taken."""
        return Disturbance(self.others | leftovers.others_since(run_id, self.at), self.busy_percent, self.at)

    def warnings(self) -> list[str]:
        out = []
        if self.others:
            out.append("measured while other harness runs were measuring on this machine "
                       f"({', '.join(sorted(self.others))}): figures disturbed")
        if self.busy_percent is not None and self.busy_percent > self.BUSY_WARN_PERCENT:
            out.append(f"the machine's CPUs were {self.busy_percent:.0f}% busy just before this cell, "
                       f"with this run idle: other work may have disturbed its figures")
        return out


def _cleanup_run(run_id: str, ctx: Context) -> None:
    """Every form's cleanup for another (killed) run's id: its containers, cgroups, instances."""
    stale = Context(cache=ctx.cache, run_id=run_id, progress=ctx.progress, options=ctx.options)
    _cleanup({name: form_registry.get(name) for name in form_registry.ORDER}, stale)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}


def _new_cell(cell: Cell, form: Form) -> dict[str, Any]:
    return {
        "workload": cell.workload, "form": cell.form, "family": getattr(form, "family", "unknown"),
        "status": "unavailable", "reason": None, "binary_sha256": None, "binary": None,
        "size": {}, "details": {}, "memory_source": None, "samples": [], "warmup": [], "failures": [],
        "summary": {},
        "warnings": [], "started": utc_now(), "finished": None,
    }


def measure_cell(cell: Cell, form: Form, ctx: Context, settings: RunSettings,
                 binaries: dict[str, binary_build.Binary | Exception]) -> dict[str, Any]:
    """One cell, start to finish; every outcome is a record, never an exception."""
    record = _new_cell(cell, form)
    stage = "checking the form"  # what was going on, for an interrupt's reason
    try:
        form.check(ctx)
        workload = workloads.load(cell.workload, settings.builds_dir)
        stage = "building the workload binary"
        if cell.workload not in binaries:
            try:
                binaries[cell.workload] = binary_build.build(workload, ctx.cache, ctx.progress)
            except HarnessError as exc:
                binaries[cell.workload] = exc
        built = binaries[cell.workload]
        if isinstance(built, Exception):
            raise built
        record["binary_sha256"] = built.sha256
        record["binary"] = {"path_in_cache": str(built.path), "bytes": built.size_bytes,
                            "linkage": built.info.linkage, "compiler": built.compiler,
                            "flags": list(built.flags)}
        stage = f"building the {cell.form} artifact"
        t = time.monotonic()
        artifact = form.build(workload, built, ctx)
        record["build_s"] = time.monotonic() - t
        record["size"] = artifact.size
        record["details"] = _jsonable(artifact.details)
        record["details"].setdefault("cached", artifact.cached)  # every form says whether it built
        stage = "booting"
        for i in range(settings.warmup):
            sample = form.boot(artifact, workload, ctx)
            record["warmup"].append(sample.to_json())
            ctx.progress(f"  {cell} warm-up {i + 1}/{settings.warmup} (not counted): boot {sample.boot_s:.4f} s")
        for i in range(settings.reps):
            sample = form.boot(artifact, workload, ctx)
            record["samples"].append(sample.to_json())
            ctx.progress(f"  {cell} rep {i + 1}/{settings.reps}: boot {sample.boot_s:.4f} s"
                         + (f", memory {sample.memory_bytes / 1e6:.1f} MB" if sample.memory_bytes else ""))
        record["status"] = "ok"
    except Unavailable as exc:
        record["status"], record["reason"] = "unavailable", str(exc)
    except (BuildFailed, BootFailed, UsageError) as exc:
        record["status"], record["reason"] = "failed", str(exc)
        record["failures"].append({"stage": type(exc).__name__, "reason": str(exc)})
    except (Interrupted, KeyboardInterrupt) as exc:
        record["status"] = "failed"
        if stage == "booting":
            done = f"{len(record['samples'])} of {settings.reps} repetitions"
            record["reason"] = f"interrupted ({exc or 'SIGINT'}) after {done}; the samples measured are kept"
        else:
            record["reason"] = f"interrupted ({exc or 'SIGINT'}) while {stage}; nothing was measured"
        record["failures"].append({"stage": "interrupted", "reason": record["reason"]})
        exc.cell_record = record  # type: ignore[union-attr]
        raise
    except Exception as exc:  # an unexpected fault is still this cell's failure, not the run's
        record["status"] = "failed"
        record["reason"] = f"internal error: {type(exc).__name__}: {exc}"
        record["failures"].append({"stage": "internal", "reason": traceback.format_exc(limit=8)})
    finally:
        record["finished"] = utc_now()
        _lift_sample_details(record)  # an interrupted cell's finished samples say how they were measured too
        _summarise(record)
    return record


LIFTED_DETAILS = ("accelerator", "emulated", "vmm", "vmm_flags", "machine", "guest_memory_mib",
                  "tcg_tb_size_mib", "accelerator_reason")


def _lift_sample_details(record: dict[str, Any]) -> None:
    """Facts known only once a boot has run (the accelerator a VMM chose) go on the cell.

    When repetitions disagree, the cell keeps every value, so a mix is visible.
    """
    for key in LIFTED_DETAILS:
        if key in record["details"]:
            continue
        lifted = agreed([s["details"][key] for s in record["samples"] if key in s.get("details", {})])
        if lifted is not None:
            record["details"][key] = lifted
    record["memory_source"] = agreed([s.get("memory_source") for s in record["samples"]
                                      if s.get("memory_source")])


def agreed(values: list[Any]) -> Any:
    """The one value every sample gave, a sorted list when they differ, None when none gave one."""
    unique = {json.dumps(v, sort_keys=True) for v in values}
    if len(unique) == 1:
        return json.loads(unique.pop())
    return sorted(json.loads(v) for v in unique) if unique else None


def _summarise(record: dict[str, Any]) -> None:
    for metric in SUMMARY_METRICS:
        summary = summarize([s.get(metric) for s in record["samples"]])
        if summary is None:
            continue
        record["summary"][metric] = summary.to_json()
        # "Run about N repetitions" is advice for a finished cell; an interrupted one stopped short.
        warning = spread_warning(summary) if record["status"] == "ok" else None
        if warning:
            record["warnings"].append(f"{metric}: {warning}")
