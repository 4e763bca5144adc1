"""Memory sizes always carry a unit, in every form."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.units import mebibytes, parse_size


@pytest.mark.parametrize("text,expected", [
    ("64Mi", 64 * 2**20), ("64MiB", 64 * 2**20), ("64M", 64 * 2**20), ("64MB", 64 * 10**6),
    ("2Gi", 2 * 2**30), ("1.5Gi", 1536 * 2**20), ("512Ki", 512 * 1024), ("4096B", 4096),
])
def test_sizes_with_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,message", [
    ("512", "has no unit"), ("512 furlongs", "unknown unit"), ("lots", "not a size"), ("0Mi", "larger than zero"),
])
def test_sizes_without_or_with_bad_units_are_refused(text, message):
    with pytest.raises(UsageError, match=message):
        parse_size(text)


def test_mebibytes_rounds_up():
    assert mebibytes(64 * 2**20) == 64
    assert mebibytes(64 * 2**20 + 1) == 65
