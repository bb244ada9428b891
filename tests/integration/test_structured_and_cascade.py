"""Structured output re-asks, and the cheap-first cascade."""

from __future__ import annotations

from simulator.control import SimulatorControl
from simulator.models import Rule
from tests.integration.conftest import FAST_RETRY, ChainRunner, load_spec

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["yes", "no"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["label", "confidence"],
    "additionalProperties": False,
}


def verdict_chain(registry, **step_fields):
    step = {
        "name": "verdict",
        "kind": "model",
        "model": "cheap",
        "prompt": "Is this spam? {{ input.text }}",
        "output_schema": VERDICT_SCHEMA,
        "max_reasks": 2,
        **step_fields,
    }
    return load_spec({"name": "verdict", "defaults": FAST_RETRY, "steps": [step]}, registry)


async def test_invalid_structured_output_is_reasked_then_accepted(
    runner: ChainRunner, sim: SimulatorControl, registry
) -> None:
    await sim.add_rules(
        Rule(
            model="sim-mini",
            match="spam",
            replies=[
                "not json at all",
                '{"label": "maybe", "confidence": 2}',
                '{"label": "no", "confidence": 0.8}',
            ],
        )
    )

    result = await runner.run(verdict_chain(registry), {"text": "buy now"})

    assert result.output == {"label": "no", "confidence": 0.8}
    calls = result.steps["verdict"].calls
    assert [(c.outcome, c.purpose) for c in calls] == [
        ("invalid_output", "answer"),
        ("invalid_output", "reask"),
        ("ok", "reask"),
    ]
    log = await sim.calls()
    assert len(log) == 3
    # The re-ask feeds the validation error back to the model.
    assert "did not match the required JSON schema" in log[1].prompt
    assert "'maybe' is not one of" in log[2].prompt
    # Every billed attempt is counted, invalid ones included.
    assert result.usage.per_model["cheap"].calls == 3


async def test_output_that_stays_invalid_fails_the_step(runner: ChainRunner, sim, registry) -> None:
    await sim.add_rules(Rule(model="sim-mini", match="spam", reply="I refuse to answer in JSON"))

    error, partial, _ = await runner.run_failing(
        verdict_chain(registry, max_reasks=1), {"text": "x"}
    )

    assert error.type == "StructuredOutputInvalid"
    assert "step verdict" in error.message and "after 1 re-asks" in error.message
    assert len(await sim.calls()) == 2
    assert partial.steps["verdict"].status == "failed"


async def test_cascade_answers_from_cheap_when_confident(
    runner: ChainRunner, sim, registry
) -> None:
    await sim.add_rules(Rule(model="sim-mini", json={"label": "yes", "confidence": 0.93}))
    spec = verdict_chain(registry, escalate_to="strong", escalate_when="output.confidence < 0.7")

    result = await runner.run(spec, {"text": "cheap pills"})

    step = result.steps["verdict"]
    assert step.model == "cheap" and result.output["confidence"] == 0.93
    assert step.cascade is not None and step.cascade.escalated is False
    assert [c.model for c in await sim.calls()] == ["sim-mini"]


async def test_cascade_escalates_to_strong_when_unsure(runner: ChainRunner, sim, registry) -> None:
    await sim.add_rules(
        Rule(model="sim-mini", json={"label": "yes", "confidence": 0.41}),
        Rule(model="sim-large", json={"label": "no", "confidence": 0.97}),
    )
    spec = verdict_chain(registry, escalate_to="strong", escalate_when="output.confidence < 0.7")

    result = await runner.run(spec, {"text": "ambiguous"})

    step = result.steps["verdict"]
    assert step.model == "strong" and result.output == {"label": "no", "confidence": 0.97}
    assert step.cascade is not None and step.cascade.escalated is True
    assert "output.confidence < 0.7" in step.cascade.reason
    assert [c.purpose for c in step.calls] == ["answer", "escalation"]
    assert set(result.usage.per_model) == {"cheap", "strong"}


async def test_cascade_escalates_on_invalid_output(runner: ChainRunner, sim, registry) -> None:
    await sim.add_rules(
        Rule(model="sim-mini", reply="no json"),
        Rule(model="sim-large", json={"label": "yes", "confidence": 0.9}),
    )
    spec = verdict_chain(registry, escalate_to="strong", max_reasks=1)

    result = await runner.run(spec, {"text": "x"})

    step = result.steps["verdict"]
    assert step.model == "strong"
    assert step.cascade is not None and step.cascade.reason.startswith("invalid structured output")
    assert [c.model for c in await sim.calls()] == ["sim-mini", "sim-mini", "sim-large"]
