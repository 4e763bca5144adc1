"""The container forms on the real engine: cases 02, 03, 04 and 05."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness import workloads
from harness.build import binary as binary_build
from harness.build import elf, image
from harness.errors import UsageError
from harness.forms.alpine import AlpineForm
from harness.forms.scratch import ScratchForm

pytestmark = pytest.mark.docker


def make_workload(tmp_path: Path, name: str, source: str, toml: str, extra: dict[str, str] | None = None):
    d = tmp_path / name
    d.mkdir(parents=True)
    (d / f"{name}.c").write_text(source)
    (d / "workload.toml").write_text(toml)
    for fname, text in (extra or {}).items():
        (d / fname).write_text(text)
    return workloads.load(name, tmp_path)


BOTH_SRC = r'''
#include <stdio.h>
int main(void) {
    fprintf(stdout, "out-line ready\n"); fflush(stdout);
    fprintf(stderr, "err-line\n"); fflush(stderr);
    return 0;
}
'''
BOTH_TOML = 'sources=["both.c"]\n[readiness]\ntype="console"\nline="out-line ready"\n'


def test_scratch_hello_boots_with_phases_that_add_up(docker_client, ctx):
    """create, attach and boot add up to the wall time; teardown is outside it."""
    w = workloads.load("hello")
    b = binary_build.build(w, ctx.cache)
    form = ScratchForm()
    try:
        art = form.build(w, b, ctx)
        assert art.size["artifact_bytes"] < 100_000
        t0 = time.monotonic()
        sample = form.boot(art, w, ctx)
        outer = time.monotonic() - t0
    finally:
        form.cleanup(ctx)
    p = sample.phases
    assert sample.boot_s > 0 and p["create_s"] > 0 and p["attach_s"] >= 0
    assert p["create_s"] + p["attach_s"] + sample.boot_s == pytest.approx(p["wall_s"], rel=0.03)
    assert p["wall_s"] < outer  # removal happened after readiness and is not in the wall time
    assert 0 < p["first_output_s"] <= sample.boot_s + 1e-3
    assert sample.memory["peak_bytes"] and sample.memory_bytes == sample.memory["peak_bytes"]
    assert "harness-ready hello" in "\n".join(sample.details["console_tail"])


def test_fast_exiting_container_100_runs(docker_client, ctx, tmp_path):
    """create, attach, then start: 100 runs, every line captured, none hangs."""
    w = make_workload(tmp_path, "both", BOTH_SRC, BOTH_TOML)
    b = binary_build.build(w, ctx.cache)
    form = ScratchForm()
    ctx.timeout_s = 20
    try:
        art = form.build(w, b, ctx)
        for _ in range(100):
            t0 = time.monotonic()
            sample = form.boot(art, w, ctx)
            assert time.monotonic() - t0 < ctx.timeout_s
            tail = sample.details["console_tail"]
            assert "out-line ready" in tail and "[stderr] err-line" in tail
    finally:
        form.cleanup(ctx)
    assert not docker_client.containers.list(all=True, filters={"label": f"harness.run={ctx.run_id}"})


def test_dynamic_binary_refused_before_build_naming_loader(docker_client, ctx, tmp_path):
    """a dynamically linked binary is refused for scratch, naming PT_INTERP."""
    src = '#include <stdio.h>\nint main(void){puts("dyn-ready");return 0;}\n'
    toml = 'sources=["dyn.c"]\nlink="dynamic"\n[readiness]\ntype="console"\nline="dyn-ready"\n'
    w = make_workload(tmp_path, "dyn", src, toml)
    b = binary_build.build(w, ctx.cache)
    assert b.info.interpreter and b.info.linkage == "dynamic"
    with pytest.raises(UsageError) as err:
        ScratchForm().build(w, b, ctx)
    assert b.info.interpreter in str(err.value) and "statically" in str(err.value)
    assert image.exists(docker_client, "harness/dyn-scratch") is None
    # The same source linked statically runs.
    static = replace(w, link="static-pie")
    sb = binary_build.build(static, ctx.cache)
    form = ScratchForm()
    try:
        sample = form.boot(form.build(static, sb, ctx), static, ctx)
        assert sample.boot_s > 0
    finally:
        form.cleanup(ctx)


def test_shell_form_command_refused(ctx, tmp_path):
    """CMD in shell form needs /bin/sh, which scratch lacks."""
    recipe = "FROM scratch\nCOPY workload /workload\nCMD /workload --serve\n"
    w = make_workload(tmp_path, "shelly", BOTH_SRC.replace("both", "shelly"),
                      BOTH_TOML.replace("both.c", "shelly.c"), {"scratch.Dockerfile": recipe})
    b = binary_build.build(w, ctx.cache)
    with pytest.raises(UsageError, match=r"scratch.Dockerfile:3: shell-form CMD"):
        ScratchForm().build(w, b, ctx)


def test_foreign_architecture_refused(ctx, tmp_path):
    """an ELF for another machine would fail with 'exec format error'."""
    w = workloads.load("hello")
    b = binary_build.build(w, ctx.cache)
    foreign = tmp_path / "hello"
    shutil.copy2(b.path, foreign)
    with open(foreign, "r+b") as fh:  # e_machine at offset 18: EM_AARCH64 = 183
        fh.seek(18)
        fh.write((183).to_bytes(2, "little"))
    info = elf.inspect(foreign)
    assert info.machine == "EM_AARCH64"
    fb = replace(b, path=foreign, info=info)
    with pytest.raises(UsageError, match="built for EM_AARCH64 but this host is EM_X86_64"):
        ScratchForm().build(w, fb, ctx)


def test_image_sizes_have_both_meanings_and_dedupe(docker_client, ctx):
    """unpacked vs compressed, shared layers counted once, Size without VirtualSize."""
    form = AlpineForm()
    hello, http = workloads.load("hello"), workloads.load("http")
    a1 = form.build(hello, binary_build.build(hello, ctx.cache), ctx)
    a2 = form.build(http, binary_build.build(http, ctx.cache), ctx)
    s1 = image.measure(docker_client, a1.handle, ctx.cache)
    s2 = image.measure(docker_client, a2.handle, ctx.cache)
    assert 0 < s1.compressed_bytes < s1.unpacked_bytes
    assert a1.size["compressed_bytes"] < a1.size["image_bytes"]
    # Two tags of one image: the total is one image.
    assert image.shipped_total([s1, s1]) == s1.compressed_bytes
    # Two images on one base: the base layer counts once.
    shared = {layer.diff_id for layer in s1.layers} & {layer.diff_id for layer in s2.layers}
    assert shared
    base = sum(layer.compressed_bytes for layer in s1.layers if layer.diff_id in shared)
    assert image.shipped_total([s1, s2]) == s1.compressed_bytes + s2.compressed_bytes - base
    assert image.unpacked_total([s1, s2]) < s1.unpacked_bytes + s2.unpacked_bytes
    # Engines without VirtualSize: Size alone gives the size.
    assert image.engine_size({"Size": 1234}) == 1234
    assert image.engine_size({"VirtualSize": 99, "Size": 1234}) == 1234


def test_alpine_without_base_or_stand_ins_is_unavailable_with_fix(docker_client, ctx):
    from harness.errors import Unavailable

    ctx.allow_standins = False
    ctx.options = {"alpine_base": "alpine:0.0-not-here"}
    with pytest.raises(Unavailable, match=r"harness bases import alpine:0.0-not-here .*--allow-stand-ins"):
        AlpineForm().base(ctx)


def test_http_in_container_ready_by_http_200(docker_client, ctx):
    w = workloads.load("http")
    form = ScratchForm()
    try:
        sample = form.boot(form.build(w, binary_build.build(w, ctx.cache), ctx), w, ctx)
    finally:
        form.cleanup(ctx)
    assert sample.boot_s > 0
    assert sample.memory["working_set_bytes"] and sample.memory_bytes == sample.memory["working_set_bytes"]
    assert sample.details["cache_subtracted"] is True


def test_a_failed_pull_says_why_in_the_engines_own_words(docker_client, ctx):
    """No registry here: the reason is the engine's explanation, whole, not an HTTP wrapper cut short."""
    from harness.errors import Unavailable

    ctx.allow_standins = False
    ctx.options = {"alpine_base": "alpine:0.0-not-here"}
    with pytest.raises(Unavailable) as info:
        AlpineForm().base(ctx)
    reason = str(info.value)
    assert "pull failed: " in reason and "Server Error for http+docker" not in reason, reason


LATE_LISTENER_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
    sleep(2); /* up, but not listening yet: Docker's proxy still accepts on the host port */
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9090), .sin_addr.s_addr = INADDR_ANY};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) return 1;
    puts("listening"); fflush(stdout);
    for (;;) { int c = accept(s, 0, 0); if (c >= 0) { sleep(1); close(c); } }
}
"""


def test_tcp_readiness_waits_for_the_workload_not_the_engines_proxy(docker_client, ctx, tmp_path):
    """The engine's port proxy accepts at once; ready is when the workload itself listens (2 s in)."""
    d = tmp_path / "late"
    d.mkdir()
    (d / "late.c").write_text(LATE_LISTENER_C)
    (d / "workload.toml").write_text('description = "listens 2 s after start"\nsources = ["late.c"]\n'
                                     'kind = "service"\nport = 9090\n\n[readiness]\ntype = "tcp"\n')
    w = workloads.load("late", tmp_path)
    form = ScratchForm()
    try:
        sample = form.boot(form.build(w, binary_build.build(w, ctx.cache), ctx), w, ctx)
    finally:
        form.cleanup(ctx)
    assert 2.0 <= sample.boot_s < 2.0 + 3.0, sample.boot_s
