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

REFUSAL_FINISH_REASONS = frozenset({"content_filter"})


def encode_arguments(arguments: dict[str, Any]) -> str:
    """The wire's JSON string; `{"_raw": s}` goes back as the model wrote it."""
    raw = arguments.get(RAW_ARGUMENTS_KEY)
    if len(arguments) == 1 and isinstance(raw, str):
        return raw
    return json.dumps(arguments)


def decode_arguments(raw: Any) -> dict[str, Any]:
    """`function.arguments` as a dict; never raises (see RAW_ARGUMENTS_KEY)."""
    if isinstance(raw, dict):  # some compatible servers send the object itself
        return raw
    if isinstance(raw, str):
        if not raw.strip():  # a call without arguments, as some servers send it
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            return {RAW_ARGUMENTS_KEY: raw}
        return value if isinstance(value, dict) else {RAW_ARGUMENTS_KEY: raw}
    return {RAW_ARGUMENTS_KEY: json.dumps(raw)}


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            # null, not "", when the model only called tools (as the API returns it)
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": encode_arguments(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def tool_definition(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = tool.parameters
    return {"type": "function", "function": function}


def build_payload(entry: ResolvedEntry, request: ModelCallInput) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": entry.model,
        "messages": [_wire_message(m) for m in request.messages],
        entry.max_tokens_param: request.max_tokens,
    }
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.tools:
        payload["tools"] = [tool_definition(t) for t in request.tools]
        payload["tool_choice"] = "auto"
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


def parse_tool_calls(name: str, entry: ResolvedEntry, raw: Any) -> tuple[ToolCall, ...]:
    """`message.tool_calls`: a call without id or function name is malformed
    (it could not be answered); undecodable arguments are not (see `decode_arguments`)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise malformed_response(name, entry.alias, "message.tool_calls is not a list")
    calls = []
    for index, item in enumerate(raw):
        item = item if isinstance(item, dict) else {}
        function = item.get("function")
        function = function if isinstance(function, dict) else {}
        call_id, tool = item.get("id"), function.get("name")
        if not (isinstance(call_id, str) and call_id and isinstance(tool, str) and tool):
            raise malformed_response(
                name, entry.alias, f"message.tool_calls[{index}] has no id or function name"
            )
        arguments = decode_arguments(function.get("arguments"))
        calls.append(ToolCall(id=call_id, name=tool, arguments=arguments))
    return tuple(calls)


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
    tool_calls = parse_tool_calls(name, entry, message.get("tool_calls"))
    if text is None and not refused and not tool_calls:
        raise malformed_response(name, entry.alias, "choices[0].message.content is null")
    model = data.get("model")
    return ProviderReply(
        text=text or "",
        model=model if isinstance(model, str) and model else entry.model,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        usage=parse_usage(data.get("usage")),
        refused=refused,
        refusal=refusal if isinstance(refusal, str) else None,
        tool_calls=tool_calls,
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
        on_reply: OnReply | None = None,
    ) -> ProviderReply:
        check_tool_messages(self.name, entry, request)
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
        if on_reply is not None:
            await on_reply(data)
        return parse_reply(self.name, entry, data)

    def parse(self, entry: ResolvedEntry, data: dict[str, Any]) -> ProviderReply:
        return parse_reply(self.name, entry, data)
