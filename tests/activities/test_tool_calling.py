"""Tool calling through the gateway: the OpenAI and Anthropic wire shapes
against the real simulator, a scripted three-turn tool conversation through
`call_model` on every provider shape (the test plays the agent loop), ids
that the simulator checks, and replies that never crash on bad arguments."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs
from temporalio.exceptions import ApplicationError

from activities.gateway.activities import ModelGateway
from activities.gateway.providers import RAW_ARGUMENTS_KEY, adapter_for
from activities.gateway.providers.anthropic import parse_reply as parse_anthropic_reply
from activities.gateway.providers.openai import build_payload as build_openai_payload
from activities.gateway.providers.openai import parse_reply as parse_openai_reply
from activities.gateway.registry import ModelRegistry
from activities.gateway.types import (
    ChatMessage,
    ModelCallInput,
    ModelCallResult,
    ToolCall,
    ToolSpec,
)
from activities.gateway.types import ProviderErrorType as T
from simulator.control import SimulatorControl
from simulator.models import Rule, ToolCallSpec, ToolResultSeen
from tests.activities.conftest import SentRequests
from tests.activities.test_call_model import Env

ORDER_PARAMS = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
}
TRACK_PARAMS = {
    "type": "object",
    "properties": {"carrier": {"type": "string"}, "tracking": {"type": "string"}},
    "required": ["carrier"],
}
TOOLS = [
    ToolSpec(name="lookup_order", description="Find an order by id", parameters=ORDER_PARAMS),
    ToolSpec(name="track_shipment", parameters=TRACK_PARAMS),
]
QUESTION = "Where is my order A-17?"
SYSTEM = "You are a support agent."


@pytest.fixture
def env() -> Env:
    return Env()


def ask(alias: str, messages: list[ChatMessage] | None = None, **kwargs: Any) -> ModelCallInput:
    return ModelCallInput(
        alias=alias,
        messages=messages
        or [
            ChatMessage(role="system", content=SYSTEM),
            ChatMessage(role="user", content=QUESTION),
        ],
        max_tokens=200,
        step="agent",
        tools=kwargs.pop("tools", TOOLS),
        **kwargs,
    )


def run_tool(call: ToolCall) -> str:
    """The tools the test's agent loop runs."""
    if call.name == "lookup_order":
        return json.dumps({"order": call.arguments["order_id"], "status": "shipped"})
    if call.name == "track_shipment":
        return f"{call.arguments['carrier']} parcel arrives Friday"
    raise AssertionError(f"the model called an unknown tool: {call.name}")


def script(prefix: str) -> list[Rule]:
    """lookup_order, then (seeing it shipped) track_shipment, then the answer."""
    return [
        Rule(
            request_id_prefix=prefix,
            after_tool="track_shipment",
            match="arrives Friday",
            reply="Your order A-17 arrives on Friday.",
        ),
        Rule(
            request_id_prefix=prefix,
            after_tool="lookup_order",
            match='"status": "shipped"',
            tool_calls=[ToolCallSpec(name="track_shipment", arguments={"carrier": "DHL"})],
        ),
        Rule(
            request_id_prefix=prefix,
            match="Where is my order",
            tool_calls=[ToolCallSpec(name="lookup_order", arguments={"order_id": "A-17"})],
        ),
    ]


FINISH = {
    "cheap": ("tool_calls", "stop"),
    "gpt": ("tool_calls", "stop"),
    "claude": ("tool_use", "end_turn"),
}


# --- the agent loop on every provider shape ----------------------------------------------------


@pytest.mark.parametrize("alias", ["cheap", "gpt", "claude"])
async def test_three_turn_tool_conversation_through_call_model(
    alias: str,
    gateway: ModelGateway,
    sim: SimulatorControl,
    env: Env,
    keys: dict[str, str],
) -> None:
    await sim.add_rules(*script(env.workflow_id))
    messages = [
        ChatMessage(role="system", content=SYSTEM),
        ChatMessage(role="user", content=QUESTION),
    ]
    results: list[ModelCallResult] = []
    for _ in range(5):  # the loop's turn limit; the script ends in three
        result = await env.call(gateway, ask(alias, messages))
        results.append(result)
        if not result.tool_calls:
            break
        messages.append(
            ChatMessage(role="assistant", content=result.text, tool_calls=result.tool_calls)
        )
        messages += [
            ChatMessage(role="tool", tool_call_id=call.id, content=run_tool(call))
            for call in result.tool_calls
        ]

    assert [[c.name for c in r.tool_calls] for r in results] == [
        ["lookup_order"],
        ["track_shipment"],
        [],
    ]
    assert results[0].tool_calls[0].arguments == {"order_id": "A-17"}
    assert results[1].tool_calls[0].arguments == {"carrier": "DHL"}
    assert results[-1].text == "Your order A-17 arrives on Friday."
    calls_finish, answer_finish = FINISH[alias]
    assert [r.finish_reason for r in results] == [calls_finish, calls_finish, answer_finish]
    assert results[0].text == "" and results[1].text == ""
    # Each turn re-sends a longer conversation, and each is billed.
    inputs = [r.usage.input_tokens for r in results]
    assert inputs == sorted(inputs) and len(set(inputs)) == 3
    assert all(r.cost_usd > 0 for r in results)

    # The simulator saw the ids it issued come back with the results.
    log = await sim.calls(request_id_prefix=env.workflow_id)
    assert [c.outcome for c in log] == ["completed"] * 3
    ids = [[c.id for c in r.tool_calls] for r in results]
    assert [c.tool_call_ids for c in log] == [ids[0], ids[1], None]
    assert [c.tool_results for c in log] == [
        None,
        [ToolResultSeen(tool_call_id=ids[0][0], name="lookup_order")],
        [ToolResultSeen(tool_call_id=ids[1][0], name="track_shipment")],
    ]
    assert log[0].tool_calls == [ToolCallSpec(name="lookup_order", arguments={"order_id": "A-17"})]


