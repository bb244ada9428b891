"""The one place where provider failures become Temporal errors.

Temporal owns retries: provider clients never retry by themselves, they raise
an `ApplicationError` whose `type` (a `ProviderErrorType` name) and
`non_retryable` flag tell the activity's retry policy what to do, and whose
`next_retry_delay` carries the provider's Retry-After. Everything here is pure
(no I/O, no clock unless `now` is omitted) so the table of rules is unit-tested.

Messages name the provider, alias, HTTP status and the provider's own message
(truncated and scrubbed of anything that looks like a key): they end up in
workflow history and the Temporal UI, so they must help an operator and must
never leak a secret.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from activities.gateway.types import ProviderErrorType
from core.redaction import mask_known_secrets

MAX_PROVIDER_MESSAGE_CHARS = 500
"""Provider messages can echo the whole prompt; history only needs the gist."""

_SECRET_PATTERNS = (
    # OpenAI / Anthropic / OpenRouter style keys, even when partly masked.
    re.compile(r"\bsk-[A-Za-z0-9_\-*.]{6,}"),
    # "Bearer <token>" echoed back by a gateway.
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9_\-.=:+/]{8,}"),
)

_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "quota_exceeded",
        "insufficient_credits",
    }
)
_QUOTA_PHRASES = (
    "exceeded your current quota",
    "insufficient quota",
    "spend limit",
    "spending limit",
    "credit balance",
    "billing hard limit",
    "api usage limits",
    "insufficient credits",
)
_CONTEXT_CODES = frozenset({"context_length_exceeded", "context_window_exceeded"})
_CONTEXT_PHRASES = (
    "prompt is too long",
    "maximum context length",
    "context length exceeded",
    "context_length_exceeded",
    "exceeds the context window",
    "input is too long",
)
_CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter"})
_CONTENT_POLICY_PHRASES = ("content management policy", "content policy")

_RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 429})
_OVERLOADED_STATUSES = frozenset({503, 529})
_BODY_CLASSIFIED_STATUSES = frozenset({400, 402, 403, 413, 422, 429})


def redact(text: str) -> str:
    """Replace every secret the worker read (a provider may echo the key it
    was sent) and anything that looks like an API key or bearer token."""
    text = mask_known_secrets(text, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


def _truncate(text: str, limit: int = MAX_PROVIDER_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _delay_from_number(raw: str, units_per_s: float) -> timedelta | None:
    """A non-negative finite number of units, else None (garbage is ignored)."""
    try:
        seconds = float(raw.strip()) / units_per_s
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        return None


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> timedelta | None:
    """How long the provider asked us to wait, or None when it did not say.

    `retry-after-ms` (OpenAI, milliseconds) wins over `Retry-After`, which is
    either delta-seconds or an HTTP-date. A date in the past means "now"
    (zero); an unparseable value is ignored rather than trusted.
    """
    lowered = _lower_headers(headers)
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        delay = _delay_from_number(raw_ms, 1000.0)
        if delay is not None:
            return delay
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if _NUMBER.match(raw):
        return _delay_from_number(raw, 1.0)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(tz=UTC)
    return max(when - now, timedelta(0))


class ProviderErrorBody:
    """The useful parts of an error body, whatever shape the provider used.

    OpenAI: `{"error": {"message", "type", "code", "param"}}`; Anthropic:
    `{"type": "error", "error": {"type", "message"}}`; OpenAI-compatible
    servers sometimes send `{"detail": ...}`, `{"message": ...}` or plain text.
    """

    def __init__(self, body: bytes | str) -> None:
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        self.message: str = ""
        self.code: str | None = None
        self.type: str | None = None
        try:
            data: Any = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            err = data.get("error", data)
            if isinstance(err, dict):
                self.message = _as_text(err.get("message") or err.get("detail") or "")
                self.code = _as_code(err.get("code"))
                self.type = _as_code(err.get("type"))
            elif isinstance(err, str):
                self.message = err
        if not self.message:
            self.message = text

    def codes(self) -> set[str]:
        return {c.lower() for c in (self.code, self.type) if c}

    def mentions(self, phrases: tuple[str, ...]) -> bool:
        lowered = self.message.lower()
        return any(p in lowered for p in phrases)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _as_code(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _classify(status: int, body: ProviderErrorBody) -> tuple[str, bool]:
    """(error type, retryable) for one HTTP failure."""
    codes = body.codes()
    if status in _BODY_CLASSIFIED_STATUSES:
        if codes & _QUOTA_CODES or body.mentions(_QUOTA_PHRASES) or status == 402:
            return ProviderErrorType.QUOTA, False
        if status != 429:
            if codes & _CONTEXT_CODES or body.mentions(_CONTEXT_PHRASES):
                return ProviderErrorType.CONTEXT_LENGTH, False
            if codes & _CONTENT_POLICY_CODES or body.mentions(_CONTENT_POLICY_PHRASES):
                return ProviderErrorType.REFUSED, False
    if status == 429:
        return ProviderErrorType.RATE_LIMITED, True
    if status in _OVERLOADED_STATUSES:
        return ProviderErrorType.OVERLOADED, True
    if status in _RETRYABLE_CLIENT_STATUSES or status >= 500:
        return ProviderErrorType.SERVER_ERROR, True
    if status == 401:
        return ProviderErrorType.AUTH, False
    if status == 403:
        return ProviderErrorType.FORBIDDEN, False
    if status == 404:
        return ProviderErrorType.NOT_FOUND, False
    # 400, 422 and anything else unexpected (other 4xx, stray 3xx): asking again
    # with the same request cannot succeed.
    return ProviderErrorType.BAD_REQUEST, False


def _where(provider: str, alias: str | None) -> str:
    return f"{provider} (alias {alias!r})" if alias else provider


def translate_http_error(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    alias: str | None = None,
    now: datetime | None = None,
) -> ApplicationError:
    """Turn one non-2xx provider response into the `ApplicationError` to raise.

    Retryable: 408, 409, 429 (rate limit), 5xx, 503/529 (overloaded), with
    `next_retry_delay` from Retry-After when the provider gave one.
    Not retryable: 400, 401, 403, 404, 422, quota exhausted (even on 429),
    context length exceeded, content policy.
    """
    parsed = ProviderErrorBody(body)
    error_type, retryable = _classify(status, parsed)
    provider_message = _truncate(redact(parsed.message)) or "(empty body)"
    code = parsed.code or parsed.type
    code_part = f" [{code}]" if code else ""
    message = f"{_where(provider, alias)} returned HTTP {status}{code_part}: {provider_message}"
    delay = parse_retry_after(headers, now) if retryable else None
    return ApplicationError(
        message,
        {"provider": provider, "alias": alias, "status": status, "code": code},
        type=error_type,
        non_retryable=not retryable,
        next_retry_delay=delay,
    )


def timeout_error(
    provider: str, alias: str | None, exc: BaseException | None, timeout_s: float
) -> ApplicationError:
    """The provider did not answer in time: retryable (the next attempt may)."""
    kind = type(exc).__name__ if exc is not None else "deadline"
    return ApplicationError(
        f"{_where(provider, alias)} did not answer within {timeout_s:g} s ({kind})",
        {"provider": provider, "alias": alias, "timeout_s": timeout_s},
        type=ProviderErrorType.TIMEOUT,
    )


def connection_error(provider: str, alias: str | None, exc: BaseException) -> ApplicationError:
    """The request never got an HTTP answer (refused, reset, DNS): retryable."""
    detail = _truncate(redact(str(exc))) or "no detail"
    return ApplicationError(
        f"{_where(provider, alias)} could not be reached ({type(exc).__name__}: {detail})",
        {"provider": provider, "alias": alias},
        type=ProviderErrorType.CONNECTION,
    )


def malformed_response(provider: str, alias: str | None, what: str) -> ApplicationError:
    """A 2xx whose body is not what the API promises: retryable, since a
    truncated or garbled body is usually transient."""
    return ApplicationError(
        f"{_where(provider, alias)} sent a malformed response: {_truncate(redact(what))}",
        {"provider": provider, "alias": alias},
        type=ProviderErrorType.MALFORMED,
    )


def content_refused(
    provider: str, alias: str | None, reason: str | None, details: Mapping[str, Any] | None = None
) -> ApplicationError:
    """The model declined to answer: asking again the same way will not help,
    the chain should move to its next fallback."""
    why = _truncate(redact(reason)) if reason else "no reason given"
    return ApplicationError(
        f"{_where(provider, alias)} refused to answer: {why}",
        {"provider": provider, "alias": alias, **(details or {})},
        type=ProviderErrorType.REFUSED,
        non_retryable=True,
    )


def config_error(message: str) -> ApplicationError:
    """Worker configuration is wrong (unknown alias, missing key variable):
    every retry would fail the same way until an operator fixes it."""
    return ApplicationError(message, type=ProviderErrorType.CONFIG, non_retryable=True)


# -- back-pressure: when the next attempt starts ---------------------------------

RETRY_AFTER_JITTER_MAX_S = 5.0
"""Most a provider's Retry-After is stretched by: enough to spread the callers
it gave the same answer to, small beside the wait itself."""


@dataclass(frozen=True)
class Backoff:
    """The exponential schedule retries are drawn under (the activity's retry
    policy: the chain's `retry` setting)."""

    initial_s: float = 1.0
    coefficient: float = 2.0
    maximum_s: float = 30.0

    @classmethod
    def of(cls, policy: RetryPolicy | None) -> Backoff:
        if policy is None:
            return cls()
        initial = policy.initial_interval.total_seconds() if policy.initial_interval else 1.0
        maximum = (
            policy.maximum_interval.total_seconds()
            if policy.maximum_interval
            else initial * 100  # Temporal's default maximum interval
        )
        return cls(initial, policy.backoff_coefficient, maximum)

    def ceiling(self, attempt: int) -> float:
        """min(cap, base * coefficient^(attempt - 1)): the first retry draws
        under the initial interval, as Temporal's own schedule starts there."""
        exponent = max(attempt - 1, 0)
        try:
            grown = self.initial_s * self.coefficient**exponent
        except OverflowError:
            grown = math.inf
        return min(self.maximum_s, grown)


def full_jitter(attempt: int, backoff: Backoff, rng: random.Random) -> timedelta:
    """uniform(0, ceiling): callers that failed together retry apart (AWS's
    "full jitter"), instead of all at once after the same backoff."""
    return timedelta(seconds=rng.uniform(0.0, backoff.ceiling(attempt)))


def retry_after_jitter(retry_after: timedelta, rng: random.Random) -> timedelta:
    """The provider's Retry-After plus up to 0.5 s + 10 % of it (at most
    RETRY_AFTER_JITTER_MAX_S): never sooner than asked, and not all at once."""
    seconds = retry_after.total_seconds()
    spread = min(RETRY_AFTER_JITTER_MAX_S, 0.5 + 0.1 * seconds)
    return timedelta(seconds=seconds + rng.uniform(0.0, spread))


def pace_retry(
    error: ApplicationError,
    *,
    attempt: int,
    backoff: Backoff,
    max_retry_after_s: float,
    rng: random.Random,
    now: datetime,
    step: str | None = None,
) -> ApplicationError:
    """The error to raise for a failed attempt, with when to try again.

    Not retryable: unchanged. Retryable without a Retry-After: the next
    attempt after `full_jitter`. With a Retry-After (the translator put it in
    `next_retry_delay`) up to `max_retry_after_s`: after it plus a small
    jitter. Longer: the alias is unavailable for now, a non-retryable
    `ProviderUnavailable` saying until when, so the step asks its next
    fallback at once instead of waiting. Pure: `rng` and `now` are given.
    """
    if error.non_retryable:
        return error
    details = _details_with(error, step=step)
    asked = error.next_retry_delay
    if asked is not None and asked.total_seconds() > max_retry_after_s:
        until = now + asked
        first = details[0] if details and isinstance(details[0], dict) else {}
        alias = first.get("alias")
        who = f"alias {alias!r}" if alias else "this alias"
        details = (
            {
                **first,
                "retry_after_s": asked.total_seconds(),
                "unavailable_until": _iso(until),
                "was": error.type,
            },
            *details[1:],
        )
        return ApplicationError(
            f"{error.message}; it asked to wait {asked.total_seconds():g} s, longer than "
            f"{who} waits (max_retry_after_s {max_retry_after_s:g}): unavailable until "
            f"{_iso(until)}, the next fallback is asked",
            *details,
            type=ProviderErrorType.UNAVAILABLE,
            non_retryable=True,
            category=error.category,
        )
    delay = (
        retry_after_jitter(asked, rng) if asked is not None else full_jitter(attempt, backoff, rng)
    )
    return ApplicationError(
        error.message,
        *details,
        type=error.type,
        non_retryable=False,
        next_retry_delay=delay,
        category=error.category,
    )


def _details_with(error: ApplicationError, **extra: Any) -> tuple[Any, ...]:
    """The error's details, its first dict completed with `extra` (where set)."""
    details = tuple(error.details)
    fields = {k: v for k, v in extra.items() if v}
    if not fields:
        return details
    if not details:
        return (fields,)
    if isinstance(details[0], dict):
        return ({**details[0], **fields}, *details[1:])
    return details


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
