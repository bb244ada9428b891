"""The reply journal in real runs (Temporal dev server, the simulator, the
worker's SQLite database): keyed by run id, a retry never gets another run's
reply (an agent that continued as new, a reused workflow id), and an attempt
that may have been billed unseen counts in the run's cost and budget."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.gateway.registry import ModelRegistry
from activities.gateway.types import ChatMessage, estimate_prompt_tokens
from core.chain_spec import ChainSpec
from runs.client import RunClient
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule
from tests.conftest import activity_host
from tests.integration.conftest import FAST_RETRY, MODELS_FILE, ChainRunner, load_spec
from tests.integration.test_agents import agent_chain, lookup
from worker.assembly import hosted_worker

FOUND = '"found": true'
"""Once in each lookup_order result the agent sends back to the model."""


def with_exactly(count: int, text: str) -> str:
    """A regex matching a prompt that holds `text` exactly `count` times."""
    other = rf"(?:(?!{re.escape(text)})[\s\S])*"
    return rf"^{other}(?:{re.escape(text)}{other}){{{count}}}$"


async def test_an_agent_that_continued_as_new_retries_a_call_and_gets_its_own_reply(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    """Every turn after the first fails once at its first attempt (a 500,
    nothing billed), so the first call of each continued run is attempt 2 of
    activity 1, whose attempt 1 in the first run was answered. Keyed without
    the run id, that retry was handed the first run's reply (its tool call,
    made again)."""
    turns = 10
    await sim.add_faults(
        *(Fault(kind="status", status=500, match=with_exactly(n, FOUND)) for n in range(1, turns))
    )
    await sim.add_rules(
        Rule(after_tool="*", tool_calls=[lookup()]),
        Rule(match="keep going", tool_calls=[lookup()]),
    )
    spec = agent_chain(registry, max_turns=turns, history_event_limit=50)

    handle = await runner.start(spec, {"message": "keep going"})
    result = await handle.result()

    output = result.output
    assert output["continued_as_new"] >= 2
    assert output["turns"] == turns
    calls = await sim.calls(request_id_prefix=f"{handle.id}--helper/")
    completed = [c for c in calls if c.outcome == "completed"]
    # Each later turn: one refused attempt, then one completed call of the
    # same request id; one completed call per turn, none reused from another run.
    assert [c.outcome for c in calls] == ["completed", *["fault", "completed"] * (turns - 1)]
    assert [c.request_id for c in calls[1::2]] == [c.request_id for c in calls[2::2]]
    ids_answered = [c.tool_call_ids for c in completed]
    ids_used = [[call["id"] for call in turn["tool_calls"]] for turn in output["transcript"]]
    assert ids_used == ids_answered
    assert len({i for ids in ids_used for i in ids}) == turns  # every turn its own call
    runs = {c.request_id.split("/")[1] for c in completed if c.request_id}
    assert len(runs) == output["continued_as_new"] + 1
    assert result.usage.per_model["strong"].calls == turns
    assert result.usage.unconfirmed_attempts == 0  # a 500 is never billed


@pytest.mark.slow
async def test_a_reused_workflow_id_never_gets_the_closed_runs_reply(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    """RunClient refuses a closed run's id while Temporal knows the run, but
    the id is free again once retention has deleted it (deleted here at
    once; the dev server takes about 35 s): the journal must keep the runs
    apart on its own."""
    spec = load_spec(
        {
            "name": "reused",
            "defaults": FAST_RETRY,
            "steps": [
                {"name": "s1", "kind": "model", "model": "cheap", "prompt": "Say {{ input.w }}"}
            ],
        },
        registry,
    )
    await sim.add_rules(
        Rule(match="Say first", reply="The first run's reply."),
        Rule(match="Say second", reply="The second run's reply."),
    )
    runs = RunClient(runner.client, task_queue=runner.task_queue)
    workflow_id = f"reused-{uuid.uuid4()}"

    first = await (await runs.start(spec, {"w": "first"}, run_id=workflow_id)).handle.result()
    await deleted(runner.client, workflow_id)
    await sim.add_faults(Fault(kind="status", status=503, match="Say second"))
    started = await runs.start(spec, {"w": "second"}, run_id=workflow_id)
    assert started.created
    second = await started.handle.result()

    assert first.output == "The first run's reply."
    assert second.output == "The second run's reply."
    calls = await sim.calls(request_id_prefix=workflow_id)
    assert [c.outcome for c in calls] == ["completed", "fault", "completed"]
    assert calls[0].request_id != calls[2].request_id == calls[1].request_id


async def deleted(client: Client, workflow_id: str) -> None:
    """Delete a closed run, as retention does, and wait until it is gone."""
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
        )
    )
    for _ in range(2400):  # deletion is asynchronous: about 35 s on the dev server
        try:
            await client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} was not deleted within 120 s")


# -- unconfirmed attempts in the run's cost and budget ------------------------

PRICES = {"input_per_mtok": 0.15, "output_per_mtok": 0.60}
MAX_TOKENS = 1000
USAGE = {"prompt_tokens": 10, "completion_tokens": 5}


@pytest.fixture
async def impatient_runner(
    temporal_env: Any, simulator: Any, task_queue: str, store_engine: Any
) -> AsyncIterator[ChainRunner]:
    """A worker whose `cheap` gives up on the provider after 0.5 s: an
    attempt that timed out had sent its request, so it may have been billed."""
    models = yaml.safe_load(MODELS_FILE.read_text())
    models["models"]["cheap"]["timeout_s"] = 0.5
    registry = ModelRegistry.from_dict(models, simulator.openai_base_url)
    async with hosted_worker(
        temporal_env.client, activity_host(registry, store_engine), task_queue=task_queue
    ):
        yield ChainRunner(temporal_env.client, task_queue)


def two_steps(registry: ModelRegistry, max_cost_usd: float) -> ChainSpec:
    return load_spec(
        {
            "name": "unconfirmed",
            "defaults": FAST_RETRY,
            "limits": {"max_cost_usd": max_cost_usd},
            "steps": [
                {"name": name, "kind": "model", "model": "cheap", "prompt": prompt,
                 "max_tokens": MAX_TOKENS}
                for name, prompt in (("s1", "Step one."), ("s2", "Step two."))
            ],
        },
        registry,
    )  # fmt: skip


def worst_case(prompt: str, registry: ModelRegistry) -> float:
    prices = registry.entry("cheap").prices
    return prices.worst_case(
        estimate_prompt_tokens([ChatMessage(role="user", content=prompt)]), MAX_TOKENS
    )


async def test_an_attempt_with_no_reply_counts_in_the_run_cost_budget_and_api(
    impatient_runner: ChainRunner, sim: SimulatorControl, registry: ModelRegistry
) -> None:
    await sim.add_rules(Rule(reply="Done.", usage=USAGE))
    # s1's first attempt gets no reply in time; its retry is answered.
    await sim.add_faults(Fault(kind="slow", delay_s=3, match="Step one"))
    unconfirmed = worst_case("Step one.", registry)
    confirmed = (USAGE["prompt_tokens"] * 0.15 + USAGE["completion_tokens"] * 0.60) / 1e6

    result = await impatient_runner.run(two_steps(registry, 1.0), {})

    s1 = result.steps["s1"]
    assert (s1.unconfirmed_attempts, s1.unconfirmed_usd) == (1, pytest.approx(unconfirmed))
    assert s1.cost_usd == pytest.approx(confirmed + unconfirmed)
    [call] = s1.calls
    assert call.outcome == "ok" and call.unconfirmed_attempts == 1
    assert result.steps["s2"].unconfirmed_usd == 0
    assert result.usage.unconfirmed_usd == pytest.approx(unconfirmed)
    assert result.usage.cost_usd == pytest.approx(2 * confirmed + unconfirmed)
    assert result.usage.per_model["cheap"].unconfirmed_attempts == 1

    runs = RunClient(impatient_runner.client, task_queue=impatient_runner.task_queue)
    [handle_id] = [
        c.request_id.split("/")[0]
        for c in await sim.calls()
        if c.request_id and c.outcome == "completed" and "Step two" in c.prompt
    ]
    detail = await runs.read(handle_id)
    assert detail is not None
    shown = detail.model_dump(mode="json")  # what GET /v1/runs/{id} answers
    assert shown["unconfirmed_usd"] == pytest.approx(unconfirmed)
    assert shown["unconfirmed_attempts"] == 1
    assert shown["cost_usd"] == pytest.approx(2 * confirmed + unconfirmed)
    description = await impatient_runner.client.get_workflow_handle(handle_id).describe()
    cost = next(
        p.value for p in description.typed_search_attributes if p.key.name == "ChorusCostUsd"
    )
    assert cost == pytest.approx(2 * confirmed + unconfirmed)


async def test_the_budget_counts_the_unconfirmed_attempt_before_the_next_call(
    impatient_runner: ChainRunner, sim: SimulatorControl, registry: ModelRegistry
) -> None:
    """A budget that fits both steps' actual cost and s2's worst case, but
    not s1's unconfirmed attempt as well: s2 is never called."""
    await sim.add_rules(Rule(reply="Done.", usage=USAGE))
    await sim.add_faults(Fault(kind="slow", delay_s=3, match="Step one"))
    confirmed = (USAGE["prompt_tokens"] * 0.15 + USAGE["completion_tokens"] * 0.60) / 1e6
    unconfirmed = worst_case("Step one.", registry)
    cap = confirmed + worst_case("Step two.", registry) + unconfirmed / 2

    error, partial, _ = await impatient_runner.run_failing(two_steps(registry, cap), {})

    assert error.type == "BudgetExceeded" and "s2" in error.message
    assert partial.usage.unconfirmed_usd == pytest.approx(unconfirmed)
    assert partial.usage.cost_usd == pytest.approx(confirmed + unconfirmed)
    assert [c.prompt for c in await sim.calls() if "Step two" in c.prompt] == []
