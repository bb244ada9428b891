"""Typed payloads that cross the workflow/activity boundary for model calls.

These models travel through Temporal's pydantic data converter and are
recorded in workflow history, so they must never carry a secret: a model is
named by its registry alias, and the worker resolves base URL and API key from
its own configuration when the activity runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.names import DESCRIBE_MODELS as DESCRIBE_MODELS


class ToolSpec(BaseModel):
    """A tool offered to a model: name, what it does, JSON Schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolCall(BaseModel):
    """A tool call the model asked for (`id` pairs it with its result)."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: list[ToolCall] | None = None
    """Assistant messages: the calls the model made."""
    tool_call_id: str | None = None
    """Tool messages: which call this is the result of."""


class ModelCallInput(BaseModel):
    """One provider call. `step` is only used for logs and the call's summary."""

    alias: str
    messages: list[ChatMessage]
    max_tokens: int = Field(gt=0)
    temperature: float | None = None
    json_schema: dict[str, Any] | None = None
    """When set, the reply must be JSON valid against this schema; the activity
    parses and validates it and reports the outcome instead of raising, so the
    workflow can re-ask with the validation error fed back."""
    step: str = ""
    tools: list[ToolSpec] | None = None
    """Tools the model may call; its calls come back in `ModelCallResult.tool_calls`."""
    defer_rate_limits: bool = False
    """Set by workflows that wait out rate limits themselves: a call over the
    alias's limits answers at once with a non-retryable `RateLimitWait` error
    (details: `RateLimitWaitDetails`) that the workflow waits out on a timer,
    using no provider attempt and no worker slot. Unset (runs recorded
    before), the wait is a retryable `RateLimited` with its delay."""
    rate_limit_ticket: str | None = None
    """The `ticket` of the `RateLimitWait` this call waited out: it claims the
    slot the limiter reserved for it."""


