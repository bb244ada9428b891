"""Approval steps against a real Temporal dev server: decisions arrive as the
`decide` Update (validated) or Signal, and land in the audit log."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError

from core.names import DECIDE, PENDING_APPROVALS_QUERY
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule
from store import crud
from store.engine import session_scope
from tests.integration.conftest import FAST_RETRY, ChainRunner, load_spec, shipped_chain
from workflows.types import (
    ApprovalDecision,
    ApprovalRejection,
    ApprovalState,
    ChainResult,
    DecisionOutcome,
)

DRAFT = "Thanks for writing in: your refund is on its way."


async def wait_pending(handle: WorkflowHandle[Any, Any], count: int = 1) -> list[ApprovalState]:
    for _ in range(200):
        pending = await handle.query(PENDING_APPROVALS_QUERY, result_type=list[ApprovalState])
        if len(pending) >= count:
            return pending
        await asyncio.sleep(0.05)
    raise AssertionError("the run never asked for approval")


async def decide(
    handle: WorkflowHandle[Any, Any], approval: ApprovalState, **fields: Any
) -> DecisionOutcome:
    values: dict[str, Any] = {
        "approval_id": approval.approval_id,
        "decision": "approve",
        "reviewer": "alice",
        "reviewer_roles": ["reviewer"],
        "payload_hash": approval.payload_hash,
        **fields,
    }
    return await handle.execute_update(
        DECIDE, ApprovalDecision(**values), result_type=DecisionOutcome
    )


async def status_of(runner: ChainRunner, workflow_id: str) -> str:
    description = await runner.client.get_workflow_handle(workflow_id).describe()
    return next(
        p.value for p in description.typed_search_attributes if p.key.name == "ChorusStatus"
    )


async def test_approve_completes_the_run_and_is_audited(
    runner: ChainRunner, sim: SimulatorControl, registry: Any, store_engine: Any
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply=DRAFT))
    handle = await runner.start(shipped_chain("review_reply", registry), {"message": "Refund?"})

    [approval] = await wait_pending(handle)
    assert approval.text == DRAFT and approval.context == {"message": "Refund?"}
    assert approval.required_role == "reviewer"
    assert await status_of(runner, handle.id) == "awaiting_approval"

    outcome = await decide(handle, approval, comment="looks right")
    result = await handle.result()

    assert outcome.status == "approved" and outcome.approvals == 1
    assert result.status == "completed" and result.output == DRAFT
    assert result.steps["review"].status == "completed"
    assert await status_of(runner, handle.id) == "completed"
    with session_scope(store_engine) as session:
        [row] = crud.list_approval_audit(session, run_id=handle.id)
        assert (row.reviewer, row.decision, row.comment) == ("alice", "approve", "looks right")
        assert row.before_text == DRAFT and row.approval_id == "review"
        run = crud.get_run(session, run_id=handle.id)
        assert run is not None and run.status == "completed"
        assert run.cost_usd == pytest.approx(result.usage.cost_usd)


def chain_with_follow_up(registry: Any, **approval: Any):
    return load_spec(
        {
            "name": "review_then_send",
            "defaults": FAST_RETRY,
            "steps": [
                {"name": "draft", "kind": "model", "model": "writer", "prompt": "Draft"},
                {
                    "name": "review",
                    "kind": "approval",
                    "text": "{{ steps.draft.output }}",
                    **approval,
                },
                {
                    "name": "send",
                    "kind": "model",
                    "model": "cheap",
                    "prompt": "Send this: {{ steps.review.output }}",
                },
            ],
        },
        registry,
    )


async def test_edit_replaces_the_output_later_steps_see(
    runner: ChainRunner, sim: SimulatorControl, registry: Any, store_engine: Any
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply=DRAFT))
    handle = await runner.start(chain_with_follow_up(registry), {})
    [approval] = await wait_pending(handle)

    outcome = await decide(handle, approval, decision="edit", edited_text="Edited by Alice.")
    result = await handle.result()

    assert outcome.status == "approved" and outcome.payload_hash != approval.payload_hash
    assert result.steps["review"].output == "Edited by Alice."
    [send_call] = [c for c in await sim.calls(handle.id) if c.model == "sim-mini"]
    assert "Send this: Edited by Alice." in send_call.prompt
    with session_scope(store_engine) as session:
        [row] = crud.list_approval_audit(session, run_id=handle.id)
        assert (row.before_text, row.after_text) == (DRAFT, "Edited by Alice.")


async def test_reject_ends_the_run_as_rejected_not_failed(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    handle = await runner.start(chain_with_follow_up(registry), {})
    [approval] = await wait_pending(handle)

    await decide(handle, approval, decision="reject", comment="wrong tone")
    result: ChainResult = await handle.result()  # completes: no exception

    assert result.status == "rejected" and result.output is None
    assert result.steps["review"].status == "rejected"
    assert "wrong tone" in (result.error or "") and "alice" in (result.error or "")
    assert "send" not in result.steps
    assert await status_of(runner, handle.id) == "rejected"


async def test_every_invalid_decision_is_refused_and_leaves_the_run_unchanged(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    # The step after the approval is slow, so the run is still open when a
    # decision arrives after the approval was settled.
    await sim.add_faults(Fault(kind="slow", match="Send this", delay_s=1.5))
    handle = await runner.start(chain_with_follow_up(registry, required_approvals=2), {})
    [approval] = await wait_pending(handle)
    await decide(handle, approval, reviewer="bob")  # one of two approvals
    events_before = len((await handle.fetch_history()).events)

    cases = [
        ({"approval_id": "nope"}, ApprovalRejection.NOT_FOUND),
        ({"payload_hash": "0" * 32}, ApprovalRejection.STALE),
        ({"reviewer_roles": ["service"]}, ApprovalRejection.FORBIDDEN),
        ({"reviewer": "bob"}, ApprovalRejection.DUPLICATE_REVIEWER),
        ({"decision": "edit"}, ApprovalRejection.MALFORMED),
        ({"decision": "reject", "comment": " "}, ApprovalRejection.MALFORMED),
    ]
    for fields, error_type in cases:
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await decide(handle, approval, **fields)
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == error_type, fields

    # Rejected updates never entered history; the approval is as it was.
    assert len((await handle.fetch_history()).events) == events_before
    [still] = await wait_pending(handle)
    assert still.approvals == ["bob"] and still.status == "pending"

    await decide(handle, approval, reviewer="carol")
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await decide(handle, approval, reviewer="dave")
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == ApprovalRejection.ALREADY_DECIDED
    assert (await handle.result()).status == "completed"


async def test_a_signal_decides_too_and_an_invalid_one_is_ignored(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    handle = await runner.start(chain_with_follow_up(registry), {})
    [approval] = await wait_pending(handle)
    base = {
        "approval_id": "review",
        "reviewer": "sig",
        "reviewer_roles": ["reviewer"],
        "payload_hash": approval.payload_hash,
    }

    await handle.signal(DECIDE, ApprovalDecision(decision="reject", **base))  # no reason
    await asyncio.sleep(0.3)
    assert (await wait_pending(handle))[0].status == "pending"

    await handle.signal(DECIDE, ApprovalDecision(decision="approve", **base))
    result = await handle.result()
    assert result.status == "completed"
    assert [d.reviewer for d in result.approvals[0].decisions] == ["sig"]


async def test_conditional_approval_is_skipped_when_its_condition_is_false(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    spec = chain_with_follow_up(registry, when="input.refund")

    skipped = await runner.run(spec, {"refund": False})
    assert skipped.status == "completed" and skipped.approvals == []
    assert skipped.steps["review"].output == skipped.steps["draft"].output

    handle = await runner.start(spec, {"refund": True})
    [approval] = await wait_pending(handle)
    await decide(handle, approval)
    assert (await handle.result()).status == "completed"


async def test_cancelling_a_waiting_run_records_it_as_cancelled(
    runner: ChainRunner, sim: SimulatorControl, registry: Any, store_engine: Any
) -> None:
    handle = await runner.start(chain_with_follow_up(registry), {})
    await wait_pending(handle)

    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()

    assert isinstance(caught.value.cause, CancelledError)
    assert await status_of(runner, handle.id) == "cancelled"
    with session_scope(store_engine) as session:
        run = crud.get_run(session, run_id=handle.id)
        assert run is not None and run.status == "cancelled" and run.finished_at is not None
