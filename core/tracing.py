"""OpenTelemetry traces: the one place a process's tracer provider is built.

Off by default. `CHORUS_TRACING` decides:

- `auto` (default): on when the standard OpenTelemetry variables ask for
  traces, i.e. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
  `OTEL_EXPORTER_OTLP_ENDPOINT` is set, or `OTEL_TRACES_EXPORTER` names an
  exporter; off otherwise;
- `otlp`: on (to `http://localhost:4318/v1/traces` when no endpoint is set);
- `off`: never.

`OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` turn it off too.
Everything else is the OpenTelemetry SDK's own environment handling: the
exporter reads the endpoint, headers, timeout, compression and certificates
(`OTEL_EXPORTER_OTLP_*`), the resource reads `OTEL_SERVICE_NAME` and
`OTEL_RESOURCE_ATTRIBUTES`, the batch processor `OTEL_BSP_*`, the sampler
`OTEL_TRACES_SAMPLER`. Spans leave over OTLP/HTTP with protobuf bodies;
`OTEL_EXPORTER_OTLP_PROTOCOL=grpc` is refused by name rather than sent to a
port that does not speak it.

Chorus keeps its provider to itself (`tracer()`), rather than installing it
as OpenTelemetry's global one, which can be set only once per process: a
test can point tracing at a collector and `shutdown()` it after.

Who uses it: `core.temporal.connect` adds Temporal's `TracingInterceptor`
(client spans, and through a worker's client the workflow and activity
spans, the context carried in Temporal headers so one run is one trace); the
API's middleware opens the request's span; the model gateway opens a client
span around each provider call. Prompt and reply text go into spans only
with `CHORUS_TRACE_CONTENT=true`; headers never do.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace

from core.logging import get_logger

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

    from core.settings import Settings

log = get_logger(__name__)

TRACER_NAME = "chorus"
DEFAULT_SERVICE_NAME = "chorus"
EXPORTERS = ("otlp", "console", "none")
CONTENT_MAX_CHARS = 8192
"""Prompt or reply text put in a span (`CHORUS_TRACE_CONTENT`) is cut here."""


class TracingConfigError(ValueError):
    """The OpenTelemetry variables ask for something Chorus cannot export."""


@dataclass
class _State:
    provider: TracerProvider | None = None
    content: bool = False


_state = _State()
_lock = threading.Lock()


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _exporter_name() -> str:
    from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER

    names = [n.strip().lower() for n in _env(OTEL_TRACES_EXPORTER).split(",") if n.strip()]
    if not names:
        return "otlp"
    if len(names) > 1 or names[0] not in EXPORTERS:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={_env(OTEL_TRACES_EXPORTER)!r}: Chorus exports traces "
            f"with one of {', '.join(EXPORTERS)}"
        )
    return names[0]


def tracing_enabled(settings: Settings) -> bool:
    """Whether this process exports traces (see the module docstring).
    Raises TracingConfigError for an exporter or protocol it cannot use."""
    from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
    from opentelemetry.sdk.environment_variables import (
        OTEL_EXPORTER_OTLP_ENDPOINT,
        OTEL_EXPORTER_OTLP_PROTOCOL,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        OTEL_SDK_DISABLED,
    )

    if settings.tracing == "off" or _env(OTEL_SDK_DISABLED).lower() == "true":
        return False
    exporter = _exporter_name()
    if exporter == "none":
        return False
    if exporter == "otlp":
        protocol = _env(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) or _env(OTEL_EXPORTER_OTLP_PROTOCOL)
        if protocol not in ("", "http/protobuf"):
            raise TracingConfigError(
                f"OTLP protocol {protocol!r}: Chorus exports traces over http/protobuf "
                "(an OpenTelemetry Collector listens for it on port 4318)"
            )
    if settings.tracing == "otlp":
        return True
    return bool(
        _env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
        or _env(OTEL_EXPORTER_OTLP_ENDPOINT)
        or _env(OTEL_TRACES_EXPORTER)
    )


def configure(settings: Settings, service_name: str = DEFAULT_SERVICE_NAME) -> bool:
    """Build this process's tracer provider once, if tracing is on; returns
    whether it is. `service_name` is the default `service.name`
    (`chorus-api`, `chorus-worker`); `OTEL_SERVICE_NAME` wins over it."""
    with _lock:
        if _state.provider is not None:
            return True
        if not tracing_enabled(settings):
            return False
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )

        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service_name}))
        exporter: SpanExporter
        if _exporter_name() == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _state.provider = provider
        _state.content = settings.trace_content
        log.info(
            "tracing on",
            service=resource.attributes.get(SERVICE_NAME),
            exporter=type(exporter).__name__,
            content=settings.trace_content,
        )
        return True


def install_provider(provider: TracerProvider, *, content: bool = False) -> None:
    """Use `provider` as this process's tracer provider (tests with an
    in-memory exporter; a host process that builds its own)."""
    with _lock:
        _state.provider, _state.content = provider, content


def tracer() -> trace.Tracer:
    """Chorus' tracer: the configured provider's, or one that records nothing."""
    provider = _state.provider
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(TRACER_NAME)


def content_enabled() -> bool:
    """Whether prompt and reply text may go into spans (`CHORUS_TRACE_CONTENT`)."""
    return _state.provider is not None and _state.content


def clip(text: str) -> str:
    """Content for a span attribute, cut at `CONTENT_MAX_CHARS`."""
    return text if len(text) <= CONTENT_MAX_CHARS else text[:CONTENT_MAX_CHARS] + "…"


def temporal_interceptors(settings: Settings) -> list[Interceptor]:
    """The Temporal client's interceptors: `TracingInterceptor` when tracing
    is on (configuring it with the default service name if the process has
    not), else none. On a client, the SDK applies it to the workers built on
    that client too; its workflow spans are replay-safe (none while replaying)."""
    if not configure(settings):
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer())]


def force_flush(timeout_ms: int = 5000) -> bool:
    """Export the spans ended so far (tests; a short-lived CLI process)."""
    provider = _state.provider
    return provider.force_flush(timeout_ms) if provider is not None else True


def shutdown() -> None:
    """Flush and stop the provider; tracing is off until `configure` again."""
    with _lock:
        provider, _state.provider, _state.content = _state.provider, None, False
    if provider is not None:
        provider.shutdown()
