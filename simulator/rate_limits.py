"""Provider-side rate limits of the simulator: requests and tokens per window.

A real provider answers a request over its quota with 429 and a Retry-After,
and reports what is left in headers on every answer (OpenAI
`x-ratelimit-*`, Anthropic `anthropic-ratelimit-*`). The simulator does the
same per model, over a sliding window, so tests can check a client's own
limiter (zero 429s) and its back-pressure (every 429 waited out).

Counting: a request is counted when it is admitted (after faults and the
context-window check, just before it is answered). Its tokens count as its
prompt plus its max_tokens while it is in flight, its real usage once it
completed, and its prompt alone if it ended otherwise. Requests refused for
the limit count for nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from simulator.models import CallRecord, ProviderLimit


@dataclass
class _Admission:
    at: float
    record: CallRecord
    prompt_tokens: int
    max_tokens: int

    def tokens(self) -> int:
        if self.record.outcome == "pending":
            return self.prompt_tokens + self.max_tokens
        usage = self.record.usage
        if self.record.outcome == "completed" and usage:
            return usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        return self.prompt_tokens


@dataclass(frozen=True)
class LimitSnapshot:
    """What a provider tells its client about one model's quota."""

    limit: ProviderLimit
    requests_remaining: int | None
    requests_reset_s: float
    tokens_remaining: int | None
    tokens_reset_s: float

    def kinds(self) -> list[tuple[str, int, int, float]]:
        """(kind, limit, remaining, seconds to reset) of each limited kind."""
        rows = [
            ("requests", self.limit.rpm, self.requests_remaining, self.requests_reset_s),
            ("tokens", self.limit.tpm, self.tokens_remaining, self.tokens_reset_s),
        ]
        return [
            (kind, limit, remaining, reset)
            for kind, limit, remaining, reset in rows
            if limit is not None and remaining is not None
        ]


@dataclass(frozen=True)
class LimitVerdict:
    admitted: bool
    snapshot: LimitSnapshot
    retry_after_s: float = 0.0
    reason: str = ""


@dataclass
class ProviderLimits:
    """Sliding-window request and token counts per model."""

    _admitted: dict[str, list[_Admission]] = field(default_factory=dict)

    def reset(self) -> None:
        self._admitted.clear()

    def check(
        self,
        limit: ProviderLimit,
        *,
        record: CallRecord,
        prompt_tokens: int,
        max_tokens: int,
        now: float,
    ) -> LimitVerdict:
        """Admit the call (and count it) or say how long until it would fit."""
        window = [a for a in self._admitted.get(limit.model, []) if a.at > now - limit.window_s]
        self._admitted[limit.model] = window
        needed = prompt_tokens + max_tokens
        waits: list[tuple[float, str]] = []
        if limit.rpm is not None and len(window) >= limit.rpm:
            frees_at = window[len(window) - limit.rpm].at + limit.window_s
            waits.append((frees_at - now, f"requests ({limit.rpm} per {limit.window_s:g} s)"))
        used = sum(a.tokens() for a in window)
        if limit.tpm is not None and used + needed > limit.tpm:
            if needed > limit.tpm:
                waits.append((limit.window_s, f"tokens: {needed} asked, limit {limit.tpm}"))
            else:
                left = used
                frees_at = now
                for admission in window:
                    left -= admission.tokens()
                    frees_at = admission.at + limit.window_s
                    if left + needed <= limit.tpm:
                        break
                waits.append((frees_at - now, f"tokens ({limit.tpm} per {limit.window_s:g} s)"))
        if waits:
            delay, reason = max(waits)
            return LimitVerdict(False, self._snapshot(limit, window, now), max(delay, 0.0), reason)
        window.append(_Admission(now, record, prompt_tokens, max_tokens))
        return LimitVerdict(True, self._snapshot(limit, window, now))

    @staticmethod
    def _snapshot(limit: ProviderLimit, window: list[_Admission], now: float) -> LimitSnapshot:
        reset = max(window[0].at + limit.window_s - now, 0.0) if window else 0.0
        return LimitSnapshot(
            limit=limit,
            requests_remaining=None if limit.rpm is None else max(limit.rpm - len(window), 0),
            requests_reset_s=reset,
            tokens_remaining=(
                None if limit.tpm is None else max(limit.tpm - sum(a.tokens() for a in window), 0)
            ),
            tokens_reset_s=reset,
        )


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up, as providers send them (never 0 while over)."""
    return str(max(1, math.ceil(seconds)))


def openai_duration(seconds: float) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `250ms`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    rest_text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{rest_text}s" if minutes else f"{rest_text}s"
