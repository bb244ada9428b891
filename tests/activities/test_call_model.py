"""`call_model` and `describe_models` run with a real activity context
(`ActivityEnvironment`) against the real simulator."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from activities.gateway.activities import ModelGateway
from activities.gateway.types import (
    ChatMessage,
    DescribeModelsInput,
    ModelCallInput,
    ModelCallResult,
    TokenUsage,
    ToolSpec,
)
from activities.gateway.types import ProviderErrorType as T
from core.names import CALL_MODEL, DESCRIBE_MODELS
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule, ToolCallSpec
from tests.activities.conftest import ANTHROPIC_KEY_ENV, OPENAI_KEY_ENV
from tests.activity_env import ActivityEnv, run_activity

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"enum": ["billing", "bug", "other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["label", "confidence"],
    "additionalProperties": False,
}


@dataclass
class Env(ActivityEnv):
    """call_model's activity context: a workflow id unique to the test (the
    simulator's request ids start with it), attempt 2, and its heartbeats."""

    activity_type: str = CALL_MODEL
    activity_id: str = "7"
    attempt: int = 2

    @property
    def request_id(self) -> str:
        return f"{self.workflow_id}/{self.workflow_run_id}/{self.activity_id}"

    async def call(self, gateway: ModelGateway, req: ModelCallInput) -> ModelCallResult:
        return await self.execute(gateway.call_model, req)

    async def fail(self, gateway: ModelGateway, req: ModelCallInput) -> ApplicationError:
        return await self.raised(gateway.call_model, req)


def ask(alias: str, prompt: str = "hello", **kwargs: Any) -> ModelCallInput:
    return ModelCallInput(
        alias=alias,
        messages=[
            ChatMessage(role="system", content="You are terse."),
            ChatMessage(role="user", content=prompt),
        ],
        max_tokens=128,
        step="classify",
        **kwargs,
    )


@pytest.fixture
def env() -> Env:
    return Env()


