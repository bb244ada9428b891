"""The interpreter's model calls against stub activities registered under the
real activity names (tests/workflows/stubs.py): fallbacks, re-asks, budgets
(with reservations across parallel branches), cascades and the step limit.
No simulator, no database: seconds on the session's dev server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.gateway.types import (
    ChatMessage,
    ModelCallInput,
    ToolSpec,
    estimate_prompt_tokens,
    prompt_tokens_bound,
)
from core.chain_errors import ChainErrorType
from tests.workflows.stubs import (
    DOWN,
    PRICES,
    RUN_TIMEOUT_S,
    SLOW,
    TOOLS,
    Harness,
    model,
    purposes,
    stub_harness,
)

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"],
}


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    async with stub_harness(temporal_env, task_queue) as harness:
        yield harness


# -- fallbacks and re-asks -------------------------------------------------------------


async def test_a_failed_alias_falls_back_to_the_next(chains: Harness) -> None:
    result = await chains.result([model("ask", DOWN, fallbacks=["cheap"])])

    assert result.output == "cheap: Hi"
    assert purposes(result, "ask") == [(DOWN, "answer", "failed"), ("cheap", "fallback", "ok")]
    assert chains.stubs.aliases_called == [DOWN, "cheap"]


async def test_every_alias_failing_fails_the_run_and_the_index_says_so(chains: Harness) -> None:
    error, partial = await chains.failure([model("ask", DOWN, fallbacks=[DOWN])])

    assert error.type == ChainErrorType.ALL_MODELS_FAILED
    assert "down: ProviderError: provider down" in error.message
    assert partial.steps["ask"].status == "failed"
    last = chains.stubs.run_records[-1]
    assert (last.status, last.error) == ("failed", error.message)
    assert last.finished_at is not None


async def test_invalid_structured_output_is_asked_again(chains: Harness) -> None:
    chains.stubs.script("sloppy", "not json", '{"n": 1}')
    result = await chains.result([model("ask", "sloppy", output_schema=SCHEMA)])

    assert result.output == {"n": 1}
    assert purposes(result, "ask") == [
        ("sloppy", "answer", "invalid_output"),
        ("sloppy", "reask", "ok"),
    ]
    reask = chains.stubs.model_calls[-1].messages
    assert [(m.role, m.content) for m in reask[:2]] == [("user", "Hi"), ("assistant", "not json")]
    assert "not valid JSON" in reask[-1].content


async def test_output_still_invalid_after_the_reasks_fails_the_run(chains: Harness) -> None:
    chains.stubs.script("sloppy", "not json", "still not json")
    error, _ = await chains.failure([model("ask", "sloppy", output_schema=SCHEMA, max_reasks=1)])

    assert error.type == ChainErrorType.STRUCTURED_OUTPUT_INVALID
    assert "after 1 re-asks" in error.message
    assert chains.stubs.aliases_called == ["sloppy", "sloppy"]


# -- budgets ---------------------------------------------------------------------------


async def test_a_call_over_budget_goes_to_the_budget_fallback(chains: Harness) -> None:
    result = await chains.result(
        [model("ask", "pricey", budget_fallback="cheap")], max_cost_usd=0.01
    )

    assert result.output == "cheap: Hi"
    assert purposes(result, "ask") == [("cheap", "budget_fallback", "ok")]
    assert chains.stubs.aliases_called == ["cheap"]


async def test_a_call_over_budget_without_fallback_fails_before_calling(chains: Harness) -> None:
    error, _ = await chains.failure([model("ask", "pricey")], max_cost_usd=0.01)

    assert error.type == ChainErrorType.BUDGET_EXCEEDED
    assert chains.stubs.model_calls == []


def metered(name: str) -> dict[str, Any]:
    """A step whose worst case is $10 (10 tokens at $1) and that costs $1."""
    return model(name, "metered", max_tokens=10)


async def test_parallel_branches_reserve_their_worst_case_so_only_the_calls_that_fit_run(
    chains: Harness,
) -> None:
    fan = {
        "name": "fan",
        "kind": "parallel",
        "branches": [{"name": f"branch_{n}", "steps": [metered(n)]} for n in "abc"],
    }
    error, partial = await chains.failure([fan], max_cost_usd=25)

    # a and b reserved $10 each before either was billed: c found $5 left.
    assert error.type == ChainErrorType.BUDGET_EXCEEDED
    assert "c on metered needs up to $10.000000 but only $5.000000" in error.message
    assert sorted(c.step for c in chains.stubs.model_calls) == ["a", "b"]
    assert [partial.steps[n].status for n in "abc"] == ["completed", "completed", "failed"]
    assert partial.steps["b"].output == "metered: Hi"
    assert partial.usage.cost_usd == 2.0


async def test_a_reservation_is_settled_to_the_cost_so_later_calls_fit(chains: Harness) -> None:
    result = await chains.result([metered(n) for n in "abc"], max_cost_usd=25)

    assert [c.step for c in chains.stubs.model_calls] == ["a", "b", "c"]
    assert result.usage.cost_usd == 3.0


BIG_SCHEMA = {
    "type": "object",
    "properties": {f"field_{n}": {"type": "string", "description": "x" * 40} for n in range(20)},
}


def bounds(request: ModelCallInput) -> tuple[float, float]:
    """The worst case of `request` on `pricey` with its messages alone, and
    as the gateway's journal bounds it (tools, tool calls and schema too)."""
    prices = PRICES["pricey"]
    return (
        prices.worst_case(estimate_prompt_tokens(request.messages), request.max_tokens),
        prices.worst_case(prompt_tokens_bound(request), request.max_tokens),
    )


