"""The full-VM form with real images and real QEMU guests.

The Debian base and the per-workload images live in the machine's cache
(HARNESS_CACHE), so they are built once per machine; every boot is real
(TCG on machines whose KVM cannot boot a guest, and the figures say so).
"""

from __future__ import annotations

import http.client
import io
import secrets
import time

import pytest

from harness import workloads
from harness.build import binary as binmod
from harness.build.cache import Cache
from harness.errors import BootFailed
from harness.forms import vm
from harness.forms.base import Artifact, Context, Progress
from harness.measure.readiness import free_port, http_ready, poll
from harness.run import qemu
from leaks import no_qemu_left  # noqa: F401  (fixture)
BOOT_TIMEOUT_S = 300.0  # a TCG boot takes ~30-40 s here; other work may share the two cores

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.usefixtures("no_qemu_left")]


def make_ctx(cache: Cache, timeout_s: float = BOOT_TIMEOUT_S, **options: object) -> Context:
    return Context(cache=cache, run_id="test-" + secrets.token_hex(4), timeout_s=timeout_s,
                   progress=Progress(stream=io.StringIO()), options=dict(options))


def build(cache: Cache, name: str) -> tuple[workloads.Workload, Artifact, str]:
    """Build (or fetch) the image; returns the progress text too."""
    ctx = make_ctx(cache)
    workload = workloads.load(name)
    form = vm.VmForm()
    form.check(ctx)  # missing tools fail the test here, never skip it
    artifact = form.build(workload, binmod.build(workload, cache), ctx)
    return workload, artifact, ctx.progress.stream.getvalue()


@pytest.fixture(scope="module")
def hello(harness_cache: Cache) -> tuple[workloads.Workload, Artifact]:
    workload, artifact, _ = build(harness_cache, "hello")
    return workload, artifact


def test_check_passes_with_the_tools_installed(harness_cache: Cache) -> None:
    vm.VmForm().check(make_ctx(harness_cache))


def test_apt_sources_come_from_the_host() -> None:
    sources = vm.apt_sources()
    assert sources and all(s.startswith("deb ") and " bookworm" in s for s in sources)


def test_hello_builds_once_then_is_a_cache_hit(hello: tuple[workloads.Workload, Artifact],
                                               harness_cache: Cache) -> None:
    _, first = hello
    size = first.size
    assert size["artifact_bytes"] == size["qcow2_compressed_bytes"] > 50_000_000
    assert size["raw_apparent_bytes"] >= size["raw_allocated_bytes"] > size["artifact_bytes"]
    assert size["qcow2_bytes"] > size["qcow2_compressed_bytes"]
    assert size["kernel_bytes"] > 1_000_000 and size["initrd_bytes"] > 1_000_000
    d = first.details
    assert d["boot_path"].startswith("direct kernel boot") and "root=/dev/vda" in d["kernel_cmdline"]
    assert d["binary_path"] == "/usr/local/bin/hello"
    assert d["accelerator"] in ("kvm", "tcg") and d["vmm"].startswith("QEMU")
    assert d["emulated"] is (d["accelerator"] == "tcg")
    assert "-m" in d["vmm_flags"]

    t0 = time.monotonic()
    _, again, progress = build(harness_cache, "hello")
    assert time.monotonic() - t0 < 10
    assert again.cached and again.details["cached"]
    assert again.details["base_cached"] is None  # the base is not even looked up
    assert "vm image cached, no build" in progress
    assert "mmdebstrap" not in progress and "mkfs" not in progress
    assert again.size == first.size


def test_hello_boots_to_readiness_with_memory_figures(hello: tuple[workloads.Workload, Artifact],
                                                      harness_cache: Cache) -> None:
    workload, artifact = hello
    sample = vm.VmForm().boot(artifact, workload, make_ctx(harness_cache))
    assert 0 < sample.boot_s < BOOT_TIMEOUT_S
    # Phases are consecutive slices of spawn -> readiness.
    assert set(sample.phases) == {"first_output_s", "kernel_s", "initramfs_s", "userspace_s"}
    assert sum(sample.phases.values()) == pytest.approx(sample.boot_s, abs=1e-6)
    m = sample.memory
    assert m["guest_configured_bytes"] == 512 * 1024**2
    assert m["vmm_pss_bytes"] and m["vmm_rss_bytes"] and m["vmm_pss_bytes"] <= m["vmm_rss_bytes"]
    assert sample.memory_bytes == m["vmm_pss_bytes"]
    assert sample.memory_source == "vmm_pss_bytes"
    assert m["guest_total_bytes"] and 0 < m["guest_used_bytes"] < m["guest_total_bytes"] <= 512 * 1024**2
    d = sample.details
    assert d["accelerator"] in ("kvm", "tcg") and d["emulated"] is (d["accelerator"] == "tcg")
    assert d["kvm_query"]["enabled"] is (d["accelerator"] == "kvm")
    assert d["vmm"].startswith("QEMU") and d["vmm_flags"]
    assert d["boot_start"] == "QEMU spawn" and "console" in d["boot_end"]


