"""Budgets cannot be overrun, not even by parallel branches."""

from __future__ import annotations

from simulator.control import SimulatorControl
from simulator.models import Rule
from tests.integration.conftest import FAST_RETRY, ChainRunner, load_spec


def sequential_chain(registry, max_cost: float):
    steps = [
        {
            "name": f"s{i}",
            "kind": "model",
            "model": "strong",
            "prompt": "Step {{ input.n }}",
            "max_tokens": 1000,
        }
        for i in range(4)
    ]
    return load_spec(
        {
            "name": "seq",
            "defaults": FAST_RETRY,
            "limits": {"max_cost_usd": max_cost},
            "steps": steps,
        },
        registry,
    )


async def test_budget_exceeded_stops_run_and_keeps_partial_outputs(
    runner: ChainRunner, sim: SimulatorControl, registry
) -> None:
    # strong's worst case for one step: ~1000 output tokens at $15/Mtok = $0.015;
    # each answer really uses 900 of them ($0.0135), so the third does not fit.
    await sim.add_rules(
        Rule(model="sim-large", reply="long answer", usage={"completion_tokens": 900})
    )
    spec = sequential_chain(registry, max_cost=0.035)

    error, partial, workflow_id = await runner.run_failing(spec, {"n": 1})

    assert error.type == "BudgetExceeded"
    assert "step s2" in error.message and "budget exceeded" in error.message
    assert [partial.steps[n].status for n in ("s0", "s1", "s2")] == ["completed"] * 2 + ["failed"]
    assert "s3" not in partial.steps
    assert partial.steps["s0"].output == "long answer"
    assert partial.usage.cost_usd <= 0.035
    assert len(await sim.calls()) == 2

    # The live state stays readable after the failure, for ops and the CLI.
    handle = runner.client.get_workflow_handle(workflow_id)
    state = await handle.query("state")
    assert state["status"] == "failed" and state["finished_steps"] == ["s0", "s1"]


async def test_parallel_branches_never_spend_past_the_budget(
    runner: ChainRunner, sim, registry
) -> None:
    branches = [
        {
            "name": f"b{i}",
            "steps": [
                {
                    "name": f"ask{i}",
                    "kind": "model",
                    "model": "strong",
                    "prompt": "Q{{ input.n }}",
                    "max_tokens": 1000,
                }
            ],
        }
        for i in range(5)
    ]
    spec = load_spec(
        {
            "name": "fan_out",
            "defaults": FAST_RETRY,
            "limits": {"max_cost_usd": 0.04},
            "steps": [{"name": "fan", "kind": "parallel", "branches": branches}],
        },
        registry,
    )

    error, partial, _ = await runner.run_failing(spec, {"n": 2})

    assert error.type == "BudgetExceeded"
    completed = [c for c in await sim.calls() if c.outcome == "completed"]
    # Only two worst cases (~$0.015 each) fit in $0.04: the third call is never made.
    assert len(completed) == 2
    assert partial.usage.cost_usd <= 0.04
    assert partial.usage.per_model["strong"].calls == 2


async def test_budget_fallback_uses_cheaper_alias(runner: ChainRunner, sim, registry) -> None:
    spec = load_spec(
        {
            "name": "budget_fallback",
            "defaults": FAST_RETRY,
            "limits": {"max_cost_usd": 0.005},
            "steps": [
                {
                    "name": "a",
                    "kind": "model",
                    "model": "strong",
                    "budget_fallback": "cheap",
                    "prompt": "Q",
                    "max_tokens": 1000,
                }
            ],
        },
        registry,
    )

    result = await runner.run(spec, {})

    assert result.steps["a"].model == "cheap"
    assert result.steps["a"].calls[0].purpose == "budget_fallback"
    assert [c.model for c in await sim.calls()] == ["sim-mini"]


async def test_max_steps_bounds_the_run(runner: ChainRunner, sim, registry) -> None:
    spec = load_spec(
        {
            "name": "few_steps",
            "defaults": FAST_RETRY,
            "limits": {"max_steps": 2},
            "steps": [
                {"name": f"s{i}", "kind": "model", "model": "cheap", "prompt": "Q"}
                for i in range(3)
            ],
        },
        registry,
    )

    error, partial, _ = await runner.run_failing(spec, {})

    assert error.type == "StepLimitExceeded" and "limit of 2" in error.message
    assert len(await sim.calls()) == 2
    assert partial.steps["s1"].status == "completed"