class TokenUsage(BaseModel):
    """Token counts as the provider reported them.

    `input_tokens` is the total prompt size, including any cached part;
    `output_tokens` includes any reasoning part. The detail fields let the
    cost be computed at each kind's own price.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class RateLimitWaitDetails(BaseModel):
    """Details of a `RateLimitWait` error: how long the workflow waits before
    it calls again, and why (shown in the run's state)."""

    alias: str
    retry_in_s: float = Field(ge=0)
    until: str
    """When the wait ends, ISO 8601 UTC (as the worker's clock saw it)."""
    reason: str
    ticket: str | None = None
    """Send it back as `ModelCallInput.rate_limit_ticket`."""


class ModelCallResult(BaseModel):
    alias: str
    provider: str
    model: str
    """The model id the provider says answered (may differ from the requested one)."""
    text: str
    parsed: Any | None = None
    """The reply parsed as JSON, when a schema was given and the reply parsed."""
    schema_errors: list[str] | None = None
    """None when no schema was given or the reply is valid; otherwise why not."""
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: TokenUsage
    cost_usd: float
    latency_ms: float
    unconfirmed_usd: float = 0.0
    """Not in `cost_usd`: the worst-case cost of earlier attempts of this call
    that may have been billed with no reply seen (a worker died, or gave up
    waiting, after the request left). Counted in the run's cost and budget."""
    unconfirmed_attempts: int = 0
    """How many earlier attempts `unconfirmed_usd` stands for."""

    @property
    def valid(self) -> bool:
        return self.schema_errors is None


class ModelPrices(BaseModel):
    """USD per million tokens. Cached/cache-write/reasoning default to the
    plain input/output price when the provider has no separate price."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)
    reasoning_per_mtok: float | None = Field(default=None, ge=0)

    def cost(self, usage: TokenUsage) -> float:
        """Cost of one call. Pure, so the workflow and the activity agree."""
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        writes = min(usage.cache_write_tokens, usage.input_tokens - cached)
        plain_input = usage.input_tokens - cached - writes
        reasoning = min(usage.reasoning_tokens, usage.output_tokens)
        plain_output = usage.output_tokens - reasoning
        cached_price = (
            self.cached_input_per_mtok
            if self.cached_input_per_mtok is not None
            else self.input_per_mtok
        )
        write_price = (
            self.cache_write_per_mtok
            if self.cache_write_per_mtok is not None
            else self.input_per_mtok
        )
        reasoning_price = (
            self.reasoning_per_mtok if self.reasoning_per_mtok is not None else self.output_per_mtok
        )
        micro = (
            plain_input * self.input_per_mtok
            + cached * cached_price
            + writes * write_price
            + plain_output * self.output_per_mtok
            + reasoning * reasoning_price
        )
        return micro / 1_000_000

    def worst_case(self, input_tokens: int, max_output_tokens: int) -> float:
        """Upper bound of one call's cost: every input token at the highest
        input price, every output token at the highest output price."""
        in_price = max(
            self.input_per_mtok,
            self.cache_write_per_mtok or 0.0,
            self.cached_input_per_mtok or 0.0,
        )
        out_price = max(self.output_per_mtok, self.reasoning_per_mtok or 0.0)
        return (input_tokens * in_price + max_output_tokens * out_price) / 1_000_000


MESSAGE_OVERHEAD_TOKENS = 8


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """An upper bound of the token count of the prompt's messages (their
    text; `prompt_tokens_bound` adds the rest of a request).

    BPE tokenizers emit at most one token per UTF-8 byte, so the byte length
    plus a per-message framing allowance never undercounts; a reservation
    built on it cannot be exceeded by the provider's real count.
    """
    return MESSAGE_OVERHEAD_TOKENS + sum(
        len(m.content.encode("utf-8")) + MESSAGE_OVERHEAD_TOKENS for m in messages
    )


def prompt_tokens_bound(request: ModelCallInput) -> int:
    """`estimate_prompt_tokens` plus everything else the provider counts as
    prompt: tool calls and their arguments, the tools offered, the JSON
    schema. What a workflow reserves in the run's budget before a call
    (workflows/model_calls.py) and what the reply journal counts an
    unconfirmed attempt at: one bound, so the two never disagree."""
    extra = [
        *(
            [call.model_dump(mode="json") for call in m.tool_calls]
            for m in request.messages
            if m.tool_calls
        ),
        *([t.model_dump(mode="json") for t in request.tools] if request.tools else []),
        *([request.json_schema] if request.json_schema is not None else []),
    ]
    return estimate_prompt_tokens(request.messages) + sum(
        len(json.dumps(part).encode("utf-8")) + MESSAGE_OVERHEAD_TOKENS for part in extra
    )


class ModelInfo(BaseModel):
    """What a workflow may know about an alias: no URL, no key."""

    alias: str
    provider: str
    model: str
    prices: ModelPrices
    context_window: int | None = None
    timeout_s: float
    heartbeat_timeout_s: float


class DescribeModelsInput(BaseModel):
    aliases: list[str]


class DescribeModelsResult(BaseModel):
    models: dict[str, ModelInfo]
    unknown: list[str] = []


class ProviderErrorType:
    """`ApplicationError.type` values raised by `call_model`.

    Workflows and ops read these names (Temporal UI, failure messages), so they
    are part of the public contract and never change once released.
    """

    RATE_LIMITED = "RateLimited"  # 429: retryable, honours Retry-After
    OVERLOADED = "ProviderOverloaded"  # 503/529: retryable, honours Retry-After
    SERVER_ERROR = "ProviderServerError"  # other 5xx, 408, 409: retryable
    TIMEOUT = "ProviderTimeout"  # retryable
    CONNECTION = "ProviderConnectionError"  # retryable
    MALFORMED = "MalformedResponse"  # unparseable 2xx body: retryable
    BAD_REQUEST = "BadRequest"  # 400, 422: not retryable
    AUTH = "AuthenticationFailed"  # 401: not retryable
    FORBIDDEN = "PermissionDenied"  # 403: not retryable
    NOT_FOUND = "ModelNotFound"  # 404: not retryable
    QUOTA = "QuotaExhausted"  # 429 with insufficient_quota / spend limit: not retryable
    CONTEXT_LENGTH = "ContextLengthExceeded"  # not retryable; fall back to a larger model
    REFUSED = "ContentRefused"  # content policy: not retryable; next fallback
    CONFIG = "ModelConfigError"  # unknown alias, missing key env var: not retryable
    UNAVAILABLE = "ProviderUnavailable"  # Retry-After over max_retry_after_s: next fallback
    RATE_LIMIT_WAIT = "RateLimitWait"  # over this deployment's limits: the workflow waits
