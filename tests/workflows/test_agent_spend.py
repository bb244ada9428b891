"""What an agent spends counts in the run, answered or failed: a failed
agent's calls stay in its step, the run's cost and ChorusCostUsd, and out of
the budget later calls may reserve (before, its reservation was released as
if it had spent nothing); an uncapped run's budget counts its agents too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.gateway.types import ModelCallInput, ModelCallResult, ToolCall
from core.chain_errors import ChainErrorType
from core.names import CALL_MODEL, STATE_QUERY
from core.search_attributes import COST_KEY
from runs.client import StartedRun
from tests.workflows.stubs import (
    CHEAP,
    PRICES,
    RUN_TIMEOUT_S,
    USAGE,
    Harness,
    Stubs,
    model,
    purposes,
)
from worker.assembly import create_worker
from workflows.types import ChainResult, RunState

AGENT_CALL_USD = PRICES["metered"].cost(USAGE)
"""$1: what each of the agent's calls is billed (its worst case is $2)."""


@dataclass
class LoopingAgent(Stubs):
    """The agent's model asks for an order lookup every turn, or answers
    from turn `answer_on` on."""

    answer_on: int | None = None

    @activity.defn(name=CALL_MODEL)
    async def call_model(self, inp: ModelCallInput) -> ModelCallResult:
        if inp.step != "helper":
            return await super().call_model(inp)
        self.model_calls.append(inp)
        turn = sum(1 for c in self.model_calls if c.step == "helper")
        answers = self.answer_on is not None and turn >= self.answer_on
        lookup = ToolCall(id=f"t{turn}", name="lookup_order", arguments={"order_id": "A1"})
        return ModelCallResult(
            alias=inp.alias,
            provider="stub",
            model=f"stub-{inp.alias}",
            text="Shipped." if answers else "",
            tool_calls=[] if answers else [lookup],
            usage=USAGE,
            cost_usd=PRICES["metered"].cost(USAGE),
            latency_ms=1.0,
        )


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    harness = Harness(temporal_env, task_queue)
    harness.stubs = LoopingAgent()
    async with create_worker(
        temporal_env.client, task_queue=task_queue, activities=harness.stubs.activities
    ):
        yield harness


def helper(**extra: Any) -> dict[str, Any]:
    """An agent on `metered` whose calls reserve $2 and cost $1 each: with
    a $3 cap, two calls fit and the third fails it as BudgetExceeded."""
    return {
        "name": "helper",
        "kind": "agent",
        "model": "metered",
        "prompt": "Where is order A1?",
        "tools": ["lookup_order"],
        "max_turns": 10,
        "max_tokens": 2,
        **extra,
    }


async def failed(started: StartedRun) -> tuple[ApplicationError, ChainResult]:
    with pytest.raises(WorkflowFailureError) as caught:
        await Harness.finish(started)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause, ChainResult.model_validate(cause.details[0])


async def published_cost(chains: Harness, started: StartedRun) -> float | None:
    described = await chains.runs.handle(started.run_id).describe()
    return described.typed_search_attributes.get(COST_KEY)


async def test_a_failed_agents_spend_stays_in_the_runs_cost(chains: Harness) -> None:
    started = await chains.start([helper(max_cost_usd=3)], max_cost_usd=10)
    error, partial = await failed(started)

    assert error.type == ChainErrorType.BUDGET_EXCEEDED
    assert len(chains.stubs.model_calls) == 2
    step = partial.steps["helper"]
    assert step.status == "failed"
    assert [(c.alias, c.outcome) for c in step.calls] == [("metered", "ok")] * 2
    assert step.cost_usd == 2 * AGENT_CALL_USD
    assert partial.usage.cost_usd == 2 * AGENT_CALL_USD
    assert partial.usage.per_model["metered"].calls == 2
    assert await published_cost(chains, started) == 2 * AGENT_CALL_USD


async def test_a_parallel_branch_after_a_failed_agent_sees_the_reduced_budget(
    chains: Harness,
) -> None:
    """The agent's branch fails over its own cap after spending $2 of the
    run's $10; the other branch, held on an approval until then, asks for a
    call whose worst case is $9. Only $8 is left, so its budget fallback
    answers (before: the $2 was released and the $9 call was made)."""
    fan = {
        "name": "fan",
        "kind": "parallel",
        "branches": [
            {"name": "agent", "steps": [helper(max_cost_usd=3)]},
            {
                "name": "other",
                "steps": [
                    {"name": "hold", "kind": "approval", "text": "Go on?"},
                    model("b", "metered", max_tokens=9, budget_fallback="cheap"),
                ],
            },
        ],
    }
    started = await chains.start([fan], max_cost_usd=10)
    approval = await chains.pending(started)
    handle = chains.runs.handle(started.run_id)
    async with asyncio.timeout(RUN_TIMEOUT_S):
        while True:  # the run has seen its agent fail
            state = await handle.query(STATE_QUERY, result_type=RunState)
            if "helper" in state.steps and state.steps["helper"].status == "failed":
                break
            await asyncio.sleep(0.05)
    assert state.budget.spent_usd == 2 * AGENT_CALL_USD
    await chains.decide(started, approval)
    error, partial = await failed(started)

    assert error.type == ChainErrorType.BUDGET_EXCEEDED
    assert purposes(partial, "b") == [("cheap", "budget_fallback", "ok")]
    assert [c.alias for c in chains.stubs.model_calls if c.step == "b"] == ["cheap"]
    assert partial.usage.cost_usd == 2 * AGENT_CALL_USD + CHEAP.cost(USAGE)


async def test_an_uncapped_runs_cost_counts_its_agent(chains: Harness) -> None:
    assert isinstance(chains.stubs, LoopingAgent)
    chains.stubs.answer_on = 2
    started = await chains.start([helper()])
    result = await chains.finish(started)

    assert result.status == "completed"
    assert result.steps["helper"].cost_usd == 2 * AGENT_CALL_USD
    assert await published_cost(chains, started) == 2 * AGENT_CALL_USD
