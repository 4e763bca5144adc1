"""The unikraft form: availability, kraft command lines, memory units, ps parsing, boots.

kraft cannot exist on these machines (no kraftkit package, and kraft needs the
network to fetch Unikraft), so every test that drives kraft puts the fake at
tests/fakes/kraft first on PATH: it stands at that boundary only. Everything
else is real: the workload binary is compiled with musl-gcc, the cache is
real, and the fake's "VMM" is a real process whose PSS/RSS are measured.
A missing tool other than kraft makes these tests fail, never skip.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from harness.build import binary as binary_build
from harness.build.cache import Cache
from harness.errors import BootFailed, BuildFailed, Unavailable, UsageError
from harness.forms import get
from harness.forms.base import Context, Progress
from harness.forms.unikraft import (
    KraftOutputError,
    UnikraftForm,
    accelerator,
    instance_prefix,
    memory_flag,
    parse_ps,
    run_argv,
)
from harness.workloads import load

FAKES = Path(__file__).resolve().parent / "fakes"
MiB = 1024**2


@pytest.fixture
def fake_kraft(tmp_path, monkeypatch) -> Path:
    """The fake kraft first on PATH; returns the file its argv lines go to."""
    log = tmp_path / "kraft-argv.jsonl"
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KRAFT_LOG", str(log))
    monkeypatch.setenv("FAKE_KRAFT_STATE", str(tmp_path / "kraft-state"))
    monkeypatch.setenv("FAKE_KRAFT_LIFETIME", "20")
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def make_ctx(tmp_path: Path, **options) -> Context:
    return Context(cache=Cache(tmp_path / "cache"), run_id="test-xyz", timeout_s=10.0,
                   progress=Progress(quiet=True), options=options)


def built(tmp_path: Path, workload_name: str = "hello"):
    """A real static-pie binary, the form and a Context."""
    ctx = make_ctx(tmp_path)
    workload = load(workload_name)
    binary = binary_build.build(workload, ctx.cache)
    return UnikraftForm(), workload, binary, ctx


def live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- availability --------------------------------------------------------------


def test_unavailable_without_kraft_names_kraft(tmp_path, monkeypatch):
    """The real behaviour on these machines: no kraft on PATH."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(Unavailable) as err:
        UnikraftForm().check(make_ctx(tmp_path))
    reason = str(err.value)
    assert "kraft" in reason and "kraftkit" in reason and "install" in reason
    assert "\n" not in reason


def test_registry_finds_the_form():
    form = get("unikraft")
    assert isinstance(form, UnikraftForm) and form.family == "unikernel"


def test_unavailable_when_kraft_version_fails(tmp_path, fake_kraft, monkeypatch):
    """kraft cannot exist here; the fake's `kraft version` is told to fail."""
    monkeypatch.setenv("FAKE_KRAFT_VERSION_FAIL", "1")
    with pytest.raises(Unavailable, match="kraft version"):
        UnikraftForm().check(make_ctx(tmp_path))


# -- memory units ------------------------------------------------------


@pytest.mark.parametrize(
    "n_bytes, text, rounded",
    [(64 * MiB, "64Mi", False), (1536 * MiB, "1536Mi", False), (3 * 1024**3 // 2, "1536Mi", False),
     (64 * MiB + 1, "65Mi", True), (1, "1Mi", True), (10**9, "954Mi", True)],
)
def test_memory_flag_always_has_a_binary_unit(n_bytes, text, rounded):
    flag = memory_flag(n_bytes)
    assert flag.text == text
    assert flag.rounded_up is rounded
    assert flag.passed_bytes >= n_bytes and flag.passed_bytes % MiB == 0
    assert flag.requested_bytes == n_bytes


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, None, "512", "64XB"])
def test_memory_flag_refuses_what_is_not_a_size(bad):
    with pytest.raises(UsageError):
        memory_flag(bad)


def test_memory_flag_reads_a_size_with_unit():
    assert memory_flag("1.5Gi").text == "1536Mi"


# -- command lines -----------------------------------------------------------------


def test_run_argv_exact(tmp_path):
    argv = run_argv("harness-test-xyz-http-1ab", memory_flag(64 * MiB), tmp_path / "initramfs-x86_64.cpio",
                    tmp_path, [(41234, 8080)])
    assert argv == [
        "run", "--detach", "--name", "harness-test-xyz-http-1ab", "--plat", "qemu", "--arch", "x86_64",
        "-M", "64Mi", "-p", "41234:8080", "--rootfs", str(tmp_path / "initramfs-x86_64.cpio"), str(tmp_path),
    ]


