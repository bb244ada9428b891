"""OpenAI-compatible endpoints: chat completions, embeddings, models.

Only the subset Chorus's gateway uses is modelled, but in the exact wire shape
of the real API, so the gateway's OpenAI adapter is exercised unchanged.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from simulator import embeddings, tokens
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
from simulator.rate_limits import LimitSnapshot, openai_duration
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

SIMULATOR_NAME = "chorus-simulator"

_DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "requests",
}
_DEFAULT_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "refusal": "content_filter",
}

router = APIRouter()


class OpenAIDialect:
    def error_response(self, error: ProviderError) -> Response:
        error_type = error.error_type or _DEFAULT_TYPES.get(
            error.status, "server_error" if error.status >= 500 else "invalid_request_error"
        )
        if error.error_type is None and error.code == "insufficient_quota":
            error_type = "insufficient_quota"  # as OpenAI sends it for an exhausted quota
        body = {
            "error": {
                "message": error.message,
                "type": error_type,
                "param": error.param,
                "code": error.code if error.code is not None else _DEFAULT_CODES.get(error.status),
            }
        }
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    def rate_limit_headers(self, snapshot: LimitSnapshot) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*`: limit, remaining and time to reset, per kind."""
        headers: dict[str, str] = {}
        for kind, limit, remaining, reset in snapshot.kinds():
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = openai_duration(reset)
        return headers

    def unknown_model(self, model: str) -> ProviderError:
        return ProviderError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
            error_type="invalid_request_error",
            param="model",
        )

    def context_exceeded(self, prompt_tokens: int, window: int) -> ProviderError:
        return ProviderError(
            400,
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
            code="context_length_exceeded",
            error_type="invalid_request_error",
            param="messages",
        )

    def malformed_response(self) -> Response:
        body = '{"id": "chatcmpl-sim", "object": "chat.completion", "choices": [{"index": 0, "mess'
        return Response(body, status_code=200, media_type="application/json")


DIALECT = OpenAIDialect()


def check_api_key(request: Request) -> ProviderError | None:
    if not simulator_config(request).require_api_key:
        return None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return None
    return ProviderError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        code="invalid_api_key",
    )


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            parts = [self.content]
        elif self.content is None:
            parts = []
        else:
            parts = [
                str(p.get("text", ""))
                for p in self.content
                if p.get("type") in ("text", "input_text")
            ]
        for call in self.tool_calls or []:
            function = call.get("function") or {}
            parts.append(_call_text(str(function.get("name", "")), function.get("arguments")))
        return "".join(parts)


def _call_text(name: str, arguments: Any) -> str:
    """`arguments` is a JSON string on the wire; counted canonically when it
    decodes, verbatim when it does not (the API does not check it either)."""
    if isinstance(arguments, str):
        try:
            return tokens.tool_call_text(name, json.loads(arguments))
        except ValueError:
            return f"{name}({arguments})"
    return tokens.tool_call_text(name, arguments if arguments is not None else {})


class _ChatBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream: bool | None = None


def _forced_tool(body: _ChatBody) -> ForcedTool | None:
    tools = [t.get("function") or {} for t in body.tools or []]
    choice = body.tool_choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for tool in tools:
            if isinstance(name, str) and tool.get("name") == name:
                return ForcedTool(name, tool.get("parameters") or {"type": "object"})
        raise ProviderError(
            400, f"tool_choice names function {name!r}, which is not in tools", param="tool_choice"
        )
    if choice == "required" and tools:
        return ForcedTool(
            tools[0].get("name", ""), tools[0].get("parameters") or {"type": "object"}
        )
    return None


def _tool_defs(body: _ChatBody) -> list[ToolDef]:
    defs = []
    for index, tool in enumerate(body.tools or []):
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise ProviderError(
                400,
                f"Invalid value for 'tools[{index}]': expected an object with "
                "type 'function' and a 'function' object.",
                param=f"tools[{index}]",
            )
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ProviderError(
                400,
                f"Missing required parameter: 'tools[{index}].function.name'.",
                param=f"tools[{index}].function.name",
                code="missing_required_parameter",
            )
        parameters = function.get("parameters")
        defs.append(
            ToolDef(
                name,
                str(function.get("description") or ""),
                parameters if isinstance(parameters, dict) else {},
            )
        )
    return defs


def _wire_turns(body: _ChatBody) -> list[WireTurn]:
    turns = []
    for index, message in enumerate(body.messages):
        turn = WireTurn()
        if message.role == "tool":
            if not message.tool_call_id:
                raise ProviderError(
                    400,
                    "Missing parameter 'tool_call_id': messages with role 'tool' must have "
                    "a 'tool_call_id'.",
                    param=f"messages.[{index}].tool_call_id",
                )
            turn.results.append((message.tool_call_id, None))
        elif message.role == "assistant":
            for position, call in enumerate(message.tool_calls or []):
                name = (call.get("function") or {}).get("name")
                call_id = call.get("id")
                if not isinstance(call_id, str) or not call_id or not isinstance(name, str):
                    raise ProviderError(
                        400,
                        f"Missing required parameter: 'messages.[{index}].tool_calls"
                        f".[{position}].id' (and 'function.name').",
                        param=f"messages.[{index}].tool_calls.[{position}]",
                        code="missing_required_parameter",
                    )
                turn.calls.append((call_id, name))
        turns.append(turn)
    return turns