@pytest.mark.parametrize("alias", ["cheap", "claude"])
async def test_without_a_script_the_model_answers_in_text(
    alias: str, gateway: ModelGateway, sim: SimulatorControl, env: Env, keys: dict[str, str]
) -> None:
    result = await env.call(gateway, ask(alias))
    assert result.tool_calls == []
    assert result.finish_reason in ("stop", "end_turn")
    assert result.text.endswith(f"reply to: {QUESTION}")
    [logged] = await sim.calls(request_id_prefix=env.workflow_id)
    assert logged.tool_calls is None


@pytest.mark.parametrize("alias", ["cheap", "gpt", "claude"])
async def test_a_result_for_an_unknown_call_id_is_a_bad_request(
    alias: str,
    gateway: ModelGateway,
    sent: SentRequests,
    sim: SimulatorControl,
    env: Env,
    keys: dict[str, str],
) -> None:
    messages = [
        ChatMessage(role="user", content=QUESTION),
        ChatMessage(
            role="assistant",
            content="",
            tool_calls=[ToolCall(id="call_real", name="lookup_order", arguments={})],
        ),
        ChatMessage(role="tool", tool_call_id="call_bogus", content="shipped"),
    ]
    error = await env.fail(gateway, ask(alias, messages))
    assert error.type == T.BAD_REQUEST and error.non_retryable
    assert "HTTP 400" in error.message and "call_bogus" in error.message
    assert len(sent.requests) == 1  # the provider (simulator) refused it
    assert await sim.calls(request_id_prefix=env.workflow_id) == []


@pytest.mark.parametrize("alias", ["gpt", "claude"])
async def test_a_tool_message_without_id_is_refused_before_sending(
    alias: str, gateway: ModelGateway, sent: SentRequests, env: Env, keys: dict[str, str]
) -> None:
    messages = [
        ChatMessage(role="user", content=QUESTION),
        ChatMessage(role="tool", content="shipped"),
    ]
    error = await env.fail(gateway, ask(alias, messages))
    assert error.type == T.BAD_REQUEST and error.non_retryable
    assert "messages[1]" in error.message and "tool_call_id" in error.message
    assert sent.requests == []


async def test_schema_and_tools_together_are_a_config_error(
    gateway: ModelGateway, sent: SentRequests, env: Env
) -> None:
    error = await env.fail(gateway, ask("cheap", json_schema=ORDER_PARAMS))
    assert error.type == T.CONFIG and error.non_retryable
    assert "'agent'" in error.message and "2 tool(s)" in error.message
    assert sent.requests == []


