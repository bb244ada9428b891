"""Retries, Retry-After, fallbacks and the final error when every alias fails."""

from __future__ import annotations

import pytest

from simulator.control import SimulatorControl
from simulator.models import Fault
from tests.integration.conftest import FAST_RETRY, ChainRunner, load_spec


def one_step(registry, *, fallbacks: list[str] | None = None, retry: dict | None = None):
    return load_spec(
        {
            "name": "one_step",
            "defaults": retry or FAST_RETRY,
            "steps": [
                {
                    "name": "answer",
                    "kind": "model",
                    "model": "cheap",
                    "fallbacks": fallbacks or [],
                    "prompt": "Answer: {{ input.q }}",
                }
            ],
        },
        registry,
    )


async def test_two_500s_then_success_costs_two_retries(
    runner: ChainRunner, sim: SimulatorControl, registry
) -> None:
    await sim.add_faults(Fault(kind="status", status=500, model="sim-mini", times=2))

    result = await runner.run(one_step(registry), {"q": "hello"})

    assert result.status == "completed"
    calls = await sim.calls()
    assert [c.outcome for c in calls] == ["fault", "fault", "completed"]
    assert [c.status for c in calls] == [500, 500, 200]
    # Temporal retried inside one activity: the step saw a single successful call.
    assert [c.outcome for c in result.steps["answer"].calls] == ["ok"]
    assert result.steps["answer"].model == "cheap"


@pytest.mark.slow
async def test_429_retry_after_is_honoured(runner: ChainRunner, sim, registry) -> None:
    await sim.add_faults(
        Fault(kind="status", status=429, retry_after="2", model="sim-mini", times=1)
    )

    result = await runner.run(one_step(registry), {"q": "rate limited"})

    assert result.status == "completed"
    first, second = await sim.calls()
    assert (first.status, second.status) == (429, 200)
    # The retry policy alone would retry after 0.1 s; Retry-After says 2 s.
    assert second.started_at - first.finished_at >= 2.0


async def test_400_goes_to_fallback_without_retry(runner: ChainRunner, sim, registry) -> None:
    await sim.add_faults(
        Fault(kind="status", status=400, model="sim-mini", message="bad field", times=5)
    )

    result = await runner.run(one_step(registry, fallbacks=["strong"]), {"q": "fallback"})

    assert result.status == "completed"
    calls = await sim.calls()
    assert [(c.model, c.status) for c in calls] == [("sim-mini", 400), ("sim-large", 200)]
    step = result.steps["answer"]
    assert step.model == "strong"
    assert [(c.alias, c.outcome, c.purpose) for c in step.calls] == [
        ("cheap", "failed", "answer"),
        ("strong", "ok", "fallback"),
    ]
    assert "BadRequest" in (step.calls[0].error or "")
    assert set(result.usage.per_model) == {"strong"}


async def test_every_alias_failing_names_each_alias_and_error(
    runner: ChainRunner, sim, registry
) -> None:
    await sim.add_faults(
        Fault(kind="status", status=503, model="sim-mini", message="mini down", times=10),
        Fault(kind="status", status=401, model="sim-large", message="bad key", times=10),
    )
    spec = one_step(registry, fallbacks=["strong"])

    error, partial, _ = await runner.run_failing(spec, {"q": "doomed"})

    assert error.type == "AllModelsFailed"
    assert "cheap: ProviderOverloaded" in error.message
    assert "strong: AuthenticationFailed" in error.message
    calls = await sim.calls()
    # cheap: all three attempts spent; strong: 401 is not retried.
    assert [(c.model, c.status) for c in calls] == [("sim-mini", 503)] * 3 + [("sim-large", 401)]
    assert partial.status == "failed"
    assert partial.steps["answer"].status == "failed"
    assert partial.usage.cost_usd == 0


async def test_refusal_moves_to_next_fallback(runner: ChainRunner, sim, registry) -> None:
    from simulator.models import Rule

    await sim.add_rules(Rule(model="sim-mini", refusal=True))

    result = await runner.run(one_step(registry, fallbacks=["cheap_b"]), {"q": "refuse me"})

    step = result.steps["answer"]
    assert step.model == "cheap_b"
    refused, answered = step.calls
    assert refused.outcome == "failed" and "ContentRefused" in (refused.error or "")
    assert [c.model for c in await sim.calls()] == ["sim-mini", "sim-mini-b"]
    # The provider bills a refusal: it counts against the run like an answer.
    assert refused.cost_usd > 0 and refused.usage.output_tokens > 0
    assert result.usage.per_model["cheap"].cost_usd == refused.cost_usd
    assert result.usage.cost_usd == refused.cost_usd + answered.cost_usd
