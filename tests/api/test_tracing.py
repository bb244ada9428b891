"""OpenTelemetry traces end to end: with the standard OTEL_* variables
pointing at an in-process OTLP/HTTP collector, one run started over the API
is one trace holding the request's span, the StartWorkflow call, the
workflow's spans, every activity and every provider call (with alias,
tokens and cost), and the prompt's text appears in no attribute."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from temporalio.client import Client
from temporalio.worker import Replayer

from activities.gateway.registry import ModelRegistry
from api.server import ApiServer
from core import tracing
from core.converter import data_converter
from core.temporal import connect
from store import make_engine
from tests.api.conftest import Keys, bearer, wait_for
from tests.conftest import activity_host
from worker.assembly import hosted_worker
from worker.plugin import ChorusPlugin, chorus_replayer

CANARY = f"canary-{uuid.uuid4().hex}"


@dataclass
class Collected:
    """A span as the collector received it, attributes decoded."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    service: str


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf
    `ExportTraceServiceRequest`, as a real collector takes it on :4318."""

    spans: list[Collected] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            self.raw.append(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            Collected(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                kind=span.kind,
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                service=str(resource.get("service.name")),
                            )
                        )

    def snapshot(self) -> list[Collected]:
        with self.lock:
            return list(self.spans)


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"  # traces do not depend on the database


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, str]]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            received.receive(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def api_overrides(collector: tuple[Collector, str]) -> Iterator[dict[str, Any]]:
    """Tracing on through the standard variables only (CHORUS_TRACING stays
    `auto`); torn down after the module's API and worker."""
    _, endpoint = collector
    with pytest.MonkeyPatch.context() as env:
        for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME"):
            env.delenv(name, raising=False)
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        tracing.shutdown()
        try:
            yield {}
        finally:
            tracing.shutdown()


@pytest.fixture(scope="module")
async def api_worker(
    api: ApiServer, registry: ModelRegistry, api_task_queue: str
) -> AsyncIterator[None]:
    """A worker whose client comes from `connect`, as `python -m worker`'s
    does, so it carries the tracing interceptor."""
    client = await connect(api.settings)
    assert client.config()["interceptors"], "tracing is on: connect adds TracingInterceptor"
    engine = make_engine(api.settings.effective_database_url)
    async with hosted_worker(client, activity_host(registry, engine), task_queue=api_task_queue):
        yield
    engine.dispose()


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _texts(item)
    else:
        yield str(value)


@pytest.mark.usefixtures("api_worker")
async def test_one_run_is_one_trace(
    api: ApiServer, http: httpx.AsyncClient, keys: Keys, collector: tuple[Collector, str]
) -> None:
    received, _ = collector
    service = bearer(keys.service)
    started = await http.post(
        "/v1/runs",
        json={"chain": "ask_two_judge", "input": {"question": f"Why is the sky blue? {CANARY}"}},
        headers=service,
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]

    async def completed() -> dict[str, Any] | None:
        run = (await http.get(f"/v1/runs/{run_id}", headers=service)).json()
        return run if run["status"] in ("completed", "failed") else None

    run = await wait_for(completed, timeout_s=30)
    assert run["status"] == "completed", run

    def request_span() -> Collected | None:
        tracing.force_flush()
        for span in received.snapshot():
            if span.name == "POST /v1/runs" and span.attributes.get("url.path") == "/v1/runs":
                return span
        return None

    root = await wait_for(_probe(request_span))
    assert root.kind == Span.SPAN_KIND_SERVER and root.parent_id == ""
    assert root.attributes["http.route"] == "/v1/runs"
    assert root.attributes["http.response.status_code"] == 201

    def whole_trace() -> list[Collected] | None:
        tracing.force_flush()
        spans = [s for s in received.snapshot() if s.trace_id == root.trace_id]
        calls = [s for s in spans if s.name.startswith("chat ")]
        done = any(s.name == "CompleteWorkflow:ChainWorkflow" for s in spans)
        return spans if len(calls) == 3 and done else None

    spans = await wait_for(_probe(whole_trace))
    names = [s.name for s in spans]
    by_id = {s.span_id: s for s in spans}

    # Every span of the run's execution, in the API and on the worker, is in
    # the request's trace (a later GET's queries are in that GET's trace).
    run_spans = [
        s
        for s in received.snapshot()
        if s.attributes.get("temporalWorkflowID") == run_id and "Query" not in s.name
    ]
    assert run_spans and {s.trace_id for s in run_spans} == {root.trace_id}
    for span in spans:
        assert span is root or span.parent_id in by_id, f"{span.name} is not in the tree"

    [start] = [s for s in spans if s.name == "StartWorkflow:ChainWorkflow"]
    assert start.parent_id == root.span_id and start.kind == Span.SPAN_KIND_CLIENT
    assert "RunWorkflow:ChainWorkflow" in names
    activities = [s for s in spans if s.name.startswith("RunActivity:")]
    assert sorted(s.name for s in activities) == [
        "RunActivity:chorus.call_model",
        "RunActivity:chorus.call_model",
        "RunActivity:chorus.call_model",
        "RunActivity:chorus.describe_models",
        "RunActivity:chorus.record_run",
        "RunActivity:chorus.record_run",
    ]
    assert names.count("StartActivity:chorus.call_model") == 3
    assert all(s.attributes["temporalWorkflowID"] == run_id for s in activities)

    calls = [s for s in spans if s.name.startswith("chat ")]
    assert sorted(s.attributes["chorus.alias"] for s in calls) == ["cheap", "judge", "strong"]
    for call in calls:
        assert call.kind == Span.SPAN_KIND_CLIENT
        assert by_id[call.parent_id].name == "RunActivity:chorus.call_model"
        attrs = call.attributes
        assert attrs["chorus.provider"] and attrs["chorus.model"]
        assert call.name == f"chat {attrs['chorus.model']}"
        assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["chorus.cost_usd"] > 0
        assert "chorus.prompt" not in attrs and "chorus.reply" not in attrs
    per_model = run["usage"]["per_model"]
    for call in calls:
        alias = call.attributes["chorus.alias"]
        assert call.attributes["chorus.cost_usd"] == pytest.approx(per_model[alias]["cost_usd"])
    assert {s.service for s in spans} == {"chorus-api"}  # one process here: the API's name

    # Content is off by default: the prompt's text is in no attribute of any
    # span, and nowhere in what was exported; nor is any API key.
    for span in received.snapshot():
        for value in span.attributes.values():
            for text in _texts(value):
                assert CANARY not in text, span.name
                assert keys.service not in text, span.name
    assert not any(CANARY.encode() in body for body in received.raw)

    # The traced run's history replays with the interceptor (which makes no
    # span while replaying) and without it (tracing turned off later).
    history = await client_of(api).get_workflow_handle(run_id).fetch_history()
    before = len(received.snapshot())
    traced = Replayer(
        workflows=[],
        plugins=[ChorusPlugin(converter=data_converter(api.settings))],
        interceptors=tracing.temporal_interceptors(api.settings),
    )
    for replayer in (traced, chorus_replayer(api.settings)):
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure
    await asyncio.to_thread(tracing.force_flush)
    assert len(received.snapshot()) == before


def client_of(api: ApiServer) -> Client:
    client = api.app.state.chorus.temporal.connected
    assert client is not None
    return client  # type: ignore[no-any-return]


def _probe(check: Any) -> Any:
    async def probe() -> Any:
        return await asyncio.to_thread(check)  # flushing blocks: not on the worker's loop

    return probe