async def test_a_call_reserves_its_output_schema_as_the_gateway_bounds_it(
    chains: Harness,
) -> None:
    """A budget between the messages' worst case and the whole request's:
    before, the call was made (and the schema's tokens billed beyond the
    reservation); now it does not fit and nothing is called."""
    request = ModelCallInput(
        alias="pricey",
        messages=[ChatMessage(role="user", content="Hi")],
        max_tokens=50,
        json_schema=BIG_SCHEMA,
    )
    messages_only, whole = bounds(request)
    assert whole > 10 * messages_only

    error, _ = await chains.failure(
        [model("ask", "pricey", output_schema=BIG_SCHEMA)], max_cost_usd=(messages_only + whole) / 2
    )

    assert error.type == ChainErrorType.BUDGET_EXCEEDED
    assert f"ask on pricey needs up to ${whole:.6f}" in error.message
    assert chains.stubs.model_calls == []


async def test_an_agent_turn_reserves_the_tools_it_offers(chains: Harness) -> None:
    offered = [
        ToolSpec(name=name, description=info.description, parameters=info.parameters)
        for name, (info, _) in TOOLS.items()
    ]
    request = ModelCallInput(
        alias="pricey",
        messages=[ChatMessage(role="user", content="Look it up.")],
        max_tokens=50,
        tools=offered,
    )
    messages_only, whole = bounds(request)
    agent = {
        "name": "helper",
        "kind": "agent",
        "model": "pricey",
        "prompt": "Look it up.",
        "tools": list(TOOLS),
        "max_tokens": 50,
        "max_cost_usd": (messages_only + whole) / 2,
    }

    error, _ = await chains.failure([agent])

    assert error.type == ChainErrorType.BUDGET_EXCEEDED
    assert f"helper on pricey needs up to ${whole:.6f}" in error.message
    assert chains.stubs.model_calls == []


# -- cascades --------------------------------------------------------------------------


def cascade(**extra: Any) -> dict[str, Any]:
    """Answer on `cheap`; ask `strong` instead when cheap is unsure."""
    return model(
        "answer",
        "cheap",
        prompt="How long do refunds take?",
        output_schema=ANSWER_SCHEMA,
        escalate_to="strong",
        escalate_when="output.confidence < 0.7",
        **extra,
    )


async def test_an_unsure_cheap_answer_escalates_to_the_strong_model(chains: Harness) -> None:
    chains.stubs.script("cheap", '{"answer": "a week?", "confidence": 0.4}')
    chains.stubs.script("strong", '{"answer": "five days", "confidence": 0.95}')
    result = await chains.result([cascade()])

    assert result.output == {"answer": "five days", "confidence": 0.95}
    assert purposes(result, "answer") == [("cheap", "answer", "ok"), ("strong", "escalation", "ok")]
    step = result.steps["answer"]
    assert step.model == "strong"
    assert step.cascade is not None and step.cascade.escalated
    assert (step.cascade.from_alias, step.cascade.to_alias) == ("cheap", "strong")
    assert step.cascade.reason == "escalate_when held: output.confidence < 0.7"
    first, second = chains.stubs.model_calls
    assert second.messages == first.messages  # strong is asked the question, not cheap's answer


async def test_a_confident_cheap_answer_is_kept(chains: Harness) -> None:
    chains.stubs.script("cheap", '{"answer": "five days", "confidence": 0.9}')
    result = await chains.result([cascade()])

    assert result.output == {"answer": "five days", "confidence": 0.9}
    assert chains.stubs.aliases_called == ["cheap"]
    step = result.steps["answer"]
    assert step.model == "cheap"
    assert step.cascade is not None and not step.cascade.escalated
    assert step.cascade.reason == "answer accepted"


async def test_cheap_output_invalid_after_its_reasks_escalates(chains: Harness) -> None:
    chains.stubs.script("cheap", "no idea", "still no idea")
    chains.stubs.script("strong", '{"answer": "five days", "confidence": 0.95}')
    result = await chains.result([cascade(max_reasks=1)])

    assert result.output == {"answer": "five days", "confidence": 0.95}
    assert purposes(result, "answer") == [
        ("cheap", "answer", "invalid_output"),
        ("cheap", "reask", "invalid_output"),
        ("strong", "escalation", "ok"),
    ]
    cascade_decision = result.steps["answer"].cascade
    assert cascade_decision is not None
    assert cascade_decision.reason.startswith("invalid structured output: ")


# -- cancellation ----------------------------------------------------------------------


async def test_a_run_cancelled_during_a_call_ends_cancelled_without_falling_back(
    chains: Harness,
) -> None:
    started = await chains.start([model("ask", SLOW, fallbacks=["cheap"])])
    await asyncio.wait_for(chains.stubs.slow_called.wait(), RUN_TIMEOUT_S)
    await chains.runs.cancel(started.run_id)

    with pytest.raises(WorkflowFailureError):
        await chains.finish(started)
    assert chains.stubs.aliases_called == [SLOW]
    assert chains.stubs.run_records[-1].status == "cancelled"


# -- limits ----------------------------------------------------------------------------


async def test_the_step_limit_counts_every_call(chains: Harness) -> None:
    error, partial = await chains.failure(
        [model("one", "cheap"), model("two", DOWN, fallbacks=["cheap"])], max_steps=2
    )

    assert error.type == ChainErrorType.STEP_LIMIT_EXCEEDED
    assert partial.steps["one"].status == "completed"
    assert chains.stubs.aliases_called == ["cheap", DOWN]
