"""The provider call's span (activities/gateway/tracing.py): alias, provider,
model, tokens and cost; the prompt and reply only with CHORUS_TRACE_CONTENT;
a failure as its error type, never the provider's error body or a header."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from activities.gateway.activities import ModelGateway
from activities.gateway.types import ChatMessage, ModelCallInput
from core import tracing
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule
from tests.activities.test_call_model import Env

PROMPT = "a secret plan about the blue sky"
REPLY = "Rayleigh scattering."


@pytest.fixture
def env() -> Env:
    return Env()


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.shutdown()
    yield exporter
    tracing.shutdown()


def ask(alias: str) -> ModelCallInput:
    return ModelCallInput(
        alias=alias,
        messages=[ChatMessage(role="user", content=PROMPT)],
        max_tokens=64,
        step="answer",
    )


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


def use(exporter: InMemorySpanExporter, *, content: bool) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install_provider(provider, content=content)


async def test_span_has_alias_tokens_and_cost_and_no_content(
    gateway: ModelGateway, sim: SimulatorControl, env: Env, exported: InMemorySpanExporter
) -> None:
    use(exported, content=False)
    await sim.add_rules(
        Rule(
            request_id_prefix=env.workflow_id,
            reply=REPLY,
            usage={"prompt_tokens": 1000, "completion_tokens": 200},
        )
    )
    result = await env.call(gateway, ask("strong"))

    span = only_span(exported)
    assert span.name == "chat sim-large" and span.kind == SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    assert attrs["chorus.alias"] == "strong"
    assert attrs["chorus.provider"] == "simulator" and attrs["chorus.model"] == "sim-large"
    assert attrs["gen_ai.usage.input_tokens"] == 1000
    assert attrs["gen_ai.usage.output_tokens"] == 200
    assert attrs["chorus.cost_usd"] == pytest.approx(result.cost_usd)
    assert attrs["chorus.step"] == "answer"
    assert attrs["server.address"] == "127.0.0.1"
    for value in attrs.values():
        assert PROMPT not in str(value) and REPLY not in str(value)


async def test_content_only_when_enabled(
    gateway: ModelGateway, sim: SimulatorControl, env: Env, exported: InMemorySpanExporter
) -> None:
    use(exported, content=True)
    await sim.add_rules(Rule(request_id_prefix=env.workflow_id, reply=REPLY))
    await env.call(gateway, ask("cheap"))

    attrs = dict(only_span(exported).attributes or {})
    assert PROMPT in str(attrs["chorus.prompt"])
    assert attrs["chorus.reply"] == REPLY


async def test_failure_is_its_error_type(
    gateway: ModelGateway, sim: SimulatorControl, env: Env, exported: InMemorySpanExporter
) -> None:
    use(exported, content=False)
    await sim.add_faults(
        Fault(request_id_prefix=env.workflow_id, kind="status", status=400, message=PROMPT)
    )
    failure = await env.fail(gateway, ask("cheap"))

    span = only_span(exported)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == failure.type
    assert not span.events  # no exception event carrying the provider's message
    for value in span.attributes.values():
        assert PROMPT not in str(value)
