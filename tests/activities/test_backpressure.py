"""Back-pressure rules (activities/gateway/errors.py `pace_retry`): full
jitter without a Retry-After, Retry-After plus a small jitter, and a
Retry-After over the alias's cap turned into a non-retryable
ProviderUnavailable so the next fallback is asked at once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from activities.gateway.errors import (
    RETRY_AFTER_JITTER_MAX_S,
    Backoff,
    full_jitter,
    pace_retry,
    timeout_error,
    translate_http_error,
)
from activities.gateway.registry import DEFAULT_MAX_RETRY_AFTER_S, ModelRegistry, RegistryError
from activities.gateway.types import ProviderErrorType

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
BACKOFF = Backoff(initial_s=1.0, coefficient=2.0, maximum_s=30.0)


def rate_limited(retry_after: str | None) -> ApplicationError:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return translate_http_error(
        "openai", 429, headers, b'{"error": {"message": "slow down"}}', alias="fast", now=NOW
    )


def pace(
    error: ApplicationError, attempt: int = 1, seed: int = 0, **kwargs: object
) -> ApplicationError:
    options: dict[str, object] = {
        "attempt": attempt,
        "backoff": BACKOFF,
        "max_retry_after_s": 60.0,
        "rng": random.Random(seed),
        "now": NOW,
    }
    options.update(kwargs)
    return pace_retry(error, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 10, 60])
def test_full_jitter_stays_under_the_capped_exponential(attempt: int) -> None:
    ceiling = min(30.0, 1.0 * 2.0 ** (attempt - 1))
    delays = [
        full_jitter(attempt, BACKOFF, random.Random(seed)).total_seconds() for seed in range(300)
    ]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Spread over the whole range, not bunched at one instant.
    assert min(delays) < ceiling * 0.1
    assert max(delays) > ceiling * 0.9
    assert len({round(d, 6) for d in delays}) > 250


def test_retryable_failures_without_retry_after_get_full_jitter() -> None:
    error = timeout_error("openai", "fast", None, 30)
    delays = [pace(error, attempt=3, seed=s).next_retry_delay for s in range(50)]
    assert all(d is not None and timedelta(0) <= d <= timedelta(seconds=4) for d in delays)
    assert len(set(delays)) == 50
    paced = pace(error, attempt=3)
    assert paced.type == ProviderErrorType.TIMEOUT
    assert not paced.non_retryable
    assert paced.message == error.message


def test_retry_after_is_honoured_plus_a_small_jitter() -> None:
    delays = [pace(rate_limited("10"), seed=s).next_retry_delay for s in range(100)]
    seconds = [d.total_seconds() for d in delays if d is not None]
    assert len(seconds) == 100
    assert all(10.0 <= s <= 10.0 + min(RETRY_AFTER_JITTER_MAX_S, 0.5 + 1.0) for s in seconds)
    assert len(set(seconds)) == 100  # six callers told "10 s" do not all return at once
    assert pace(rate_limited("10")).type == ProviderErrorType.RATE_LIMITED


def test_a_retry_after_over_the_cap_makes_the_alias_unavailable_at_once() -> None:
    paced = pace(rate_limited("600"), max_retry_after_s=60.0, step="answer")
    assert paced.type == ProviderErrorType.UNAVAILABLE
    assert paced.non_retryable
    assert paced.next_retry_delay is None
    assert "asked to wait 600 s" in paced.message
    assert "max_retry_after_s 60" in paced.message
    assert "unavailable until 2025-01-02T03:14:05Z" in paced.message
    details = paced.details[0]
    assert details["alias"] == "fast"
    assert details["step"] == "answer"
    assert details["status"] == 429
    assert details["retry_after_s"] == 600.0
    assert details["was"] == ProviderErrorType.RATE_LIMITED


def test_a_retry_after_at_the_cap_is_waited() -> None:
    paced = pace(rate_limited("60"), max_retry_after_s=60.0)
    assert paced.type == ProviderErrorType.RATE_LIMITED
    assert paced.next_retry_delay is not None
    assert paced.next_retry_delay >= timedelta(seconds=60)


def test_non_retryable_errors_are_left_alone() -> None:
    quota = translate_http_error(
        "openai", 429, {"Retry-After": "600"}, b'{"error": {"code": "insufficient_quota"}}'
    )
    assert pace(quota) is quota


def test_backoff_follows_the_activity_retry_policy() -> None:
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=0.5),
        backoff_coefficient=3.0,
        maximum_interval=timedelta(seconds=10),
    )
    backoff = Backoff.of(policy)
    assert (backoff.initial_s, backoff.coefficient, backoff.maximum_s) == (0.5, 3.0, 10.0)
    assert [backoff.ceiling(a) for a in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10.0]
    assert backoff.ceiling(10_000) == 10.0  # no overflow
    assert Backoff.of(None) == Backoff()


def test_registry_fields_for_back_pressure_and_limits() -> None:
    registry = ModelRegistry.from_dict(
        {
            "models": {
                "plain": {"provider": "simulator", "model": "m", "prices": PRICES},
                "limited": {
                    "provider": "simulator",
                    "model": "m",
                    "prices": PRICES,
                    "max_retry_after_s": 5,
                    "rpm": 10,
                    "tpm": 5000,
                    "max_concurrent": 2,
                    "rate_window_s": 3,
                },
            }
        },
        "http://127.0.0.1:1/v1",
    )
    plain = registry.entry("plain")
    assert plain.max_retry_after_s == DEFAULT_MAX_RETRY_AFTER_S
    assert not plain.limits.any
    limited = registry.entry("limited")
    assert limited.max_retry_after_s == 5
    assert (limited.limits.rpm, limited.limits.tpm, limited.limits.max_concurrent) == (10, 5000, 2)
    assert limited.limits.window_s == 3
    assert limited.limits.any
    # What a workflow may know stays free of limits (they are the worker's business).
    assert "rpm" not in registry.describe("limited").model_dump()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rpm", 0),
        ("tpm", -1),
        ("max_concurrent", 0),
        ("rate_window_s", 0),
        ("max_retry_after_s", -1),
    ],
)
def test_registry_refuses_bad_limits(field: str, value: object) -> None:
    with pytest.raises(RegistryError, match=field):
        ModelRegistry.from_dict(
            {
                "models": {
                    "a": {"provider": "simulator", "model": "m", "prices": PRICES, field: value}
                }
            },
            "http://127.0.0.1:1/v1",
        )


PRICES = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