def test_guest_memory_size_barely_changes_host_memory(hello: tuple[workloads.Workload, Artifact],
                                                      harness_cache: Cache) -> None:
    """Case 08: -m 512 and -m 2048 cost about the same host memory; both are reported beside -m."""
    workload, artifact = hello
    form = vm.VmForm()
    small = form.boot(artifact, workload, make_ctx(harness_cache, memory=512 * 1024**2))
    large = form.boot(artifact, workload, make_ctx(harness_cache, memory=2048 * 1024**2))
    assert small.memory["guest_configured_bytes"] == 512 * 1024**2
    assert large.memory["guest_configured_bytes"] == 2048 * 1024**2
    assert "2048M" in large.details["vmm_flags"]
    a, b = small.memory["vmm_pss_bytes"], large.memory["vmm_pss_bytes"]
    assert a and b
    assert abs(a - b) / min(a, b) < 0.15, f"PSS {a / 2**20:.0f} MiB vs {b / 2**20:.0f} MiB"
    assert b < 2048 * 1024**2 / 2  # nowhere near the configured size: no preallocation


def test_panicking_guest_is_boot_failed_with_console_tail(hello: tuple[workloads.Workload, Artifact],
                                                          harness_cache: Cache,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 06: QEMU exits 0 after the panic; the cell still fails, with no boot time."""
    workload, artifact = hello
    monkeypatch.setattr(vm, "KERNEL_APPEND", "root=/dev/nonexistent rdinit=/nonexistent console=ttyS0 panic=-1")
    t0 = time.monotonic()
    with pytest.raises(BootFailed) as info:
        vm.VmForm().boot(artifact, workload, make_ctx(harness_cache))
    assert time.monotonic() - t0 < 120, "a panic must end the boot when QEMU exits, not at the timeout"
    message = str(info.value)
    assert "QEMU exited (status 0) before readiness" in message
    assert "Kernel panic" in message.splitlines()[0], "the first line (the one tables show) names the cause"


def test_boot_that_misses_the_timeout_fails_and_leaves_nothing(hello: tuple[workloads.Workload, Artifact],
                                                               harness_cache: Cache) -> None:
    workload, artifact = hello
    ctx = make_ctx(harness_cache, timeout_s=5)
    with pytest.raises(BootFailed, match=r"no readiness \(console\) within 5 s \(QEMU still running\)"):
        vm.VmForm().boot(artifact, workload, ctx)
    vm.VmForm().cleanup(ctx)


def test_http_answers_200_through_the_forward(harness_cache: Cache) -> None:
    workload, artifact, _ = build(harness_cache, "http")
    assert artifact.details["binary_path"] == "/usr/local/bin/http"
    form = vm.VmForm()
    ctx = make_ctx(harness_cache)
    sample = form.boot(artifact, workload, ctx)
    assert sample.boot_s > 0 and "http" in sample.details["boot_end"]
    assert sample.memory["guest_used_bytes"]

    # And independently of the form's probe: fetch the page through a forward.
    port = free_port()
    spec = form._spec(artifact.handle, workload, ctx, qemu.probe_accelerator(harness_cache), port)
    assert f"hostfwd=tcp:127.0.0.1:{port}-:8080" in " ".join(qemu.build_argv(spec))
    with qemu.QemuProcess(spec, tag=ctx.run_id) as q:
        assert poll(lambda: http_ready("127.0.0.1", port), time.monotonic() + BOOT_TIMEOUT_S,
                    still_alive=q.alive, interval_s=0.2) is not None, q.tail()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
    assert resp.status == 200 and len(body) == 612


def test_tcp_readiness_is_unavailable_in_the_full_vm(harness_cache: Cache, tmp_path) -> None:
    """No honest tcp boot time through QEMU's user network from the VM's start: said, not measured."""
    from harness.errors import Unavailable

    d = tmp_path / "tcpsvc"
    d.mkdir()
    (d / "tcpsvc.c").write_text("int main(void){return 0;}\n")
    (d / "workload.toml").write_text('sources = ["tcpsvc.c"]\nkind = "service"\nport = 9090\n'
                                     '[readiness]\ntype = "tcp"\n')
    w = workloads.load("tcpsvc", tmp_path)
    ctx = Context(cache=harness_cache, run_id="tcpvm")
    with pytest.raises(Unavailable, match="tcp readiness, which the full VM cannot time.*use http readiness"):
        vm.VmForm().build(w, binmod.build(w, harness_cache), ctx)
