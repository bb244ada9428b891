"""A NUL in an approval's text, a decision's comment or an edit, on a worker
whose run index and audit log are on PostgreSQL (issue 8: the audit write
failed on every attempt, the decision answered 504 after 30 s and the run
stayed `running` for good). Now the decision is answered at once, the run
finishes, every record write succeeds on its first attempt, and the rows
show each NUL as ␀.

The API refuses a NUL in a run's input or a decision's body with a 422
(tests/api/test_bad_inputs.py); these runs come the other ways a NUL can
arrive: a run started by another Temporal client, a model's reply, and a
decision sent through the run client itself.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from temporalio.api.enums.v1 import EventType

from core.chain_spec import ChainSpec
from core.problems import Conflict
from runs.client import RunClient, StartedRun
from simulator.control import SimulatorControl
from simulator.models import Rule
from store import crud
from store.engine import session_scope
from store.text import NUL_SYMBOL
from tests.conftest import activity_host
from tests.integration.conftest import FAST_RETRY, load_spec
from tests.pg import engine_with_tables, postgres_schema
from worker.assembly import hosted_worker
from workflows.types import ApprovalState

NUL = "\x00"


@pytest.fixture
def pg_engine(postgres_admin: Engine) -> Iterator[Engine]:
    with postgres_schema(postgres_admin, "chorus_test_nul_") as url, engine_with_tables(url) as e:
        yield e


@pytest.fixture
async def pg_client(
    temporal_env: Any, registry: Any, pg_engine: Engine, task_queue: str, order_desk: Any
) -> AsyncIterator[RunClient]:
    host = activity_host(registry, pg_engine, order_desk)
    async with hosted_worker(temporal_env.client, host, task_queue=task_queue):
        yield RunClient(temporal_env.client, task_queue=task_queue)


def review_chain(registry: Any) -> ChainSpec:
    return load_spec(
        {
            "name": "nul_review",
            "defaults": FAST_RETRY,
            "steps": [
                {"name": "draft", "kind": "model", "model": "writer", "prompt": "Draft a reply"},
                {
                    "name": "review",
                    "kind": "approval",
                    "text": "To {{ input.customer }}: {{ steps.draft.output }}",
                },
                {
                    "name": "send",
                    "kind": "model",
                    "model": "cheap",
                    "prompt": "Send: {{ steps.review.output }}",
                },
            ],
        },
        registry,
    )


async def start(client: RunClient, spec: ChainSpec, customer: str) -> StartedRun:
    # checked=True: as another Temporal client would start it, past the API's refusal.
    return await client.start(
        spec, {"customer": customer}, run_id=f"test-nul-{uuid.uuid4()}", checked=True
    )


async def pending(client: RunClient, run_id: str) -> ApprovalState:
    handle = client.client.get_workflow_handle(run_id)
    for _ in range(200):
        states = await handle.query("pending_approvals", result_type=list[ApprovalState])
        if states:
            return states[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the run never asked for approval")


async def decide(client: RunClient, run_id: str, **fields: Any) -> tuple[Any, float]:
    approval = await pending(client, run_id)
    started = time.monotonic()
    outcome = await client.decide(
        run_id,
        approval_id=approval.approval_id,
        reviewer="alice",
        reviewer_roles=["reviewer"],
        payload_hash=approval.payload_hash,
        **fields,
    )
    return outcome, time.monotonic() - started


async def record_attempts(client: RunClient, run_id: str) -> tuple[list[int], int]:
    """Attempts of every started activity and local activity (the audit row
    is a local activity: its attempt is in its marker), and failed tasks of
    any kind."""
    attempts, failures = [], 0
    async for event in client.client.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attempts.append(event.activity_task_started_event_attributes.attempt)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                [data] = marker.details["data"].payloads
                attempts.append(json.loads(data.data)["attempt"])
        elif event.event_type in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
            EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
        ):
            failures += 1
    return attempts, failures


async def test_nul_in_the_approval_text_and_the_comment_completes_the_run(
    pg_client: RunClient, pg_engine: Engine, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply=f"Refund of 42{NUL} EUR approved."))
    run = await start(pg_client, review_chain(registry), f"Ann{NUL}Lee")

    outcome, waited = await decide(pg_client, run.run_id, decision="approve", comment=f"ok{NUL}")
    result = await asyncio.wait_for(run.handle.result(), timeout=30)

    assert outcome.status == "approved" and waited < 10  # was a 504 after 30 s
    assert result.status == "completed"
    # The run itself keeps the exact text; the database row shows the NULs.
    assert result.steps["review"].output == f"To Ann{NUL}Lee: Refund of 42{NUL} EUR approved."
    attempts, failures = await record_attempts(pg_client, run.run_id)
    assert attempts and set(attempts) == {1} and failures == 0
    with session_scope(pg_engine) as session:
        [row] = crud.list_approval_audit(session, run_id=run.run_id)
        index = crud.get_run(session, run_id=run.run_id)
    assert row.before_text == f"To Ann{NUL_SYMBOL}Lee: Refund of 42{NUL_SYMBOL} EUR approved."
    assert (row.decision, row.comment) == ("approve", f"ok{NUL_SYMBOL}")
    assert index is not None and index.status == "completed"


async def test_nul_in_an_edit_completes_the_run_with_the_edit(
    pg_client: RunClient, pg_engine: Engine, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply="Refund approved."))
    run = await start(pg_client, review_chain(registry), "Ann")

    outcome, waited = await decide(
        pg_client, run.run_id, decision="edit", edited_text=f"Refund{NUL} sent.", comment=NUL
    )
    result = await asyncio.wait_for(run.handle.result(), timeout=30)

    assert outcome.status == "approved" and waited < 10
    assert result.status == "completed"
    assert result.steps["review"].output == f"Refund{NUL} sent."
    [send] = [c for c in await sim.calls(run.run_id) if c.model == "sim-mini"]
    assert f"Send: Refund{NUL} sent." in send.prompt
    attempts, failures = await record_attempts(pg_client, run.run_id)
    assert attempts and set(attempts) == {1} and failures == 0
    with session_scope(pg_engine) as session:
        [row] = crud.list_approval_audit(session, run_id=run.run_id)
    assert (row.after_text, row.comment) == (f"Refund{NUL_SYMBOL} sent.", NUL_SYMBOL)


async def test_nul_in_a_rejection_ends_the_run_rejected_in_the_index(
    pg_client: RunClient, pg_engine: Engine, sim: SimulatorControl, registry: Any
) -> None:
    """The rejection's comment becomes the run's error message, which the
    run index stores too (its write used to fail, leaving the row stale)."""
    await sim.add_rules(Rule(model="sim-writer", reply="Refund approved."))
    run = await start(pg_client, review_chain(registry), "Ann")

    outcome, _ = await decide(pg_client, run.run_id, decision="reject", comment=f"no{NUL}pe")
    result = await asyncio.wait_for(run.handle.result(), timeout=30)

    assert outcome.status == "rejected" and result.status == "rejected"
    attempts, failures = await record_attempts(pg_client, run.run_id)
    assert failures == 0 and set(attempts) == {1}
    with session_scope(pg_engine) as session:
        [row] = crud.list_approval_audit(session, run_id=run.run_id)
        index = crud.get_run(session, run_id=run.run_id)
    assert row.comment == f"no{NUL_SYMBOL}pe"
    assert index is not None and index.status == "rejected"
    assert index.error is not None and index.error.endswith(f"no{NUL_SYMBOL}pe")


async def test_an_audit_row_the_database_refuses_fails_the_decision_fast_not_the_run(
    pg_client: RunClient, pg_engine: Engine, sim: SimulatorControl, registry: Any
) -> None:
    """The failure path of a record write that can never succeed (here a
    CHECK constraint the row breaks): one attempt, the decision's caller
    told at once, and the run, whose decision stands, finishes."""
    with pg_engine.begin() as conn:
        conn.execute(
            text(
                "ALTER TABLE approval_audit ADD CONSTRAINT no_mallory CHECK (reviewer <> 'mallory')"
            )
        )
    await sim.add_rules(Rule(model="sim-writer", reply="Refund approved."))
    run = await start(pg_client, review_chain(registry), "Ann")
    approval = await pending(pg_client, run.run_id)

    started = time.monotonic()
    with pytest.raises(Conflict) as caught:
        await pg_client.decide(
            run.run_id,
            approval_id=approval.approval_id,
            decision="approve",
            reviewer="mallory",
            reviewer_roles=["reviewer"],
            payload_hash=approval.payload_hash,
        )
    assert time.monotonic() - started < 10
    assert caught.value.code == "decision_failed"
    result = await asyncio.wait_for(run.handle.result(), timeout=30)

    assert result.status == "completed"
    assert [d.reviewer for d in result.approvals[0].decisions] == ["mallory"]
    attempts, _ = await record_attempts(pg_client, run.run_id)
    assert set(attempts) == {1}  # the refused audit write was not retried
    failure = await refused_record(pg_client, run.run_id)
    info = failure.application_failure_info
    assert (info.type, info.non_retryable) == ("RecordRefused", True)
    assert "CheckViolation" in failure.message
    with session_scope(pg_engine) as session:
        assert crud.list_approval_audit(session, run_id=run.run_id) == []
        index = crud.get_run(session, run_id=run.run_id)
    assert index is not None and index.status == "completed"


async def refused_record(client: RunClient, run_id: str) -> Any:
    """The failure (a Temporal `Failure` message) of the one failed activity
    or local activity."""
    async for event in client.client.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            return event.activity_task_failed_event_attributes.failure
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.HasField("failure"):
                return marker.failure.cause if marker.failure.HasField("cause") else marker.failure
    raise AssertionError("no failed activity in the history")
