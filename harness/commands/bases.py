"""`harness bases import NAME ROOTFS.tar.gz`: bring a base image into an offline engine.

An air-gapped lab downloads Alpine's minirootfs elsewhere and imports it here
under the name the Alpine form looks for (alpine:3.20 by default); from then
on the form uses the real base and nothing is marked as a stand-in.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from docker.errors import DockerException
from requests.exceptions import RequestException

from harness.commands import path
from harness.errors import Unavailable, UsageError
from harness.run import engine

REF_RE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bases", help="manage base images for the container forms")
    bsub = p.add_subparsers(dest="bases_command", required=True, metavar="COMMAND")
    imp = bsub.add_parser("import", help="import a rootfs tarball as a base image",
                          description="Import a root filesystem tarball (e.g. Alpine's minirootfs "
                                      ".tar.gz) into the Docker engine as NAME.")
    imp.add_argument("name", metavar="NAME", help="image reference, e.g. alpine:3.20")
    imp.add_argument("rootfs", type=path, metavar="ROOTFS.tar.gz", help="the rootfs tarball")
    imp.set_defaults(func=main)


def import_base(name: str, rootfs: Path) -> str:
    """Import the tarball; returns the new image id."""
    if not REF_RE.match(name):
        raise UsageError(f"invalid image name {name!r}; use e.g. alpine:3.20")
    if not rootfs.is_file():
        raise UsageError(f"{rootfs} is not a file; pass the downloaded rootfs tarball")
    repo, _, tag = name.partition(":")
    try:
        client = engine.client()
    except Unavailable as exc:
        raise UsageError(str(exc)) from None
    try:
        client.api.import_image_from_file(str(rootfs), repository=repo, tag=tag or "latest",
                                          changes=['CMD ["/bin/sh"]', f"LABEL harness.base.source={rootfs.name}"])
        return client.images.get(f"{repo}:{tag or 'latest'}").id
    except (DockerException, RequestException, OSError) as exc:
        raise UsageError(f"import of {rootfs} failed ({exc}); is it a rootfs tarball?") from None


def main(args: argparse.Namespace) -> int:
    image_id = import_base(args.name, args.rootfs)
    print(f"imported {args.rootfs} as {args.name} ({image_id[:19]})")
    return 0
