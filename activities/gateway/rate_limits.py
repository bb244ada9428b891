"""Rate limits across workers: the limiter a model call asks before it goes.

An alias with `rpm`, `tpm` or `max_concurrent` in models.yaml is limited for
the whole deployment, from shared state: the application database
(`DatabaseLimiter`, store/rate_limits.py; SQLite or PostgreSQL) or Redis
(`RedisLimiter`, activities/gateway/redis_limiter.py), as the settings choose.
Aliases without limits never touch it.

A call counts its prompt (estimated here) plus its max_tokens up front and
is settled with the real usage. The provider's own word feeds the same state:
its rate-limit headers (`x-ratelimit-*`, `anthropic-ratelimit-*`) and the
Retry-After of its 429s, so one worker's 429 holds the others back too.

When the shared state cannot be reached the call goes ahead (logged): a
limiter outage must not stop every run, and the provider's 429s, waited out
with jitter, remain the brake.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from sqlalchemy import Engine

from activities.gateway.registry import RateLimits, ResolvedEntry
from activities.gateway.types import ModelCallInput
from store.engine import write_scope
from store.rate_limits import Admission, LimitSpec, Reason
from store.rate_limits import admit as db_admit
from store.rate_limits import block as db_block
from store.rate_limits import observe as db_observe
from store.rate_limits import settle as db_settle

__all__ = [
    "Admission",
    "DatabaseLimiter",
    "ProviderQuota",
    "RateLimiter",
    "Reason",
    "call_tokens",
    "limit_spec",
    "provider_quota",
    "window_margin_s",
]

BYTES_PER_TOKEN = 3
"""Prompt estimate: tokenizers average about 4 bytes of English per token and
rarely fewer than 3 for any script; the real usage settles the count."""
MESSAGE_OVERHEAD_TOKENS = 4
PROMPT_OVERHEAD_TOKENS = 3


def estimate_prompt_tokens(req: ModelCallInput) -> int:
    """The prompt's tokens as a provider would count them, a little over:
    every message's text and tool calls, the tools offered and the schema."""
    parts: list[str] = []
    for message in req.messages:
        parts.append(message.content)
        if message.tool_calls:
            parts.append(json.dumps([c.model_dump(mode="json") for c in message.tool_calls]))
    total = PROMPT_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS * len(req.messages)
    total += sum(math.ceil(len(part.encode("utf-8")) / BYTES_PER_TOKEN) for part in parts)
    extra = [t.model_dump(mode="json") for t in req.tools or []]
    if req.json_schema is not None:
        extra.append(req.json_schema)
    total += sum(
        math.ceil(len(json.dumps(e).encode("utf-8")) / BYTES_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS
        for e in extra
    )
    return total


def call_tokens(req: ModelCallInput) -> int:
    """What a call counts against `tpm` before it is answered: its prompt and
    every token it may produce (as OpenAI counts it), so a window never goes
    over even if every reply runs to max_tokens."""
    return estimate_prompt_tokens(req) + req.max_tokens


def window_margin_s(window_s: float) -> float:
    """How much wider than the provider's window calls are spread: calls
    are counted at the time their request left this worker, and reach the
    provider a little later, by a different delay each time; two requests one
    window apart here must still be one window apart there. 10 % of the
    window, 0.5 to 2 s."""
    return min(2.0, max(0.5, 0.1 * window_s))


def limit_spec(limits: RateLimits, entry: ResolvedEntry) -> LimitSpec:
    margin = window_margin_s(limits.window_s)
    return LimitSpec(
        rpm=limits.rpm,
        tpm=limits.tpm,
        max_concurrent=limits.max_concurrent,
        window_s=limits.window_s + margin,
        lease_ttl_s=entry.timeout_s + 5.0,
        grace_s=margin,
    )


# -- the provider's own word ----------------------------------------------------


@dataclass(frozen=True)
class ProviderQuota:
    """What a provider's rate-limit headers said was left, and for how long."""

    requests_remaining: int | None = None
    requests_reset_s: float | None = None
    tokens_remaining: int | None = None
    tokens_reset_s: float | None = None

    @property
    def empty(self) -> bool:
        return self.requests_remaining is None and self.tokens_remaining is None


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _duration_s(raw: str) -> float | None:
    """OpenAI's reset values: `1s`, `6m0s`, `20ms`, `1h2m3.5s` (or a bare number)."""
    raw = raw.strip()
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    parts = _GO_DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _until_s(raw: str, now: datetime) -> float | None:
    """Anthropic's reset values: an RFC 3339 time."""
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def _count(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


def provider_quota(headers: Mapping[str, str], now: datetime | None = None) -> ProviderQuota:
    """The remaining requests and tokens a response reported (OpenAI's
    `x-ratelimit-remaining-*`/`-reset-*`, Anthropic's
    `anthropic-ratelimit-*-remaining`/`-reset`); unparseable values are
    ignored. Pure when `now` is given."""
    lowered = {k.lower(): v for k, v in headers.items()}
    now = now or datetime.now(UTC)
    found: dict[str, tuple[int | None, float | None]] = {}
    for kind in ("requests", "tokens"):
        remaining = _count(lowered.get(f"x-ratelimit-remaining-{kind}"))
        reset_raw = lowered.get(f"x-ratelimit-reset-{kind}")
        reset = _duration_s(reset_raw) if reset_raw is not None else None
        if remaining is None:
            remaining = _count(lowered.get(f"anthropic-ratelimit-{kind}-remaining"))
            reset_raw = lowered.get(f"anthropic-ratelimit-{kind}-reset")
            reset = _until_s(reset_raw, now) if reset_raw is not None else None
        if remaining is None and kind == "tokens":
            remaining = _count(lowered.get("anthropic-ratelimit-input-tokens-remaining"))
            reset_raw = lowered.get("anthropic-ratelimit-input-tokens-reset")
            reset = _until_s(reset_raw, now) if reset_raw is not None else None
        complete = remaining is not None and reset is not None
        found[kind] = (remaining, reset) if complete else (None, None)
    return ProviderQuota(*found["requests"], *found["tokens"])


RATE_LIMIT_HEADER_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


# -- backends -------------------------------------------------------------------


class RateLimiter(Protocol):
    """Shared rate-limit state. `ticket` names a caller across its waits."""

    async def admit(self, alias: str, spec: LimitSpec, tokens: int, ticket: str) -> Admission: ...

    async def settle(
        self, alias: str, lease_id: str, tokens: int | None, sent_ago_s: float | None = None
    ) -> None: ...

    async def block(self, alias: str, delay_s: float, reason: str) -> None: ...

    async def observe(self, alias: str, quota: ProviderQuota) -> None: ...

    async def aclose(self) -> None: ...


class DatabaseLimiter:
    """The application database as the shared state (store/rate_limits.py):
    one short write transaction per call, on a thread."""

    name = "database"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def admit(self, alias: str, spec: LimitSpec, tokens: int, ticket: str) -> Admission:
        def work() -> Admission:
            with write_scope(self.engine) as session:
                return db_admit(session, alias=alias, spec=spec, tokens=tokens, ticket=ticket)

        return await asyncio.to_thread(work)

    async def settle(
        self, alias: str, lease_id: str, tokens: int | None, sent_ago_s: float | None = None
    ) -> None:
        def work() -> None:
            with write_scope(self.engine) as session:
                db_settle(session, lease_id=lease_id, tokens=tokens, sent_ago_s=sent_ago_s)

        await asyncio.to_thread(work)

    async def block(self, alias: str, delay_s: float, reason: str) -> None:
        def work() -> None:
            with write_scope(self.engine) as session:
                db_block(session, alias=alias, delay_s=delay_s, reason=reason)

        await asyncio.to_thread(work)

    async def observe(self, alias: str, quota: ProviderQuota) -> None:
        def work() -> None:
            with write_scope(self.engine) as session:
                db_observe(
                    session,
                    alias=alias,
                    requests_remaining=quota.requests_remaining,
                    requests_reset_s=quota.requests_reset_s,
                    tokens_remaining=quota.tokens_remaining,
                    tokens_reset_s=quota.tokens_reset_s,
                )

        await asyncio.to_thread(work)

    async def aclose(self) -> None:
        return None
