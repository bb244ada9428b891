"""Back-pressure around one provider call: ask the limiter before it goes,
feed it what the provider said, and decide when a failed attempt is tried
again (errors.pace_retry, with this process's randomness).

    permit = await pacing.admit(entry, req)        # may raise a typed wait
    try: reply = ... provider call ...
    except ApplicationError as exc: raise await pacing.failed(permit, entry, req, exc)
    await pacing.done(permit, entry, reply.usage)

A call over the alias's limits does not wait here, holding a worker slot:
with `req.defer_rate_limits` (workflows that know how) its first attempt
ends at once with a non-retryable `RateLimitWait` whose details say how long,
and the workflow waits on a durable timer without spending a provider
attempt; otherwise (runs recorded before, or a retry after a failed
attempt) it is a retryable `RateLimited` with that delay.
"""

from __future__ import annotations

import random
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateway.errors import Backoff, pace_retry, redact
from activities.gateway.rate_limits import (
    RATE_LIMIT_HEADER_PREFIXES,
    Admission,
    RateLimiter,
    Reason,
    call_tokens,
    limit_spec,
    provider_quota,
)
from activities.gateway.registry import ResolvedEntry
from activities.gateway.types import (
    ModelCallInput,
    ProviderErrorType,
    RateLimitWaitDetails,
    TokenUsage,
)
from activities.logging import activity_logger
from store.engine import WriteLockTimeout

LOGGER_NAME = "chorus.gateway"
LIMITER_ERRORS = (SQLAlchemyError, RedisError, WriteLockTimeout, OSError)
"""A limiter that cannot be reached lets the call go (logged)."""

_seen_headers: ContextVar[dict[str, str] | None] = ContextVar("chorus_rate_headers", default=None)


async def note_rate_limit_headers(response: httpx.Response) -> None:
    """httpx response hook: keep the rate-limit headers of the call in
    progress (see `collecting_headers`) for the limiter."""
    seen = _seen_headers.get()
    if seen is not None:
        for name, value in response.headers.items():
            lowered = name.lower()
            if lowered.startswith(RATE_LIMIT_HEADER_PREFIXES):
                seen[lowered] = value


SENT_KEY = "chorus-request-sent-monotonic"
"""Where `note_request_sent` stamps when the call's request left."""


async def note_request_sent(request: httpx.Request) -> None:
    """httpx request hook: when the request of the call in progress leaves
    (the limiter counts a call in the windows of that time)."""
    seen = _seen_headers.get()
    if seen is not None:
        seen[SENT_KEY] = repr(time.monotonic())


def install_header_hook(client: httpx.AsyncClient) -> None:
    hooks = client.event_hooks
    if note_rate_limit_headers not in hooks["response"]:
        hooks["response"] = [*hooks["response"], note_rate_limit_headers]
        hooks["request"] = [*hooks["request"], note_request_sent]
        client.event_hooks = hooks


def _sent_ago_s(seen: dict[str, str]) -> float | None:
    stamp = seen.get(SENT_KEY)
    return None if stamp is None else max(time.monotonic() - float(stamp), 0.0)


@dataclass
class Permit:
    """A granted call: settled when it ends."""

    alias: str
    lease_id: str
    tokens: int
    headers: dict[str, str]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe_wait(admission: Admission, entry: ResolvedEntry, tokens: int) -> str:
    """Why a call waits, for the run's state and the Temporal UI."""
    limits = entry.limits
    window = f"{limits.window_s:g} s"
    reason = admission.reason
    if reason == Reason.RPM:
        return f"this deployment's limit of {limits.rpm} requests per {window}"
    if reason == Reason.TPM:
        return (
            f"this deployment's limit of {limits.tpm} tokens per {window} "
            f"(the call counts {tokens})"
        )
    if reason == Reason.CONCURRENCY:
        return f"this deployment's limit of {limits.max_concurrent} calls in flight"
    if reason == "reserved":
        return "its turn under this deployment's limits"
    if reason == Reason.PROVIDER_BLOCK:
        said = f": {admission.detail}" if admission.detail else ""
        return f"the provider asked to wait (Retry-After){said}"
    if reason == Reason.PROVIDER_REQUESTS:
        return "the provider reported no requests left (rate-limit headers)"
    if reason == Reason.PROVIDER_TOKENS:
        return "the provider reported too few tokens left (rate-limit headers)"
    return reason or "rate limit"


