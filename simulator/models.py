"""Configuration and control-API models of the model simulator.

The simulator stands in for real providers in the demo and in every test, so
these models are a contract: tests script replies with `Rule`, inject
failures with `Fault`, and read `CallRecord`s to prove what was (and was not)
called. Unknown keys are rejected so that a typo in a script fails loudly
instead of silently matching nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator.quality import QualityProfile

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_models.yaml")
"""The model list shipped with the project (sim-mini, sim-large, ...)."""

USAGE_OVERRIDE_KEYS = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cache_creation_tokens",
    }
)
"""Keys accepted in `Rule.usage`; the call log's `usage` uses the same keys."""


class SimulatorConfigError(ValueError):
    """The simulator's configuration file is missing or invalid."""


class SimModel(BaseModel):
    """One simulated model: how slow it is and how it reports usage."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0, ge=0)
    context_window: int = Field(default=128000, gt=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    """Added to every reply's completion tokens and reported as reasoning tokens."""
    cached_prompt_tokens: int = Field(default=0, ge=0)
    """Reported as cached prompt tokens, capped at the prompt's size."""
    embedding_dim: int = Field(default=64, gt=0)
    quality: QualityProfile | None = None
    """How often this model is wrong on unscripted calls (simulator/quality.py);
    None keeps the plain echo and minimal JSON replies."""


class ProviderLimit(BaseModel):
    """A provider-side rate limit on one model: requests and tokens per
    sliding window. A request over it gets 429 with Retry-After; every answer
    reports what is left in the dialect's rate-limit headers."""

    model_config = ConfigDict(extra="forbid")

    model: str
    rpm: int | None = Field(default=None, ge=1)
    """Requests per window."""
    tpm: int | None = Field(default=None, ge=1)
    """Tokens per window (prompt + max_tokens while in flight, real usage after)."""
    window_s: float = Field(default=60.0, gt=0)
    """The window's length: 60 for per-minute limits, shorter in tests."""


class SimulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, SimModel]
    require_api_key: bool = False
    """When set, a request without an API key gets a 401 in the provider's shape."""
    limits: list[ProviderLimit] = Field(default_factory=list)
    """Provider-side rate limits (the control API's `/_sim/limits` adds more)."""


def load_simulator_config(path: str | Path) -> SimulatorConfig:
    """Read a simulator config from YAML; errors name the file and the bad key."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SimulatorConfigError(f"cannot read simulator config {file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise SimulatorConfigError(f"simulator config {file} is not valid YAML: {exc}") from exc
    if isinstance(raw, dict):
        # `x-` keys hold YAML anchors shared by several models (as in compose files).
        raw = {k: v for k, v in raw.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        return SimulatorConfig.model_validate(raw)
    except ValidationError as exc:
        raise SimulatorConfigError(f"invalid simulator config {file}: {exc}") from exc


def default_simulator_config() -> SimulatorConfig:
    return load_simulator_config(DEFAULT_CONFIG_PATH)


def _check_regex(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"match is not a valid regular expression ({pattern!r}): {exc}"
            ) from exc
    return pattern


class _CallFilter(BaseModel):
    """Which requests a rule or fault applies to; every given filter must hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    match: str | None = None
    """Regex searched in the concatenation of all message contents, system included."""
    model: str | None = None
    """Exact model name."""
    request_id_prefix: str | None = None
    """Prefix of the request's `X-Chorus-Request-Id` header (no header: no match)."""

    @field_validator("match")
    @classmethod
    def _valid_regex(cls, pattern: str | None) -> str | None:
        return _check_regex(pattern)

    def applies_to(self, *, model: str, request_id: str | None, prompt: str) -> bool:
        if self.model is not None and self.model != model:
            return False
        if self.request_id_prefix is not None and (
            request_id is None or not request_id.startswith(self.request_id_prefix)
        ):
            return False
        return self.match is None or re.search(self.match, prompt) is not None


class ToolCallSpec(BaseModel):
    """A tool call a scripted rule makes the model return."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, min_length=1)
    """A fixed call id. By default the id is derived from the conversation, so
    the same request always gets the same ids (and a retried call too)."""


class ToolResultSeen(BaseModel):
    """A tool result at the end of a conversation, paired with its call by id."""

    tool_call_id: str
    name: str
    """The tool's name, taken from the earlier call with that id."""


ANY_TOOL = "*"
"""`Rule.after_tool` value that matches after a result of any tool."""


