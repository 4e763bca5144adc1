"""The Docker engine connection, shared by the container forms.

One client per process; an unreachable engine is reported with the fix
rather than a traceback.
"""

from __future__ import annotations

import os
from functools import lru_cache

import docker
from docker.errors import DockerException

from harness.errors import Unavailable

LABEL = "harness.run"


def engine_hint() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return (f"Docker engine unreachable at {host}: start it with scripts/setup.sh "
            f"(or `dockerd &`), or set DOCKER_HOST")


@lru_cache(maxsize=1)
def client() -> docker.DockerClient:
    """A connected client, or Unavailable naming the fix."""
    try:
        c = docker.from_env(timeout=120)
        c.ping()
        return c
    except (DockerException, OSError) as exc:
        raise Unavailable(f"{engine_hint()} ({type(exc).__name__})") from None


def reachable() -> bool:
    try:
        client()
        return True
    except Unavailable:
        client.cache_clear()
        return False


def version() -> str | None:
    try:
        return client().version().get("Version")
    except (Unavailable, DockerException, OSError):
        return None


@lru_cache(maxsize=1)
def cgroup_driver() -> str:
    """The engine's cgroup driver ("cgroupfs" or "systemd"): it decides how a cgroup parent is named."""
    try:
        driver = client().info().get("CgroupDriver")
    except (Unavailable, DockerException, OSError):
        return "cgroupfs"
    return driver if driver in ("cgroupfs", "systemd") else "cgroupfs"
