"""Provider adapters against the real simulator over HTTP: wire shapes, usage
mapping, refusals and the failure classification of real responses."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.gateway.providers import REQUEST_ID_HEADER, adapter_for
from activities.gateway.providers.anthropic import ANTHROPIC_VERSION
from activities.gateway.providers.base import encodable_text
from activities.gateway.providers.openai import parse_reply as parse_openai_reply
from activities.gateway.registry import ModelRegistry, ResolvedEntry
from activities.gateway.types import ChatMessage, ModelCallInput, TokenUsage
from activities.gateway.types import ProviderErrorType as T
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule
from tests.activities.conftest import SentRequests

SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


def call(
    prompt: str = "hello",
    *,
    system: str | None = None,
    json_schema: dict[str, Any] | None = None,
    temperature: float | None = None,
) -> ModelCallInput:
    messages = [ChatMessage(role="system", content=system)] if system else []
    messages.append(ChatMessage(role="user", content=prompt))
    return ModelCallInput(
        alias="x",
        messages=messages,
        max_tokens=64,
        json_schema=json_schema,
        temperature=temperature,
    )


async def complete(
    registry: ModelRegistry,
    http: httpx.AsyncClient,
    alias: str,
    request: ModelCallInput,
    request_id: str,
    api_key: str | None = "sk-test-key-123456",
):
    entry = registry.entry(alias)
    return await adapter_for(entry.provider).complete(http, entry, api_key, request, request_id)


async def failure(
    registry: ModelRegistry,
    http: httpx.AsyncClient,
    alias: str,
    request_id: str,
    request: ModelCallInput | None = None,
) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await complete(registry, http, alias, request or call(), request_id)
    return caught.value


class TestOpenAIShape:
    async def test_request_and_usage(
        self,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sent: SentRequests,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_rules(
            Rule(
                request_id_prefix=request_id,
                reply="hi there",
                usage={
                    "prompt_tokens": 1200,
                    "completion_tokens": 300,
                    "cached_tokens": 1000,
                    "reasoning_tokens": 120,
                },
            )
        )
        reply = await complete(
            gw_registry, http, "gpt", call(system="be brief", temperature=0.2), request_id, "sk-k1"
        )
        assert reply.text == "hi there"
        assert reply.model == "sim-mini"
        assert reply.finish_reason == "stop"
        assert not reply.refused
        assert reply.usage == TokenUsage(
            input_tokens=1200, output_tokens=300, cached_input_tokens=1000, reasoning_tokens=120
        )

        request = sent.last
        assert str(request.url) == gw_registry.entry("gpt").base_url + "/chat/completions"
        assert request.headers["authorization"] == "Bearer sk-k1"
        assert request.headers[REQUEST_ID_HEADER] == request_id
        body = sent.last_json()
        assert body["model"] == "sim-mini"
        assert body["max_completion_tokens"] == 64 and "max_tokens" not in body
        assert body["temperature"] == 0.2
        assert body["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
        ]
        assert "response_format" not in body
        [logged] = await sim.calls(request_id_prefix=request_id)
        assert logged.outcome == "completed" and logged.request_id == request_id

    async def test_json_schema_goes_in_response_format(
        self,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sent: SentRequests,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        reply = await complete(gw_registry, http, "cheap", call(json_schema=SCHEMA), request_id)
        body = sent.last_json()
        assert body["max_tokens"] == 64
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": SCHEMA, "strict": False},
        }
        assert "authorization" in sent.last.headers  # a key given is a key sent
        # The simulator honours response_format with a schema-valid instance.
        assert '"label"' in reply.text

    async def test_refusal(
        self,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_rules(Rule(request_id_prefix=request_id, refusal=True))
        reply = await complete(gw_registry, http, "cheap", call(), request_id)
        assert reply.refused
        assert reply.refusal
        assert reply.text == ""


class TestAnthropicShape:
    async def test_request_and_usage(
        self,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sent: SentRequests,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_rules(
            Rule(
                request_id_prefix=request_id,
                reply="bonjour",
                usage={
                    "prompt_tokens": 2000,
                    "completion_tokens": 50,
                    "cached_tokens": 1500,
                    "cache_creation_tokens": 300,
                },
            )
        )
        reply = await complete(
            gw_registry, http, "claude", call(system="be brief"), request_id, "sk-ant-k2"
        )
        assert reply.text == "bonjour"
        assert reply.finish_reason == "end_turn"
        # Anthropic's input_tokens (200) excludes cache reads and writes; ours is the total.
        assert reply.usage == TokenUsage(
            input_tokens=2000, output_tokens=50, cached_input_tokens=1500, cache_write_tokens=300
        )
        request = sent.last
        assert str(request.url) == gw_registry.entry("claude").base_url + "/messages"
        assert request.headers["x-api-key"] == "sk-ant-k2"
        assert request.headers["anthropic-version"] == ANTHROPIC_VERSION
        assert "authorization" not in request.headers
        assert request.headers[REQUEST_ID_HEADER] == request_id
        body = sent.last_json()
        assert body["system"] == "be brief"
        assert body["messages"] == [{"role": "user", "content": "hello"}]
        assert body["max_tokens"] == 64

    async def test_schema_instructions_join_the_system_prompt(
        self,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sent: SentRequests,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await complete(
            gw_registry, http, "claude", call(system="classify", json_schema=SCHEMA), request_id
        )
        system = sent.last_json()["system"]
        assert system.startswith("classify\n\n")
        assert "JSON Schema" in system and '"label"' in system
        assert "response_format" not in sent.last_json()

    async def test_tool_message_without_id_is_refused_before_sending(
        self,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sent: SentRequests,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        # Tool results pair with calls by id now (tests/activities/test_tool_calling.py);
        # the old "Tool result:" text fallback is gone.
        request = ModelCallInput(
            alias="claude",
            max_tokens=20,
            messages=[
                ChatMessage(role="user", content="look it up"),
                ChatMessage(role="assistant", content="search(x)"),
                ChatMessage(role="tool", content="42"),
            ],
        )
        error = await failure(gw_registry, http, "claude", request_id, request)
        assert error.type == T.BAD_REQUEST and error.non_retryable
        assert "messages[2]" in error.message and "tool_call_id" in error.message
        assert not sent.requests
        assert not await sim.calls(request_id_prefix=request_id)

    async def test_refusal(
        self,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_rules(Rule(request_id_prefix=request_id, refusal=True))
        reply = await complete(gw_registry, http, "claude", call(), request_id)
        assert reply.refused and reply.finish_reason == "refusal"


@pytest.mark.parametrize("alias", ["cheap", "claude"])
class TestFailures:
    async def test_500_is_retryable(
        self,
        alias: str,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_faults(Fault(kind="status", status=500, request_id_prefix=request_id))
        err = await failure(gw_registry, http, alias, request_id)
        assert err.type == T.SERVER_ERROR and not err.non_retryable
        assert "HTTP 500" in err.message and "simulated fault" in err.message

    async def test_429_honours_retry_after(
        self,
        alias: str,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_faults(
            Fault(kind="status", status=429, retry_after="2", request_id_prefix=request_id)
        )
        err = await failure(gw_registry, http, alias, request_id)
        assert err.type == T.RATE_LIMITED and not err.non_retryable
        assert err.next_retry_delay == timedelta(seconds=2)

    async def test_retry_after_ms_wins(
        self,
        alias: str,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_faults(
            Fault(
                kind="status",
                status=503,
                retry_after="9",
                retry_after_ms=1500,
                request_id_prefix=request_id,
            )
        )
        err = await failure(gw_registry, http, alias, request_id)
        assert err.type == T.OVERLOADED
        assert err.next_retry_delay == timedelta(milliseconds=1500)

    async def test_400_is_not_retryable(
        self,
        alias: str,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_faults(Fault(kind="status", status=400, request_id_prefix=request_id))
        err = await failure(gw_registry, http, alias, request_id)
        assert err.type == T.BAD_REQUEST and err.non_retryable

    async def test_401(
        self,
        alias: str,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_faults(Fault(kind="status", status=401, request_id_prefix=request_id))
        err = await failure(gw_registry, http, alias, request_id)
        assert err.type == T.AUTH and err.non_retryable
        assert "sk-test-key" not in err.message

    async def test_malformed_2xx_is_retryable(
        self,
        alias: str,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        await sim.add_faults(Fault(kind="malformed", request_id_prefix=request_id))
        err = await failure(gw_registry, http, alias, request_id)
        assert err.type == T.MALFORMED and not err.non_retryable

    async def test_timeout_is_retryable_and_aborts_the_call(
        self,
        alias: str,
        gw_registry: ModelRegistry,
        http: httpx.AsyncClient,
        sim: SimulatorControl,
        request_id: str,
    ) -> None:
        entry = gw_registry.entry(alias).model_copy(update={"timeout_s": 0.3})
        await sim.add_faults(Fault(kind="slow", delay_s=3, request_id_prefix=request_id))
        with pytest.raises(ApplicationError) as caught:
            await adapter_for(entry.provider).complete(http, entry, "k", call(), request_id)
        assert caught.value.type == T.TIMEOUT and not caught.value.non_retryable
        [logged] = await sim.wait_for_calls(1, request_id_prefix=request_id)
        assert logged.outcome == "aborted"  # nothing billable happened


async def test_quota_429_is_not_retryable(
    gw_registry: ModelRegistry, http: httpx.AsyncClient, sim: SimulatorControl, request_id: str
) -> None:
    await sim.add_faults(
        Fault(
            kind="status",
            status=429,
            error_code="insufficient_quota",
            error_type="insufficient_quota",
            message="You exceeded your current quota, please check your plan and billing details.",
            retry_after="2",
            request_id_prefix=request_id,
        )
    )
    err = await failure(gw_registry, http, "gpt", request_id)
    assert err.type == T.QUOTA and err.non_retryable and err.next_retry_delay is None


async def test_anthropic_529_is_overloaded(
    gw_registry: ModelRegistry, http: httpx.AsyncClient, sim: SimulatorControl, request_id: str
) -> None:
    await sim.add_faults(
        Fault(kind="status", status=529, retry_after="1", request_id_prefix=request_id)
    )
    err = await failure(gw_registry, http, "claude", request_id)
    assert err.type == T.OVERLOADED and not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=1)


@pytest.mark.parametrize("alias", ["cheap", "claude_small"])
async def test_context_length_exceeded(
    alias: str,
    gw_registry: ModelRegistry,
    http: httpx.AsyncClient,
    sim: SimulatorControl,
    request_id: str,
) -> None:
    # sim-mini's window is 16k simulated tokens (about 4 characters each).
    err = await failure(gw_registry, http, alias, request_id, call("word " * 20_000))
    assert err.type == T.CONTEXT_LENGTH and err.non_retryable
    [logged] = await sim.calls(request_id_prefix=request_id)
    assert logged.outcome == "rejected"


async def test_unknown_model_is_not_found(
    gw_registry: ModelRegistry, http: httpx.AsyncClient, sim: SimulatorControl, request_id: str
) -> None:
    err = await failure(gw_registry, http, "missing_model", request_id)
    assert err.type == T.NOT_FOUND and err.non_retryable
    assert "'missing_model'" in err.message


async def test_connection_refused_is_retryable(
    gw_registry: ModelRegistry, http: httpx.AsyncClient, request_id: str
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    entry: ResolvedEntry = gw_registry.entry("cheap").model_copy(
        update={"base_url": f"http://127.0.0.1:{port}/v1"}
    )
    with pytest.raises(ApplicationError) as caught:
        await adapter_for("simulator").complete(http, entry, None, call(), request_id)
    assert caught.value.type == T.CONNECTION and not caught.value.non_retryable
    assert "simulator" in caught.value.message and "'cheap'" in caught.value.message


class TestOpenAIReplyParsing:
    """Reply shapes the simulator does not produce but compatible servers do."""

    def parse(self, registry: ModelRegistry, data: dict[str, Any]):
        return parse_openai_reply("openai", registry.entry("gpt"), data)

    def test_content_as_text_parts(self, gw_registry: ModelRegistry) -> None:
        data = {
            "model": "m",
            "choices": [
                {
                    "message": {
                        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
                    },
                    "finish_reason": "stop",
                }
            ],
        }
        reply = self.parse(gw_registry, data)
        assert reply.text == "ab" and reply.usage == TokenUsage()

    def test_null_content_without_refusal_is_malformed(self, gw_registry: ModelRegistry) -> None:
        data = {"choices": [{"message": {"content": None}, "finish_reason": "stop"}]}
        with pytest.raises(ApplicationError) as caught:
            self.parse(gw_registry, data)
        assert caught.value.type == T.MALFORMED and not caught.value.non_retryable

    def test_content_filter_finish_reason_is_a_refusal(self, gw_registry: ModelRegistry) -> None:
        data = {"choices": [{"message": {"content": None}, "finish_reason": "content_filter"}]}
        assert self.parse(gw_registry, data).refused

    @pytest.mark.parametrize(("code", "expected"), [(429, T.RATE_LIMITED), (None, T.SERVER_ERROR)])
    def test_error_in_a_200_body_is_translated(
        self, gw_registry: ModelRegistry, code: int | None, expected: str
    ) -> None:
        data = {"error": {"code": code, "message": "upstream said no"}}
        with pytest.raises(ApplicationError) as caught:
            self.parse(gw_registry, data)
        assert caught.value.type == expected
        assert "upstream said no" in caught.value.message

    @pytest.mark.parametrize("data", [{}, {"choices": []}, {"choices": [{"message": "x"}]}])
    def test_missing_parts_are_malformed(
        self, gw_registry: ModelRegistry, data: dict[str, Any]
    ) -> None:
        with pytest.raises(ApplicationError) as caught:
            self.parse(gw_registry, data)
        assert caught.value.type == T.MALFORMED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain, caf\u00e9, \U0001f600, NUL\x00", "plain, caf\u00e9, \U0001f600, NUL\x00"),
        ("lone high \ud83d.", "lone high \ufffd."),
        ("lone low \ude00.", "lone low \ufffd."),
        ("reversed \ude00\ud83d", "reversed \ufffd\ufffd"),
        ("a pair as two \ud83d\ude00", "a pair as two \U0001f600"),
        ("\ud800", "\ufffd"),
    ],
)
def test_encodable_text_replaces_lone_surrogates_only(text: str, expected: str) -> None:
    assert encodable_text(text) == expected
    expected.encode("utf-8")  # what Temporal's JSON payloads need


def test_encodable_text_returns_clean_text_itself() -> None:
    text = "nothing to replace \x00"
    assert encodable_text(text) is text