def test_instance_prefix_carries_the_run_id():
    assert instance_prefix("test-xyz") == "harness-test-xyz-"
    assert instance_prefix("2026-12-03T10:00 Run") == "harness-2026-12-03t10-00-run-"


# -- kraft ps JSON -------------------------------------------------------------------

PS_LONG = json.dumps([
    {"machine id": "0c4f", "name": "harness-test-xyz-hello-1ab", "kernel": "oci://unikraft.org/base:latest",
     "args": "/hello", "created": "2 seconds ago", "status": "running", "mem": "64MiB", "ports": "",
     "ip": "", "pid": "4242", "plat": "qemu", "arch": "x86_64"},
    {"machine id": "9a1e", "name": "other", "kernel": "oci://x", "args": "", "created": "1 hour ago",
     "status": "exited", "mem": "64MiB", "ports": "", "ip": "", "pid": "0", "plat": "qemu", "arch": "x86_64"},
])


def test_parse_ps_reads_kraft_long_json():
    first, second = parse_ps(PS_LONG)
    assert (first.name, first.status, first.pid, first.plat) == ("harness-test-xyz-hello-1ab", "running", 4242, "qemu")
    assert second.pid is None  # kraft prints 0 for a VMM that is gone


def test_parse_ps_null_is_no_machines():
    assert parse_ps("null") == []
    assert parse_ps("") == []


def test_parse_ps_missing_pid_is_a_clear_error():
    short = json.dumps([{"name": "a", "kernel": "k", "args": "", "created": "", "status": "running",
                         "mem": "64MiB", "ports": "", "plat": "qemu/x86_64"}])
    with pytest.raises(KraftOutputError, match="pid") as err:
        parse_ps(short)
    assert isinstance(err.value, BootFailed)
    assert "--long" in str(err.value)


@pytest.mark.parametrize("text", ["NAME  KERNEL\nx  y", "{\"name\": \"a\"}", "[1, 2]",
                                  json.dumps([{"name": "a", "status": "running", "pid": "abc"}])])
def test_parse_ps_garbage_is_a_clear_error(text):
    with pytest.raises(KraftOutputError):
        parse_ps(text)


def test_accelerator_from_vmm_args_or_kraft_words():
    assert accelerator("", ["qemu-system-x86_64", "-accel", "kvm"]) == ("kvm", False)
    assert accelerator("", ["qemu-system-x86_64", "-enable-kvm"]) == ("kvm", False)
    assert accelerator("", ["qemu-system-x86_64", "-machine", "pc,accel=tcg"]) == ("tcg", True)
    assert accelerator("W using hardware emulation\n", None) == ("tcg", True)
    assert accelerator("i using arch=x86_64 plat=qemu\n", ["sleep", "30"]) == ("unknown", None)


# -- build ---------------------------------------------------------------------------


def test_build_stages_the_same_binary_and_sizes_what_ships(tmp_path, fake_kraft):
    """kraft cannot exist here; the fake builds the initramfs and pulls a stand-in kernel."""
    form, workload, binary, ctx = built(tmp_path)
    artifact = form.build(workload, binary, ctx)
    project = artifact.handle.project
    staged = project / "rootfs" / "hello"
    assert binary_build.sha256_file(staged) == binary.sha256
    cpio = project / ".unikraft" / "build" / "initramfs-x86_64.cpio"
    kernel = project / "runtime" / "unikraft" / "bin" / "kernel"
    assert artifact.size["rootfs_bytes"] == cpio.stat().st_size > binary.size_bytes
    assert artifact.size["kernel_bytes"] == kernel.stat().st_size
    assert artifact.size["artifact_bytes"] == artifact.size["kernel_bytes"] + artifact.size["rootfs_bytes"]
    d = artifact.details
    assert d["kraft_version"].startswith("kraft ")
    assert d["kraftfile"].endswith("builds/unikraft/hello/Kraftfile")
    assert len(d["kraftfile_sha256"]) == 64
    assert d["platform"] == "qemu/x86_64"
    assert d["runtime"] == "unikraft.org/base:latest"
    assert d["kernel_source"] == "runtime package"
    argvs = calls(fake_kraft)
    build_calls = [a for a in argvs if a[0] == "build"]
    assert len(build_calls) == 1 and build_calls[0][:5] == ["build", "--plat", "qemu", "--arch", "x86_64"]
    assert ["pkg", "pull", "unikraft.org/base:latest", "--plat", "qemu", "--arch", "x86_64"] == \
        [a for a in argvs if a[0] == "pkg"][0][:7]
    again = form.build(workload, binary, ctx)
    assert again.cached and again.size == artifact.size
    assert len([a for a in calls(fake_kraft) if a[0] == "build"]) == 1


