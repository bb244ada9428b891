"""The interpreter's routing, fallbacks, re-asks and budgets, against stub
activities registered under the real activity names: no simulator, no
database, seconds on the session's dev server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.gateway.types import (
    CALL_MODEL,
    DESCRIBE_MODELS,
    DescribeModelsInput,
    DescribeModelsResult,
    ModelCallInput,
    ModelCallResult,
    ModelInfo,
    ModelPrices,
    TokenUsage,
)
from core.chain_errors import ChainErrorType
from core.records import RECORD_RUN, RunRecordInput
from runs.client import RunClient
from worker.assembly import create_worker
from workflows.types import ChainResult
from workflows.validate import parse_chain

CHEAP = ModelPrices(input_per_mtok=0.1, output_per_mtok=0.1)
PRICEY = ModelPrices(input_per_mtok=1000.0, output_per_mtok=1000.0)
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
RUN_TIMEOUT_S = 30.0
"""A stubbed run that takes longer is stuck: fail the test, not the session."""
RETRY = {"max_attempts": 1, "initial_interval_s": 0.1, "backoff": 1.0}


@dataclass
class StubModels:
    """Aliases: `down` always fails for good; `pricey` costs a fortune;
    `sloppy` answers invalid JSON the first time it is asked; the others
    answer `<alias>: ok` (or `{"n": 1}` when a schema is given)."""

    calls: list[ModelCallInput] = field(default_factory=list)

    @activity.defn(name=DESCRIBE_MODELS)
    async def describe(self, inp: DescribeModelsInput) -> DescribeModelsResult:
        return DescribeModelsResult(
            models={
                alias: ModelInfo(
                    alias=alias,
                    provider="stub",
                    model=f"stub-{alias}",
                    prices=PRICEY if alias == "pricey" else CHEAP,
                    timeout_s=10,
                    heartbeat_timeout_s=10,
                )
                for alias in inp.aliases
            }
        )

    @activity.defn(name=CALL_MODEL)
    async def call(self, inp: ModelCallInput) -> ModelCallResult:
        self.calls.append(inp)
        if inp.alias == "down":
            raise ApplicationError("provider down", type="ProviderError", non_retryable=True)
        invalid = inp.alias == "sloppy" and len(inp.messages) == 1
        if inp.json_schema is None:
            text, parsed, errors = f"{inp.alias}: ok", None, None
        elif invalid:
            text, parsed, errors = "not json", None, ["not valid JSON"]
        else:
            text, parsed, errors = '{"n": 1}', {"n": 1}, None
        return ModelCallResult(
            alias=inp.alias,
            provider="stub",
            model=f"stub-{inp.alias}",
            text=text,
            parsed=parsed,
            schema_errors=errors,
            usage=TokenUsage(input_tokens=10, output_tokens=10),
            cost_usd=0.000002,
            latency_ms=1.0,
        )


@activity.defn(name=RECORD_RUN)
async def record_run(record: RunRecordInput) -> None:
    return None


@pytest.fixture
async def stub_worker(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> AsyncIterator[StubModels]:
    models = StubModels()
    async with create_worker(
        temporal_env.client,
        task_queue=task_queue,
        activities=[models.describe, models.call, record_run],
    ):
        yield models


async def run_chain(
    env: WorkflowEnvironment, task_queue: str, steps: list[dict[str, Any]], **limits: Any
) -> ChainResult:
    spec = parse_chain({"name": "stubbed", "defaults": RETRY, "limits": limits, "steps": steps})
    started = await RunClient(env.client, task_queue=task_queue).start(
        spec, {"kind": "b"}, run_id=f"stubbed-{uuid.uuid4()}"
    )
    return await asyncio.wait_for(started.handle.result(), RUN_TIMEOUT_S)


async def failing(
    env: WorkflowEnvironment, task_queue: str, steps: list[dict[str, Any]], **limits: Any
) -> tuple[ApplicationError, ChainResult]:
    with pytest.raises(WorkflowFailureError) as caught:
        await run_chain(env, task_queue, steps, **limits)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause, ChainResult.model_validate(cause.details[0])


def model(name: str, alias: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "model",
        "model": alias,
        "prompt": "Hi",
        "max_tokens": 50,
        **extra,
    }


def purposes(result: ChainResult, step: str) -> list[tuple[str, str, str]]:
    return [(c.alias, c.purpose, c.outcome) for c in result.steps[step].calls]


async def test_a_failed_alias_falls_back_to_the_next(
    temporal_env: WorkflowEnvironment, task_queue: str, stub_worker: StubModels
) -> None:
    result = await run_chain(temporal_env, task_queue, [model("ask", "down", fallbacks=["cheap"])])

    assert result.output == "cheap: ok"
    assert purposes(result, "ask") == [
        ("down", "answer", "failed"),
        ("cheap", "fallback", "ok"),
    ]


async def test_every_alias_failing_fails_the_run(
    temporal_env: WorkflowEnvironment, task_queue: str, stub_worker: StubModels
) -> None:
    error, partial = await failing(temporal_env, task_queue, [model("ask", "down")])

    assert error.type == ChainErrorType.ALL_MODELS_FAILED
    assert "down: ProviderError: provider down" in error.message
    assert partial.steps["ask"].status == "failed"


async def test_invalid_structured_output_is_asked_again(
    temporal_env: WorkflowEnvironment, task_queue: str, stub_worker: StubModels
) -> None:
    result = await run_chain(
        temporal_env, task_queue, [model("ask", "sloppy", output_schema=SCHEMA)]
    )

    assert result.output == {"n": 1}
    assert purposes(result, "ask") == [
        ("sloppy", "answer", "invalid_output"),
        ("sloppy", "reask", "ok"),
    ]
    reask = stub_worker.calls[-1].messages
    assert [m.role for m in reask] == ["user", "assistant", "user"]
    assert "not valid JSON" in reask[-1].content


async def test_output_still_invalid_after_the_reasks_fails_the_run(
    temporal_env: WorkflowEnvironment, task_queue: str, stub_worker: StubModels
) -> None:
    error, _ = await failing(
        temporal_env, task_queue, [model("ask", "sloppy", output_schema=SCHEMA, max_reasks=0)]
    )

    assert error.type == ChainErrorType.STRUCTURED_OUTPUT_INVALID


async def test_a_call_over_budget_goes_to_the_budget_fallback(
    temporal_env: WorkflowEnvironment, task_queue: str, stub_worker: StubModels
) -> None:
    result = await run_chain(
        temporal_env,
        task_queue,
        [model("ask", "pricey", budget_fallback="cheap")],
        max_cost_usd=0.01,
    )

    assert result.output == "cheap: ok"
    assert purposes(result, "ask") == [("cheap", "budget_fallback", "ok")]
    assert [c.alias for c in stub_worker.calls] == ["cheap"]


async def test_a_call_over_budget_without_fallback_fails_before_calling(
    temporal_env: WorkflowEnvironment, task_queue: str, stub_worker: StubModels
) -> None:
    error, _ = await failing(temporal_env, task_queue, [model("ask", "pricey")], max_cost_usd=0.01)

    assert error.type == ChainErrorType.BUDGET_EXCEEDED
    assert stub_worker.calls == []


async def test_route_runs_the_branch_whose_condition_holds(
    temporal_env: WorkflowEnvironment, task_queue: str, stub_worker: StubModels
) -> None:
    route = {
        "name": "pick",
        "kind": "route",
        "branches": [
            {"when": "input.kind == 'a'", "steps": [model("on_a", "cheap")]},
            {"when": "input.kind == 'b'", "steps": [model("on_b", "cheap_b")]},
        ],
    }
    result = await run_chain(temporal_env, task_queue, [route])

    assert (result.output, result.steps["pick"].branch) == ("cheap_b: ok", "branches[1]")
    assert "on_a" not in result.steps


async def test_the_step_limit_counts_every_call(
    temporal_env: WorkflowEnvironment, task_queue: str, stub_worker: StubModels
) -> None:
    error, partial = await failing(
        temporal_env,
        task_queue,
        [model("one", "cheap"), model("two", "down", fallbacks=["cheap"])],
        max_steps=2,
    )

    assert error.type == ChainErrorType.STEP_LIMIT_EXCEEDED
    assert partial.steps["one"].status == "completed"
