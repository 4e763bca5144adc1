"""What the two container forms share: build through the engine, boot, measure.

Boot follows the order that never loses output: create, attach,
start. The instants are taken on the monotonic clock:

    t0 create requested -> t1 created -> t2 attached, start requested
    -> engine says started / first output / ready (in any order)

boot_s is t2 -> ready: from asking the engine to start the container to
readiness. create_s + attach_s + boot_s is the wall time t0 -> ready; the
instants after t2 (started_s, first_output_s) are given from t2, since a fast
workload is often ready before the engine's start call returns. Removal is
teardown, never counted.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from docker.errors import DockerException, NotFound
from requests.exceptions import RequestException

from harness.build import elf, image
from harness.build.binary import Binary
from harness.build.cache import digest
from harness.errors import BootFailed, BuildFailed, Unavailable, tail
from harness.forms.base import Artifact, Context, Sample, headline
from harness.measure.memory import working_set
from harness.measure.readiness import console_matches, free_port, network_probe, poll
from harness.run import cgroup, engine
from harness.run.cgroup import PeakCgroup
from harness.workloads import Workload

RECIPES = Path(__file__).resolve().parent.parent.parent / "builds" / "containers"
ENGINE_ERRORS = (DockerException, RequestException, OSError)
# Names each sample's parent cgroup uniquely within the process.
_SAMPLES = itertools.count(1)
# Every workload container runs as nobody, with no capabilities and no way to gain any.
UNPRIVILEGED: dict[str, Any] = {"user": "65534:65534", "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}


@dataclass
class OutputReader:
    """Consumes a container's attached output in a thread, timestamping it.

    Lines from stdout and stderr are kept apart; readiness is signalled the
    moment a matching line arrives.
    """

    stream: Any
    match: Any  # Callable[[str], bool]
    first_output: float | None = None
    ready_at: float | None = None
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    _partial: dict[str, str] = field(default_factory=lambda: {"stdout": "", "stderr": ""})

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="container-output").start()

    def _run(self) -> None:
        try:
            for out, err in self.stream:
                now = time.monotonic()
                if self.first_output is None:
                    self.first_output = now
                for name, data in (("stdout", out), ("stderr", err)):
                    if data:
                        self._feed(name, data.decode(errors="replace"), now)
        except ENGINE_ERRORS:
            pass
        finally:
            for name, rest in self._partial.items():
                if rest:
                    self._line(name, rest, time.monotonic())
            self.done.set()

    def _feed(self, name: str, text: str, now: float) -> None:
        text = self._partial[name] + text
        *lines, self._partial[name] = text.split("\n")
        for line in lines:
            self._line(name, line, now)

    def _line(self, name: str, line: str, now: float) -> None:
        (self.stdout if name == "stdout" else self.stderr).append(line)
        if not self.ready.is_set() and self.match(line):
            self.ready_at = now
            self.ready.set()

    def text(self) -> str:
        return "\n".join(self.stdout + [f"[stderr] {line}" for line in self.stderr])


class ContainerForm:
    """Base of the scratch and Alpine forms; subclasses choose the recipe and base."""

    name: ClassVar[str]
    family: ClassVar[str] = "container"
    recipe: ClassVar[str]

    def check(self, ctx: Context) -> None:
        """The engine must answer now, not only when the run began: it can stop mid-run."""
        client = engine.client()
        try:
            client.ping()
        except ENGINE_ERRORS as exc:
            raise BuildFailed(f"{engine.engine_hint()}: it stopped answering during the run "
                              f"({type(exc).__name__})") from None

    # -- build -------------------------------------------------------------

    def base(self, ctx: Context) -> tuple[str | None, dict[str, Any]]:
        """The base image reference to build on, and what to record about it."""
        return None, {"base": "scratch"}

    def recipe_path(self, workload: Workload) -> Path:
        """The workload's own recipe if it has one, else the form's default."""
        own = workload.directory / self.recipe
        return own if own.is_file() else RECIPES / self.recipe

    def preflight(self, recipe: Path, binary: Binary) -> None:
        elf.require_host_machine(binary.path, binary.info)

    def build(self, workload: Workload, binary: Binary, ctx: Context) -> Artifact:
        try:
            return self._build(workload, binary, ctx)
        except ENGINE_ERRORS as exc:
            raise BuildFailed(f"engine error during build: {type(exc).__name__}: {exc}") from None

    def _build(self, workload: Workload, binary: Binary, ctx: Context) -> Artifact:
        client = engine.client()
        recipe = self.recipe_path(workload)
        self.preflight(recipe, binary)
        base_ref, details = self.base(ctx)
        base_id = image.exists(client, base_ref) if base_ref else None
        key = digest(recipe, binary.sha256, base_id or "scratch")[:12]
        tag = f"harness/{workload.name}-{self.name}:{key}"
        image_id = image.exists(client, tag)
        cached = image_id is not None
        if cached:
            ctx.progress(f"{workload.name}:{self.name} image {tag} cached, no build")
        else:
            ctx.progress(f"{workload.name}:{self.name} building image {tag}")
            context = Path(tempfile.mkdtemp(prefix="harness-ctx-"))
            try:
                shutil.copy2(binary.path, context / "workload")
                shutil.copy2(recipe, context / "Dockerfile")
                image_id = image.build(
                    client, context, "Dockerfile", tag,
                    labels={"harness.workload": workload.name, "harness.form": self.name,
                            "harness.binary_sha256": binary.sha256},
                    buildargs={"BASE": base_ref} if base_ref else None,
                )
            finally:
                shutil.rmtree(context, ignore_errors=True)
        sizes = image.measure(client, image_id, ctx.cache)
        base_layers = set()
        if base_id:
            base_layers = {layer.diff_id for layer in image.measure(client, base_id, ctx.cache).layers}
        added = [layer for layer in sizes.layers if layer.diff_id not in base_layers]
        size = {
            "artifact_bytes": sizes.compressed_bytes,
            "image_bytes": sizes.unpacked_bytes,
            "compressed_bytes": sizes.compressed_bytes,
            "layers": len(sizes.layers),
            "added_compressed_bytes": sum(layer.compressed_bytes for layer in added),
            "binary_bytes": binary.size_bytes,
        }
        details.update({"image": tag, "image_id": image_id, "recipe": str(recipe),
                        "engine": f"docker {engine.version()}", "cached": cached})
        return Artifact(size=size, details=details, handle=image_id, cached=cached)

    # -- boot --------------------------------------------------------------

    def boot(self, artifact: Artifact, workload: Workload, ctx: Context) -> Sample:
        client = engine.client()
        peak = PeakCgroup(cgroup.prefix(ctx.run_id) + str(next(_SAMPLES)), engine.cgroup_driver())
        peak_ok = peak.prepare()
        host_port = free_port() if workload.port else None
        ports = {f"{workload.port}/tcp": ("127.0.0.1", host_port)} if workload.port else None
        name = f"harness-{ctx.run_id}-{self.name}-{workload.name}-{time.monotonic_ns() % 10**9}"
        container = None
        try:
            t0 = time.monotonic()
            container = client.containers.create(
                artifact.handle, name=name, detach=True, labels=ctx.label, ports=ports,
                cgroup_parent=peak.engine_parent if peak_ok else None, **UNPRIVILEGED,
            )
            t1 = time.monotonic()
            stream = container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
            reader = OutputReader(stream, lambda line: console_matches(workload.readiness, line))
            reader.start()
            t2 = time.monotonic()  # start requested
            container.start()
            t3 = time.monotonic()  # engine says started
            deadline = t2 + ctx.timeout_s
            ready_at = self._wait_ready(workload, reader, host_port, deadline)
            if ready_at is None:
                raise BootFailed(self._failure(container, reader, ctx, t2))
            memory, mem_details = self._memory(container, workload, peak if peak_ok else None, reader)
            phases = {
                "create_s": t1 - t0,
                "attach_s": t2 - t1,
                "started_s": t3 - t2,
                "ready_s": ready_at - t2,
                "wall_s": ready_at - t0,
            }
            if reader.first_output is not None:
                phases["first_output_s"] = reader.first_output - t2
            prefer = ("working_set_bytes", "peak_bytes") if workload.is_service else ("peak_bytes", "working_set_bytes")
            memory_bytes, source = headline(memory, prefer)
            mem_details["console_tail"] = reader.text().splitlines()[-6:]
            return Sample(boot_s=ready_at - t2, memory_bytes=memory_bytes, memory_source=source,
                          phases=phases, memory=memory, details=mem_details)
        except ENGINE_ERRORS as exc:
            raise BootFailed(f"engine error during boot: {type(exc).__name__}: {exc}") from None
        finally:
            if container is not None:
                self._remove(container)
            peak.remove()

    def _wait_ready(self, workload: Workload, reader: OutputReader, host_port: int | None,
                    deadline: float) -> float | None:
        if workload.readiness.type == "console":
            while time.monotonic() < deadline:
                if reader.ready.wait(timeout=0.05):
                    return reader.ready_at
                if reader.done.is_set():
                    return reader.ready_at if reader.ready.is_set() else None
            return None
        assert host_port is not None
        probe = network_probe(workload.readiness, "127.0.0.1", host_port)
        return poll(probe, deadline, still_alive=lambda: not reader.done.is_set())

    def _memory(self, container, workload: Workload, peak: PeakCgroup | None,
                reader: OutputReader) -> tuple[dict[str, int | None], dict[str, Any]]:
        """Working set after readiness (services) and the peak (every workload)."""
        details: dict[str, Any] = {}
        ws_bytes: int | None = None
        if workload.is_service:
            stats = container.stats(stream=False, one_shot=True)
            ws = working_set(stats.get("memory_stats"))
            ws_bytes = ws.bytes
            details["cache_subtracted"] = ws.cache_subtracted
            if ws.note:
                details["memory_note"] = ws.note
        else:
            # A run-to-completion container is done at once; its peak is read
            # after it exits, so nothing of its life is missed.
            reader.done.wait(timeout=10)
            container.wait(timeout=10)
        peak_bytes = peak.peak() if peak else None
        if peak is None:
            details["peak_note"] = "no parent cgroup could be made on this host; peak unavailable"
        else:
            details["peak_cgroup"] = f"{peak.engine_parent} ({peak.driver} driver)"
            if peak_bytes is None:
                details["peak_note"] = f"peak not readable at {peak.memory_dir}; peak unavailable"
        return {"working_set_bytes": ws_bytes, "peak_bytes": peak_bytes}, details

    def _failure(self, container, reader: OutputReader, ctx: Context, started: float) -> str:
        exited_with = None
        try:
            container.reload()
            state = container.attrs.get("State", {})
            if state.get("Status") == "exited":
                exited_with = state.get("ExitCode")
                reader.done.wait(2.0)  # its last output may still be on its way to the reader
        except ENGINE_ERRORS:
            pass
        if reader.ready_at is not None:  # it did get ready, only too late
            return (f"readiness came {reader.ready_at - started:.3f} s after the start request, "
                    f"beyond the {ctx.timeout_s:g} s limit (--timeout)")
        output = tail(reader.text(), 8) or "(no output)"
        if exited_with is not None:
            return f"exited with code {exited_with} before readiness: {output}"
        return f"no readiness within {ctx.timeout_s:g} s: {output}"

    @staticmethod
    def _remove(container) -> None:
        try:
            container.remove(force=True)
        except NotFound:
            pass
        except ENGINE_ERRORS:
            pass

    def cleanup(self, ctx: Context) -> None:
        try:
            client = engine.client()
            for c in client.containers.list(all=True, filters={"label": f"{engine.LABEL}={ctx.run_id}"}):
                self._remove(c)
        except ENGINE_ERRORS + (Unavailable,):
            pass
        cgroup.remove_run(ctx.run_id, engine.cgroup_driver())

