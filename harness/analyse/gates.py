"""CI gates: declarative bands per metric checked against a run (Kata's checkmetrics shape).

A baseline TOML file holds `[[check]]` entries, each keyed by workload, form,
metric and statistic, with a band given either as `midval` with `minpercent`
and `maxpercent` (the allowed range is midval*(1-min%)..midval*(1+max%)) or as
plain `min` and/or `max`. A missing result - cell absent, not ok, or without
that metric - fails: a gate that cannot see its number must not pass.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import forms
from harness.analyse.metrics import Metric, cell_key, get
from harness.errors import UsageError

STATISTICS = ("median", "p25", "p75", "min", "max", "mean", "stdev", "n", "ci95_low", "ci95_high", "outliers")


@dataclass(frozen=True)
class Check:
    workload: str
    form: str
    metric: Metric
    statistic: str
    low: float | None
    high: float | None
    description: str = ""
    where: str = ""  # "FILE check N", for errors

    @property
    def key(self) -> str:
        return f"{self.workload}:{self.form}"

    def band(self) -> str:
        fmt = "{:.0f}" if self.metric.kind == "bytes" and self.statistic not in ("n", "outliers") else "{:.6g}"
        lo = "-inf" if self.low is None else fmt.format(self.low)
        hi = "+inf" if self.high is None else fmt.format(self.high)
        return f"[{lo}, {hi}]"


@dataclass(frozen=True)
class Outcome:
    check: Check
    value: float | None
    passed: bool
    why: str


def _number(entry: dict[str, Any], name: str, where: str) -> float | None:
    if name not in entry:
        return None
    v = entry[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise UsageError(f"{where}: {name} must be a finite number (got {v!r})")
    return float(v)


def _parse_check(entry: dict[str, Any], where: str) -> Check:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: not a table; write each check as [[check]] with key = value lines")
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(sorted(KNOWN_KEYS))}")
    for k in ("workload", "form", "metric"):
        if not isinstance(entry.get(k), str) or not entry[k]:
            raise UsageError(f"{where}: missing {k} = \"...\"; each [[check]] needs workload, form, metric")
    statistic = entry.get("statistic", "median")
    if statistic not in STATISTICS:
        raise UsageError(f"{where}: unknown statistic {statistic!r}; choose from {', '.join(STATISTICS)}")
    try:
        metric = get(entry["metric"])
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    midval = _number(entry, "midval", where)
    lo, hi = _number(entry, "min", where), _number(entry, "max", where)
    if midval is not None:
        if lo is not None or hi is not None:
            raise UsageError(f"{where}: give either midval with minpercent/maxpercent or min/max, not both")
        minp, maxp = _number(entry, "minpercent", where), _number(entry, "maxpercent", where)
        if minp is None or maxp is None:
            raise UsageError(f"{where}: midval needs minpercent and maxpercent (e.g. 20 and 20)")
        if minp < 0 or maxp < 0:
            raise UsageError(f"{where}: minpercent and maxpercent must be 0 or more (e.g. 20 and 20)")
        lo, hi = midval * (1 - minp / 100), midval * (1 + maxp / 100)
    elif lo is None and hi is None:
        raise UsageError(f"{where}: no band; add midval + minpercent + maxpercent, or min and/or max")
    if lo is not None and hi is not None and lo > hi:
        raise UsageError(f"{where}: band is empty (min {lo:g} > max {hi:g})")
    return Check(entry["workload"], entry["form"], metric, statistic, lo, hi, str(entry.get("description", "")),
                 where)


KNOWN_KEYS = {"workload", "form", "metric", "statistic", "midval", "minpercent", "maxpercent",
              "min", "max", "description"}


def load_baseline(path: Path) -> list[Check]:
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"no baseline at {path}; pass --baseline FILE.toml (e.g. builds/baselines/ci.toml)") from None
    except IsADirectoryError:
        raise UsageError(f"--baseline {path} is a folder; pass a FILE.toml (e.g. builds/baselines/ci.toml)") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML ({exc})") from None
    except OSError as exc:
        raise UsageError(f"cannot read --baseline {path} ({exc.strerror})") from None
    entries = doc.get("check")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{path} has no [[check]] entries; see builds/baselines/ci.toml for the shape")
    return [_parse_check(e, f"{path} check {i + 1}") for i, e in enumerate(entries)]


def evaluate(results: dict[str, Any], checks: list[Check]) -> list[Outcome]:
    """Each check against the run; a form neither harness nor the run knows is a typo, not a failure."""
    cells = {cell_key(c): c for c in results["cells"]}
    known_forms = list(forms.ORDER) + sorted({c["form"] for c in results["cells"]} - set(forms.ORDER))
    for ch in checks:
        if ch.form not in known_forms:
            raise UsageError(f"{ch.where or 'baseline'}: unknown form {ch.form!r}; "
                             f"choose from {', '.join(known_forms)}")
    out = []
    for ch in checks:
        cell = cells.get(ch.key)
        if cell is None:
            out.append(Outcome(ch, None, False, "missing: cell not in this run"))
            continue
        summary = ch.metric.summary(cell)
        if summary is None:
            why = f"missing: cell {cell['status']}" if cell["status"] != "ok" else f"missing: no {ch.metric.key}"
            out.append(Outcome(ch, None, False, why))
            continue
        value = getattr(summary, ch.statistic)
        if value is None:
            out.append(Outcome(ch, None, False, f"missing: {ch.statistic} needs more samples (n={summary.n})"))
            continue
        if ch.low is not None and value < ch.low:
            out.append(Outcome(ch, value, False, "below band"))
        elif ch.high is not None and value > ch.high:
            out.append(Outcome(ch, value, False, "above band"))
        else:
            out.append(Outcome(ch, value, True, ""))
    return out
