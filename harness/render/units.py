"""Human units for figures: one place decides how bytes and seconds print."""

from __future__ import annotations

MISSING = "n/a"


def fmt_bytes(n: float | None) -> str:
    """Decimal units (kB, MB, GB) as the papers report image sizes."""
    if n is None:
        return MISSING
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return MISSING
    if abs(s) >= 1:
        return f"{s:.2f} s"
    if abs(s) >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"
