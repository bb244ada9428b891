"""Anthropic Messages (`POST {base_url}/messages`)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from activities.gateway.errors import malformed_response
from activities.gateway.providers.base import (
    REQUEST_ID_HEADER,
    ProviderReply,
    as_int,
    chat_turns,
    endpoint,
    post_json,
)
from activities.gateway.registry import ResolvedEntry
from activities.gateway.types import ModelCallInput, TokenUsage

ANTHROPIC_VERSION = "2023-06-01"


def schema_instructions(schema: dict[str, Any]) -> str:
    """Messages has no response_format: the schema goes into the system prompt
    and the activity validates what comes back."""
    return (
        "Reply with a single JSON value that is valid against this JSON Schema. "
        "Output only the JSON: no prose, no code fences.\n"
        f"JSON Schema:\n{json.dumps(schema, indent=2, sort_keys=True)}"
    )


def build_payload(entry: ResolvedEntry, request: ModelCallInput) -> dict[str, Any]:
    system, turns = chat_turns(request)
    if request.json_schema is not None:
        system.append(schema_instructions(request.json_schema))
    # Consecutive turns of one role are merged: the API wants user/assistant
    # alternation (folded tool results can make two user turns in a row).
    messages: list[dict[str, str]] = []
    for role, content in turns:
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += f"\n\n{content}"
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


def parse_reply(name: str, entry: ResolvedEntry, data: dict[str, Any]) -> ProviderReply:
    content = data.get("content")
    if not isinstance(content, list):
        raise malformed_response(name, entry.alias, "no content blocks in a message")
    texts = []
    for block in content:
        if not isinstance(block, dict):
            raise malformed_response(name, entry.alias, "a content block is not an object")
        if block.get("type") == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise malformed_response(name, entry.alias, "a text block has no text")
            texts.append(text)
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
    ) -> ProviderReply:
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
        return parse_reply(self.name, entry, data)
