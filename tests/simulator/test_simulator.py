"""The model simulator, exercised over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import struct
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import pytest

from simulator.control import SimulatorControl, SimulatorControlError
from simulator.embeddings import cosine
from simulator.models import (
    Fault,
    Rule,
    SimModel,
    SimulatorConfig,
    ToolCallSpec,
    load_simulator_config,
)
from simulator.server import SimulatorServer

USER_TEXT = "Summarise the quarterly report for the board."


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer() as server:
        yield server


@pytest.fixture(scope="module")
async def control(server: SimulatorServer) -> AsyncIterator[SimulatorControl]:
    async with SimulatorControl(server.url) as ctl:
        yield ctl


@pytest.fixture(autouse=True)
async def _clean(control: SimulatorControl) -> None:
    await control.reset()


@pytest.fixture(scope="module")
async def http(server: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


def chat_body(text: str = USER_TEXT, model: str = "sim-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def messages_body(text: str = USER_TEXT, model: str = "sim-large", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def expected_tokens(*texts: str) -> int:
    return sum(math.ceil(len(t) / 4) + 3 for t in texts) + 3


# --- OpenAI chat completions ---------------------------------------------------------------


async def test_openai_chat_happy_path(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    body = {
        "model": "sim-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": USER_TEXT}]},
        ],
        "temperature": 0.2,
        "max_tokens": 500,
    }
    resp = await http.post("/v1/chat/completions", json=body, headers={"X-Chorus-Request-Id": "r1"})
    assert resp.status_code == 200
    assert resp.headers["x-simulator"] == "chorus-simulator"
    data = resp.json()
    assert data["object"] == "chat.completion"
    assert data["system_fingerprint"] == "chorus-simulator"
    assert data["model"] == "sim-mini"
    choice = data["choices"][0]
    reply = f"[simulated sim-mini] reply to: {USER_TEXT[:80]}"
    assert choice["message"] == {"role": "assistant", "content": reply, "refusal": None}
    assert choice["finish_reason"] == "stop"
    prompt = expected_tokens("You are terse.", USER_TEXT)
    completion = math.ceil(len(reply) / 4)
    assert data["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }

    [call] = await control.calls()
    assert call.endpoint == "chat"
    assert call.outcome == "completed"
    assert call.status == 200
    assert call.request_id == "r1"
    assert call.prompt == f"You are terse.\n{USER_TEXT}"
    assert call.reply == reply
    assert call.usage is not None and call.usage["prompt_tokens"] == prompt
    assert call.finished_at is not None and call.finished_at - call.started_at >= 0.015


async def test_openai_truncates_at_max_tokens(http: httpx.AsyncClient) -> None:
    resp = await http.post("/v1/chat/completions", json=chat_body(max_completion_tokens=3))
    data = resp.json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["message"]["content"] == "[simulated s"
    assert data["usage"]["completion_tokens"] == 3


async def test_openai_rejects_streaming_and_bad_bodies(http: httpx.AsyncClient) -> None:
    resp = await http.post("/v1/chat/completions", json=chat_body(stream=True))
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert "stream" in resp.json()["error"]["message"]

    resp = await http.post("/v1/chat/completions", json={"model": "sim-mini", "messages": []})
    assert resp.status_code == 400
    assert "messages" in resp.json()["error"]["message"]

    resp = await http.post("/v1/chat/completions", content=b"{not json")
    assert resp.status_code == 400
    assert resp.headers["x-simulator"] == "chorus-simulator"


async def test_unknown_model_is_404_in_each_provider_shape(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    resp = await http.post("/v1/chat/completions", json=chat_body(model="gpt-nope"))
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "model_not_found"
    assert "gpt-nope" in error["message"]

    resp = await http.post("/v1/messages", json=messages_body(model="claude-nope"))
    assert resp.status_code == 404
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "not_found_error"

    calls = await control.calls()
    assert [(c.model, c.outcome, c.status) for c in calls] == [
        ("gpt-nope", "rejected", 404),
        ("claude-nope", "rejected", 404),
    ]


async def test_models_list(http: httpx.AsyncClient) -> None:
    openai_ids = [m["id"] for m in (await http.get("/v1/models")).json()["data"]]
    assert {"sim-mini", "sim-mini-b", "sim-large", "sim-writer", "sim-judge", "sim-embed"} <= set(
        openai_ids
    )
    anthropic = (await http.get("/v1/models", headers={"anthropic-version": "2023-06-01"})).json()
    assert anthropic["data"][0]["type"] == "model"
    assert anthropic["has_more"] is False


# --- Anthropic messages --------------------------------------------------------------------


async def test_anthropic_messages_happy_path(http: httpx.AsyncClient) -> None:
    body = messages_body(system=[{"type": "text", "text": "Be kind."}])
    headers = {"x-api-key": "sim", "anthropic-version": "2023-06-01"}
    resp = await http.post("/v1/messages", json=body, headers=headers)
    assert resp.status_code == 200
    assert resp.headers["x-simulator"] == "chorus-simulator"
    data = resp.json()
    reply = f"[simulated sim-large] reply to: {USER_TEXT[:80]}"
    assert data["type"] == "message"
    assert data["role"] == "assistant"
    assert data["model"] == "sim-large"
    assert data["content"] == [{"type": "text", "text": reply}]
    assert data["stop_reason"] == "end_turn"
    assert data["usage"] == {
        "input_tokens": expected_tokens("Be kind.", USER_TEXT),
        "output_tokens": math.ceil(len(reply) / 4),
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }


async def test_anthropic_requires_max_tokens_and_truncates(http: httpx.AsyncClient) -> None:
    body = messages_body()
    del body["max_tokens"]
    resp = await http.post("/v1/messages", json=body)
    assert resp.status_code == 400
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in resp.json()["error"]["message"]

    resp = await http.post("/v1/messages", json=messages_body(max_tokens=2))
    assert resp.json()["stop_reason"] == "max_tokens"
    assert resp.json()["content"][0]["text"] == "[simulat"


# --- structured output ----------------------------------------------------------------------

TRIAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "other"]},
        "summary": {"type": "string", "minLength": 40, "maxLength": 200},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "score": {"type": "integer", "minimum": 3, "maximum": 7},
        "urgent": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True},
        "owner": {"$ref": "#/$defs/Person"},
        "due": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]},
        "notes": {"type": "string"},
    },
    "required": ["category", "summary", "confidence", "score", "urgent", "tags", "owner", "due"],
    "additionalProperties": False,
    "$defs": {
        "Person": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 18}},
            "required": ["name", "age"],
        }
    },
}


async def test_json_schema_default_reply_is_a_valid_instance(http: httpx.AsyncClient) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "triage", "schema": TRIAGE_SCHEMA}}
    resp = await http.post("/v1/chat/completions", json=chat_body(response_format=fmt))
    parsed = json.loads(resp.json()["choices"][0]["message"]["content"])
    jsonschema.validate(parsed, TRIAGE_SCHEMA)
    assert parsed["category"] == "billing"
    assert parsed["confidence"] == 0.9
    assert parsed["score"] == 3
    assert parsed["urgent"] is True
    assert len(parsed["tags"]) == 2
    assert "notes" not in parsed

    resp = await http.post(
        "/v1/chat/completions", json=chat_body(response_format={"type": "json_object"})
    )
    parsed = json.loads(resp.json()["choices"][0]["message"]["content"])
    assert parsed == {"answer": f"[simulated sim-mini] reply to: {USER_TEXT}"}


async def test_schema_given_as_system_instruction_is_followed(http: httpx.AsyncClient) -> None:
    """Messages has no response_format: clients put the schema in the system prompt."""
    system = (
        "Reply with a single JSON value that is valid against this JSON Schema. "
        f"Output only the JSON.\nJSON Schema:\n{json.dumps(TRIAGE_SCHEMA, indent=2)}"
    )
    data = (await http.post("/v1/messages", json=messages_body(system=system))).json()
    jsonschema.validate(json.loads(data["content"][0]["text"]), TRIAGE_SCHEMA)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^[A-Z]+$"},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"type": "integer", "maximum": -5},
        {"type": "number", "minimum": 2, "multipleOf": 0.5},
        {"type": "object", "properties": {"risk_score": {"type": "number", "maximum": 0.5}}},
        {"allOf": [{"properties": {"a": {"const": 1}}, "required": ["a"]}, {"required": ["b"]}]},
        {"type": ["string", "null"], "format": "email"},
        {"type": "array", "items": {"enum": ["x", "y"]}, "minItems": 2, "uniqueItems": True},
        {"oneOf": [{"type": "integer", "minimum": 10}, {"type": "string"}]},
    ],
)
def test_minimal_instance_satisfies_schema(schema: dict[str, Any]) -> None:
    from simulator.schema_instance import minimal_instance

    jsonschema.validate(minimal_instance(schema), schema)


# --- scripted rules --------------------------------------------------------------------------


async def test_rules_replies_sequence_times_and_filters(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    await control.add_rules(
        Rule(match=r"(?i)invoice", model="sim-mini", replies=["first", "second"]),
        Rule(match="invoice", json={"kind": "json"}, times=1),
        Rule(request_id_prefix="run-7/", reply="scoped"),
    )

    async def ask(text: str, model: str = "sim-mini", rid: str | None = None) -> str:
        headers = {"X-Chorus-Request-Id": rid} if rid else {}
        resp = await http.post(
            "/v1/chat/completions", json=chat_body(text, model=model), headers=headers
        )
        return resp.json()["choices"][0]["message"]["content"]

    assert await ask("Invoice 12 is wrong") == "first"
    assert await ask("INVOICE again") == "second"
    assert await ask("invoice yet again") == "second"  # the last reply repeats
    assert json.loads(await ask("invoice", model="sim-large")) == {"kind": "json"}
    assert (await ask("invoice", model="sim-large")).startswith("[simulated sim-large]")  # times=1
    assert await ask("anything", rid="run-7/step-2") == "scoped"
    assert (await ask("anything", rid="run-8/step-2")).startswith("[simulated")


async def test_rule_usage_overrides(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    usage = {"prompt_tokens": 1000, "cached_tokens": 400, "completion_tokens": 50}
    await control.add_rules(Rule(reply="ok", usage=usage | {"cache_creation_tokens": 100}))
    data = (await http.post("/v1/chat/completions", json=chat_body())).json()
    assert data["usage"]["prompt_tokens"] == 1000
    assert data["usage"]["completion_tokens"] == 50
    assert data["usage"]["prompt_tokens_details"] == {"cached_tokens": 400}

    data = (await http.post("/v1/messages", json=messages_body())).json()
    assert data["usage"] == {
        "input_tokens": 500,
        "output_tokens": 50,
        "cache_read_input_tokens": 400,
        "cache_creation_input_tokens": 100,
    }


async def test_tool_calls_in_both_shapes(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    call = ToolCallSpec(name="lookup_order", arguments={"order_id": 42})
    await control.add_rules(Rule(match="order", tool_calls=[call]))
    tools = [{"type": "function", "function": {"name": "lookup_order", "parameters": {}}}]
    data = (
        await http.post("/v1/chat/completions", json=chat_body("where is my order?", tools=tools))
    ).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [tool_call] = choice["message"]["tool_calls"]
    assert tool_call["type"] == "function"
    assert tool_call["id"].startswith("call_")
    assert tool_call["function"]["name"] == "lookup_order"
    assert json.loads(tool_call["function"]["arguments"]) == {"order_id": 42}
    assert choice["message"]["content"] is None

    data = (await http.post("/v1/messages", json=messages_body("my order?"))).json()
    assert data["stop_reason"] == "tool_use"
    [block] = data["content"]
    assert block["type"] == "tool_use"
    assert block["name"] == "lookup_order"
    assert block["input"] == {"order_id": 42}

    [openai_call, _] = await control.calls()
    assert openai_call.tool_calls == [call]


async def test_forced_tool_choice_defaults_to_schema_instance(http: httpx.AsyncClient) -> None:
    params = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    tools = [{"type": "function", "function": {"name": "weather", "parameters": params}}]
    choice = {"type": "function", "function": {"name": "weather"}}
    body = chat_body(tools=tools, tool_choice=choice)
    data = (await http.post("/v1/chat/completions", json=body)).json()
    [tool_call] = data["choices"][0]["message"]["tool_calls"]
    jsonschema.validate(json.loads(tool_call["function"]["arguments"]), params)


async def test_refusal_in_both_shapes(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_rules(Rule(match="forbidden", refusal=True, reply="I can't do that."))
    data = (await http.post("/v1/chat/completions", json=chat_body("forbidden thing"))).json()
    message = data["choices"][0]["message"]
    assert data["choices"][0]["finish_reason"] == "content_filter"
    assert message["content"] is None
    assert message["refusal"] == "I can't do that."

    data = (await http.post("/v1/messages", json=messages_body("forbidden thing"))).json()
    assert data["stop_reason"] == "refusal"


# --- faults ------------------------------------------------------------------------------------


async def test_status_faults_with_retry_headers(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    await control.add_faults(
        Fault(kind="status", status=429, retry_after="2", retry_after_ms=1500, times=2),
        Fault(kind="status", status=429, error_code="insufficient_quota", model="sim-large"),
    )
    for _ in range(2):
        resp = await http.post("/v1/chat/completions", json=chat_body())
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "2"
        assert resp.headers["retry-after-ms"] == "1500"
        assert resp.headers["x-simulator"] == "chorus-simulator"
        assert resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert (await http.post("/v1/chat/completions", json=chat_body())).status_code == 200

    resp = await http.post("/v1/chat/completions", json=chat_body(model="sim-large"))
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "insufficient_quota"
    assert resp.json()["error"]["type"] == "insufficient_quota"
    assert "retry-after" not in resp.headers

    calls = await control.calls()
    assert [(c.outcome, c.status) for c in calls] == [
        ("fault", 429),
        ("fault", 429),
        ("completed", 200),
        ("fault", 429),
    ]


async def test_anthropic_overloaded_and_server_errors(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    await control.add_faults(
        Fault(kind="status", status=529, retry_after="1"),
        Fault(kind="status", status=500, message="boom"),
    )
    resp = await http.post("/v1/messages", json=messages_body())
    assert resp.status_code == 529
    assert resp.headers["retry-after"] == "1"
    assert resp.json()["error"]["type"] == "overloaded_error"
    resp = await http.post("/v1/messages", json=messages_body())
    assert resp.status_code == 500
    assert resp.json()["error"] == {"type": "api_error", "message": "boom"}


async def test_slow_and_malformed_faults(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    await control.add_faults(
        Fault(kind="slow", delay_s=0.3, match="slowly"),
        Fault(kind="malformed", model="sim-mini-b"),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await http.post("/v1/chat/completions", json=chat_body("answer slowly"))
    assert loop.time() - started >= 0.3
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["finish_reason"] == "stop"

    resp = await http.post("/v1/chat/completions", json=chat_body(model="sim-mini-b"))
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)

    slow, malformed = await control.calls()
    assert (slow.outcome, malformed.outcome) == ("completed", "fault")


async def test_client_timeout_during_slow_fault_is_aborted_and_gives_rule_back(
    server: SimulatorServer, http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    await control.add_rules(Rule(reply="scripted once", times=1))
    await control.add_faults(Fault(kind="slow", delay_s=2.0))
    async with httpx.AsyncClient(base_url=server.url, timeout=0.2) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post(
                "/v1/chat/completions", json=chat_body(), headers={"X-Chorus-Request-Id": "w1"}
            )
    [in_flight] = await control.wait_for_calls(request_id_prefix="w1", include_pending=True)
    for _ in range(100):
        [in_flight] = await control.calls(request_id_prefix="w1", include_pending=True)
        if in_flight.outcome != "pending":
            break
        await asyncio.sleep(0.02)
    assert in_flight.outcome == "aborted"
    assert in_flight.usage is None

    # The retry gets the scripted reply the aborted call never delivered.
    resp = await http.post("/v1/chat/completions", json=chat_body())
    assert resp.json()["choices"][0]["message"]["content"] == "scripted once"
    assert [c.outcome for c in await control.calls()] == ["aborted", "completed"]


async def test_call_log_filters_and_pending_calls(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    await control.add_faults(Fault(kind="slow", delay_s=0.5, request_id_prefix="slow/"))
    for rid, model in [("a/1", "sim-mini"), ("a/2", "sim-large"), ("b/1", "sim-mini")]:
        headers = {"X-Chorus-Request-Id": rid}
        await http.post("/v1/chat/completions", json=chat_body(model=model), headers=headers)
    await http.post("/v1/chat/completions", json=chat_body())

    assert [c.request_id for c in await control.calls(request_id_prefix="a/")] == ["a/1", "a/2"]
    assert [c.request_id for c in await control.calls(model="sim-mini")] == ["a/1", "b/1", None]
    assert [c.seq for c in await control.calls()] == [1, 2, 3, 4]
    assert await control.calls(request_id_prefix="a/", model="sim-mini") == (
        await control.calls(request_id_prefix="a/1")
    )

    slow = asyncio.create_task(
        http.post(
            "/v1/chat/completions", json=chat_body(), headers={"X-Chorus-Request-Id": "slow/1"}
        )
    )
    [pending] = await control.wait_for_calls(request_id_prefix="slow/", include_pending=True)
    assert pending.outcome == "pending"
    assert await control.calls(request_id_prefix="slow/") == []
    assert (await slow).status_code == 200
    [done] = await control.calls(request_id_prefix="slow/")
    assert done.outcome == "completed"


async def test_control_api_rejects_bad_scripts(control: SimulatorControl) -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        Rule(match="(unclosed")
    with pytest.raises(ValueError, match="unknown usage keys"):
        Rule(usage={"prompt": 3})
    with pytest.raises(SimulatorControlError, match="422"):
        await control._send("POST", "/_sim/rules", json={"rules": [{"repy": "typo"}]})


# --- embeddings -------------------------------------------------------------------------------


async def test_embeddings_are_deterministic_and_similar_for_shared_words(
    http: httpx.AsyncClient,
) -> None:
    texts = [
        "refund policy for damaged items",
        "what is the refund policy for items that arrived damaged",
        "quarterly revenue grew in the northern region",
    ]
    resp = await http.post("/v1/embeddings", json={"model": "sim-embed", "input": texts})
    assert resp.status_code == 200
    data = resp.json()
    vectors = [d["embedding"] for d in data["data"]]
    assert [d["index"] for d in data["data"]] == [0, 1, 2]
    assert all(len(v) == 64 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-9 for v in vectors)
    assert cosine(vectors[0], vectors[1]) > 0.5
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    tokens = sum(math.ceil(len(t) / 4) for t in texts)
    assert data["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    single = await http.post("/v1/embeddings", json={"model": "sim-embed", "input": texts[0]})
    assert single.json()["data"][0]["embedding"] == vectors[0]

    b64 = await http.post(
        "/v1/embeddings",
        json={"model": "sim-embed", "input": texts[0], "encoding_format": "base64"},
    )
    raw = base64.b64decode(b64.json()["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert all(abs(a - b) < 1e-6 for a, b in zip(decoded, vectors[0], strict=True))


# --- configuration: keys, context windows, cached and reasoning tokens ------------------------

TIGHT = SimulatorConfig(
    models={
        "tiny": SimModel(context_window=20, latency_ms=0),
        "thinker": SimModel(reasoning_tokens=7, cached_prompt_tokens=10_000),
    },
    require_api_key=True,
)


@pytest.fixture(scope="module")
async def tight() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        SimulatorServer(TIGHT) as tight_server,
        httpx.AsyncClient(base_url=tight_server.url, timeout=10) as client,
    ):
        yield client


async def test_missing_api_key_is_401_in_provider_shape(tight: httpx.AsyncClient) -> None:
    resp = await tight.post("/v1/chat/completions", json=chat_body(model="thinker"))
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"
    resp = await tight.post("/v1/messages", json=messages_body(model="thinker"))
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    resp = await tight.post(
        "/v1/messages", json=messages_body(model="thinker"), headers={"x-api-key": "k"}
    )
    assert resp.status_code == 200


async def test_context_length_exceeded(tight: httpx.AsyncClient) -> None:
    long_text = "x" * 100  # 25 + 3 + 3 = 31 tokens > 20
    auth = {"Authorization": "Bearer k"}
    resp = await tight.post(
        "/v1/chat/completions", json=chat_body(long_text, model="tiny"), headers=auth
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "context_length_exceeded"
    assert "31 tokens" in resp.json()["error"]["message"]

    resp = await tight.post(
        "/v1/messages", json=messages_body(long_text, model="tiny"), headers={"x-api-key": "k"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == {
        "type": "invalid_request_error",
        "message": "prompt is too long: 31 tokens > 20 maximum",
    }
    ok = await tight.post("/v1/chat/completions", json=chat_body("hi", model="tiny"), headers=auth)
    assert ok.status_code == 200


async def test_reasoning_and_cached_tokens_from_model_config(tight: httpx.AsyncClient) -> None:
    resp = await tight.post(
        "/v1/chat/completions",
        json=chat_body("hi", model="thinker"),
        headers={"Authorization": "Bearer k"},
    )
    usage = resp.json()["usage"]
    reply = resp.json()["choices"][0]["message"]["content"]
    prompt = expected_tokens("hi")
    assert usage["prompt_tokens"] == prompt
    assert usage["prompt_tokens_details"]["cached_tokens"] == prompt  # capped at the prompt
    assert usage["completion_tokens"] == math.ceil(len(reply) / 4) + 7
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 7


# --- packaging -------------------------------------------------------------------------------


def test_default_models_yaml() -> None:
    from simulator.models import DEFAULT_CONFIG_PATH

    config = load_simulator_config(DEFAULT_CONFIG_PATH)
    latencies = {name: m.latency_ms for name, m in config.models.items()}
    assert latencies == {
        "sim-mini": 20,
        "sim-mini-b": 20,
        "sim-large": 60,
        "sim-writer": 40,
        "sim-judge": 40,
        "sim-embed": 5,
    }
    assert config.models["sim-large"].reasoning_tokens == 0


async def test_module_entry_point_serves_and_says_simulator() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        "--port",
        "0",
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=15)).decode()
        assert "SIMULATOR" in line
        match = re.search(r"url=(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        async with httpx.AsyncClient(base_url=match.group(1), timeout=5) as client:
            for _ in range(100):
                try:
                    health = await client.get("/_sim/health")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            assert health.json()["simulator"] == "chorus-simulator"
            assert health.headers["x-simulator"] == "chorus-simulator"
    finally:
        proc.terminate()
        await proc.wait()


async def test_unscripted_answer_to_a_grounded_prompt_cites_its_first_source(
    http: httpx.AsyncClient,
) -> None:
    prompt = "Sources:\n[refunds.md#2] Refunds take 5 days.\n[returns.md#0] ...\nQ: how long?"
    grounded = await http.post("/v1/chat/completions", json=chat_body(prompt, "sim-large"))
    plain = await http.post("/v1/chat/completions", json=chat_body("no sources here"))

    assert grounded.json()["choices"][0]["message"]["content"].endswith("[refunds.md#2]")
    assert "#" not in plain.json()["choices"][0]["message"]["content"]
