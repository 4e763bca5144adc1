"""Human units for figures: one place decides how bytes and seconds print."""

from __future__ import annotations

import math

MISSING = "n/a"


# A column's numbers share one unit, chosen from the column's largest magnitude
# and stated once in the header, so the figures line up and compare at a glance.
BYTE_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 1.0))
SECOND_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6))


def column_unit(kind: str, values: list[float]) -> tuple[str, float]:
    """(unit name, scale) for a column: the largest unit its biggest value reaches at least 1 of."""
    table = BYTE_UNITS if kind == "bytes" else SECOND_UNITS
    present = [abs(v) for v in values if v is not None]
    if not present:  # a column with no figure: the unit such figures are usually read in
        return ("MB", 1e6) if kind == "bytes" else ("s", 1.0)
    top = max(present)
    for name, scale in table:
        if top >= scale:
            return name, scale
    return table[-1]


def fmt_scaled(value: float | None, scale: float, unit: str) -> str:
    """Three significant figures or more: 1.20 stays 1.20; whole bytes stay whole."""
    if value is None:
        return MISSING
    if unit == "B":
        return f"{value:.0f}"
    v = value / scale
    if abs(v) >= 100:
        return f"{v:.1f}"
    if abs(v) >= 1 or v == 0:
        return f"{v:.2f}"
    # Below 1 in the column's unit (29 kB in a MB column): keep three significant figures.
    digits = min(6, 2 - math.floor(math.log10(abs(v))))
    return f"{v:.{digits}f}"
