"""When a process traces (core/tracing.py): off by default, on through the
standard OTEL_* variables (or CHORUS_TRACING=otlp), off again with
OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none or CHORUS_TRACING=off; an
exporter or protocol Chorus cannot use is refused by name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.contrib.opentelemetry import TracingInterceptor

from core import tracing
from core.settings import Settings

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OTEL_") or name.startswith("CHORUS_TRAC"):
            monkeypatch.delenv(name)
    tracing.shutdown()
    yield
    tracing.shutdown()


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_off_by_default() -> None:
    assert not tracing.tracing_enabled(settings())
    assert tracing.temporal_interceptors(settings()) == []
    assert not tracing.content_enabled()
    with tracing.tracer().start_as_current_span("nothing") as span:
        assert not span.is_recording()


@pytest.mark.parametrize(
    ("env", "mode", "enabled"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "auto", True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "auto", True),
        ({"OTEL_TRACES_EXPORTER": "console"}, "auto", True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "auto", True),
        ({}, "otlp", True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "off", False),
        ({ENDPOINT: "http://c:4318", "OTEL_SDK_DISABLED": "true"}, "auto", False),
        ({ENDPOINT: "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, "otlp", False),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "otlp", True),
    ],
)  # fmt: skip
def test_when_tracing_is_on(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], mode: str, enabled: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.tracing_enabled(settings(tracing=mode)) is enabled


def test_chorus_tracing_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_TRACING", "OFF")
    monkeypatch.setenv("CHORUS_TRACE_CONTENT", "true")
    values = settings()
    assert values.tracing == "off" and values.trace_content is True


@pytest.mark.parametrize(
    ("name", "value", "names"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", "http/protobuf"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"),
    ],
)
def test_unusable_exporter_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, names: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv(name, value)
    with pytest.raises(tracing.TracingConfigError, match=names):
        tracing.tracing_enabled(settings())


def test_service_name_defaults_per_process_and_otel_service_name_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert tracing.configure(settings(trace_content=True), "chorus-worker")
    assert tracing.tracer().resource.attributes["service.name"] == "chorus-worker"  # type: ignore[attr-defined]
    assert tracing.content_enabled()
    # Configured once per process: a later call keeps the first provider.
    assert tracing.configure(settings(), "chorus-api")
    assert tracing.tracer().resource.attributes["service.name"] == "chorus-worker"  # type: ignore[attr-defined]
    [interceptor] = tracing.temporal_interceptors(settings())
    assert isinstance(interceptor, TracingInterceptor)
    tracing.shutdown()

    monkeypatch.setenv("OTEL_SERVICE_NAME", "support-desk-worker")
    assert tracing.configure(settings(), "chorus-worker")
    assert tracing.tracer().resource.attributes["service.name"] == "support-desk-worker"  # type: ignore[attr-defined]
    assert not tracing.content_enabled()
