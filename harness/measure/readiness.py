"""Readiness probes: is the workload up yet?

Console readiness is judged by the form as lines arrive; network readiness is
polled from the host: a TCP connection the workload accepts and holds, or
an HTTP GET that must return the expected status. Probes are short and
repeated until a deadline.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable

from harness.workloads import Readiness

POLL_INTERVAL_S = 0.005
# A proxy in front of the workload (Docker's userland proxy, QEMU's user network) accepts the
# host's connection itself and closes it at once when the workload does not listen; a
# connection still open this long after the connect reached the workload.
TCP_HOLD_S = 0.2

Probe = Callable[[], "float | None"]  # the monotonic instant the workload was seen ready, or None


def tcp_ready(host: str, port: int, timeout_s: float = 0.5, hold_s: float = TCP_HOLD_S) -> float | None:
    """The connect instant, if the connection is accepted and not closed within hold_s."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            connected = time.monotonic()
            sock.settimeout(hold_s)
            try:
                if sock.recv(1) == b"":
                    return None  # closed at once: a proxy with nobody listening behind it
            except TimeoutError:
                pass  # held open, silent: a listener took it
            return connected
    except OSError:
        return None


def http_ready(host: str, port: int, path: str = "/", status: int = 200, timeout_s: float = 2.0) -> float | None:
    """The instant the expected status arrived, or None."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        answered = time.monotonic()
        resp.read()
        return answered if resp.status == status else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def network_probe(readiness: Readiness, host: str, port: int) -> Probe:
    """A no-argument probe for a tcp or http readiness spec on host:port."""
    if readiness.type == "http":
        return lambda: http_ready(host, port, readiness.path, readiness.status)
    if readiness.type == "tcp":
        return lambda: tcp_ready(host, port)
    raise ValueError(f"{readiness.type} readiness is not a network probe")


def poll(probe: Probe, deadline: float, still_alive: Callable[[], bool] = lambda: True,
         interval_s: float = POLL_INTERVAL_S) -> float | None:
    """Poll until the probe sees the workload ready (its instant returned) or the deadline/death."""
    while time.monotonic() < deadline:
        ready_at = probe()
        if ready_at is not None:
            return ready_at
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
