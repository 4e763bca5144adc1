"""Export boot times in pytest-benchmark's JSON, so `pytest-benchmark compare` can read a run.

Each ok cell with boot samples becomes one benchmark named `boot[workload-form]`
(`-stand-in` added on a stand-in base); its `data` are the raw boot times in
seconds (warm-ups excluded). Its group names the workload and how it was run
(`hello, emulated (TCG)` or `hello, native or KVM`), so pytest-benchmark, which
sets the benchmarks of one group side by side with ratios, never puts a TCG
figure beside a native one. Quartiles and
outlier counts use this harness's definitions (stats.py), not pytest-benchmark's,
so the numbers agree with `harness report`. Memory and size ride in extra_info.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from harness.analyse.stats import percentile
from harness.render.table import is_emulated, is_stand_in

EXPORT_VERSION = "4.0.0"  # the pytest-benchmark file layout these documents follow


def _stats(data: list[float]) -> dict[str, Any]:
    xs = sorted(data)
    q1, q3 = percentile(xs, 0.25), percentile(xs, 0.75)
    iqr = q3 - q1
    mean = statistics.fmean(xs)
    stddev = statistics.stdev(xs) if len(xs) > 1 else 0.0
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_out = sum(1 for x in xs if x < low_fence or x > high_fence)
    sd_out = sum(1 for x in xs if x < mean - stddev or x > mean + stddev)
    return {
        "min": xs[0], "max": xs[-1], "mean": mean, "stddev": stddev, "rounds": len(xs),
        "median": percentile(xs, 0.5), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_out, "stddev_outliers": sd_out, "outliers": f"{sd_out};{iqr_out}",
        "ld15iqr": min(x for x in xs if x >= low_fence), "hd15iqr": max(x for x in xs if x <= high_fence),
        "ops": 1.0 / mean if mean else 0.0, "total": sum(xs), "data": list(data), "iterations": 1,
    }


def export(results: dict[str, Any]) -> dict[str, Any]:
    env = results.get("environment") or {}
    git = env.get("git") or {}
    settings = results.get("settings") or {}
    benchmarks = []
    for c in results["cells"]:
        data = [float(s["boot_s"]) for s in c.get("samples") or [] if s.get("boot_s") is not None]
        if c.get("status") != "ok" or not data:
            continue
        d = c.get("details") or {}
        mem = [s["memory_bytes"] for s in c.get("samples") or [] if s.get("memory_bytes") is not None]
        name = f"boot[{c['workload']}-{c['form']}{'-stand-in' if is_stand_in(c) else ''}]"
        group = f"{c['workload']}, {'emulated (TCG)' if is_emulated(c) else 'native or KVM'}"
        benchmarks.append({
            "group": group, "name": name, "fullname": f"harness::{name}",
            "params": {"workload": c["workload"], "form": c["form"]},
            "param": f"{c['workload']}-{c['form']}",
            "extra_info": {
                "artifact_bytes": (c.get("size") or {}).get("artifact_bytes"),
                "memory_bytes_median": statistics.median(mem) if mem else None,
                "accelerator": d.get("accelerator"), "emulated": is_emulated(c), "stand_in": is_stand_in(c),
            },
            "options": {"disable_gc": False, "timer": "time.monotonic", "min_rounds": settings.get("reps"),
                        "max_time": settings.get("timeout_s"), "min_time": 0, "warmup": (settings.get("warmup") or 0) > 0},
            "stats": _stats(data),
        })
    return {
        "machine_info": {
            "node": env.get("host"), "processor": env.get("machine"), "machine": env.get("machine"),
            "python_compiler": "", "python_implementation": "CPython",
            "python_implementation_version": (env.get("tools") or {}).get("python"),
            "python_version": (env.get("tools") or {}).get("python"), "python_build": [],
            "release": env.get("kernel"), "system": "Linux",
            "cpu": {"brand_raw": env.get("cpu_model"), "count": env.get("cpu_count")},
        },
        "commit_info": {"id": git.get("commit"), "time": results.get("created"),
                        "author_time": results.get("created"), "dirty": git.get("dirty"),
                        "project": "harness", "branch": git.get("branch")},
        "benchmarks": benchmarks,
        "datetime": results.get("created"),
        "version": EXPORT_VERSION,
    }


def render(results: dict[str, Any]) -> str:
    return json.dumps(export(results), indent=2) + "\n"
