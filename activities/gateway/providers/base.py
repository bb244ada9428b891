"""What every provider adapter shares: the reply type, the adapter interface,
and the one HTTP exchange that maps transport failures to Temporal errors.

Adapters never retry: one call is one HTTP request, and Temporal's retry
policy decides about the next attempt from the error this module raises.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from activities.gateway.errors import (
    connection_error,
    malformed_response,
    timeout_error,
    translate_http_error,
)
from activities.gateway.registry import ResolvedEntry
from activities.gateway.types import ModelCallInput, TokenUsage

REQUEST_ID_HEADER = "X-Chorus-Request-Id"
"""Sent on every call so provider-side logs (and the simulator's call log) can
be joined with the workflow and activity that made the call."""


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
    ) -> ProviderReply: ...


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


def chat_turns(request: ModelCallInput) -> tuple[list[str], list[tuple[str, str]]]:
    """(system texts, [(role, content)]) with `tool` turns folded into user
    turns: the contract carries no tool-call ids, and both APIs reject a tool
    message without one."""
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for message in request.messages:
        if message.role == "system":
            system.append(message.content)
        elif message.role == "tool":
            turns.append(("user", f"Tool result:\n{message.content}"))
        else:
            turns.append((message.role, message.content))
    return system, turns


def as_int(value: Any) -> int:
    """Token counts from a JSON body: missing or non-numeric counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0
