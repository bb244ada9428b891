"""What ops see of a run, on stub activities: a malformed `decide` Update is
refused as MalformedDecision before history (from a client and from the
Temporal CLI), an invalid `decide` signal is listed in the run's state, a run
parked on an approval shows its cost so far in ChorusCostUsd."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from core.chain_errors import ChainErrorType
from core.names import DECIDE
from core.search_attributes import COST_KEY, STATUS_KEY
from tests.workflows.stubs import Harness, stub_harness
from tests.workflows.test_interpreter_approvals import CHAIN, parked
from workflows.types import ApprovalRejection, RunState


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    async with stub_harness(temporal_env, task_queue) as harness:
        yield harness


async def event_count(chains: Harness, run_id: str) -> int:
    """The run's event count once its history has gone quiet.

    A run lists its approval in `state` a moment before the activities that
    record the new status finish, so counting at once would count events that
    were still on their way, not events a refused Update added."""
    handle = chains.runs.handle(run_id)
    counted = -1
    async with asyncio.timeout(30):
        while True:
            description = (await handle.describe()).raw_description
            events = len((await handle.fetch_history()).events)
            busy = description.pending_activities or description.HasField("pending_workflow_task")
            if not busy and events == counted:
                return events
            counted = events
            await asyncio.sleep(0.05)


def malformed_payloads(approval_id: str, payload_hash: str) -> list[Any]:
    good = {
        "approval_id": approval_id,
        "decision": "approve",
        "reviewer": "alice",
        "payload_hash": payload_hash,
    }
    return [
        {**good, "coment": "misspelt"},  # an unknown field
        {**good, "decision": "maybe"},  # not a decision
        "approve",  # not an object at all
        {"approval_id": approval_id},  # fields missing
    ]


async def test_a_malformed_update_is_refused_as_malformed_before_history(
    chains: Harness,
) -> None:
    started = await parked(chains)
    approval = await chains.pending(started)
    before = await event_count(chains, started.run_id)

    for payload in malformed_payloads(approval.approval_id, approval.payload_hash):
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await started.handle.execute_update(DECIDE, payload)
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError), payload
        assert (cause.type, cause.non_retryable) == (ApprovalRejection.MALFORMED, True), payload
        assert "malformed decision" in cause.message

    assert await event_count(chains, started.run_id) == before
    assert chains.stubs.audits == []
    await chains.decide(started, approval)  # the well-formed one still lands
    assert (await chains.finish(started)).status == "completed"


async def test_the_temporal_cli_gets_malformed_decision_too(
    chains: Harness, temporal_env: WorkflowEnvironment
) -> None:
    from cli.devstack.temporal_server import find_temporal_binary

    started = await parked(chains)
    approval = await chains.pending(started)
    before = await event_count(chains, started.run_id)
    address = temporal_env.client.service_client.config.target_host
    proc = await asyncio.create_subprocess_exec(
        str(find_temporal_binary()),
        "workflow", "update", "execute",
        "--address", address,
        "--workflow-id", started.run_id,
        "--name", DECIDE,
        "--input", json.dumps({"approval_id": approval.approval_id, "coment": "x"}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode != 0
    assert "malformed decision" in output.decode() and "coment" in output.decode()
    assert await event_count(chains, started.run_id) == before
    await chains.decide(started, approval)
    assert (await chains.finish(started)).status == "completed"


async def test_an_invalid_signal_is_listed_in_the_run_s_state(chains: Harness) -> None:
    started = await parked(chains)
    approval = await chains.pending(started)

    await started.handle.signal(DECIDE, {"approval_id": approval.approval_id, "coment": "x"})
    await started.handle.signal(
        DECIDE,
        {
            "approval_id": "nope",
            "decision": "approve",
            "reviewer": "bob",
            "payload_hash": approval.payload_hash,
        },
    )

    async def ignored() -> list[str]:
        while True:
            state = await started.handle.query("state", result_type=RunState)
            if len(state.ignored_signals) == 2:
                return state.ignored_signals
            await asyncio.sleep(0.05)

    first, second = await asyncio.wait_for(ignored(), 10)
    assert first.startswith(ApprovalRejection.MALFORMED) and "coment" in first
    assert second.startswith("bob: ") and ApprovalRejection.NOT_FOUND in second
    assert (await chains.runs.pending_approvals(started.run_id))[0].status == "pending"
    await chains.decide(started, approval)
    assert (await chains.finish(started)).status == "completed"


async def test_a_parked_run_shows_its_cost_so_far(chains: Harness) -> None:
    started = await chains.start(CHAIN, {"message": "Refund?"})
    approval = await chains.pending(started)

    async def attributes() -> tuple[str | None, float | None]:
        while True:
            described = await started.handle.describe()
            status = described.typed_search_attributes.get(STATUS_KEY)
            if status == "awaiting_approval":
                return status, described.typed_search_attributes.get(COST_KEY)
            await asyncio.sleep(0.05)

    status, cost = await asyncio.wait_for(attributes(), 10)
    state = await started.handle.query("state", result_type=RunState)
    assert status == "awaiting_approval"
    assert state.budget.spent_usd > 0 and cost == pytest.approx(state.budget.spent_usd)
    await chains.decide(started, approval)
    assert (await chains.finish(started)).status == "completed"


async def test_a_chain_nobody_checked_that_cannot_run_fails_at_once_naming_why(
    chains: Harness,
) -> None:
    # The harness's run client has no catalog, so it starts what it is given,
    # as a raw Temporal client or the Temporal CLI would.
    steps = [
        {"name": "ask", "kind": "model", "model": "cheap", "prompt": "{{ steps.later.output }}"},
        {"name": "check", "kind": "guard", "target": "reply", "rules": {"pii": ["email"]}},
    ]
    error, partial = await chains.failure(steps)

    assert error.type == ChainErrorType.INVALID_CHAIN_SPEC
    assert "steps[1].target" in error.message and "'reply'" in error.message
    assert "steps[0].prompt" in error.message
    assert chains.stubs.model_calls == [] and partial.status == "failed"
    assert chains.stubs.run_records[-1].error_type == ChainErrorType.INVALID_CHAIN_SPEC
