"""The decision path of a chain run (patch 'audit-with-run-index'): the
audit row and the run-index row the decision changes are one local activity,
so the decision takes one workflow task and no activity of its own, the
Update is answered once both are written, and no index write repeats what
the last one said."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from core.names import RECORD_APPROVAL
from core.records import DecisionRecordInput
from tests.workflows.stubs import Harness, Stubs, model
from worker.assembly import create_worker

APPROVAL: dict[str, Any] = {"name": "review", "kind": "approval", "text": "Refund approved."}


@dataclass
class DecisionStubs(Stubs):
    decisions: list[DecisionRecordInput] = field(default_factory=list)

    @activity.defn(name=RECORD_APPROVAL)
    async def record_approval(self, entry: DecisionRecordInput) -> None:
        self.decisions.append(entry)
        await Stubs.record_approval(self, entry)


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    harness = Harness(temporal_env, task_queue)
    harness.stubs = DecisionStubs()
    async with create_worker(
        temporal_env.client, task_queue=task_queue, activities=harness.stubs.activities
    ):
        yield harness


async def events_from_the_decision(chains: Harness, run_id: str) -> list[str]:
    names: list[str] = []
    async for event in chains.runs.client.get_workflow_handle(run_id).fetch_history_events():
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        if names or name == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            names.append(name)
    return names


@pytest.mark.parametrize("last", [True, False], ids=["approval-last", "step-after"])
async def test_a_decision_writes_audit_and_index_together_in_one_workflow_task(
    chains: Harness, last: bool
) -> None:
    stubs = chains.stubs
    assert isinstance(stubs, DecisionStubs)
    steps = [model("draft", "writer"), APPROVAL] + ([] if last else [model("send", "mailer")])
    started = await chains.start(steps)
    approval = await chains.pending(started)

    await chains.decide(started, approval)
    # The Update is answered once the audit row (and the index row) is written.
    [written] = stubs.decisions
    assert written.decision == "approve" and written.run_record is not None
    assert (written.run_record.status, written.run_record.current_step) == ("running", "review")
    result = await chains.finish(started)

    assert result.status == "completed"
    statuses = [(r.status, r.revision) for r in stubs.run_records]
    # running at start, awaiting_approval when parked, running with the
    # audit row, then the end; never a write that changes nothing.
    assert statuses == [("running", 1), ("awaiting_approval", 2), ("running", 3), ("completed", 4)]
    assert stubs.run_records[2] == written.run_record
    events = await events_from_the_decision(chains, started.run_id)
    if last:
        assert events.count("WORKFLOW_TASK_COMPLETED") == 0  # answered in the accepting task
        assert "ACTIVITY_TASK_SCHEDULED" not in events
    else:
        assert events.count("ACTIVITY_TASK_SCHEDULED") == 1  # the `send` model call only
    # Local activities from the decision on: audit + index, then the last index row.
    assert events.count("MARKER_RECORDED") == 2


async def test_a_rejection_is_audited_with_the_index_and_ends_the_run_rejected(
    chains: Harness,
) -> None:
    stubs = chains.stubs
    assert isinstance(stubs, DecisionStubs)
    started = await chains.start([model("draft", "writer"), APPROVAL])
    approval = await chains.pending(started)

    await chains.decide(started, approval, "reject", comment="no")
    result = await chains.finish(started)

    assert result.status == "rejected"
    [written] = stubs.decisions
    assert written.decision == "reject" and written.run_record is not None
    assert [r.status for r in stubs.run_records][-1] == "rejected"


async def status_upserts_from_the_decision(chains: Harness, run_id: str) -> list[list[str]]:
    """Each ChorusStatus upsert after the decision's Update was accepted, as
    the events of its workflow task (upsert and the commands beside it)."""
    tasks: list[list[str]] = []
    seen_update = False
    async for event in chains.runs.client.get_workflow_handle(run_id).fetch_history_events():
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        seen_update = seen_update or name == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED"
        if not seen_update:
            continue
        if name == "WORKFLOW_TASK_COMPLETED" or not tasks:
            tasks.append([])
        if name == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if "ChorusStatus" in fields.indexed_fields:
                status = fields.indexed_fields["ChorusStatus"].data.decode().strip('"')
                name = f"{name}:{status}"
        tasks[-1].append(name)
    return [task for task in tasks if any(e.startswith("UPSERT") for e in task)]


@pytest.mark.parametrize("last", [True, False], ids=["approval-last", "step-after"])
async def test_running_is_published_only_when_the_run_goes_on_after_the_decision(
    chains: Harness, last: bool
) -> None:
    steps = [model("draft", "writer"), APPROVAL] + ([] if last else [model("send", "mailer")])
    started = await chains.start(steps)
    await chains.decide(started, await chains.pending(started))
    assert (await chains.finish(started)).status == "completed"

    upserts = await status_upserts_from_the_decision(chains, started.run_id)
    statuses = [e.split(":")[1] for task in upserts for e in task if e.startswith("UPSERT")]
    if last:
        # The decision ended the run: its final status is the one upsert.
        assert statuses == ["completed"]
    else:
        assert statuses == ["running", "completed"]
        # `running` went out with the next step's activity, in one task.
        assert "ACTIVITY_TASK_SCHEDULED" in upserts[0]
