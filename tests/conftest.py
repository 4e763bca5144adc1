"""Shared fixtures. Real components: the Docker engine and QEMU must be there.

scripts/setup.sh installs and starts everything; a missing tool is a test
failure here, never a skip.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from harness.build.cache import Cache, default_cache_dir
from harness.forms.base import Context, Progress

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def harness_cache() -> Cache:
    """The machine's build cache, so images and kernels build once per machine."""
    return Cache(default_cache_dir())


@pytest.fixture(scope="session")
def docker_client():
    from harness.run import engine

    if not engine.reachable():
        pytest.fail(f"{engine.engine_hint()} — the tests need the real engine (scripts/setup.sh starts it)")
    return engine.client()


@pytest.fixture
def ctx(harness_cache: Cache) -> Context:
    """A context with its own run id; forms clean up after it."""
    return Context(cache=harness_cache, run_id="t" + secrets.token_hex(4), timeout_s=60,
                   allow_standins=True, progress=Progress(quiet=True))
