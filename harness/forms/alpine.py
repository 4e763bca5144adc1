"""The Alpine form: the workload binary on an Alpine base image.

No registry may be reachable, so the base is found in this order: the engine
already has it; a pull with a short timeout; when the user allows stand-ins,
an Alpine-like base built offline from Debian packages and marked as such on
every figure. Otherwise the cell is unavailable, with the fix.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

import docker
from docker.errors import DockerException, NotFound
from requests.exceptions import RequestException

from harness.build import image, standin
from harness.errors import Unavailable
from harness.forms.base import Context
from harness.forms.container import ContainerForm
from harness.run import engine

DEFAULT_BASE = "alpine:3.20"
STANDIN_REPO = "harness/alpine-standin"
PULL_TIMEOUT_S = 15


class AlpineForm(ContainerForm):
    name = "alpine"
    recipe = "alpine.Dockerfile"

    def __init__(self) -> None:
        self._resolved: tuple[str | None, dict[str, Any]] | None = None

    def base(self, ctx: Context) -> tuple[str | None, dict[str, Any]]:
        """Resolved once per run, so a failed pull is not retried for every workload."""
        if self._resolved is None:
            self._resolved = self._resolve(ctx)
        return self._resolved[0], dict(self._resolved[1])

    def _resolve(self, ctx: Context) -> tuple[str | None, dict[str, Any]]:
        ref = ctx.options.get("alpine_base", DEFAULT_BASE)
        client = engine.client()
        if image.exists(client, ref):
            return ref, {"base": ref, "stand_in": False, **_provenance(client, ref, ctx)}
        pull_error = _try_pull(ref, ctx)
        if pull_error is None:
            return ref, {"base": ref, "stand_in": False, "pulled": True, **_provenance(client, ref, ctx)}
        if not ctx.allow_standins:
            raise Unavailable(
                f"base {ref} is not in the engine and cannot be pulled ({pull_error}); import an "
                f"Alpine minirootfs with `harness bases import {ref} ROOTFS.tar.gz`, "
                f"or pass --allow-stand-ins"
            )
        standin_ref = ensure_standin(client, ctx)
        ctx.progress(f"alpine: {pull_error}; using the offline stand-in {standin_ref} "
                     f"(marked alpine* in every table)")
        return standin_ref, {
            "base": standin_ref,
            "stand_in": True,
            "stand_in_for": ref,
            "stand_in_note": standin.NOTE,
            "pull_error": pull_error,
        }


def _provenance(client: docker.DockerClient, ref: str, ctx: Context) -> dict[str, Any]:
    """Which image the base name stood for: its id, digests, Alpine release, and the tarball it came from."""
    img = client.images.get(ref)
    return {"base_image_id": img.id, "base_repo_digests": img.attrs.get("RepoDigests") or [],
            "base_alpine_release": alpine_release(client, img.id, ref, ctx.label),
            "base_imported_from": (img.labels or {}).get("harness.base.source")}


def alpine_release(client: docker.DockerClient, image_id: str, ref: str, labels: dict[str, str]) -> str:
    """The base's /etc/alpine-release, read from a container that is created but never started.

    A figure labelled "alpine" must have been measured on Alpine: a base
    without that file (a Debian image tagged alpine, say) makes the cell
    unavailable rather than mislabelled.
    """
    container = client.containers.create(image_id, command=["/bin/true"], labels=labels)
    try:
        stream, _ = container.get_archive("/etc/alpine-release")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            release = member.read(64).decode("ascii", "replace").strip() if member else ""
    except (NotFound, tarfile.TarError, IndexError):
        release = ""
    finally:
        container.remove(force=True)
    if not release:
        raise Unavailable(
            f"base {ref} is not Alpine (it has no /etc/alpine-release); import an Alpine minirootfs "
            f"with `harness bases import alpine:VERSION ROOTFS.tar.gz` and pass --alpine-base alpine:VERSION")
    return release


def _try_pull(ref: str, ctx: Context) -> str | None:
    """Pull ref with a short timeout; the error text, or None on success."""
    repo, _, tag = ref.partition(":")
    ctx.progress(f"alpine: {ref} not in the engine; trying to pull it ({PULL_TIMEOUT_S} s limit)")
    try:
        short = docker.from_env(timeout=PULL_TIMEOUT_S)
        try:
            short.images.pull(repo, tag=tag or "latest")
        finally:
            short.close()
        return None
    except (DockerException, RequestException, OSError) as exc:
        # The engine's own explanation ("dial tcp: lookup registry-1.docker.io: no such host"),
        # not the HTTP wrapper around it.
        text = " ".join(str(getattr(exc, "explanation", None) or exc).split()) or type(exc).__name__
        return f"pull failed: {text[:400]}"


def ensure_standin(client: docker.DockerClient, ctx: Context) -> str:
    """Import the stand-in base once per recipe; its tag carries the recipe key."""
    files = standin.locate()
    ref = f"{STANDIN_REPO}:{standin.key(files)}"
    if image.exists(client, ref):
        return ref
    ctx.progress(f"alpine: building the offline stand-in base {ref}")
    data = standin.rootfs_tar(files)
    repo, tag = ref.split(":")
    try:
        client.api.import_image_from_data(
            io.BytesIO(data).getvalue(), repository=repo, tag=tag,
            changes=['CMD ["/bin/sh"]', "LABEL harness.stand_in=1"],
        )
    except (DockerException, RequestException) as exc:
        raise Unavailable(f"could not import the Alpine stand-in base: {exc}") from None
    return ref
