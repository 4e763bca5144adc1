"""`harness bases import NAME ROOTFS.tar.gz`: bring a base image into an offline engine.

An air-gapped lab downloads Alpine's minirootfs elsewhere and imports it here
under the name the Alpine form looks for (alpine:3.20 by default); from then
on the form uses the real base and nothing is marked as a stand-in.
"""

from __future__ import annotations

import argparse
import re
import tarfile
from pathlib import Path

from docker.errors import DockerException
from requests.exceptions import RequestException

from harness.build import image
from harness.commands import path
from harness.errors import Unavailable, UsageError
from harness.run import engine

REF_RE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bases", help="manage base images for the container forms",
                       epilog="exit codes: 0 done, 2 bad input (or the engine is unreachable), 130 interrupted")
    bsub = p.add_subparsers(dest="bases_command", required=True, metavar="COMMAND")
    imp = bsub.add_parser("import", help="import a rootfs tarball as a base image",
                          description="Import a root filesystem tarball (e.g. Alpine's minirootfs "
                                      ".tar.gz) into the Docker engine as NAME.",
                          epilog="exit codes: 0 imported, 2 bad input (a tarball that is not a root "
                                 "filesystem, NAME taken without --replace, the engine unreachable), "
                                 "130 interrupted")
    imp.add_argument("name", metavar="NAME", help="image reference, e.g. alpine:3.20")
    imp.add_argument("rootfs", type=path, metavar="ROOTFS.tar.gz", help="the rootfs tarball")
    imp.add_argument("--replace", action="store_true", help="replace an image already under NAME")
    imp.set_defaults(func=main)


def check_rootfs(name: str, rootfs: Path) -> None:
    """A root filesystem tarball, and for an alpine name an Alpine one: refused before the engine sees it."""
    if not rootfs.is_file():
        raise UsageError(f"{rootfs} is not a file; pass the downloaded rootfs tarball")
    try:
        with tarfile.open(rootfs) as tar:
            members = {m.name.removeprefix("./").rstrip("/") for m in tar.getmembers()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        # tarfile lists every compression it tried; what the user needs is that none worked
        why = " ".join(str(exc).split())
        if why.startswith("file could not be opened successfully"):
            why = "not a tar archive, compressed or not"
        raise UsageError(f"{rootfs} is not a readable tar archive ({why}); pass a rootfs .tar.gz") from None
    if not {"bin", "etc"} <= members:
        raise UsageError(f"{rootfs} holds no root filesystem (no bin/ and etc/ at its top); pass a rootfs tarball")
    alpine_marks = {"etc/alpine-release", "etc/apk", "bin/busybox"}
    if name.split("/")[-1].startswith("alpine") and not alpine_marks <= members:
        missing = ", ".join(sorted(alpine_marks - members))
        raise UsageError(f"{rootfs} is not an Alpine root filesystem (no {missing}); import it "
                         f"under a name that does not claim to be Alpine")


def import_base(name: str, rootfs: Path, replace: bool = False) -> str:
    """Import the tarball; returns the new image id."""
    if not REF_RE.match(name):
        raise UsageError(f"invalid image name {name!r}; use e.g. alpine:3.20")
    check_rootfs(name, rootfs)
    repo, _, tag = name.partition(":")
    ref = f"{repo}:{tag or 'latest'}"
    try:
        client = engine.client()
    except Unavailable as exc:
        raise UsageError(str(exc)) from None
    old = image.exists(client, ref)
    if old and not replace:
        raise UsageError(f"{ref} is already in the engine ({old[:19]}); pass --replace to import over it")
    try:
        client.api.import_image_from_file(str(rootfs), repository=repo, tag=tag or "latest",
                                          changes=['CMD ["/bin/sh"]', f"LABEL harness.base.source={rootfs.name}"])
        new = client.images.get(ref).id
    except (DockerException, RequestException, OSError) as exc:
        raise UsageError(f"import of {rootfs} failed ({exc}); is it a rootfs tarball?") from None
    if old and old != new:
        try:
            client.images.remove(old)  # the replaced image, now without a name
        except DockerException:
            pass  # still used by an image built on it: it stays, as the engine wants
    return new


def main(args: argparse.Namespace) -> int:
    image_id = import_base(args.name, args.rootfs, args.replace)
    print(f"imported {args.rootfs} as {args.name} ({image_id[:19]})")
    return 0
