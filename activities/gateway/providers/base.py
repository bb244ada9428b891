"""What every provider adapter shares: the reply type, the adapter interface,
and the one HTTP exchange that maps transport failures to Temporal errors.

Adapters never retry: one call is one HTTP request, and Temporal's retry
policy decides about the next attempt from the error this module raises.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from temporalio.exceptions import ApplicationError

from activities.gateway.errors import (
    connection_error,
    malformed_response,
    timeout_error,
    translate_http_error,
)
from activities.gateway.registry import ResolvedEntry
from activities.gateway.types import ModelCallInput, ProviderErrorType, TokenUsage, ToolCall

REQUEST_ID_HEADER = "X-Chorus-Request-Id"
"""Sent on every call so provider-side logs (and the simulator's call log) can
be joined with the workflow and activity that made the call."""

RAW_ARGUMENTS_KEY = "_raw"
"""`ToolCall.arguments` key holding tool-call arguments that were not a JSON
object, verbatim: the call is kept so the workflow can report it to the model
(or fail the step) instead of the activity crashing on a model's typo."""


@dataclass(frozen=True)
class ProviderReply:
    """One completed provider call, normalised across APIs."""

    text: str
    model: str
    finish_reason: str | None
    usage: TokenUsage
    refused: bool = False
    refusal: str | None = None
    """The provider's refusal message, when it gave one."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls the model made, in its order."""


REPLACEMENT_CHARACTER = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (the same object
    when it has none). A provider's JSON may carry one (`"\\ud800"` is valid
    JSON text, e.g. a reply cut inside an emoji's UTF-16 pair) but UTF-8, and
    so Temporal's JSON payloads and failures, cannot: a reply holding one
    would fail the call after it was paid for. A pair that belongs together
    is joined; NUL and every other character stay as they are."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return encodable_text(value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value


def encodable_reply(reply: ProviderReply) -> ProviderReply:
    """`reply` with no lone surrogate in any text it carries (answer,
    refusal, model, finish reason, tool calls and their arguments)."""
    return dataclasses.replace(
        reply,
        text=encodable_text(reply.text),
        model=encodable_text(reply.model),
        finish_reason=None if reply.finish_reason is None else encodable_text(reply.finish_reason),
        refusal=None if reply.refusal is None else encodable_text(reply.refusal),
        tool_calls=tuple(
            ToolCall(
                id=encodable_text(call.id),
                name=encodable_text(call.name),
                arguments=_encodable(call.arguments),
            )
            for call in reply.tool_calls
        ),
    )


OnReply = Callable[[dict[str, Any]], Awaitable[None]]
"""Called with the provider's response body the moment it is received,
before it is parsed (the gateway journals it: a retry reuses it)."""


class ProviderAdapter(Protocol):
    """Speaks one provider API. `name` labels results, errors and logs."""

    name: str

    async def complete(
        self,
        client: httpx.AsyncClient,
        entry: ResolvedEntry,
        api_key: str | None,
        request: ModelCallInput,
        request_id: str,
        on_reply: OnReply | None = None,
    ) -> ProviderReply: ...

    def parse(self, entry: ResolvedEntry, data: dict[str, Any]) -> ProviderReply:
        """A response body as `complete` would have returned it (raises the
        same errors for one that is malformed)."""
        ...


def endpoint(entry: ResolvedEntry, path: str) -> str:
    return f"{entry.base_url.rstrip('/')}/{path.lstrip('/')}"


async def post_json(
    client: httpx.AsyncClient,
    *,
    provider: str,
    entry: ResolvedEntry,
    url: str,
    headers: Mapping[str, str],
    payload: Mapping[str, Any],
) -> dict[str, Any]:
    """POST `payload` and return the JSON object answered.

    Raises the `ApplicationError` Temporal should see: translated HTTP errors
    for non-2xx, ProviderTimeout when the whole exchange exceeds the entry's
    `timeout_s` (httpx's own timeouts are per read, so a trickling server
    would otherwise never time out), ProviderConnectionError for transport
    failures, MalformedResponse for a 2xx that is not a JSON object.
    """
    timeout = httpx.Timeout(entry.timeout_s, connect=entry.connect_timeout_s)
    try:
        async with asyncio.timeout(entry.timeout_s):
            response = await client.post(url, headers=dict(headers), json=payload, timeout=timeout)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise timeout_error(provider, entry.alias, exc, entry.timeout_s) from None
    except httpx.TransportError as exc:
        raise connection_error(provider, entry.alias, exc) from None
    if not response.is_success:
        raise translate_http_error(
            provider, response.status_code, response.headers, response.content, alias=entry.alias
        ) from None
    try:
        data = json.loads(response.content)
    except ValueError:
        raise malformed_response(
            provider, entry.alias, f"HTTP {response.status_code} body is not JSON"
        ) from None
    if not isinstance(data, dict):
        raise malformed_response(provider, entry.alias, "body is not a JSON object")
    return data


def bad_request(provider: str, alias: str, what: str) -> ApplicationError:
    """A request this adapter cannot put on the wire: the provider would
    answer 400, so fail the same way (not retryable) without the round trip."""
    return ApplicationError(
        f"{provider} (alias {alias!r}) cannot send this request: {what}",
        {"provider": provider, "alias": alias},
        type=ProviderErrorType.BAD_REQUEST,
        non_retryable=True,
    )


def check_tool_messages(provider: str, entry: ResolvedEntry, request: ModelCallInput) -> None:
    """Both APIs pair a tool result with its call by id: a `tool` message
    without `tool_call_id` cannot be sent (the old text fallback, "Tool
    result: ...", hid agent bugs that real providers reject)."""
    for index, message in enumerate(request.messages):
        if message.role == "tool" and not message.tool_call_id:
            raise bad_request(
                provider,
                entry.alias,
                f"messages[{index}] has role 'tool' but no tool_call_id; a tool result "
                "must name the id of the assistant tool call it answers",
            )
        if message.role != "assistant" and message.tool_calls:
            raise bad_request(
                provider,
                entry.alias,
                f"messages[{index}] has role {message.role!r} but carries tool_calls; "
                "only assistant messages make tool calls",
            )


def as_int(value: Any) -> int:
    """Token counts from a JSON body: missing or non-numeric counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0
