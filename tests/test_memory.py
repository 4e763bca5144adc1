"""A container's memory is its working set, whatever the stats layout."""

from __future__ import annotations

import pytest

from harness.measure.memory import process_memory, working_set


def test_cgroup_v2_shape():
    ws = working_set({"usage": 300000000, "stats": {"inactive_file": 250000000}})
    assert ws.bytes == 50000000 and ws.cache_subtracted


def test_cgroup_v1_shape():
    ws = working_set({"usage": 300000000, "stats": {"total_inactive_file": 250000000}})
    assert ws.bytes == 50000000 and ws.cache_subtracted


def test_no_stats_key_gives_usage_and_says_so():
    ws = working_set({"usage": 300000000})
    assert ws.bytes == 300000000 and not ws.cache_subtracted
    assert "could not be subtracted" in ws.note


@pytest.mark.parametrize("stats", [None, {}, {"usage": None}, {"stats": {"inactive_file": 5}}, "garbage"])
def test_odd_shapes_never_raise(stats):
    ws = working_set(stats)
    assert ws.bytes is None and not ws.cache_subtracted and ws.note


def test_process_memory_of_this_process():
    import os

    mem = process_memory(os.getpid())
    assert mem.rss_bytes and mem.rss_bytes > 1_000_000
    assert mem.pss_bytes and 0 < mem.pss_bytes <= mem.rss_bytes
    gone = process_memory(2**22 + 12345)
    assert gone.rss_bytes is None and gone.pss_bytes is None
