"""Approval steps against stub activities: a run parks awaiting approval;
decisions sent through the run client approve, edit or reject it; the
`decide` validator refuses a bad decision before it enters history; the run
index and the audit log see every change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from core.chain_errors import ChainErrorType
from core.problems import Conflict, NotFound
from runs.client import StartedRun
from tests.workflows.stubs import Harness, model, stub_harness

DRAFT = "writer: Reply to Refund?"
CHAIN: list[dict[str, Any]] = [
    model("draft", "writer", prompt="Reply to {{ input.message }}"),
    {
        "name": "review",
        "kind": "approval",
        "text": "{{ steps.draft.output }}",
        "context": {"message": "{{ input.message }}"},
    },
    model("send", "mailer", prompt="Send: {{ steps.review.output }}"),
]


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    async with stub_harness(temporal_env, task_queue) as harness:
        yield harness


async def parked(chains: Harness) -> StartedRun:
    """A run of CHAIN waiting for its review."""
    return await chains.start(CHAIN, {"message": "Refund?"})


def audit_rows(chains: Harness) -> list[tuple[Any, ...]]:
    return [
        (a.approval_id, a.sequence, a.reviewer, a.decision, a.before_text, a.after_text)
        for a in chains.stubs.audits
    ]


async def test_a_run_parks_until_approved_then_goes_on(chains: Harness) -> None:
    started = await parked(chains)
    approval = await chains.pending(started)

    assert (approval.step, approval.text, approval.context) == (
        "review",
        DRAFT,
        {"message": "Refund?"},
    )
    detail = await chains.runs.read(started.run_id)
    assert detail is not None
    assert (detail.status, detail.current_steps) == ("awaiting_approval", ["review"])
    assert chains.stubs.aliases_called == ["writer"]

    await chains.decide(started, approval, comment="fine")
    result = await chains.finish(started)

    assert (result.status, result.output) == ("completed", f"mailer: Send: {DRAFT}")
    assert chains.stubs.aliases_called == ["writer", "mailer"]
    assert audit_rows(chains) == [("review", 1, "alice", "approve", DRAFT, None)]
    index = chains.stubs.run_records
    assert [r.status for r in index] == ["running", "awaiting_approval", "running", "completed"]
    assert [r.revision for r in index] == [1, 2, 3, 4]
    assert index[-1].finished_at is not None and index[-1].current_step is None


async def test_an_edit_replaces_the_text_the_next_steps_see(chains: Harness) -> None:
    started = await parked(chains)
    approval = await chains.pending(started)
    await chains.decide(started, approval, "edit", edited_text="Your refund is on its way.")
    result = await chains.finish(started)

    assert result.steps["review"].output == "Your refund is on its way."
    assert result.output == "mailer: Send: Your refund is on its way."
    assert audit_rows(chains) == [
        ("review", 1, "alice", "edit", DRAFT, "Your refund is on its way.")
    ]


async def test_a_rejection_ends_the_run_rejected(chains: Harness) -> None:
    started = await parked(chains)
    approval = await chains.pending(started)
    await chains.decide(started, approval, "reject", comment="too curt")
    result = await chains.finish(started)

    assert (result.status, result.error_type) == ("rejected", ChainErrorType.REJECTED)
    assert result.error == "step review: rejected by alice: too curt"
    assert result.steps["review"].status == "rejected"
    assert "send" not in result.steps and chains.stubs.aliases_called == ["writer"]
    assert audit_rows(chains) == [("review", 1, "alice", "reject", DRAFT, None)]
    assert chains.stubs.run_records[-1].status == "rejected"


def update_events(events: list[Any]) -> list[str]:
    return [
        EventType.Name(e.event_type) for e in events if "UPDATE" in EventType.Name(e.event_type)
    ]


@pytest.mark.parametrize(
    ("fields", "problem", "code"),
    [
        ({"approval_id": "nope"}, NotFound, "approval_not_found"),
        ({"payload_hash": "0" * 32}, Conflict, "stale_payload"),
    ],
)
async def test_the_validator_refuses_a_bad_decision_before_it_enters_history(
    chains: Harness, fields: dict[str, str], problem: type[Exception], code: str
) -> None:
    started = await parked(chains)
    approval = await chains.pending(started)
    bad = approval.model_copy(update=fields)

    with pytest.raises(problem) as caught:
        await chains.decide(started, bad)

    assert getattr(caught.value, "code", None) == code
    history = await started.handle.fetch_history()
    assert update_events(history.events) == []
    assert chains.stubs.audits == []
    [still] = await chains.runs.pending_approvals(started.run_id)
    assert (still.status, still.decisions) == ("pending", [])

    await chains.decide(started, approval)  # the right decision still lands
    assert (await chains.finish(started)).status == "completed"
    history = await started.handle.fetch_history()
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED" in update_events(history.events)
