"""Routing sends each input to the right alias, and cost follows each alias's price."""

from __future__ import annotations

import pytest

from simulator.control import SimulatorControl
from simulator.models import Rule
from tests.integration.conftest import ChainRunner, shipped_chain

CHEAP = (0.15, 0.60)
STRONG = (3.00, 15.00)


def priced(usage: dict | object, prices: tuple[float, float]) -> float:
    u = usage if isinstance(usage, dict) else usage.model_dump()  # type: ignore[union-attr]
    return (u["input_tokens"] * prices[0] + u["output_tokens"] * prices[1]) / 1_000_000


@pytest.mark.parametrize(
    ("question", "complexity", "branch", "answering_alias"),
    [
        ("What are your opening hours?", "simple", "branches[0]", "cheap"),
        ("Compare three amortisation schedules for my loan", "complex", "otherwise", "strong"),
    ],
)
async def test_route_sends_input_to_alias_by_classification(
    runner: ChainRunner,
    sim: SimulatorControl,
    registry,
    question: str,
    complexity: str,
    branch: str,
    answering_alias: str,
) -> None:
    await sim.add_rules(
        Rule(
            model="sim-mini", match=question, json={"complexity": complexity, "topic": "t"}, times=1
        )
    )
    spec = shipped_chain("classify_then_answer", registry)

    result = await runner.run(spec, {"question": question})

    assert result.status == "completed"
    assert result.steps["classify"].output["complexity"] == complexity
    route = result.steps["answer"]
    assert route.branch == branch
    answered = [r for n, r in result.steps.items() if n.startswith("answer_")]
    assert len(answered) == 1 and answered[0].model == answering_alias
    assert result.output == answered[0].output
    expected_model = "sim-mini" if answering_alias == "cheap" else "sim-large"
    assert result.output.startswith(f"[simulated {expected_model}]")

    per_model = result.usage.per_model
    assert set(per_model) == {"cheap", answering_alias}
    for alias, usage in per_model.items():
        prices = CHEAP if alias == "cheap" else STRONG
        assert usage.cost_usd == pytest.approx(priced(usage.usage, prices), rel=1e-9)
    assert result.usage.cost_usd == pytest.approx(sum(u.cost_usd for u in per_model.values()))

    calls = await sim.calls()
    models_called = [c.model for c in calls if c.outcome == "completed"]
    assert models_called == ["sim-mini", expected_model]


async def test_complex_route_costs_more_per_token(runner: ChainRunner, sim, registry) -> None:
    spec = shipped_chain("classify_then_answer", registry)
    question = "Explain the tax treatment of my refund in detail"
    await sim.add_rules(
        Rule(
            model="sim-mini",
            match="tax treatment",
            json={"complexity": "simple", "topic": "tax"},
            times=1,
        )
    )
    simple = await runner.run(spec, {"question": question})
    await sim.add_rules(
        Rule(
            model="sim-mini",
            match="tax treatment",
            json={"complexity": "complex", "topic": "tax"},
            times=1,
        )
    )
    complex_ = await runner.run(spec, {"question": question})

    assert simple.steps["answer"].branch == "branches[0]"
    assert complex_.steps["answer"].branch == "otherwise"
    simple_answer = simple.usage.per_step["answer_simple"]
    complex_answer = complex_.usage.per_step["answer_complex"]
    assert complex_answer.cost_usd / complex_answer.usage.total_tokens > (
        10 * simple_answer.cost_usd / simple_answer.usage.total_tokens
    )