class Rule(_CallFilter):
    """A scripted reply. The first matching rule with uses left wins.

    A use is counted when a reply is sent; a call whose client went away before
    the reply (outcome "aborted") gives its use back, so a retry after a worker
    crash gets the same scripted reply.

    Multi-turn tool conversations are scripted with `after_tool`: a rule with
    it matches only when the conversation ENDS with tool results (OpenAI: the
    trailing `tool` messages; Anthropic: a last user turn carrying
    `tool_result` blocks) and one of them answers a call of that tool. As the
    first matching rule wins, list the later turns first:

        Rule(after_tool="track_shipment", reply="It arrives Friday."),
        Rule(after_tool="lookup_order", tool_calls=[ToolCallSpec(name="track_shipment")]),
        Rule(match="where is my order", tool_calls=[ToolCallSpec(name="lookup_order")]),

    `match` sees tool results too (their text is part of the conversation),
    so a rule can also react to what a tool returned.
    """

    after_tool: str | None = Field(default=None, min_length=1)
    """Name of a tool, or "*" for any: match only right after its result."""
    reply: str | None = None
    json_: Any | None = Field(default=None, alias="json")
    """The reply is `json.dumps` of this value."""
    replies: list[str] | None = Field(default=None, min_length=1)
    """Successive matches get successive replies; the last one repeats."""
    tool_calls: list[ToolCallSpec] | None = None
    refusal: bool = False
    usage: dict[str, int] | None = None
    """Overrides of the computed usage; keys from `USAGE_OVERRIDE_KEYS`."""
    times: int | None = Field(default=None, ge=1)
    """How many replies this rule gives; None means unlimited."""

    @field_validator("usage")
    @classmethod
    def _known_usage_keys(cls, usage: dict[str, int] | None) -> dict[str, int] | None:
        if usage is not None:
            unknown = set(usage) - USAGE_OVERRIDE_KEYS
            if unknown:
                raise ValueError(
                    f"unknown usage keys {sorted(unknown)}; allowed: {sorted(USAGE_OVERRIDE_KEYS)}"
                )
            negative = [k for k, v in usage.items() if v < 0]
            if negative:
                raise ValueError(f"usage overrides must not be negative: {negative}")
        return usage

    def applies_to(
        self,
        *,
        model: str,
        request_id: str | None,
        prompt: str,
        tool_results: Collection[str] = (),
    ) -> bool:
        """`tool_results`: names of the tools whose results end the conversation."""
        if self.after_tool is not None and not (
            tool_results if self.after_tool == ANY_TOOL else self.after_tool in tool_results
        ):
            return False
        return super().applies_to(model=model, request_id=request_id, prompt=prompt)

    @model_validator(mode="after")
    def _one_reply_source(self) -> Rule:
        sources = [
            name
            for name, value in (
                ("reply", self.reply),
                ("json", self.json_),
                ("replies", self.replies),
            )
            if value is not None
        ]
        if len(sources) > 1:
            raise ValueError(f"a rule takes at most one of reply, json, replies; got {sources}")
        return self


class Fault(_CallFilter):
    """An injected failure, consumed before rules are looked at."""

    kind: Literal["status", "slow", "malformed"]
    status: int = Field(default=500, ge=400, le=599)
    error_code: str | None = None
    """OpenAI `error.code` (e.g. "rate_limit_exceeded", "insufficient_quota")."""
    error_type: str | None = None
    """`error.type` in either provider's shape; a default per status otherwise."""
    message: str | None = None
    retry_after: str | None = None
    """Sent verbatim as the Retry-After header."""
    retry_after_ms: int | None = Field(default=None, ge=0)
    """Sent as the retry-after-ms header (OpenAI's finer-grained hint)."""
    delay_s: float = Field(default=0, ge=0)
    """slow: sleep this long, then answer normally; status: sleep, then fail."""
    times: int = Field(default=1, ge=1)


CallOutcome = Literal["completed", "fault", "aborted", "rejected", "pending"]


class CallRecord(BaseModel):
    """One request the simulator received, as tests read it back.

    outcome: "completed" (a reply was sent: the only billable outcome),
    "fault" (an injected fault answered), "aborted" (the client disconnected
    while the simulator was still working on it), "rejected" (a provider-side
    4xx such as unknown model or context length exceeded; not billable), or
    "pending" (still in flight; only listed when asked for).
    """

    seq: int
    endpoint: Literal["chat", "messages", "embeddings"]
    model: str
    request_id: str | None
    prompt: str
    started_at: float
    finished_at: float | None = None
    outcome: CallOutcome = "pending"
    status: int | None = None
    usage: dict[str, int] | None = None
    reply: str | None = None
    tool_calls: list[ToolCallSpec] | None = None
    """The tool calls the reply made, as scripted (or forced by tool_choice)."""
    tool_call_ids: list[str] | None = None
    """The ids sent with those calls, in the same order."""
    tool_results: list[ToolResultSeen] | None = None
    """The tool results that ended the conversation this call answered."""
    error: str | None = None
    """Why the call did not complete (fault or rejection message)."""
    sent_at: float | None = None
    """When the last byte of a completed call's reply was handed to the
    connection (the instant the provider would have billed it)."""


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule]


class FaultsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    faults: list[Fault]


class LimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limits: list[ProviderLimit]


class CallsOut(BaseModel):
    calls: list[CallRecord]