async def test_call_log_and_structured_log_count_tool_calls(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_rules(
        Rule(
            request_id_prefix=env.workflow_id,
            reply="Checking both.",
            tool_calls=[
                ToolCallSpec(name="lookup_order", arguments={"order_id": "A-17"}),
                ToolCallSpec(name="track_shipment", arguments={"carrier": "UPS"}),
            ],
        )
    )
    with capture_logs() as logs:
        result = await env.call(gateway, ask("cheap"))
    [done] = [entry for entry in logs if entry["event"] == "model_call.done"]
    assert done["tool_calls"] == 2 and done["tools_offered"] == 2
    assert result.text == "Checking both."
    assert [c.name for c in result.tool_calls] == ["lookup_order", "track_shipment"]
    [logged] = await sim.calls(request_id_prefix=env.workflow_id)
    assert logged.tool_call_ids == [c.id for c in result.tool_calls]
    assert logged.reply == "Checking both."
    # The result survives the trip through history (pydantic round trip).
    assert ModelCallResult.model_validate_json(result.model_dump_json()) == result


# --- wire shapes, read from what went over the wire -------------------------------------------


async def complete(
    registry: ModelRegistry,
    http: httpx.AsyncClient,
    alias: str,
    request: ModelCallInput,
    request_id: str,
):
    entry = registry.entry(alias)
    return await adapter_for(entry.provider).complete(http, entry, "sk-k", request, request_id)


async def test_openai_request_and_reply_shapes(
    gw_registry: ModelRegistry,
    http: httpx.AsyncClient,
    sent: SentRequests,
    sim: SimulatorControl,
    request_id: str,
) -> None:
    await sim.add_rules(
        Rule(
            request_id_prefix=request_id,
            after_tool="lookup_order",
            tool_calls=[
                ToolCallSpec(name="track_shipment", arguments={"carrier": "DHL", "tracking": "Z9"})
            ],
        )
    )
    request = ask(
        "gpt",
        [
            ChatMessage(role="system", content=SYSTEM),
            ChatMessage(role="user", content=QUESTION),
            ChatMessage(
                role="assistant",
                content="",
                tool_calls=[
                    ToolCall(id="call_1", name="lookup_order", arguments={"order_id": "A-17"})
                ],
            ),
            ChatMessage(role="tool", tool_call_id="call_1", content="shipped"),
        ],
    )
    reply = await complete(gw_registry, http, "gpt", request, request_id)

    body = sent.last_json()
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Find an order by id",
                "parameters": ORDER_PARAMS,
            },
        },
        {"type": "function", "function": {"name": "track_shipment", "parameters": TRACK_PARAMS}},
    ]
    assert body["tool_choice"] == "auto"
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order_id": "A-17"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
    ]

    assert reply.finish_reason == "tool_calls"
    assert reply.text == ""
    [logged] = await sim.calls(request_id_prefix=request_id)
    assert reply.tool_calls == (
        ToolCall(
            id=logged.tool_call_ids[0],  # type: ignore[index]
            name="track_shipment",
            arguments={"carrier": "DHL", "tracking": "Z9"},
        ),
    )
    assert logged.tool_results == [ToolResultSeen(tool_call_id="call_1", name="lookup_order")]


async def test_no_tools_means_no_tool_fields(
    gw_registry: ModelRegistry, http: httpx.AsyncClient, sent: SentRequests, request_id: str
) -> None:
    for alias in ("gpt", "claude"):
        await complete(gw_registry, http, alias, ask(alias, tools=[]), request_id)
        body = sent.last_json()
        assert "tools" not in body and "tool_choice" not in body


async def test_anthropic_request_and_reply_shapes(
    gw_registry: ModelRegistry,
    http: httpx.AsyncClient,
    sent: SentRequests,
    sim: SimulatorControl,
    request_id: str,
) -> None:
    await sim.add_rules(
        Rule(
            request_id_prefix=request_id,
            after_tool="track_shipment",
            reply="One more check.",
            tool_calls=[ToolCallSpec(name="lookup_order", arguments={"order_id": "B-2"})],
        )
    )
    calls = [
        ToolCall(id="toolu_1", name="lookup_order", arguments={"order_id": "A-17"}),
        ToolCall(id="toolu_2", name="track_shipment", arguments={"carrier": "DHL"}),
    ]
    request = ask(
        "claude",
        [
            ChatMessage(role="system", content=SYSTEM),
            ChatMessage(role="user", content=QUESTION),
            ChatMessage(role="assistant", content="Let me check.", tool_calls=calls),
            ChatMessage(role="tool", tool_call_id="toolu_1", content="shipped"),
            ChatMessage(role="tool", tool_call_id="toolu_2", content="arrives Friday"),
            ChatMessage(role="user", content="Anything else?"),
        ],
    )
    reply = await complete(gw_registry, http, "claude", request, request_id)

    body = sent.last_json()
    assert body["system"] == SYSTEM
    assert body["tools"] == [
        {
            "name": "lookup_order",
            "description": "Find an order by id",
            "input_schema": ORDER_PARAMS,
        },
        {"name": "track_shipment", "input_schema": TRACK_PARAMS},
    ]
    assert body["tool_choice"] == {"type": "auto"}
    assert body["messages"] == [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "lookup_order",
                    "input": {"order_id": "A-17"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "track_shipment",
                    "input": {"carrier": "DHL"},
                },
            ],
        },
        {
            # Both results in ONE user turn, as the Messages API requires, and
            # the user's follow-up joins that turn (roles must alternate).
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "shipped"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "arrives Friday"},
                {"type": "text", "text": "Anything else?"},
            ],
        },
    ]

    assert reply.finish_reason == "tool_use"
    assert reply.text == "One more check."
    [logged] = await sim.calls(request_id_prefix=request_id)
    [call_id] = logged.tool_call_ids or []
    assert call_id.startswith("toolu_")
    assert reply.tool_calls == (
        ToolCall(id=call_id, name="lookup_order", arguments={"order_id": "B-2"}),
    )
    assert [seen.name for seen in logged.tool_results or []] == ["lookup_order", "track_shipment"]


