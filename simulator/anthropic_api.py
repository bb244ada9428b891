"""Anthropic Messages endpoint (`POST /v1/messages`) in the real wire shape.

Usage follows Anthropic's accounting: `input_tokens` counts only the prompt
tokens that were neither read from nor written to the cache, so the full
prompt is input + cache_read + cache_creation; `output_tokens` includes any
(simulated) thinking tokens.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from simulator import tokens
from simulator.errors import ProviderError
from simulator.models import SimModel, ToolResultSeen
from simulator.pipeline import (
    REQUEST_ID_HEADER,
    CallSpec,
    Completion,
    parse_body,
    serve_call,
    simulator_config,
)
from simulator.rate_limits import LimitSnapshot
from simulator.replies import (
    ChatRequest,
    ForcedTool,
    ReplyPlan,
    ToolDef,
    build_reply,
    schema_from_instructions,
)
from simulator.responses import JSONResponse
from simulator.state import RuleUse
from simulator.tool_turns import ToolTurnError, WireTurn, trace_tool_turns

_DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "refusal": "refusal"}

router = APIRouter()


class AnthropicDialect:
    def error_response(self, error: ProviderError) -> Response:
        error_type = error.error_type or _DEFAULT_TYPES.get(
            error.status, "api_error" if error.status >= 500 else "invalid_request_error"
        )
        body = {
            "type": "error",
            "error": {"type": error_type, "message": error.message},
            "request_id": f"req_sim_{uuid.uuid4().hex[:24]}",
        }
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    def rate_limit_headers(self, snapshot: LimitSnapshot) -> dict[str, str]:
        """Anthropic's `anthropic-ratelimit-*`: limit, remaining, and the
        RFC 3339 time the quota is replenished, per kind."""
        headers: dict[str, str] = {}
        now = datetime.now(UTC)
        for kind, limit, remaining, reset in snapshot.kinds():
            at = (now + timedelta(seconds=reset)).isoformat(timespec="milliseconds")
            headers[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{kind}-remaining"] = str(remaining)
            headers[f"anthropic-ratelimit-{kind}-reset"] = at.replace("+00:00", "Z")
        return headers

    def unknown_model(self, model: str) -> ProviderError:
        return ProviderError(404, f"model: {model}", error_type="not_found_error")

    def context_exceeded(self, prompt_tokens: int, window: int) -> ProviderError:
        return ProviderError(
            400,
            f"prompt is too long: {prompt_tokens} tokens > {window} maximum",
            error_type="invalid_request_error",
        )

    def malformed_response(self) -> Response:
        body = '{"id": "msg_sim", "type": "message", "role": "assistant", "content": [{"type": "te'
        return Response(body, status_code=200, media_type="application/json")


DIALECT = AnthropicDialect()


def _check_api_key(request: Request) -> ProviderError | None:
    if not simulator_config(request).require_api_key:
        return None
    if request.headers.get("x-api-key", "").strip():
        return None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return None
    return ProviderError(401, "x-api-key header is required", error_type="authentication_error")


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return tokens.tool_call_text(str(block.get("name", "")), block.get("input", {}))
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return "".join(_block_text(b) for b in content if isinstance(b, dict))
        return str(content)
    return ""


def _content_text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(_block_text(block) for block in content)


def _user_text(content: str | list[dict[str, Any]]) -> str:
    """What the user wrote in a turn, tool results left out."""
    if isinstance(content, str):
        return content
    return "".join(_block_text(b) for b in content if b.get("type") != "tool_result")


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class _MessagesBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[dict[str, Any]] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None
    stream: bool | None = None


def _forced_tool(body: _MessagesBody) -> ForcedTool | None:
    tools = body.tools or []
    choice = body.tool_choice or {}
    if choice.get("type") == "tool":
        for tool in tools:
            if tool.get("name") == choice.get("name"):
                return ForcedTool(tool["name"], tool.get("input_schema") or {"type": "object"})
        raise ProviderError(400, f"tool_choice.name: tool {choice.get('name')!r} is not in tools")
    if choice.get("type") == "any" and tools:
        return ForcedTool(
            tools[0].get("name", ""), tools[0].get("input_schema") or {"type": "object"}
        )
    return None


def _tool_defs(body: _MessagesBody) -> list[ToolDef]:
    defs = []
    for index, tool in enumerate(body.tools or []):
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise ProviderError(400, f"tools.{index}.custom.name: Field required")
        if not isinstance(schema, dict):
            raise ProviderError(400, f"tools.{index}.custom.input_schema: Field required")
        defs.append(ToolDef(name, str(tool.get("description") or ""), schema))
    return defs


def _wire_turns(body: _MessagesBody) -> list[WireTurn]:
    turns = []
    for index, message in enumerate(body.messages):
        turn = WireTurn()
        blocks = message.content if isinstance(message.content, list) else []
        for position, block in enumerate(blocks):
            where = f"messages.{index}.content.{position}"
            if block.get("type") == "tool_use" and message.role == "assistant":
                call_id, name = block.get("id"), block.get("name")
                if not isinstance(call_id, str) or not call_id or not isinstance(name, str):
                    raise ProviderError(400, f"{where}.tool_use.id: Field required")
                turn.calls.append((call_id, name))
            elif block.get("type") == "tool_result":
                call_id = block.get("tool_use_id")
                if not isinstance(call_id, str) or not call_id:
                    raise ProviderError(400, f"{where}.tool_result.tool_use_id: Field required")
                turn.results.append((call_id, position))
        turns.append(turn)
    return turns


def _tool_results(body: _MessagesBody) -> list[ToolResultSeen]:
    """Check tool results against tool uses in Anthropic's words; the trailing results."""
    try:
        return trace_tool_turns(_wire_turns(body), results_in_next_message_only=True)
    except ToolTurnError as error:
        ids = ", ".join(error.ids)
        if error.kind == "unanswered":
            message = (
                f"messages.{error.message_index}: `tool_use` ids were found without "
                f"`tool_result` blocks immediately after: {ids}. Each `tool_use` block must "
                "have a corresponding `tool_result` block in the next message."
            )
        elif error.kind == "duplicate_id":
            message = f"messages.{error.message_index}.content: `tool_use` ids must be unique"
        else:
            message = (
                f"messages.{error.message_index}.content.{error.block_index}: unexpected "
                f"`tool_use_id` found in `tool_result` blocks: {ids}. Each `tool_result` block "
                "must have a corresponding `tool_use` block in the previous message."
            )
        raise ProviderError(400, message, error_type="invalid_request_error") from None


