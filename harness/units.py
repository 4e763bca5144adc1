"""Memory sizes as the user writes them: always with a unit.

A bare number is refused: kraft and QEMU have disagreed on what one means,
and decimal (MB) and binary (MiB) units differ by 5%.
"""

from __future__ import annotations

import re

from harness.errors import UsageError

_UNITS = {
    "B": 1,
    "K": 1024, "KI": 1024, "KIB": 1024, "KB": 1000,
    "M": 1024**2, "MI": 1024**2, "MIB": 1024**2, "MB": 1000**2,
    "G": 1024**3, "GI": 1024**3, "GIB": 1024**3, "GB": 1000**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")


def parse_size(text: str, what: str = "memory size") -> int:
    """Bytes from '512Mi', '512MiB', '2G', '64MB'; a bare number or unknown unit is an error.

    'M' and 'G' alone are binary (as QEMU's -m reads them); 'MB'/'GB' are decimal.
    """
    m = _SIZE_RE.match(str(text))
    if not m:
        if re.match(r"^\s*\d+(\.\d+)?\s*$", str(text)):
            example = f"{text.strip()}Mi" if float(text) > 0 else "512Mi"
            raise UsageError(f"{what} {text!r} has no unit; write it with one, e.g. {example}")
        raise UsageError(f"{what} {text!r} is not a size; write e.g. 512Mi or 2Gi")
    number, unit = float(m.group(1)), m.group(2).upper()
    if unit not in _UNITS:
        raise UsageError(f"{what} {text!r} has unknown unit {m.group(2)!r}; use Ki, Mi or Gi (binary) or KB, MB, GB")
    value = int(number * _UNITS[unit])
    if value <= 0:
        raise UsageError(f"{what} {text!r} must be larger than zero")
    return value


def mebibytes(n_bytes: int) -> int:
    """Whole MiB, rounding up, for tools that take MiB (QEMU -m, kraft -M NMi)."""
    return -(-n_bytes // 1024**2)
