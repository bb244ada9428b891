"""Model-call metrics (`chorus_model_*`, `chorus_rate_limit_*`), counted by
`ModelGateway.call_model`: one attempt at a time, labelled by registry alias
and provider (see `activities/metrics.py` for the label rules)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from temporalio.exceptions import ApplicationError

from activities.gateway.types import ModelCallResult, ProviderErrorType, TokenUsage
from activities.metrics import UNKNOWN as UNKNOWN
from activities.metrics import error_labels

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
"""Model calls take from tens of milliseconds (a cache, the simulator) to minutes."""

MODEL_CALLS = Counter(
    "chorus_model_calls",
    "Attempts of chorus.call_model, by how they ended (outcome: ok, error, refused, "
    "cancelled; error_type: the ApplicationError type, empty when ok).",
    ["alias", "provider", "outcome", "error_type"],
)
MODEL_TOKENS = Counter(
    "chorus_model_tokens",
    "Tokens the providers reported, by kind (input includes cached and cache_write; "
    "output includes reasoning).",
    ["alias", "provider", "kind"],
)
MODEL_COST = Counter(
    "chorus_model_cost_usd",
    "Cost of the replies received, in USD at the alias's prices (refusals included).",
    ["alias", "provider"],
)
MODEL_UNCONFIRMED_COST = Counter(
    "chorus_model_unconfirmed_cost_usd",
    "Worst-case cost of earlier attempts that may have been billed unseen, in USD.",
    ["alias", "provider"],
)
MODEL_DURATION = Histogram(
    "chorus_model_call_duration_seconds",
    "Time one attempt of chorus.call_model took, journal and provider call included.",
    ["alias", "provider", "outcome"],
    buckets=LATENCY_BUCKETS,
)
MODEL_RETRIES = Counter(
    "chorus_model_call_retries",
    "Attempts of chorus.call_model after the first (Temporal's retries).",
    ["alias", "provider"],
)
MODEL_REPLIES_REUSED = Counter(
    "chorus_model_replies_reused",
    "Retries answered from the reply journal instead of paying the provider again.",
    ["alias", "provider"],
)
RATE_LIMIT_WAITS = Counter(
    "chorus_rate_limit_waits",
    "Calls held back by this deployment's rate limits (rpm, tpm, max_concurrent).",
    ["alias", "provider"],
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "chorus_rate_limit_wait_seconds",
    "How long a call held back by the rate limits is told to wait.",
    ["alias", "provider"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)


def count_tokens(alias: str, provider: str, usage: TokenUsage) -> None:
    for kind, value in (
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cached", usage.cached_input_tokens),
        ("cache_write", usage.cache_write_tokens),
        ("reasoning", usage.reasoning_tokens),
    ):
        if value:
            MODEL_TOKENS.labels(alias, provider, kind).inc(value)


def model_call_started(alias: str, provider: str, attempt: int) -> float:
    """Count a retry (attempt > 1); the start time for `model_call_ended`."""
    if attempt > 1:
        MODEL_RETRIES.labels(alias, provider).inc()
    return time.perf_counter()


def model_call_ended(
    alias: str,
    provider: str,
    started: float,
    result: ModelCallResult | None = None,
    exc: BaseException | None = None,
) -> None:
    """Count one attempt of `call_model` that returned `result` or raised
    `exc`. A content refusal is billed (its usage and cost travel in the
    error's details); a `RateLimitWait` sent nothing and is a wait, not a call."""
    elapsed = time.perf_counter() - started
    outcome, error_type = ("ok", "") if exc is None else error_labels(exc)
    details = tuple(exc.details) if isinstance(exc, ApplicationError) else ()
    if error_type == ProviderErrorType.RATE_LIMIT_WAIT:
        RATE_LIMIT_WAITS.labels(alias, provider).inc()
        wait = next((d for d in details if isinstance(d, dict) and "retry_in_s" in d), None)
        if wait is not None:
            RATE_LIMIT_WAIT_SECONDS.labels(alias, provider).observe(float(wait["retry_in_s"]))
        return
    if error_type == ProviderErrorType.REFUSED:
        outcome = "refused"
        billed = next((d for d in details if isinstance(d, dict) and "usage" in d), None)
        if billed is not None:
            count_tokens(alias, provider, TokenUsage.model_validate(billed["usage"] or {}))
            MODEL_COST.labels(alias, provider).inc(float(billed.get("cost_usd") or 0.0))
    MODEL_CALLS.labels(alias, provider, outcome, error_type).inc()
    MODEL_DURATION.labels(alias, provider, outcome).observe(elapsed)
    if result is not None:
        count_tokens(alias, provider, result.usage)
        MODEL_COST.labels(alias, provider).inc(result.cost_usd)
        if result.unconfirmed_usd:
            MODEL_UNCONFIRMED_COST.labels(alias, provider).inc(result.unconfirmed_usd)