def _chat_request(request: Request, body: _MessagesBody) -> ChatRequest:
    if body.stream:
        raise ProviderError(400, "stream: the chorus simulator does not support streaming")
    texts = [_content_text(m.content) for m in body.messages]
    if body.system:
        texts.insert(0, _content_text(body.system))
    # The default reply answers what the user wrote, not a tool result.
    users = [m for m in body.messages if m.role == "user" and _user_text(m.content)]
    fmt = body.output_format or {}
    schema = fmt.get("schema") if fmt.get("type") == "json_schema" else None
    if schema is None and body.system:
        schema = schema_from_instructions(_content_text(body.system))
    return ChatRequest(
        endpoint="messages",
        model=body.model,
        request_id=request.headers.get(REQUEST_ID_HEADER),
        message_texts=texts,
        last_user_text=_user_text(users[-1].content) if users else "",
        max_tokens=body.max_tokens,
        json_mode=schema is not None,
        json_schema=schema,
        forced_tool=_forced_tool(body),
        tools=_tool_defs(body),
        tool_results=_tool_results(body),
    )


def _render(chat: ChatRequest, plan: ReplyPlan) -> JSONResponse:
    content: list[dict[str, Any]] = []
    text = plan.refusal if plan.refusal is not None else plan.text
    if text:
        content.append({"type": "text", "text": text})
    for call, call_id in zip(plan.tool_calls, plan.tool_call_ids, strict=True):
        content.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": call.name,
                "input": call.arguments,
            }
        )
    usage = plan.usage
    cache_read = min(usage.cached_tokens, usage.prompt_tokens)
    cache_write = min(usage.cache_creation_tokens, usage.prompt_tokens - cache_read)
    body = {
        "id": f"msg_sim_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": chat.model,
        "content": content,
        "stop_reason": _STOP[plan.finish],
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.prompt_tokens - cache_read - cache_write,
            "output_tokens": usage.completion_tokens,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        },
    }
    return JSONResponse(body)


@router.post("/v1/messages")
async def create_message(request: Request) -> Response:
    try:
        if (error := _check_api_key(request)) is not None:
            raise error
        chat = _chat_request(request, await parse_body(request, _MessagesBody))
    except ProviderError as error:
        if error.status == 400 and error.error_type is None:
            error.error_type = "invalid_request_error"
        return DIALECT.error_response(error)

    def answer(model: SimModel, use: RuleUse | None) -> Completion:
        plan = build_reply(chat, model, use)
        return Completion(
            _render(chat, plan),
            plan.usage.as_dict(),
            plan.logged_reply,
            plan.tool_calls,
            plan.tool_call_ids,
        )

    spec = CallSpec(
        "messages",
        chat.model,
        chat.prompt,
        chat.prompt_tokens,
        True,
        answer,
        chat.tool_results,
        max_output_tokens=chat.max_tokens or 0,
    )
    return await serve_call(request, DIALECT, spec)