def _tool_results(body: _ChatBody) -> list[ToolResultSeen]:
    """Check tool results against calls in OpenAI's words; the trailing results."""
    try:
        return trace_tool_turns(_wire_turns(body), results_in_next_message_only=False)
    except ToolTurnError as error:
        where = f"messages.[{error.message_index}]"
        ids = ", ".join(error.ids)
        if error.kind == "unanswered":
            raise ProviderError(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {ids}",
                param=f"{where}.role",
            ) from None
        if error.kind == "unknown_id":
            raise ProviderError(
                400,
                f"Invalid parameter: 'tool_call_id' of '{ids}' not found in 'tool_calls' of "
                "previous message.",
                param=f"{where}.tool_call_id",
            ) from None
        if error.kind == "duplicate_id":
            raise ProviderError(
                400,
                f"Invalid parameter: duplicate tool call id '{ids}' in 'tool_calls'.",
                param=f"{where}.tool_calls",
            ) from None
        raise ProviderError(
            400,
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
            "message with 'tool_calls'.",
            param=f"{where}.role",
        ) from None


def _chat_request(request: Request, body: _ChatBody) -> ChatRequest:
    if body.stream:
        raise ProviderError(
            400, "The chorus simulator does not support streaming (stream: true).", param="stream"
        )
    json_mode, schema = False, None
    fmt = body.response_format or {}
    if fmt.get("type") == "json_object":
        json_mode = True
    elif fmt.get("type") == "json_schema":
        json_mode = True
        schema = (fmt.get("json_schema") or {}).get("schema")
    elif fmt and fmt.get("type") != "text":
        raise ProviderError(
            400, f"Invalid response_format type {fmt.get('type')!r}", param="response_format"
        )
    else:
        system = "\n".join(m.text() for m in body.messages if m.role in ("system", "developer"))
        schema = schema_from_instructions(system)
        json_mode = schema is not None
    users = [m for m in body.messages if m.role == "user"]
    return ChatRequest(
        endpoint="chat",
        model=body.model,
        request_id=request.headers.get(REQUEST_ID_HEADER),
        message_texts=[m.text() for m in body.messages],
        last_user_text=users[-1].text() if users else "",
        max_tokens=body.max_completion_tokens or body.max_tokens,
        json_mode=json_mode,
        json_schema=schema,
        forced_tool=_forced_tool(body),
        tools=_tool_defs(body),
        tool_results=_tool_results(body),
    )


def _render_chat(chat: ChatRequest, plan: ReplyPlan) -> JSONResponse:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": plan.refusal}
    if plan.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call, call_id in zip(plan.tool_calls, plan.tool_call_ids, strict=True)
        ]
    usage = plan.usage
    body = {
        "id": f"chatcmpl-sim-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": SIMULATOR_NAME,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _FINISH[plan.finish],
            }
        ],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        },
    }
    return JSONResponse(body)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    try:
        if (error := check_api_key(request)) is not None:
            raise error
        chat = _chat_request(request, await parse_body(request, _ChatBody))
    except ProviderError as error:
        return DIALECT.error_response(error)

    def answer(model: SimModel, use: RuleUse | None) -> Completion:
        plan = build_reply(chat, model, use)
        return Completion(
            _render_chat(chat, plan),
            plan.usage.as_dict(),
            plan.logged_reply,
            plan.tool_calls,
            plan.tool_call_ids,
        )

    spec = CallSpec(
        "chat",
        chat.model,
        chat.prompt,
        chat.prompt_tokens,
        True,
        answer,
        chat.tool_results,
        max_output_tokens=chat.max_tokens or 0,
    )
    return await serve_call(request, DIALECT, spec)


class _EmbeddingsBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


@router.post("/v1/embeddings")
async def create_embeddings(request: Request) -> Response:
    try:
        if (error := check_api_key(request)) is not None:
            raise error
        body: _EmbeddingsBody = await parse_body(request, _EmbeddingsBody)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if not inputs:
            raise ProviderError(400, "'input' must not be an empty list", param="input")
    except ProviderError as error:
        return DIALECT.error_response(error)

    counts = [tokens.embedding_tokens(text) for text in inputs]

    def answer(model: SimModel, _use: RuleUse | None) -> Completion:
        dim = body.dimensions or model.embedding_dim
        data = []
        for index, text in enumerate(inputs):
            vector = embeddings.embed(text, dim)
            encoded: Any = (
                embeddings.to_base64(vector) if body.encoding_format == "base64" else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        usage = {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
        response = JSONResponse(
            {"object": "list", "data": data, "model": body.model, "usage": usage}
        )
        return Completion(response, {"prompt_tokens": sum(counts), "completion_tokens": 0}, None)

    spec = CallSpec("embeddings", body.model, "\n".join(inputs), max(counts), False, answer)
    return await serve_call(request, DIALECT, spec)
