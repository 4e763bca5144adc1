"""Readiness probes: is the workload up yet?

Console readiness is judged by the form as lines arrive; network readiness is
polled from the host: a TCP connect or an HTTP GET that must return the
expected status. Probes are short and repeated until a deadline.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable

from harness.workloads import Readiness

POLL_INTERVAL_S = 0.005


def tcp_ready(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def http_ready(host: str, port: int, path: str = "/", status: int = 200, timeout_s: float = 2.0) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status == status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def network_probe(readiness: Readiness, host: str, port: int) -> Callable[[], bool]:
    """A no-argument probe for a tcp or http readiness spec on host:port."""
    if readiness.type == "http":
        return lambda: http_ready(host, port, readiness.path, readiness.status)
    if readiness.type == "tcp":
        return lambda: tcp_ready(host, port)
    raise ValueError(f"{readiness.type} readiness is not a network probe")


def poll(probe: Callable[[], bool], deadline: float, still_alive: Callable[[], bool] = lambda: True,
         interval_s: float = POLL_INTERVAL_S) -> float | None:
    """Poll until the probe succeeds (monotonic instant returned) or the deadline/death."""
    while time.monotonic() < deadline:
        if probe():
            return time.monotonic()
        if not still_alive():
            return None
        time.sleep(interval_s)
    return None


def console_matches(readiness: Readiness, line: str) -> bool:
    return readiness.type == "console" and readiness.line is not None and readiness.line in line


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a forward (released just before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
