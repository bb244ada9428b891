"""The shared rate limiter on its three backends (SQLite, PostgreSQL, Redis
on 127.0.0.1:6379): grants, reservations in order, tokens settled at real
usage, calls in flight, and the provider's word (Retry-After blocks and
rate-limit headers). Plus the pure parts: scheduling, header parsing and the
prompt estimate."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.gateway.rate_limits import (
    DatabaseLimiter,
    ProviderQuota,
    RateLimiter,
    Reason,
    call_tokens,
    estimate_prompt_tokens,
    provider_quota,
)
from activities.gateway.redis_limiter import RedisLimiter
from activities.gateway.types import ChatMessage, ModelCallInput
from simulator.tokens import prompt_tokens as simulator_prompt_tokens
from store.rate_limits import LimitSpec, schedule
from tests.pg import empty_database, engine_with_tables

REDIS_URL = "redis://127.0.0.1:6379/0"
LIMITERS = ("sqlite", "postgresql", "redis")


def spec(
    rpm: int | None = None,
    tpm: int | None = None,
    max_concurrent: int | None = None,
    window_s: float = 2.0,
    grace_s: float = 0.3,
) -> LimitSpec:
    return LimitSpec(
        rpm=rpm,
        tpm=tpm,
        max_concurrent=max_concurrent,
        window_s=window_s,
        lease_ttl_s=30.0,
        grace_s=grace_s,
    )


@pytest.fixture(params=LIMITERS)
async def limiter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RateLimiter]:
    if request.param == "redis":
        redis_limiter = RedisLimiter(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}")
        yield redis_limiter
        client = redis_limiter._redis
        keys = [key async for key in client.scan_iter(f"{redis_limiter.prefix}:*")]
        if keys:
            await client.delete(*keys)
        await redis_limiter.aclose()
        return
    with (
        empty_database(
            request,
            request.param,
            sqlite_file=tmp_path / "limits.db",
            schema_prefix="chorus_rl_",
        ) as url,
        engine_with_tables(url) as engine,
    ):
        yield DatabaseLimiter(engine)


def alias() -> str:
    return f"a-{uuid.uuid4().hex[:8]}"


# -- pure --------------------------------------------------------------------------


def test_schedule_rpm_and_tpm() -> None:
    s = spec(rpm=2, tpm=100, window_s=10)
    assert schedule([], s, 10, now=0.0) == (0.0, "")
    assert schedule([(1.0, 10)], s, 10, now=2.0) == (2.0, "")
    # Two in the window: the next goes when the older leaves it.
    assert schedule([(1.0, 10), (1.5, 10)], s, 10, now=2.0) == (11.0, Reason.RPM)
    # Tokens: 60 + 30 + 20 > 100 until the 60 leaves.
    assert schedule([(1.0, 60), (1.5, 30)], spec(tpm=100, window_s=10), 20, now=2.0) == (
        11.0,
        Reason.TPM,
    )
    # Future reservations count: a third call queues behind them.
    assert schedule([(1.0, 10), (11.0, 10)], s, 10, now=2.0) == (11.0, Reason.RPM)
    assert schedule([(1.0, 10), (11.0, 10)], spec(rpm=1, window_s=10), 10, now=2.0) == (
        21.0,
        Reason.RPM,
    )
    assert schedule([], spec(tpm=100), 101, now=0.0)[1] == Reason.TOO_LARGE


def test_provider_headers() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    openai = provider_quota(
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m2.5s",
            "x-ratelimit-remaining-tokens": "1200",
            "x-ratelimit-reset-tokens": "250ms",
        },
        now,
    )
    assert openai == ProviderQuota(0, 62.5, 1200, 0.25)
    anthropic = provider_quota(
        {
            "anthropic-ratelimit-requests-remaining": "7",
            "anthropic-ratelimit-requests-reset": "2025-01-01T00:00:30Z",
            "anthropic-ratelimit-input-tokens-remaining": "900",
            "anthropic-ratelimit-input-tokens-reset": "2025-01-01T00:00:05Z",
        },
        now,
    )
    assert anthropic == ProviderQuota(7, 30.0, 900, 5.0)
    assert provider_quota({"x-ratelimit-remaining-requests": "many"}, now).empty
    assert provider_quota({"x-ratelimit-remaining-requests": "3"}, now).empty  # no reset
    assert provider_quota({}, now).empty


def test_prompt_estimate_covers_the_simulators_count() -> None:
    texts = ["You are terse.", "Summarise: " + "lorem ipsum " * 40, "ok", ""]
    req = ModelCallInput(
        alias="a",
        messages=[
            ChatMessage(role="system" if i == 0 else "user", content=t) for i, t in enumerate(texts)
        ],
        max_tokens=50,
    )
    assert estimate_prompt_tokens(req) >= simulator_prompt_tokens(texts)
    assert call_tokens(req) == estimate_prompt_tokens(req) + 50


# -- backends ----------------------------------------------------------------------


async def test_requests_per_window_then_reserved_slots_in_order(limiter: RateLimiter) -> None:
    name, s = alias(), spec(rpm=2, window_s=2.0)
    first = await limiter.admit(name, s, 1, "t1")
    second = await limiter.admit(name, s, 1, "t2")
    assert first.granted and second.granted and first.lease_id and second.lease_id
    for done in (first, second):  # sent at once, answered
        await limiter.settle(name, done.lease_id, 1, 0.0)
    waits, slots, slack = [], [], 0.0
    for i in range(4):
        asked = time.monotonic()
        waits.append(await limiter.admit(name, s, 1, f"w{i}"))
        answered = time.monotonic()
        # When the slot is, on this clock: the limiter measured its wait from
        # a moment between asking and answering (long on a loaded machine).
        slots.append((asked + answered) / 2 + waits[-1].wait_s)
        slack = max(slack, (answered - asked) / 2)
    assert not any(w.granted for w in waits)
    assert [w.reason for w in waits] == [Reason.RPM] * 4
    # Each waiter has its own slot: two per window, in the order they asked.
    assert waits[0].wait_s <= 2.0 and waits[2].wait_s <= 4.0
    assert abs(slots[1] - slots[0]) < 0.1 + 2 * slack
    assert 1.8 < slots[2] - slots[0] < 2.2 + 2 * slack
    assert waits[0].ticket == "w0"
    # Back too early: still reserved, told how much longer.
    early = await limiter.admit(name, s, 1, "w0")
    assert not early.granted and early.reason == "reserved"
    assert early.wait_s <= waits[0].wait_s
    # Back when told: granted, unless the strict check finds the window still
    # full of what really went (settled calls count at their send time), in
    # which case the slot moves by at most a moment and is kept.
    await asyncio.sleep(early.wait_s + 0.02)
    claimed = await limiter.admit(name, s, 1, "w0")
    for _ in range(3):
        if claimed.granted:
            break
        assert claimed.reason == "reserved" and claimed.wait_s < 0.5, claimed
        await asyncio.sleep(claimed.wait_s + 0.02)
        claimed = await limiter.admit(name, s, 1, "w0")
    assert claimed.granted
    # A caller that did not reserve still queues behind the reservations.
    late_comer = await limiter.admit(name, s, 1, "x")
    assert not late_comer.granted and late_comer.wait_s > 3.0


async def test_real_send_times_hold_back_a_reservation(limiter: RateLimiter) -> None:
    """A plan runs late when a request leaves late: the reservation after it
    waits until the late request has left the window, in real time."""
    name, s = alias(), spec(rpm=1, window_s=1.0)
    asked = time.monotonic()
    first = await limiter.admit(name, s, 1, "a")
    assert first.granted and first.lease_id
    waiting = await limiter.admit(name, s, 1, "b")
    # b waits out what is left of a's window (less on a loaded machine, where
    # the two admits are further apart).
    elapsed = time.monotonic() - asked
    assert not waiting.granted and 0.9 - elapsed < waiting.wait_s <= 1.0
    # Still in flight at b's slot: b may not go, whatever the plan said.
    await asyncio.sleep(waiting.wait_s + 0.05)
    held = await limiter.admit(name, s, 1, "b")
    assert not held.granted and held.reason == "reserved" and held.wait_s <= 0.25
    # Its request left late, 0.5 s ago: b goes a window after that (0.5 s
    # from now), not when the plan said.
    await limiter.settle(name, first.lease_id, 1, sent_ago_s=0.5)
    await asyncio.sleep(held.wait_s + 0.02)
    late = await limiter.admit(name, s, 1, "b")
    assert not late.granted and 0.05 < late.wait_s <= 0.3
    await asyncio.sleep(late.wait_s + 0.05)
    assert (await limiter.admit(name, s, 1, "b")).granted


async def test_tokens_are_settled_at_real_usage(limiter: RateLimiter) -> None:
    name, s = alias(), spec(tpm=100, window_s=30)
    first = await limiter.admit(name, s, 60, "a")
    assert first.granted and first.lease_id
    # Counted at 60 until it is settled...
    assert not (await limiter.admit(name, s, 60, "b")).granted
    await limiter.settle(name, first.lease_id, 20)
    # ...at the 20 it used after: the reservation "b" just made (60 more, in
    # 30 s) still counts, so "c" waits for it and the first call to leave.
    c = await limiter.admit(name, s, 30, "c")
    assert not c.granted and c.reason == Reason.TPM
    assert 29 < c.wait_s <= 30
    fresh = alias()
    used = await limiter.admit(fresh, s, 60, "e")
    assert used.granted and used.lease_id
    await limiter.settle(fresh, used.lease_id, 20)
    assert (await limiter.admit(fresh, s, 80, "f")).granted  # 20 + 80 fits
    too_large = await limiter.admit(name, s, 101, "d")
    assert too_large.reason == Reason.TOO_LARGE and too_large.ticket is None


async def test_calls_in_flight(limiter: RateLimiter) -> None:
    name, s = alias(), spec(max_concurrent=2)
    one = await limiter.admit(name, s, 1, "a")
    two = await limiter.admit(name, s, 1, "b")
    assert one.granted and two.granted and one.lease_id
    busy = await limiter.admit(name, s, 1, "c")
    assert not busy.granted and busy.reason == Reason.CONCURRENCY
    assert 0 < busy.wait_s <= 1.0
    await limiter.settle(name, one.lease_id, None)
    assert (await limiter.admit(name, s, 1, "c")).granted


async def test_the_providers_word_holds_every_caller(limiter: RateLimiter) -> None:
    name, s = alias(), spec(rpm=100)
    await limiter.block(name, 5.0, "HTTP 429: slow down")
    blocked = await limiter.admit(name, s, 1, "a")
    assert not blocked.granted and blocked.reason == Reason.PROVIDER_BLOCK
    assert 4.5 < blocked.wait_s <= 5.0
    assert blocked.detail == "HTTP 429: slow down"
    # A shorter block does not shorten it.
    await limiter.block(name, 1.0, "later")
    assert (await limiter.admit(name, s, 1, "a")).wait_s > 4.0

    other = alias()
    await limiter.observe(other, ProviderQuota(1, 10.0, None, None))
    assert (await limiter.admit(other, s, 1, "x")).granted  # the last one left
    none_left = await limiter.admit(other, s, 1, "y")
    assert not none_left.granted and none_left.reason == Reason.PROVIDER_REQUESTS
    assert 9 < none_left.wait_s <= 10

    tokens = alias()
    await limiter.observe(tokens, ProviderQuota(None, None, 50, 3.0))
    short = await limiter.admit(tokens, s, 80, "x")
    assert not short.granted and short.reason == Reason.PROVIDER_TOKENS
    assert (await limiter.admit(tokens, s, 40, "y")).granted


async def test_concurrent_callers_never_overfill_a_window(limiter: RateLimiter) -> None:
    """40 callers at once, 5 per 1 s: every grant and reservation together
    keep every window at 5 or fewer."""
    name, s = alias(), spec(rpm=5, window_s=1.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    answers = await asyncio.gather(*(limiter.admit(name, s, 1, f"t{i}") for i in range(40)))
    elapsed = loop.time() - start
    granted = [a for a in answers if a.granted]
    assert len(granted) == 5
    # Slot times relative to the start (grants at ~0, reservations later).
    times = sorted([0.0] * len(granted) + [a.wait_s + elapsed for a in answers if not a.granted])
    assert len(times) == 40
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 1.0 - elapsed - 0.05, (i, times)
    assert max(times) < 8.5
