"""A worker's Prometheus endpoint (`CHORUS_METRICS_PORT`): the Temporal
SDK's runtime metrics (`temporal_*`: polls, task latencies, slots, sticky
cache, requests) and Chorus' own (`chorus_*`, counted by the activities),
on one port. See core/metrics.py for how the two are joined."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY
from temporalio.runtime import Runtime

# Imported for their metrics: a scrape before the first call lists them.
import activities.gateway.metrics
import activities.metrics  # noqa: F401
from core.metrics import (
    MetricsServer,
    SdkMetricsCollector,
    free_loopback_port,
    sdk_metrics_runtime,
    serve_metrics,
)
from core.settings import Settings


@dataclass
class WorkerMetrics:
    """The runtime to connect with (its metrics reach the endpoint) and the endpoint."""

    runtime: Runtime
    server: MetricsServer
    collector: SdkMetricsCollector

    def close(self) -> None:
        self.server.close()
        REGISTRY.unregister(self.collector)


def start_worker_metrics(settings: Settings) -> WorkerMetrics | None:
    """The endpoint on `settings.metrics_port`, or None when it is unset.
    Call it before connecting: the client must be made on `runtime`."""
    if settings.metrics_port is None:
        return None
    sdk_port = free_loopback_port()
    runtime = sdk_metrics_runtime(sdk_port)
    collector = SdkMetricsCollector(sdk_port)
    REGISTRY.register(collector)
    try:
        server = serve_metrics(settings.metrics_host, settings.metrics_port, what="worker metrics")
    except Exception:
        REGISTRY.unregister(collector)
        raise
    return WorkerMetrics(runtime=runtime, server=server, collector=collector)
