"""Benchmark: what the harness adds to one container boot sample.

The same image is booted by a bare Docker SDK loop (create, attach, start,
wait, remove) and by the scratch form's boot(). Target: the harness adds
under 5 ms per sample, compared on the minimum of each (the least noisy
estimate of a fixed cost). Run with: pytest benchmarks/
"""

from __future__ import annotations

import secrets

import pytest

from harness import workloads
from harness.build import binary as binary_build
from harness.build.cache import Cache, default_cache_dir
from harness.forms.base import Context, Progress
from harness.forms.scratch import ScratchForm
from harness.run import engine

TARGET_OVERHEAD_S = 0.005
ROUNDS = 15
_mins: dict[str, float] = {}


@pytest.fixture(scope="module")
def prepared():
    if not engine.reachable():
        pytest.fail(engine.engine_hint())
    ctx = Context(cache=Cache(default_cache_dir()), run_id="b" + secrets.token_hex(4), timeout_s=30,
                  progress=Progress(quiet=True))
    w = workloads.load("hello")
    form = ScratchForm()
    artifact = form.build(w, binary_build.build(w, ctx.cache), ctx)
    yield ctx, w, form, artifact
    form.cleanup(ctx)


def bare_sample(client, image_id: str, label: dict[str, str]) -> None:
    c = client.containers.create(image_id, detach=True, labels=label)
    try:
        stream = c.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
        c.start()
        for _ in stream:
            pass
        c.wait()
    finally:
        c.remove(force=True)


@pytest.mark.benchmark(group="container boot sample")
def test_bare_sdk_loop(benchmark, prepared):
    ctx, _w, _form, artifact = prepared
    client = engine.client()
    benchmark.pedantic(bare_sample, args=(client, artifact.handle, ctx.label), rounds=ROUNDS, warmup_rounds=1)
    _mins["bare"] = benchmark.stats.stats.min


@pytest.mark.benchmark(group="container boot sample")
def test_harness_boot_sample(benchmark, prepared):
    ctx, w, form, artifact = prepared
    benchmark.pedantic(form.boot, args=(artifact, w, ctx), rounds=ROUNDS, warmup_rounds=1)
    _mins["harness"] = benchmark.stats.stats.min
    if "bare" in _mins:
        overhead = _mins["harness"] - _mins["bare"]
        benchmark.extra_info["overhead_ms"] = overhead * 1e3
        assert overhead < TARGET_OVERHEAD_S, f"harness adds {overhead * 1e3:.1f} ms per sample"
