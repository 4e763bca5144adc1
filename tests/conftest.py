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


BUILT_IN = {p.parent.name for p in (REPO / "builds").glob("*/workload.toml")}


@pytest.fixture(scope="session", autouse=True)
def remove_test_workload_images():
    """Images of the tests' own throw-away workloads go when the session ends.

    The built-in workloads' images are the machine's build cache and stay;
    images of workloads a test wrote into a temporary builds folder would
    otherwise pile up, one per new source.
    """
    import docker

    def test_images(client) -> dict[str, str]:
        return {i.id: i.labels.get("harness.workload", "") for i in client.images.list(filters={"label": "harness.workload"})
                if i.labels.get("harness.workload") not in BUILT_IN}

    try:
        client = docker.from_env(timeout=30)
        before = set(test_images(client))
    except Exception:  # no engine: the tests that need it fail on their own
        yield
        return
    yield
    for image_id in set(test_images(client)) - before:
        try:
            client.images.remove(image_id, force=True)
        except docker.errors.APIError:
            pass
    client.close()


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
