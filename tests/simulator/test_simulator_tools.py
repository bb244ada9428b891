"""Tool calling in the simulator, over real HTTP in both wire shapes: scripted
multi-turn conversations (`Rule.after_tool`), ids that round-trip, the 400s
real APIs answer for unpaired tool results, the default that never calls a
tool, and deterministic token counts that include tools."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from simulator.control import SimulatorControl, SimulatorControlError
from simulator.models import Rule, ToolCallSpec, ToolResultSeen
from simulator.server import SimulatorServer
from simulator.tool_turns import ToolTurnError, WireTurn, trace_tool_turns

ORDER_PARAMS = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
}
TRACK_PARAMS = {"type": "object", "properties": {"carrier": {"type": "string"}}}
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": ORDER_PARAMS,
        },
    },
    {"type": "function", "function": {"name": "track_shipment", "parameters": TRACK_PARAMS}},
]
ANTHROPIC_TOOLS = [
    {"name": "lookup_order", "description": "Find an order", "input_schema": ORDER_PARAMS},
    {"name": "track_shipment", "input_schema": TRACK_PARAMS},
]
QUESTION = "Where is my order A-17?"

Msg = dict[str, Any]


@pytest.fixture
async def http(simulator: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator.url, timeout=10) as client:
        yield client


def script() -> list[Rule]:
    """Turn 1 looks the order up, turn 2 tracks it, turn 3 answers: later turns first."""
    return [
        Rule(after_tool="track_shipment", reply="Your order arrives on Friday."),
        Rule(
            after_tool="lookup_order",
            tool_calls=[ToolCallSpec(name="track_shipment", arguments={"carrier": "DHL"})],
        ),
        Rule(
            match="Where is my order",
            tool_calls=[ToolCallSpec(name="lookup_order", arguments={"order_id": "A-17"})],
        ),
    ]


async def chat(http: httpx.AsyncClient, messages: list[dict[str, Any]], **extra: Any) -> Any:
    body = {"model": "sim-mini", "messages": messages, "tools": OPENAI_TOOLS, **extra}
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def messages(http: httpx.AsyncClient, turns: list[dict[str, Any]], **extra: Any) -> Any:
    body = {
        "model": "sim-mini",
        "max_tokens": 200,
        "messages": turns,
        "tools": ANTHROPIC_TOOLS,
        **extra,
    }
    response = await http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# --- scripted multi-turn conversations --------------------------------------------------------


async def test_three_turn_script_on_chat_completions(
    http: httpx.AsyncClient, sim: SimulatorControl
) -> None:
    await sim.add_rules(*script())
    conversation: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]

    first = (await chat(http, conversation))["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    [lookup] = first["message"]["tool_calls"]
    assert lookup["function"]["name"] == "lookup_order"
    assert json.loads(lookup["function"]["arguments"]) == {"order_id": "A-17"}
    conversation += [
        {"role": "assistant", "content": None, "tool_calls": [lookup]},
        {"role": "tool", "tool_call_id": lookup["id"], "content": '{"status": "shipped"}'},
    ]

    second = (await chat(http, conversation))["choices"][0]
    [track] = second["message"]["tool_calls"]
    assert track["function"]["name"] == "track_shipment"
    assert track["id"] != lookup["id"]
    conversation += [
        {"role": "assistant", "content": "", "tool_calls": [track]},
        {"role": "tool", "tool_call_id": track["id"], "content": "ETA Friday"},
    ]

    third = (await chat(http, conversation))["choices"][0]
    assert third["finish_reason"] == "stop"
    assert third["message"]["content"] == "Your order arrives on Friday."
    assert "tool_calls" not in third["message"]

    log = await sim.calls()
    assert [c.tool_call_ids for c in log] == [[lookup["id"]], [track["id"]], None]
    assert [c.tool_results for c in log] == [
        None,
        [ToolResultSeen(tool_call_id=lookup["id"], name="lookup_order")],
        [ToolResultSeen(tool_call_id=track["id"], name="track_shipment")],
    ]
    assert log[1].tool_calls == [ToolCallSpec(name="track_shipment", arguments={"carrier": "DHL"})]


async def test_three_turn_script_on_messages(
    http: httpx.AsyncClient, sim: SimulatorControl
) -> None:
    await sim.add_rules(*script())
    turns: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]

    first = await messages(http, turns)
    assert first["stop_reason"] == "tool_use"
    [lookup] = first["content"]
    assert lookup["type"] == "tool_use" and lookup["id"].startswith("toolu_")
    assert lookup["input"] == {"order_id": "A-17"}
    turns += [
        {"role": "assistant", "content": first["content"]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": lookup["id"], "content": "shipped"}],
        },
    ]

    second = await messages(http, turns)
    [track] = second["content"]
    assert track["name"] == "track_shipment" and track["input"] == {"carrier": "DHL"}
    turns += [
        {"role": "assistant", "content": [{"type": "text", "text": "Tracking."}, track]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": track["id"], "content": "ETA Friday"},
                {"type": "text", "text": "Thanks, and?"},
            ],
        },
    ]

    third = await messages(http, turns)
    assert third["stop_reason"] == "end_turn"
    assert third["content"] == [{"type": "text", "text": "Your order arrives on Friday."}]
    log = await sim.calls()
    assert [c.endpoint for c in log] == ["messages"] * 3
    assert log[2].tool_results == [ToolResultSeen(tool_call_id=track["id"], name="track_shipment")]


async def test_after_tool_needs_the_conversation_to_end_with_that_result(
    http: httpx.AsyncClient, sim: SimulatorControl
) -> None:
    await sim.add_rules(
        Rule(after_tool="lookup_order", reply="after lookup"),
        Rule(after_tool="*", match="REFUND", reply="a tool said REFUND"),
    )
    lookup: Msg = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup_order", "arguments": "{}"},
    }
    track: Msg = {
        **lookup,
        "id": "call_2",
        "function": {"name": "track_shipment", "arguments": "{}"},
    }
    base: list[Msg] = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [lookup]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
    ]
    reply = await chat(http, base)
    assert reply["choices"][0]["message"]["content"] == "after lookup"

    # A user turn after the result: the conversation no longer ends with it.
    followed = await chat(http, [*base, {"role": "user", "content": "hm?"}])
    assert followed["choices"][0]["message"]["content"].startswith("[simulated sim-mini]")

    # Two calls in one turn: either result counts; "*" matches any tool, and
    # `match` reads tool results.
    parallel: list[Msg] = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [track, lookup]},
        {"role": "tool", "tool_call_id": "call_2", "content": "REFUND issued"},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
    ]
    assert (await chat(http, parallel))["choices"][0]["message"]["content"] == "after lookup"
    only_track: list[Msg] = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [track]},
        {"role": "tool", "tool_call_id": "call_2", "content": "REFUND issued"},
    ]
    reply = await chat(http, only_track)
    assert reply["choices"][0]["message"]["content"] == "a tool said REFUND"


def test_after_tool_must_name_a_tool() -> None:
    with pytest.raises(ValidationError, match="after_tool"):
        Rule(after_tool="", reply="x")


async def test_control_api_rejects_an_empty_after_tool(sim: SimulatorControl) -> None:
    with pytest.raises(SimulatorControlError, match="after_tool"):
        await sim._send("POST", "/_sim/rules", json={"rules": [{"after_tool": "", "reply": "x"}]})


# --- the default never calls a tool -----------------------------------------------------------


async def test_unscripted_model_answers_in_text_even_with_tools(
    http: httpx.AsyncClient, sim: SimulatorControl
) -> None:
    data = await chat(http, [{"role": "user", "content": QUESTION}])
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert choice["message"]["content"] == f"[simulated sim-mini] reply to: {QUESTION}"

    data = await messages(http, [{"role": "user", "content": QUESTION}])
    assert data["stop_reason"] == "end_turn"
    assert [b["type"] for b in data["content"]] == ["text"]

    # After a tool result, the default still answers (so an agent loop ends),
    # and it answers what the user asked, not the tool's output.
    turns: list[Msg] = [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}],
        },
    ]
    data = await messages(http, turns)
    assert data["content"] == [
        {"type": "text", "text": f"[simulated sim-mini] reply to: {QUESTION}"}
    ]
    assert [c.tool_calls for c in await sim.calls()] == [None, None, None]


async def test_tool_choice_still_forces_a_call(http: httpx.AsyncClient) -> None:
    data = await messages(
        http,
        [{"role": "user", "content": QUESTION}],
        tool_choice={"type": "tool", "name": "lookup_order"},
    )
    [block] = data["content"]
    assert block["name"] == "lookup_order" and isinstance(block["input"]["order_id"], str)


# --- ids ---------------------------------------------------------------------------------------


async def test_ids_are_deterministic_per_conversation_or_scripted(
    http: httpx.AsyncClient, sim: SimulatorControl
) -> None:
    await sim.add_rules(
        Rule(match="fixed", tool_calls=[ToolCallSpec(name="lookup_order", id="call_fixed")]),
        Rule(tool_calls=[ToolCallSpec(name="lookup_order"), ToolCallSpec(name="lookup_order")]),
    )
    one = await chat(http, [{"role": "user", "content": QUESTION}])
    again = await chat(http, [{"role": "user", "content": QUESTION}])
    other = await chat(http, [{"role": "user", "content": "Another question"}])
    ids = [c["id"] for c in one["choices"][0]["message"]["tool_calls"]]
    assert len(set(ids)) == 2 and all(i.startswith("call_sim_") for i in ids)
    assert [c["id"] for c in again["choices"][0]["message"]["tool_calls"]] == ids
    assert not set(ids) & {c["id"] for c in other["choices"][0]["message"]["tool_calls"]}

    fixed = await chat(http, [{"role": "user", "content": "fixed"}])
    assert fixed["choices"][0]["message"]["tool_calls"][0]["id"] == "call_fixed"
    logged = await sim.calls()
    assert logged[0].tool_call_ids == ids and logged[-1].tool_call_ids == ["call_fixed"]


# --- unpaired tool results are 400s in each provider's shape ----------------------------------

CALL = {"id": "call_a", "type": "function", "function": {"name": "lookup_order", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("conversation", "param", "phrase"),
    [
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_zzz", "content": "r"},
            ],
            "messages.[2].tool_call_id",
            "'tool_call_id' of 'call_zzz' not found",
            id="unknown-id",
        ),
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "tool", "tool_call_id": "call_a", "content": "r"},
            ],
            "messages.[1].role",
            "must be a response to a preceeding message with 'tool_calls'",
            id="no-call-before",
        ),
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_a", "content": "r"},
                {"role": "user", "content": "again"},
                {"role": "tool", "tool_call_id": "call_a", "content": "r"},
            ],
            "messages.[4].role",
            "must be a response to a preceeding message",
            id="answered-twice",
        ),
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "user", "content": "never mind"},
            ],
            "messages.[1].role",
            "did not have response messages: call_a",
            id="unanswered",
        ),
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "tool", "content": "r"},
            ],
            "messages.[1].tool_call_id",
            "Missing parameter 'tool_call_id'",
            id="no-id",
        ),
    ],
)
async def test_chat_completions_rejects_unpaired_tool_messages(
    http: httpx.AsyncClient,
    sim: SimulatorControl,
    conversation: list[dict[str, Any]],
    param: str,
    phrase: str,
) -> None:
    response = await http.post(
        "/v1/chat/completions",
        json={"model": "sim-mini", "messages": conversation, "tools": OPENAI_TOOLS},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert phrase in error["message"]
    assert await sim.calls() == []  # refused before it reached the model


def _use(call_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": "lookup_order", "input": {}}


def _result(call_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": "r"}


@pytest.mark.parametrize(
    ("turns", "phrase"),
    [
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [_use("toolu_a")]},
                {"role": "user", "content": [_result("toolu_zzz")]},
            ],
            "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
            "toolu_zzz",
            id="unknown-id",
        ),
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [_use("toolu_a"), _use("toolu_b")]},
                {"role": "user", "content": [_result("toolu_a")]},
                {"role": "user", "content": [_result("toolu_b")]},
            ],
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately "
            "after: toolu_b",
            id="results-split-over-two-turns",
        ),
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "no tools here"},
                {"role": "user", "content": [{"type": "text", "text": "x"}, _result("toolu_a")]},
            ],
            "messages.2.content.1: unexpected `tool_use_id`",
            id="no-tool-use-before",
        ),
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [_use("toolu_a")]},
                {"role": "user", "content": [{"type": "tool_result", "content": "r"}]},
            ],
            "messages.2.content.0.tool_result.tool_use_id: Field required",
            id="no-id",
        ),
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [_use("toolu_a"), _use("toolu_a")]},
                {"role": "user", "content": [_result("toolu_a")]},
            ],
            "`tool_use` ids must be unique",
            id="duplicate-id",
        ),
    ],
)
async def test_messages_rejects_unpaired_tool_results(
    http: httpx.AsyncClient, sim: SimulatorControl, turns: list[dict[str, Any]], phrase: str
) -> None:
    response = await http.post(
        "/v1/messages",
        json={"model": "sim-mini", "max_tokens": 50, "messages": turns, "tools": ANTHROPIC_TOOLS},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert phrase in body["error"]["message"]
    assert await sim.calls() == []


async def test_tools_without_a_name_are_400s(http: httpx.AsyncClient) -> None:
    bad = [{"type": "function", "function": {"parameters": {}}}]
    response = await http.post(
        "/v1/chat/completions",
        json={
            "model": "sim-mini",
            "messages": [{"role": "user", "content": "q"}],
            "tools": bad,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools[0].function.name"
    response = await http.post(
        "/v1/messages",
        json={
            "model": "sim-mini",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "q"}],
            "tools": [{"name": "x"}],
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "tools.0.custom.input_schema: Field required"


def test_trace_pairs_parallel_calls_and_reports_the_trailing_results() -> None:
    turns = [
        WireTurn(),
        WireTurn(calls=[("a", "lookup_order"), ("b", "track_shipment")]),
        WireTurn(results=[("b", None)]),
        WireTurn(results=[("a", None)]),
    ]
    trailing = trace_tool_turns(turns, results_in_next_message_only=False)
    assert [(s.tool_call_id, s.name) for s in trailing] == [
        ("b", "track_shipment"),
        ("a", "lookup_order"),
    ]
    with pytest.raises(ToolTurnError) as caught:
        trace_tool_turns(turns, results_in_next_message_only=True)
    assert caught.value.kind == "unanswered" and caught.value.ids == ["a"]
    assert trace_tool_turns([*turns, WireTurn()], results_in_next_message_only=False) == []


# --- token counting ---------------------------------------------------------------------------


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


async def test_tool_definitions_are_counted_the_same_on_both_endpoints(
    http: httpx.AsyncClient,
) -> None:
    question = [{"role": "user", "content": QUESTION}]
    plain = (await chat(http, question, tools=None))["usage"]["prompt_tokens"]
    with_tools = (await chat(http, question))["usage"]["prompt_tokens"]
    expected = _tokens("lookup_orderFind an order" + _canonical(ORDER_PARAMS)) + 3
    expected += _tokens("track_shipment" + _canonical(TRACK_PARAMS)) + 3
    assert with_tools - plain == expected

    plain_a = (await messages(http, question, tools=None))["usage"]["input_tokens"]
    with_tools_a = (await messages(http, question))["usage"]["input_tokens"]
    assert with_tools_a - plain_a == expected


async def test_tool_call_arguments_count_canonically(
    http: httpx.AsyncClient, sim: SimulatorControl
) -> None:
    def conversation(arguments: str) -> list[dict[str, Any]]:
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup_order", "arguments": arguments},
        }
        return [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ]

    spaced = await chat(http, conversation('{ "order_id": "A-17",  "rush": true }'), tools=None)
    tight = await chat(http, conversation('{"rush":true,"order_id":"A-17"}'), tools=None)
    call_text = "lookup_order" + "(" + _canonical({"order_id": "A-17", "rush": True}) + ")"
    expected = sum(_tokens(t) + 3 for t in ["q", call_text, "ok"]) + 3
    assert spaced["usage"]["prompt_tokens"] == tight["usage"]["prompt_tokens"] == expected
    # Both logged the same conversation text, so a `match` rule sees the same prompt.
    first, second = await sim.calls()
    assert first.prompt == second.prompt == f"q\n{call_text}\nok"

    # A reply's tool call costs the same text.
    await sim.add_rules(
        Rule(tool_calls=[ToolCallSpec(name="lookup_order", arguments={"order_id": "A-17"})])
    )
    data = await chat(http, [{"role": "user", "content": "q"}])
    reply_text = "lookup_order(" + _canonical({"order_id": "A-17"}) + ")"
    assert data["usage"]["completion_tokens"] == _tokens(reply_text)