def test_build_failure_carries_the_log_tail(tmp_path, fake_kraft, monkeypatch):
    """kraft cannot exist here; the fake's build is told to fail."""
    monkeypatch.setenv("FAKE_KRAFT_BUILD_FAIL", "1")
    form, workload, binary, ctx = built(tmp_path)
    with pytest.raises(BuildFailed, match="fake failure requested"):
        form.build(workload, binary, ctx)
    assert not any(p.name[0] != "." for p in (ctx.cache.root / "unikraft").iterdir())


def test_build_refuses_a_kraftfile_that_runs_another_binary(tmp_path, fake_kraft, monkeypatch):
    """kraft cannot exist here; the check happens before kraft is called."""
    builds = tmp_path / "builds"
    for name in ("hello", "common"):
        src = Path(load("hello").directory.parent / name)
        (builds / name).mkdir(parents=True)
        for f in src.iterdir():
            (builds / name / f.name).write_bytes(f.read_bytes())
    (builds / "unikraft" / "hello").mkdir(parents=True)
    (builds / "unikraft" / "hello" / "Kraftfile").write_text(
        'spec: v0.6\nruntime: unikraft.org/base:latest\nrootfs: ./rootfs\ncmd: ["/other"]\n')
    workload = load("hello", builds)
    ctx = make_ctx(tmp_path)
    binary = binary_build.build(workload, ctx.cache)
    with pytest.raises(UsageError, match="cmd"):
        UnikraftForm().build(workload, binary, ctx)
    assert calls(fake_kraft) == []


# -- boot ------------------------------------------------------------------------------


def test_boot_console_measures_a_real_vmm_process_and_removes_it(tmp_path, fake_kraft, monkeypatch):
    """kraft cannot exist here; the fake starts a real child that prints the readiness line."""
    monkeypatch.setenv("FAKE_KRAFT_CONSOLE", "harness-ready hello")
    monkeypatch.setenv("FAKE_KRAFT_READY_DELAY", "0.4")
    form, workload, binary, ctx = built(tmp_path)
    artifact = form.build(workload, binary, ctx)
    sample = form.boot(artifact, workload, ctx)

    run = [a for a in calls(fake_kraft) if a[0] == "run"][0]
    name = run[run.index("--name") + 1]
    assert name.startswith("harness-test-xyz-hello-")
    assert run[:9] == ["run", "--detach", "--name", name, "--plat", "qemu", "--arch", "x86_64", "-M"]
    assert run[run.index("-M") + 1] == "64Mi"
    assert run[run.index("--rootfs") + 1].endswith(".unikraft/build/initramfs-x86_64.cpio")
    assert "-p" not in run

    assert sample.boot_s > 0
    assert sample.phases["kraft_run_s"] > 0
    assert sample.boot_s > sample.phases["kraft_run_s"]  # readiness came after kraft run returned
    assert sample.phases["ready_after_run_s"] == pytest.approx(sample.boot_s - sample.phases["kraft_run_s"])
    pid = sample.details["vmm_pid"]
    assert isinstance(pid, int) and pid > 0
    assert sample.memory["vmm_rss_bytes"] > 1024 * 1024
    assert sample.memory["vmm_pss_bytes"] is None or sample.memory["vmm_pss_bytes"] > 0
    assert sample.memory_bytes in (sample.memory["vmm_pss_bytes"], sample.memory["vmm_rss_bytes"])
    assert sample.memory["guest_configured_bytes"] == 64 * MiB
    assert sample.details["memory_flag"] == "64Mi"
    assert sample.details["accelerator"] == "tcg" and sample.details["emulated"] is True

    assert ["rm", name] in calls(fake_kraft)
    time.sleep(0.1)
    assert not live(pid)


def test_boot_passes_the_users_memory_with_its_unit(tmp_path, fake_kraft, monkeypatch):
    """kraft cannot exist here; the fake checks -M as kraft does (a quantity >= 1Mi)."""
    monkeypatch.setenv("FAKE_KRAFT_CONSOLE", "harness-ready hello")
    form, workload, binary, ctx = built(tmp_path)
    artifact = form.build(workload, binary, ctx)
    ctx.options["memory"] = 3 * 1024**3 // 2
    sample = form.boot(artifact, workload, ctx)
    run = [a for a in calls(fake_kraft) if a[0] == "run"][0]
    assert run[run.index("-M") + 1] == "1536Mi"
    assert sample.details["memory_flag"] == "1536Mi" and sample.details["memory_rounded_up"] is False

    ctx.options["memory"] = 100 * MiB + 7
    sample = form.boot(artifact, workload, ctx)
    assert sample.details["memory_flag"] == "101Mi"
    assert sample.details["memory_rounded_up"] is True
    assert sample.details["memory_requested_bytes"] == 100 * MiB + 7