async def test_simulator_call_reports_usage_cost_and_latency(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_rules(
        Rule(
            request_id_prefix=env.workflow_id,
            reply="Paris.",
            usage={
                "prompt_tokens": 10_000,
                "completion_tokens": 2_000,
                "cached_tokens": 6_000,
                "reasoning_tokens": 500,
            },
        )
    )
    result = await env.call(gateway, ask("strong"))
    assert result.alias == "strong"
    assert result.provider == "simulator"
    assert result.model == "sim-large"
    assert result.text == "Paris."
    assert result.finish_reason == "stop"
    assert result.usage == TokenUsage(
        input_tokens=10_000, output_tokens=2_000, cached_input_tokens=6_000, reasoning_tokens=500
    )
    # 4000 plain input at 3.00, 6000 cached at 0.30, 1500 output at 15.00, 500 reasoning at 20.00
    expected = (4_000 * 3.0 + 6_000 * 0.30 + 1_500 * 15.0 + 500 * 20.0) / 1_000_000
    assert result.cost_usd == pytest.approx(expected)
    assert result.latency_ms >= 60  # sim-large answers after 60 ms
    assert result.parsed is None and result.schema_errors is None and result.valid
    # 60 ms is less than one heartbeat interval (0.1 s): no heartbeat round trip.
    assert not env.heartbeats

    [logged] = await sim.calls(request_id_prefix=env.workflow_id)
    assert logged.request_id == env.request_id
    assert logged.outcome == "completed"


async def test_anthropic_call_costs_cache_reads_and_writes(
    gateway: ModelGateway, sim: SimulatorControl, env: Env, keys: dict[str, str]
) -> None:
    await sim.add_rules(
        Rule(
            request_id_prefix=env.workflow_id,
            reply="ok",
            usage={
                "prompt_tokens": 10_000,
                "completion_tokens": 1_000,
                "cached_tokens": 8_000,
                "cache_creation_tokens": 1_000,
            },
        )
    )
    result = await env.call(gateway, ask("claude"))
    assert result.provider == "anthropic"
    assert result.usage == TokenUsage(
        input_tokens=10_000,
        output_tokens=1_000,
        cached_input_tokens=8_000,
        cache_write_tokens=1_000,
    )
    expected = (1_000 * 3.0 + 8_000 * 0.30 + 1_000 * 3.75 + 1_000 * 15.0) / 1_000_000
    assert result.cost_usd == pytest.approx(expected)


async def test_heartbeats_keep_coming_during_a_slow_call(
    gateway: ModelGateway, sim: SimulatorControl
) -> None:
    env = Env(heartbeat_timeout=timedelta(seconds=0.3))  # a beat every 0.1 s
    await sim.add_faults(Fault(kind="slow", delay_s=0.6, request_id_prefix=env.workflow_id))
    result = await env.call(gateway, ask("cheap"))
    assert result.text
    assert len(env.heartbeats) >= 4


async def test_heartbeat_interval_falls_back_to_the_registry(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    # "strong" has heartbeat_timeout_s 0.3 in the test registry; the activity
    # info carries none, as when a workflow forgets to set one.
    await sim.add_faults(Fault(kind="slow", delay_s=0.6, request_id_prefix=env.workflow_id))
    await env.call(gateway, ask("strong"))
    assert len(env.heartbeats) >= 4


async def test_valid_structured_output_is_parsed(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_rules(
        Rule(
            request_id_prefix=env.workflow_id,
            reply='```json\n{"label": "bug", "confidence": 0.9, "tags": ["crash"]}\n```',
        )
    )
    result = await env.call(gateway, ask("cheap", json_schema=SCHEMA))
    assert result.valid
    assert result.parsed == {"label": "bug", "confidence": 0.9, "tags": ["crash"]}


async def test_invalid_structured_output_is_returned_with_reasons(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_rules(
        Rule(
            request_id_prefix=env.workflow_id,
            json={"label": "refund", "confidence": 2, "tags": ["a", 3], "extra": True},
        )
    )
    result = await env.call(gateway, ask("cheap", json_schema=SCHEMA))
    assert not result.valid
    assert result.parsed == {"label": "refund", "confidence": 2, "tags": ["a", 3], "extra": True}
    errors = result.schema_errors or []
    assert any(e.startswith("$.label:") for e in errors)
    assert any(e.startswith("$.confidence:") and "maximum" in e for e in errors)
    assert any(e.startswith("$.tags[1]:") for e in errors)
    assert any("extra" in e for e in errors)
    assert result.cost_usd > 0  # an invalid answer is still paid for


async def test_non_json_reply_is_invalid_not_an_error(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_rules(Rule(request_id_prefix=env.workflow_id, reply="I think it is a bug."))
    result = await env.call(gateway, ask("cheap", json_schema=SCHEMA))
    assert result.parsed is None
    assert result.schema_errors and "not valid JSON" in result.schema_errors[0]


async def test_refusal_is_a_non_retryable_content_refused(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_rules(Rule(request_id_prefix=env.workflow_id, refusal=True))
    err = await env.fail(gateway, ask("cheap"))
    assert err.type == T.REFUSED
    assert err.non_retryable
    assert "'cheap'" in err.message
    assert err.details[0]["cost_usd"] > 0  # the refusal was billed; the workflow can count it


async def test_500_is_retryable(gateway: ModelGateway, sim: SimulatorControl, env: Env) -> None:
    await sim.add_faults(Fault(kind="status", status=500, request_id_prefix=env.workflow_id))
    err = await env.fail(gateway, ask("cheap"))
    assert err.type == T.SERVER_ERROR and not err.non_retryable


async def test_429_retry_after_sets_next_retry_delay(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_faults(
        Fault(kind="status", status=429, retry_after="2", request_id_prefix=env.workflow_id)
    )
    err = await env.fail(gateway, ask("cheap"))
    assert err.type == T.RATE_LIMITED and not err.non_retryable
    # Retry-After plus a small jitter (0.5 s + 10 %), so callers told the
    # same time do not all come back at once.
    assert err.next_retry_delay is not None
    assert timedelta(seconds=2) <= err.next_retry_delay <= timedelta(seconds=2.7)


async def test_retry_after_over_the_cap_makes_the_alias_unavailable(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_faults(
        Fault(kind="status", status=429, retry_after="600", request_id_prefix=env.workflow_id)
    )
    err = await env.fail(gateway, ask("cheap"))
    assert err.type == T.UNAVAILABLE and err.non_retryable
    assert "asked to wait 600 s" in err.message and "max_retry_after_s 60" in err.message


async def test_retryable_failures_get_full_jitter(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_faults(
        Fault(kind="status", status=503, times=20, request_id_prefix=env.workflow_id)
    )
    delays = {(await env.fail(gateway, ask("cheap"))).next_retry_delay for _ in range(5)}
    assert len(delays) == 5  # drawn, not one fixed backoff
    assert all(d is not None and timedelta(0) <= d <= timedelta(seconds=2) for d in delays)


async def test_400_is_not_retryable(gateway: ModelGateway, sim: SimulatorControl, env: Env) -> None:
    await sim.add_faults(Fault(kind="status", status=400, request_id_prefix=env.workflow_id))
    err = await env.fail(gateway, ask("cheap"))
    assert err.type == T.BAD_REQUEST and err.non_retryable


async def test_timeout_from_the_registry_entry(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_faults(Fault(kind="slow", delay_s=3, request_id_prefix=env.workflow_id))
    err = await env.fail(gateway, ask("impatient"))
    assert err.type == T.TIMEOUT and not err.non_retryable
    assert "0.3 s" in err.message


async def test_missing_key_env_names_the_variable(
    gateway: ModelGateway,
    sim: SimulatorControl,
    env: Env,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(OPENAI_KEY_ENV, raising=False)
    err = await env.fail(gateway, ask("gpt"))
    assert err.type == T.CONFIG and err.non_retryable
    assert OPENAI_KEY_ENV in err.message and "'gpt'" in err.message
    assert await sim.calls(request_id_prefix=env.workflow_id) == []


async def test_key_is_read_at_call_time_and_never_logged(
    gateway: ModelGateway,
    sim: SimulatorControl,
    env: Env,
    keys: dict[str, str],
) -> None:
    secret_prompt = "my password is hunter2"
    with capture_logs() as logs:
        result = await env.call(gateway, ask("claude", secret_prompt))
    assert result.provider == "anthropic"
    [done] = [entry for entry in logs if entry["event"] == "model_call.done"]
    assert done["workflow_id"] == env.workflow_id
    assert done["run_id"] == "run-1"
    assert done["activity"] == CALL_MODEL
    assert done["attempt"] == 2
    assert done["step"] == "classify"
    assert done["alias"] == "claude"
    assert done["model"] == "sim-large"
    dumped = repr(logs)
    assert keys[ANTHROPIC_KEY_ENV] not in dumped
    assert "hunter2" not in dumped


async def test_failures_are_logged_with_their_type(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_faults(
        Fault(kind="status", status=503, retry_after="1", request_id_prefix=env.workflow_id)
    )
    with capture_logs() as logs:
        await env.fail(gateway, ask("cheap"))
    [failed] = [entry for entry in logs if entry["event"] == "model_call.failed"]
    assert failed["error_type"] == T.OVERLOADED
    assert failed["retryable"] is True
    assert 1.0 <= failed["retry_in_s"] <= 1.6  # Retry-After plus its jitter
    assert failed["log_level"] == "warning"


async def test_unknown_alias_is_a_config_error(gateway: ModelGateway, env: Env) -> None:
    err = await env.fail(gateway, ask("nonexistent"))
    assert err.type == T.CONFIG and err.non_retryable
    assert "'nonexistent'" in err.message and "cheap" in err.message


async def test_invalid_schema_fails_before_paying_for_a_call(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    err = await env.fail(gateway, ask("cheap", json_schema={"type": "nonsense"}))
    assert err.type == T.CONFIG and err.non_retryable
    assert "'classify'" in err.message and "$.type" in err.message
    assert await sim.calls(request_id_prefix=env.workflow_id) == []


async def test_describe_models(gateway: ModelGateway) -> None:
    result = await run_activity(
        gateway.describe_models, DescribeModelsInput(aliases=["strong", "nope", "cheap", "nope"])
    )
    assert sorted(result.models) == ["cheap", "strong"]
    assert result.unknown == ["nope"]
    strong = result.models["strong"]
    assert strong.model == "sim-large" and strong.provider == "simulator"
    assert strong.prices.cached_input_per_mtok == 0.30
    assert strong.heartbeat_timeout_s == 0.3
    assert "127.0.0.1" not in result.model_dump_json()  # no URLs cross into history


def test_activities_have_their_stable_names(gateway: ModelGateway) -> None:
    from temporalio import activity

    names = [activity._Definition.must_from_callable(fn).name for fn in gateway.activities]
    assert names == [CALL_MODEL, DESCRIBE_MODELS]


async def test_owned_client_is_closed(gw_registry: Any) -> None:
    gateway = ModelGateway(gw_registry)
    await gateway.aclose()
    assert gateway._http.is_closed


LONE_SURROGATE_REPLY = "caf\ud800 ok\x00end"
"""A reply holding a lone surrogate (valid JSON text as `"\\ud800"`, not
encodable as UTF-8) and a NUL (encodable, so kept)."""


@pytest.mark.parametrize("alias", ["cheap", "claude"])
async def test_a_lone_surrogate_in_a_reply_becomes_u_fffd_and_the_result_travels(
    gateway: ModelGateway, sim: SimulatorControl, env: Env, keys: dict[str, str], alias: str
) -> None:
    """The provider's JSON may escape a lone surrogate; Temporal's JSON
    payload converter cannot encode one, so a reply holding it would fail
    the paid call after the fact. The gateway returns U+FFFD in its place
    (in the text and in tool-call arguments), NUL as it came."""
    await sim.add_rules(
        Rule(request_id_prefix=env.workflow_id, match="text", reply=LONE_SURROGATE_REPLY),
        Rule(
            request_id_prefix=env.workflow_id,
            match="tool",
            tool_calls=[ToolCallSpec(name="lookup", arguments={"q": "x\udfffy"})],
        ),
    )

    text = await env.call(gateway, ask(alias, "text please"))
    tools = [ToolSpec(name="lookup", parameters={"type": "object"})]
    called = await env.call(gateway, ask(alias, "tool please", tools=tools))

    assert text.text == "caf\ufffd ok\x00end"
    assert [c.arguments for c in called.tool_calls] == [{"q": "x\ufffdy"}]
    for result in (text, called):
        payload = pydantic_data_converter.payload_converter.to_payloads([result])
        assert pydantic_data_converter.payload_converter.from_payloads(
            payload, [ModelCallResult]
        ) == [result]
        assert result.cost_usd > 0
    calls = await sim.calls(request_id_prefix=env.workflow_id)
    assert [c.outcome for c in calls] == ["completed", "completed"]
    assert calls[0].reply == LONE_SURROGATE_REPLY  # the provider really sent it
