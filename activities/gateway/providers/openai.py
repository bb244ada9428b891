"""OpenAI-compatible chat completions (`POST {base_url}/chat/completions`).

Also serves vLLM, Ollama, llama.cpp server, OpenRouter and the built-in
simulator, which all speak this API; `name` labels which one it is.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from activities.gateway.errors import malformed_response, translate_http_error
from activities.gateway.providers.base import (
    REQUEST_ID_HEADER,
    ProviderReply,
    as_int,
    endpoint,
    post_json,
)
from activities.gateway.registry import ResolvedEntry
from activities.gateway.types import ModelCallInput, TokenUsage

REFUSAL_FINISH_REASONS = frozenset({"content_filter"})


def build_payload(entry: ResolvedEntry, request: ModelCallInput) -> dict[str, Any]:
    messages = [
        {
            "role": "user" if m.role == "tool" else m.role,
            "content": f"Tool result:\n{m.content}" if m.role == "tool" else m.content,
        }
        for m in request.messages
    ]
    payload: dict[str, Any] = {
        "model": entry.model,
        "messages": messages,
        entry.max_tokens_param: request.max_tokens,
    }
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.json_schema is not None:
        # strict: false because strict mode rejects common schema features
        # (optional properties, formats); the activity validates the reply itself.
        payload["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": request.json_schema, "strict": False},
        }
    return payload


def parse_usage(raw: Any) -> TokenUsage:
    if not isinstance(raw, dict):
        return TokenUsage()
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return TokenUsage(
        input_tokens=as_int(raw.get("prompt_tokens")),
        output_tokens=as_int(raw.get("completion_tokens")),
        cached_input_tokens=as_int(
            prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else 0
        ),
        reasoning_tokens=as_int(
            completion_details.get("reasoning_tokens")
            if isinstance(completion_details, dict)
            else 0
        ),
    )


def _content_text(content: Any) -> str | None:
    """`content` is a string, null (refusals, tool calls), or with some
    compatible servers a list of `{type: text, text}` parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
    raise TypeError("message.content is neither a string nor a list of text parts")


def parse_reply(name: str, entry: ResolvedEntry, data: dict[str, Any]) -> ProviderReply:
    choices = data.get("choices")
    if choices is None and isinstance(data.get("error"), dict):
        # Some gateways (OpenRouter) report an upstream failure in a 200 body,
        # with the HTTP status they would have used as the error's code.
        code = data["error"].get("code")
        status = code if isinstance(code, int) and 400 <= code <= 599 else 502
        raise translate_http_error(name, status, {}, json.dumps(data), alias=entry.alias)
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise malformed_response(name, entry.alias, "no choices in a chat completion")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise malformed_response(name, entry.alias, "choices[0].message is missing")
    try:
        text = _content_text(message.get("content"))
    except TypeError as exc:
        raise malformed_response(name, entry.alias, str(exc)) from None
    finish_reason = choice.get("finish_reason")
    refusal = message.get("refusal")
    refused = bool(refusal) or finish_reason in REFUSAL_FINISH_REASONS
    if text is None and not refused:
        raise malformed_response(name, entry.alias, "choices[0].message.content is null")
    model = data.get("model")
    return ProviderReply(
        text=text or "",
        model=model if isinstance(model, str) and model else entry.model,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        usage=parse_usage(data.get("usage")),
        refused=refused,
        refusal=refusal if isinstance(refusal, str) else None,
    )


class OpenAIAdapter:
    """Chat completions with a Bearer key (omitted when there is none)."""

    def __init__(self, name: str = "openai") -> None:
        self.name = name

    async def complete(
        self,
        client: httpx.AsyncClient,
        entry: ResolvedEntry,
        api_key: str | None,
        request: ModelCallInput,
        request_id: str,
    ) -> ProviderReply:
        headers = {REQUEST_ID_HEADER: request_id}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        data = await post_json(
            client,
            provider=self.name,
            entry=entry,
            url=endpoint(entry, "chat/completions"),
            headers=headers,
            payload=build_payload(entry, request),
        )
        return parse_reply(self.name, entry, data)
