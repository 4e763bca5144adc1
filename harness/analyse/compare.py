"""Compare two runs cell by cell: a change is reported only if significant and large.

As in asv: a change is "better" or "worse" only when it is statistically
significant and its ratio NEW/BASE is beyond the user's threshold; a
significant but small change is "no change", a large but noisy one "not
significant". Repeated metrics use Mann-Whitney U on the raw samples; a size
is one value, so any change beyond the threshold counts. Cells measured
differently (another accelerator, base or stand-in) are not compared unless
forced, and the output says why; nor are memory figures of different kinds
(a cgroup peak against a working set: memory_source). For every metric here lower is better.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import mannwhitneyu

from harness.analyse.metrics import COMPARED, Metric, cell_key, get
from harness.errors import UsageError

ALPHA = 0.05
# Cells that differ in any of these were measured differently: another accelerator, base
# image, kernel, guest memory size or TCG translation cache changes the figures by itself.
COMPARABLE_DETAILS = ("accelerator", "stand_in", "base", "base_image_id", "kernel_kind", "guest_memory_mib",
                      "tcg_tb_size_mib", "machine")
ENVIRONMENT_KEYS = ("machine", "cpu_model", "kernel")


def parse_threshold(text: str) -> float:
    """'10%' -> 0.10; a bare number is refused since 10 and 0.1 both look plausible."""
    t = str(text).strip()
    if not t.endswith("%"):
        raise UsageError(f"--threshold {text!r} needs a percent sign; write e.g. 10%")
    try:
        value = float(t[:-1]) / 100
    except ValueError:
        raise UsageError(f"--threshold {text!r} is not a percentage; write e.g. 10%") from None
    if not 0 <= value < 10:
        raise UsageError(f"--threshold {text!r} must be at least 0% and below 1000%")
    return value


@dataclass
class Row:
    cell: str
    metric: str
    base: float | None
    new: float | None
    ratio: float | None
    p_value: float | None
    verdict: str  # better | worse | no change | not significant | failed | missing | not compared
    why: str = ""


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def worse(self) -> list[Row]:
        """What fails a CI gate: worse, newly failed, or measured in BASE and absent from NEW."""
        return [r for r in self.rows if r.verdict in GATE_VERDICTS]


GATE_VERDICTS = {"worse": "worse", "failed": "newly failed", "missing": "missing"}


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def compare_metric(metric: Metric, base: list[float], new: list[float], threshold: float) -> tuple[float | None, float | None, str]:
    """(ratio, p-value or None, verdict) for one metric's values."""
    mb, mn = _median(base), _median(new)
    ratio = mn / mb if mb else (1.0 if mn == mb else None)
    if ratio is None:
        return None, None, "not significant"
    beyond = abs(ratio - 1) > threshold
    p: float | None = None
    if metric.repeated and (len(base) < 2 or len(new) < 2):
        return ratio, None, "not significant"  # one sample has no spread: no test can tell noise from change
    if metric.repeated:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(mannwhitneyu(base, new, alternative="two-sided").pvalue)
        significant = p < ALPHA
    else:
        significant = True  # a size is one exact value, not a sample: the threshold decides
    if not significant:
        return ratio, p, "not significant"
    if not beyond:
        return ratio, p, "no change"
    return ratio, p, "better" if ratio < 1 else "worse"


def min_p_value(n_base: int, n_new: int) -> float:
    """The smallest two-sided Mann-Whitney p any data can give with these sample counts (exact test)."""
    return 2 / math.comb(n_base + n_new, n_base)


def _differences(b: dict[str, Any], n: dict[str, Any]) -> list[str]:
    bd, nd = b.get("details") or {}, n.get("details") or {}
    return [f"{k} {bd.get(k)!s} -> {nd.get(k)!s}" for k in COMPARABLE_DETAILS if bd.get(k) != nd.get(k)]


def compare(base: dict[str, Any], new: dict[str, Any], threshold: float = 0.10, force: bool = False,
            metric_names: tuple[str, ...] = COMPARED) -> Comparison:
    metrics = [get(n) for n in metric_names]
    out = Comparison()
    too_few: set[tuple[int, int]] = set()
    bcells = {cell_key(c): c for c in base["cells"]}
    ncells = {cell_key(c): c for c in new["cells"]}
    out.only_base = [k for k in bcells if k not in ncells]
    out.only_new = [k for k in ncells if k not in bcells]
    benv, nenv = base.get("environment") or {}, new.get("environment") or {}
    for k in ENVIRONMENT_KEYS:
        if benv.get(k) != nenv.get(k):
            out.notes.append(f"environment {k} differs: {benv.get(k)} -> {nenv.get(k)}")
    for key, b in bcells.items():
        n = ncells.get(key)
        if n is None:
            if b["status"] == "ok":  # measured before, not any more: a gate must notice
                out.rows.append(Row(key, "*", None, None, None, None, "missing", "in BASE, not in NEW"))
            else:
                out.rows.append(Row(key, "*", None, None, None, None, "not compared",
                                    f"status {b['status']} in BASE, not in NEW"))
            continue
        if b["status"] != "ok" or n["status"] != "ok":
            verdict = "failed" if b["status"] == "ok" and n["status"] == "failed" else "not compared"
            why = f"status {b['status']} -> {n['status']}"
            out.rows.append(Row(key, "*", None, None, None, None, verdict, why))
            continue
        diffs = _differences(b, n)
        if diffs and not force:
            out.rows.append(Row(key, "*", None, None, None, None, "not compared",
                                "; ".join(diffs) + " (use --force to compare anyway)"))
            continue
        for m in metrics:
            bv, nv = m.values(b), m.values(n)
            if m.key == "memory_bytes" and b.get("memory_source") != n.get("memory_source") and not force:
                out.rows.append(Row(key, m.key, None, None, None, None, "not compared",
                                    f"memory_source {b.get('memory_source')} -> {n.get('memory_source')}: "
                                    "different figures (use --force to compare anyway)"))
                continue
            if not bv or not nv:
                out.rows.append(Row(key, m.key, None, None, None, None, "not compared",
                                    f"no {m.key} in {'BASE' if not bv else 'NEW'}"))
                continue
            if m.repeated and min_p_value(len(bv), len(nv)) >= ALPHA:
                too_few.add((len(bv), len(nv)))
            ratio, p, verdict = compare_metric(m, bv, nv, threshold)
            out.rows.append(Row(key, m.key, _median(bv), _median(nv), ratio, p, verdict,
                                "forced: " + "; ".join(diffs) if diffs else ""))
    for nb, nn in sorted(too_few):
        out.notes.append(f"with {nb} sample(s) in BASE and {nn} in NEW the exact Mann-Whitney test cannot "
                         f"reach p < {ALPHA} (its smallest p is {min_p_value(nb, nn):.3f}): boot and memory "
                         f"changes there stay 'not significant'; measure at least 4 repetitions on each side")
    return out