class CallPacing:
    """The gateway's back-pressure: one per worker process."""

    def __init__(
        self, limiter: RateLimiter | None = None, rng: random.Random | None = None
    ) -> None:
        self.limiter = limiter
        self.rng = rng or random.Random()
        """Jitter is drawn here, in the activity, never in workflow code."""

    @staticmethod
    def collect_headers() -> dict[str, str]:
        """A dict the rate-limit headers of this activity's provider responses
        land in (each activity runs in a task of its own, with its own context)."""
        seen: dict[str, str] = {}
        _seen_headers.set(seen)
        return seen

    async def admit(self, entry: ResolvedEntry, req: ModelCallInput) -> Permit | None:
        """Go (a permit, or None for an alias without limits or a limiter that
        cannot be reached), or raise the typed wait (see the module docstring)."""
        if self.limiter is None or not entry.limits.any:
            return None
        info = activity.info()
        tokens = call_tokens(req)
        ticket = req.rate_limit_ticket or f"{info.workflow_run_id}/{info.activity_id}"
        try:
            admission = await self.limiter.admit(
                entry.alias, limit_spec(entry.limits, entry), tokens, ticket
            )
        except LIMITER_ERRORS as exc:
            activity_logger(LOGGER_NAME, alias=entry.alias).warning(
                "rate_limiter.unavailable", error=_first_line(exc)
            )
            return None
        if admission.lease_id is not None:
            return Permit(entry.alias, admission.lease_id, tokens, {})
        if admission.reason == Reason.TOO_LARGE:
            raise ApplicationError(
                f"step {req.step!r}: a call to alias {entry.alias!r} counts {tokens} tokens "
                f"(prompt and max_tokens), more than its tpm limit of {entry.limits.tpm}: "
                "it can never be sent; raise tpm or lower max_tokens",
                {"alias": entry.alias, "tokens": tokens, "tpm": entry.limits.tpm},
                type=ProviderErrorType.CONFIG,
                non_retryable=True,
            )
        raise self._wait_error(admission, entry, req, tokens)

    def _wait_error(
        self, admission: Admission, entry: ResolvedEntry, req: ModelCallInput, tokens: int
    ) -> ApplicationError:
        wait_s = admission.wait_s
        if admission.reason == Reason.CONCURRENCY:
            # Nobody knows when a call in flight ends: spread the pollers.
            wait_s = self.rng.uniform(0.5 * wait_s, 1.5 * wait_s)
        now = datetime.now(UTC)
        until = now + timedelta(seconds=wait_s)
        why = describe_wait(admission, entry, tokens)
        if admission.reason in Reason.PROVIDER and wait_s > entry.max_retry_after_s:
            return ApplicationError(
                f"alias {entry.alias!r} is unavailable until {_iso(until)}: {why}, "
                f"longer than it waits (max_retry_after_s {entry.max_retry_after_s:g}); "
                "the next fallback is asked",
                {"alias": entry.alias, "step": req.step, "unavailable_until": _iso(until)},
                type=ProviderErrorType.UNAVAILABLE,
                non_retryable=True,
            )
        message = f"alias {entry.alias!r} is rate limited until {_iso(until)}: {why}"
        if req.defer_rate_limits and activity.info().attempt == 1:
            # Waited out by the workflow, as a new call. After a failed
            # attempt the wait is a retry instead: the reply journal follows
            # one activity's attempts, and must see the earlier ones.
            details = RateLimitWaitDetails(
                alias=entry.alias,
                retry_in_s=wait_s,
                until=_iso(until),
                reason=why,
                ticket=admission.ticket,
            )
            return ApplicationError(
                message,
                details.model_dump(mode="json"),
                type=ProviderErrorType.RATE_LIMIT_WAIT,
                non_retryable=True,
            )
        return ApplicationError(
            message,
            {"alias": entry.alias, "step": req.step, "until": _iso(until)},
            type=ProviderErrorType.RATE_LIMITED,
            next_retry_delay=timedelta(seconds=wait_s),
        )

    async def failed(
        self,
        permit: Permit | None,
        entry: ResolvedEntry,
        req: ModelCallInput,
        exc: ApplicationError,
        headers: dict[str, str],
    ) -> ApplicationError:
        """The error to raise for a failed attempt: paced (jitter, Retry-After
        capped), after telling the limiter what the provider said."""
        info = activity.info()
        now = datetime.now(UTC)
        paced = pace_retry(
            exc,
            attempt=info.attempt,
            backoff=Backoff.of(info.retry_policy),
            max_retry_after_s=entry.max_retry_after_s,
            rng=self.rng,
            now=now,
            step=req.step or None,
        )
        # The translator keeps the transport error as the context; the
        # journal reads it to tell a request that never left.
        paced.__context__ = exc.__context__
        paced.__cause__ = exc.__cause__
        if self.limiter is not None and entry.limits.any:
            asked = exc.next_retry_delay if exc.type == ProviderErrorType.RATE_LIMITED else None
            await self._guarded(entry, self._settle(permit, None, _sent_ago_s(headers)))
            await self._guarded(entry, self._observe(entry, headers))
            if asked is not None and asked.total_seconds() > 0:
                await self._guarded(
                    entry,
                    self.limiter.block(
                        entry.alias, asked.total_seconds(), redact(exc.message)[:300]
                    ),
                )
        return paced

    async def done(
        self,
        permit: Permit | None,
        entry: ResolvedEntry,
        usage: TokenUsage,
        headers: dict[str, str],
    ) -> None:
        """Settle a completed call at its real usage; feed the provider's headers."""
        if self.limiter is None or not entry.limits.any:
            return
        await self._guarded(entry, self._settle(permit, usage.total_tokens, _sent_ago_s(headers)))
        await self._guarded(entry, self._observe(entry, headers))

    async def _settle(
        self, permit: Permit | None, tokens: int | None, sent_ago_s: float | None
    ) -> None:
        if permit is not None and self.limiter is not None:
            await self.limiter.settle(permit.alias, permit.lease_id, tokens, sent_ago_s)

    async def _observe(self, entry: ResolvedEntry, headers: dict[str, str]) -> None:
        quota = provider_quota(headers)
        if not quota.empty and self.limiter is not None:
            await self.limiter.observe(entry.alias, quota)

    @staticmethod
    async def _guarded(entry: ResolvedEntry, step: object) -> None:
        """Bookkeeping that must not fail the call it follows."""
        try:
            await step  # type: ignore[misc]
        except LIMITER_ERRORS as exc:
            activity_logger(LOGGER_NAME, alias=entry.alias).warning(
                "rate_limiter.unwritable", error=_first_line(exc)
            )

    async def aclose(self) -> None:
        if self.limiter is not None:
            await self.limiter.aclose()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