async def test_anthropic_tool_only_assistant_turn_has_no_empty_text_block(
    gw_registry: ModelRegistry, http: httpx.AsyncClient, sent: SentRequests, request_id: str
) -> None:
    request = ask(
        "claude",
        [
            ChatMessage(role="user", content=QUESTION),
            ChatMessage(
                role="assistant",
                content="",
                tool_calls=[ToolCall(id="toolu_9", name="lookup_order", arguments={})],
            ),
            ChatMessage(role="tool", tool_call_id="toolu_9", content="none found"),
        ],
    )
    await complete(gw_registry, http, "claude", request, request_id)
    assistant, results = sent.last_json()["messages"][1:]
    assert assistant["content"] == [
        {"type": "tool_use", "id": "toolu_9", "name": "lookup_order", "input": {}}
    ]
    assert results == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "none found"}],
    }


# --- replies the simulator does not produce but real models do --------------------------------


def _openai_reply(arguments: Any, **call: Any) -> dict[str, Any]:
    tool_call = {
        "id": "call_x",
        "type": "function",
        "function": {"name": "lookup_order", "arguments": arguments},
        **call,
    }
    return {
        "model": "m",
        "choices": [
            {
                "message": {"role": "assistant", "content": None, "tool_calls": [tool_call]},
                "finish_reason": "tool_calls",
            }
        ],
    }


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"order_id": "A-17"}', {"order_id": "A-17"}),
        ('{"order_id": "A-17"', {RAW_ARGUMENTS_KEY: '{"order_id": "A-17"'}),
        ("[1, 2]", {RAW_ARGUMENTS_KEY: "[1, 2]"}),
        ("", {}),
        ({"order_id": "A-17"}, {"order_id": "A-17"}),
        (None, {RAW_ARGUMENTS_KEY: "null"}),
    ],
)
def test_openai_arguments_never_crash_the_reply(
    gw_registry: ModelRegistry, arguments: Any, expected: dict[str, Any]
) -> None:
    reply = parse_openai_reply("openai", gw_registry.entry("gpt"), _openai_reply(arguments))
    assert reply.tool_calls == (ToolCall(id="call_x", name="lookup_order", arguments=expected),)
    assert reply.text == "" and reply.finish_reason == "tool_calls"


def test_raw_arguments_go_back_to_openai_verbatim(gw_registry: ModelRegistry) -> None:
    broken = '{"order_id": "A-17"'
    request = ask(
        "gpt",
        [
            ChatMessage(role="user", content=QUESTION),
            ChatMessage(
                role="assistant",
                content="",
                tool_calls=[
                    ToolCall(id="c", name="lookup_order", arguments={RAW_ARGUMENTS_KEY: broken})
                ],
            ),
            ChatMessage(role="tool", tool_call_id="c", content="error: arguments are not JSON"),
        ],
    )
    body = build_openai_payload(gw_registry.entry("gpt"), request)
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == broken


@pytest.mark.parametrize(
    "call", [{"id": ""}, {"function": {"arguments": "{}"}}, {"function": "lookup_order"}]
)
def test_openai_tool_call_without_id_or_name_is_malformed(
    gw_registry: ModelRegistry, call: dict[str, Any]
) -> None:
    with pytest.raises(ApplicationError) as caught:
        parse_openai_reply("openai", gw_registry.entry("gpt"), _openai_reply("{}", **call))
    assert caught.value.type == T.MALFORMED and not caught.value.non_retryable
    assert "tool_calls[0]" in caught.value.message


def test_anthropic_tool_use_blocks(gw_registry: ModelRegistry) -> None:
    entry = gw_registry.entry("claude")
    data = {
        "model": "m",
        "stop_reason": "tool_use",
        "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_a", "name": "lookup_order", "input": {"x": 1}},
            {"type": "tool_use", "id": "toolu_b", "name": "track_shipment", "input": "odd"},
        ],
    }
    reply = parse_anthropic_reply("anthropic", entry, data)
    assert reply.text == "Looking." and reply.finish_reason == "tool_use"
    assert reply.tool_calls == (
        ToolCall(id="toolu_a", name="lookup_order", arguments={"x": 1}),
        ToolCall(id="toolu_b", name="track_shipment", arguments={RAW_ARGUMENTS_KEY: '"odd"'}),
    )
    data["content"] = [{"type": "tool_use", "name": "lookup_order", "input": {}}]
    with pytest.raises(ApplicationError) as caught:
        parse_anthropic_reply("anthropic", entry, data)
    assert caught.value.type == T.MALFORMED
