"""Anthropic Messages (`POST {base_url}/messages`)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from activities.gateway.errors import malformed_response
from activities.gateway.providers.base import (
    RAW_ARGUMENTS_KEY,
    REQUEST_ID_HEADER,
    OnReply,
    ProviderReply,
    as_int,
    check_tool_messages,
    endpoint,
    post_json,
)
from activities.gateway.registry import ResolvedEntry
from activities.gateway.types import ChatMessage, ModelCallInput, TokenUsage, ToolCall, ToolSpec

ANTHROPIC_VERSION = "2023-06-01"


def schema_instructions(schema: dict[str, Any]) -> str:
    """Messages has no response_format: the schema goes into the system prompt
    and the activity validates what comes back."""
    return (
        "Reply with a single JSON value that is valid against this JSON Schema. "
        "Output only the JSON: no prose, no code fences.\n"
        f"JSON Schema:\n{json.dumps(schema, indent=2, sort_keys=True)}"
    )


Content = str | list[dict[str, Any]]


def _blocks(content: Content) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []


def _merge(first: Content, second: Content) -> Content:
    """Two turns of one role as one: the API wants user/assistant alternation,
    and all results of one assistant turn's tool calls in ONE user turn."""
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"
    return _blocks(first) + _blocks(second)


def _wire_turn(message: ChatMessage) -> tuple[str, Content]:
    if message.role == "tool":
        result = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content,
        }
        return "user", [result]
    if message.role == "assistant" and message.tool_calls:
        uses = [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            for call in message.tool_calls
        ]
        return "assistant", _blocks(message.content) + uses
    return message.role, message.content


def tool_definition(tool: ToolSpec) -> dict[str, Any]:
    definition: dict[str, Any] = {"name": tool.name}
    if tool.description:
        definition["description"] = tool.description
    definition["input_schema"] = tool.parameters
    return definition


def build_payload(entry: ResolvedEntry, request: ModelCallInput) -> dict[str, Any]:
    system = [m.content for m in request.messages if m.role == "system"]
    if request.json_schema is not None:
        system.append(schema_instructions(request.json_schema))
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            continue
        role, content = _wire_turn(message)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = _merge(messages[-1]["content"], content)
        else:
            messages.append({"role": role, "content": content})
    payload: dict[str, Any] = {
        "model": entry.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
    }
    if system:
        payload["system"] = "\n\n".join(system)
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.tools:
        payload["tools"] = [tool_definition(t) for t in request.tools]
        payload["tool_choice"] = {"type": "auto"}
    return payload


def parse_usage(raw: Any) -> TokenUsage:
    """Anthropic's `input_tokens` excludes cached and cache-written tokens;
    the contract's `input_tokens` is the whole prompt."""
    if not isinstance(raw, dict):
        return TokenUsage()
    plain = as_int(raw.get("input_tokens"))
    cached = as_int(raw.get("cache_read_input_tokens"))
    written = as_int(raw.get("cache_creation_input_tokens"))
    return TokenUsage(
        input_tokens=plain + cached + written,
        output_tokens=as_int(raw.get("output_tokens")),
        cached_input_tokens=cached,
        cache_write_tokens=written,
    )


def _tool_call(name: str, entry: ResolvedEntry, block: dict[str, Any]) -> ToolCall:
    """A `tool_use` block. `input` is always an object in the API; anything
    else is kept verbatim under "_raw" like OpenAI's undecodable arguments."""
    call_id, tool, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not (isinstance(call_id, str) and call_id and isinstance(tool, str) and tool):
        raise malformed_response(name, entry.alias, "a tool_use block has no id or name")
    if not isinstance(arguments, dict):
        arguments = {RAW_ARGUMENTS_KEY: json.dumps(arguments)}
    return ToolCall(id=call_id, name=tool, arguments=arguments)


def parse_reply(name: str, entry: ResolvedEntry, data: dict[str, Any]) -> ProviderReply:
    content = data.get("content")
    if not isinstance(content, list):
        raise malformed_response(name, entry.alias, "no content blocks in a message")
    texts = []
    calls = []
    for block in content:
        if not isinstance(block, dict):
            raise malformed_response(name, entry.alias, "a content block is not an object")
        if block.get("type") == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise malformed_response(name, entry.alias, "a text block has no text")
            texts.append(text)
        elif block.get("type") == "tool_use":
            calls.append(_tool_call(name, entry, block))
    stop_reason = data.get("stop_reason")
    refused = stop_reason == "refusal"
    model = data.get("model")
    return ProviderReply(
        text="".join(texts),
        model=model if isinstance(model, str) and model else entry.model,
        finish_reason=stop_reason if isinstance(stop_reason, str) else None,
        usage=parse_usage(data.get("usage")),
        refused=refused,
        refusal=("".join(texts) or None) if refused else None,
        tool_calls=tuple(calls),
    )


class AnthropicAdapter:
    name = "anthropic"

    async def complete(
        self,
        client: httpx.AsyncClient,
        entry: ResolvedEntry,
        api_key: str | None,
        request: ModelCallInput,
        request_id: str,
        on_reply: OnReply | None = None,
    ) -> ProviderReply:
        check_tool_messages(self.name, entry, request)
        headers = {"anthropic-version": ANTHROPIC_VERSION, REQUEST_ID_HEADER: request_id}
        if api_key:
            headers["x-api-key"] = api_key
        data = await post_json(
            client,
            provider=self.name,
            entry=entry,
            url=endpoint(entry, "messages"),
            headers=headers,
            payload=build_payload(entry, request),
        )
        if on_reply is not None:
            await on_reply(data)
        return parse_reply(self.name, entry, data)

    def parse(self, entry: ResolvedEntry, data: dict[str, Any]) -> ProviderReply:
        return parse_reply(self.name, entry, data)
