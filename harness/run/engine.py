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
HOST_LABEL = "harness.host"


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


def labelled_runs(host: str) -> list[tuple[str, int | None, float | None]]:
    """(run id, owner pid, owner start time) of the containers this host's runs made."""
    if not reachable():
        return []
    try:
        containers = client().containers.list(all=True, filters={"label": LABEL})
    except (DockerException, OSError):
        return []
    found = []
    for c in containers:
        labels = c.labels or {}
        if not labels.get(LABEL) or labels.get(HOST_LABEL, host) != host:
            continue
        try:
            pid, started = int(labels["harness.pid"]), float(labels["harness.started"])
        except (KeyError, ValueError):
            pid, started = None, None  # made before runs labelled their owner
        found.append((labels[LABEL], pid, started))
    return found
