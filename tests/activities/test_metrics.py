"""What `call_model` counts in Chorus' metrics, attempt by attempt, against
the real simulator: a retried success (calls, retries, tokens, cost), a billed
refusal, a provider error, an alias the worker does not know (counted as
`unknown`, never by the name it was given), and a rate-limit wait (a wait,
not a call)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, generate_latest
from temporalio.exceptions import ApplicationError

from activities.gateway import metrics
from activities.gateway.activities import ModelGateway
from activities.gateway.types import ProviderErrorType as T
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule
from tests.activities.test_call_model import Env, ask


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Counter values before and after a block."""

    def __init__(self, *series: tuple[str, dict[str, str]]) -> None:
        self.series = series
        self.before = [value(name, **labels) for name, labels in series]

    def __call__(self) -> list[float]:
        return [
            value(name, **labels) - before
            for (name, labels), before in zip(self.series, self.before, strict=True)
        ]


CHEAP = {"alias": "cheap", "provider": "simulator"}


@pytest.fixture
def env() -> Env:
    return Env()


async def test_a_retried_success_counts_call_retry_tokens_and_cost(
    gateway: ModelGateway, env: Env
) -> None:
    delta = Delta(
        ("chorus_model_calls_total", {**CHEAP, "outcome": "ok", "error_type": ""}),
        ("chorus_model_call_retries_total", CHEAP),
        ("chorus_model_tokens_total", {**CHEAP, "kind": "input"}),
        ("chorus_model_tokens_total", {**CHEAP, "kind": "output"}),
        ("chorus_model_cost_usd_total", CHEAP),
        ("chorus_model_call_duration_seconds_count", {**CHEAP, "outcome": "ok"}),
    )
    result = await env.call(gateway, ask("cheap"))  # Env runs attempt 2
    calls, retries, tokens_in, tokens_out, cost, timed = delta()
    assert (calls, retries, timed) == (1, 1, 1)
    assert tokens_in == result.usage.input_tokens and tokens_out == result.usage.output_tokens
    assert cost == pytest.approx(result.cost_usd) and cost > 0


async def test_a_refusal_is_counted_and_billed(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_rules(Rule(request_id_prefix=env.workflow_id, refusal=True))
    delta = Delta(
        ("chorus_model_calls_total", {**CHEAP, "outcome": "refused", "error_type": T.REFUSED}),
        ("chorus_model_cost_usd_total", CHEAP),
    )
    err = await env.fail(gateway, ask("cheap"))
    calls, cost = delta()
    assert calls == 1 and cost == pytest.approx(err.details[0]["cost_usd"]) and cost > 0


async def test_a_provider_error_is_counted_by_type(
    gateway: ModelGateway, sim: SimulatorControl, env: Env
) -> None:
    await sim.add_faults(Fault(kind="status", status=500, request_id_prefix=env.workflow_id))
    labels = {**CHEAP, "outcome": "error", "error_type": T.SERVER_ERROR}
    delta = Delta(("chorus_model_calls_total", labels), ("chorus_model_cost_usd_total", CHEAP))
    await env.fail(gateway, ask("cheap"))
    assert delta() == [1, 0]


async def test_an_unknown_alias_is_counted_as_unknown(gateway: ModelGateway, env: Env) -> None:
    labels = {"alias": "unknown", "provider": "unknown", "outcome": "error"}
    delta = Delta(("chorus_model_calls_total", {**labels, "error_type": T.CONFIG}))
    await env.fail(gateway, ask("no-such-alias-4f1c"))
    assert delta() == [1]
    assert b"no-such-alias-4f1c" not in generate_latest(REGISTRY)


def test_a_rate_limit_wait_is_a_wait_not_a_call() -> None:
    wait = ApplicationError(
        "over the limit", {"alias": "cheap", "retry_in_s": 1.5, "until": "x", "reason": "rpm"},
        type=T.RATE_LIMIT_WAIT, non_retryable=True,
    )  # fmt: skip
    delta = Delta(
        ("chorus_rate_limit_waits_total", CHEAP),
        ("chorus_rate_limit_wait_seconds_sum", CHEAP),
        (
            "chorus_model_calls_total",
            {**CHEAP, "outcome": "error", "error_type": T.RATE_LIMIT_WAIT},
        ),
    )
    metrics.model_call_ended(
        "cheap", "simulator", metrics.model_call_started("cheap", "x", 1), exc=wait
    )
    assert delta() == [1, 1.5, 0]
