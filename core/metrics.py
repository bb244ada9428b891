"""A process's Prometheus endpoint (`CHORUS_METRICS_PORT`), shared by the
worker and the API.

Chorus' own metrics are `prometheus_client` metrics in its default registry
(float counters for cost, histograms in seconds, process metrics). A worker
also exposes the Temporal SDK's runtime metrics, which the SDK's Rust core
serves from its own Prometheus exporter and which no Python registry can hold.
Rather than two ports per worker, the SDK's exporter listens on a private
loopback port and `SdkMetricsCollector` reads it at every scrape and adds its
families to the one endpoint: Prometheus scrapes one target per process, and
content negotiation (text or OpenMetrics) stays `prometheus_client`'s.

The SDK's `MetricMeter` could carry Chorus' metrics instead, but its counters
are integers (no `chorus_model_cost_usd_total`) and its gauges cannot go up
and down; workflows use it (`workflows/metrics.py`) because it is the one
replay-safe way for workflow code to count.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from threading import Thread
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from core.logging import get_logger

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

log = get_logger(__name__)

SDK_HISTOGRAM_BUCKETS: Mapping[str, Sequence[float]] = {
    # Histograms that workflows record through the SDK's meter (seconds; the
    # SDK's default buckets are milliseconds).
    "chorus_approval_decision_seconds": (
        1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400,
    ),
}  # fmt: skip


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 now (for the SDK's private exporter)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sdk_metrics_runtime(port: int) -> Runtime:
    """A Temporal runtime whose metrics go to a Prometheus exporter on
    127.0.0.1:`port`. Counters get the conventional `_total` suffix
    (`temporal_request_total`), as in Temporal's Java SDK and its dashboards.
    Create it before the client: `Client.connect(..., runtime=...)`."""
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"127.0.0.1:{port}",
                counters_total_suffix=True,
                histogram_bucket_overrides=dict(SDK_HISTOGRAM_BUCKETS),
            )
        )
    )


class SdkMetricsCollector(Collector):
    """The SDK exporter's families, read at scrape time. A scrape that
    cannot reach it still serves Chorus' metrics (and logs why)."""

    def __init__(self, port: int, *, timeout_s: float = 2.0) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.timeout_s = timeout_s

    def describe(self) -> Iterator[Metric]:
        # Registering must not scrape (nor claim the SDK's names for good).
        return iter(())

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                text = response.read().decode("utf-8")
        except OSError as exc:
            log.warning("Temporal SDK metrics unavailable", url=self.url, error=str(exc))
            return
        yield from text_string_to_metric_families(text)


@dataclass
class MetricsServer:
    """A running `/metrics` endpoint (a daemon thread); `close()` stops it."""

    host: str
    port: int
    server: WSGIServer
    thread: Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class MetricsStartError(RuntimeError):
    """The metrics endpoint could not listen on its port."""


def serve_metrics(
    host: str, port: int, registry: CollectorRegistry = REGISTRY, *, what: str = "metrics"
) -> MetricsServer:
    """Serve `registry` on http://host:port/metrics (port 0: a free one)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsStartError(
            f"{what}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "set CHORUS_METRICS_PORT to a free port"
        ) from exc
    actual = int(server.server_address[1])
    log.info("Prometheus metrics listening", what=what, url=f"http://{host}:{actual}/metrics")
    return MetricsServer(host=host, port=actual, server=server, thread=thread)