def test_boot_http_polls_the_published_port(tmp_path, fake_kraft):
    """kraft cannot exist here; the fake's child serves HTTP 200 on the published host port."""
    form, workload, binary, ctx = built(tmp_path, "http")
    artifact = form.build(workload, binary, ctx)
    sample = form.boot(artifact, workload, ctx)
    run = [a for a in calls(fake_kraft) if a[0] == "run"][0]
    host, guest = run[run.index("-p") + 1].split(":")
    assert guest == "8080" and 0 < int(host) < 65536
    assert sample.boot_s > 0 and sample.details["boot_end"].startswith("http")
    assert ["rm", sample.details["instance"]] in calls(fake_kraft)


def test_boot_timeout_fails_and_still_removes(tmp_path, fake_kraft, monkeypatch):
    """kraft cannot exist here; the fake's guest never prints its readiness line."""
    monkeypatch.setenv("FAKE_KRAFT_NEVER_READY", "1")
    form, workload, binary, ctx = built(tmp_path)
    artifact = form.build(workload, binary, ctx)
    ctx.timeout_s = 1.5
    with pytest.raises(BootFailed, match="no readiness"):
        form.boot(artifact, workload, ctx)
    run = [a for a in calls(fake_kraft) if a[0] == "run"][0]
    name = run[run.index("--name") + 1]
    assert ["rm", name] in calls(fake_kraft)
    state = Path(os.environ["FAKE_KRAFT_STATE"]) / "machines"
    assert not (state / f"{name}.json").exists()


def test_boot_with_unreadable_ps_is_a_clear_failure_and_still_removes(tmp_path, fake_kraft, monkeypatch):
    """kraft cannot exist here; the fake's ps leaves out the pid column."""
    monkeypatch.setenv("FAKE_KRAFT_CONSOLE", "harness-ready hello")
    monkeypatch.setenv("FAKE_KRAFT_PS_DROP", "pid")
    form, workload, binary, ctx = built(tmp_path)
    artifact = form.build(workload, binary, ctx)
    with pytest.raises(KraftOutputError, match="pid"):
        form.boot(artifact, workload, ctx)
    assert any(a[0] == "rm" for a in calls(fake_kraft))


def test_boot_fails_when_kraft_run_fails(tmp_path, fake_kraft, monkeypatch):
    """kraft cannot exist here; the fake refuses a bare -M 512 (512 bytes) as kraft does."""
    form, workload, binary, ctx = built(tmp_path)
    artifact = form.build(workload, binary, ctx)
    monkeypatch.setattr("harness.forms.unikraft.memory_flag", lambda _: type(
        "F", (), {"text": "512", "requested_bytes": 512, "passed_bytes": 512, "rounded_up": False})())
    with pytest.raises(BootFailed, match="at least 1Mi"):
        form.boot(artifact, workload, ctx)
    assert any(a[0] == "rm" for a in calls(fake_kraft))


# -- cleanup -----------------------------------------------------------------------------


def test_cleanup_removes_this_runs_leftovers_only(tmp_path, fake_kraft, monkeypatch):
    """kraft cannot exist here; instances are started through the fake directly."""
    import subprocess

    monkeypatch.setenv("FAKE_KRAFT_CONSOLE", "x")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "Kraftfile").write_text('spec: v0.6\nruntime: unikraft.org/base:latest\ncmd: ["/hello"]\n')
    names = ["harness-test-xyz-hello-9zz", "harness-test-xyz-http-8yy", "harness-other-run-hello-1aa"]
    for name in names:
        subprocess.run(["kraft", "run", "--detach", "--name", name, "-M", "64Mi", str(project)], check=True,
                       capture_output=True)
    form = UnikraftForm()
    form.cleanup(make_ctx(tmp_path))
    removed = [a[1] for a in calls(fake_kraft) if a[0] == "rm"]
    assert sorted(removed) == sorted(names[:2])
    ps = subprocess.run(["kraft", "ps", "--all", "--long", "-o", "json"], capture_output=True, text=True, check=True)
    assert [m.name for m in parse_ps(ps.stdout)] == [names[2]]
    subprocess.run(["kraft", "rm", names[2]], check=True, capture_output=True)


def test_cleanup_without_kraft_does_nothing(tmp_path, monkeypatch):
    """The real situation here: no kraft, nothing started, nothing to remove."""
    monkeypatch.setenv("PATH", str(tmp_path))
    UnikraftForm().cleanup(make_ctx(tmp_path))
