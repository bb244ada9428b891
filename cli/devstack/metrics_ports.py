"""Where the dev stack's worker and API serve their Prometheus metrics.

`chorus dev` turns metrics on: the worker on CHORUS_METRICS_PORT (default
9464) and the API on the next port (9465). Metrics are a side door, so a
port already taken (a second stack, another exporter) is replaced by a free
one, which the stack prints, instead of failing the stack.
"""

from __future__ import annotations

import socket

from core.settings import Settings

DEV_WORKER_METRICS_PORT = 9464
DEV_API_METRICS_PORT = DEV_WORKER_METRICS_PORT + 1
METRICS_PORT_ENV = "CHORUS_METRICS_PORT"


def wanted_port(settings: Settings, service: str) -> int:
    """The port `service` ("worker" or "api") asks for."""
    base = settings.metrics_port or DEV_WORKER_METRICS_PORT
    return base if service == "worker" else base + 1


def free_port_near(host: str, port: int) -> int:
    """`port` if it can be bound on `host` now, else any free port."""
    for candidate in (port, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError(f"no free port on {host}")
