"""Approval timeout policies on Temporal's time-skipping test server: a 3-day
deadline passes in well under a second."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from core.names import DECIDE, PENDING_APPROVALS_QUERY
from core.temporal import register_search_attributes
from runs.client import RunClient
from store import crud
from store.engine import make_engine, session_scope
from store.schema import create_all
from tests.conftest import activity_host
from tests.integration.conftest import load_spec
from worker.assembly import hosted_worker
from workflows.types import ApprovalDecision, ApprovalRejection, ApprovalState, ChainResult

DAY = 24 * 3600


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    binary = shutil.which("temporal-test-server") or str(
        Path(sys.executable).with_name("temporal-test-server")
    )
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary, data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
async def skipping_runner(
    skipping_env: WorkflowEnvironment, registry: Any, tmp_path: Path
) -> AsyncIterator[tuple[WorkflowEnvironment, str, Any]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'chorus.db'}")
    create_all(engine)
    queue = f"skip-{uuid.uuid4()}"
    host = activity_host(registry, engine)
    async with hosted_worker(skipping_env.client, host, task_queue=queue):
        yield skipping_env, queue, engine


def approval_chain(registry: Any, **policy: Any):
    return load_spec(
        {
            "name": "timeouts",
            "steps": [
                {
                    "name": "review",
                    "kind": "approval",
                    "text": "{{ input.text }}",
                    "timeout_s": 3 * DAY,
                    **policy,
                }
            ],
        },
        registry,
    )


async def start(env: WorkflowEnvironment, queue: str, spec: Any) -> Any:
    return (
        await RunClient(env.client, task_queue=queue).start(
            spec, {"text": "Refund approved."}, run_id=f"timeout-{uuid.uuid4()}"
        )
    ).handle


@pytest.mark.parametrize(("policy", "status"), [("reject", "rejected"), ("approve", "completed")])
async def test_timeout_policy_decides_after_three_days(
    skipping_runner: Any, registry: Any, policy: str, status: str
) -> None:
    env, queue, engine = skipping_runner
    handle = await start(env, queue, approval_chain(registry, on_timeout=policy))

    result: ChainResult = await handle.result()  # the test server skips the 3 days

    assert result.status == status
    [decision] = result.approvals[0].decisions
    assert decision.reviewer == "system:timeout" and decision.decision == f"timeout_{policy}"
    waited = decision.at - result.approvals[0].requested_at
    assert timedelta(days=3) <= waited < timedelta(days=3, minutes=1)
    if status == "completed":
        assert result.output == "Refund approved."
    with session_scope(engine) as session:
        [row] = crud.list_approval_audit(session, run_id=handle.id)
        assert row.decision == f"timeout_{policy}"


async def test_escalation_moves_the_approval_to_another_role_with_a_new_deadline(
    skipping_runner: Any, registry: Any
) -> None:
    env, queue, _ = skipping_runner
    spec = approval_chain(
        registry, on_timeout="escalate", escalate_to_role="supervisor", escalation_timeout_s=DAY
    )
    handle = await start(env, queue, spec)

    await env.sleep(timedelta(days=3, hours=1))
    [pending] = await handle.query(PENDING_APPROVALS_QUERY, result_type=list[ApprovalState])
    assert pending.escalated and pending.required_role == "supervisor"
    assert (
        timedelta(days=4) <= pending.deadline - pending.requested_at < timedelta(days=4, minutes=1)
    )

    decision = {
        "approval_id": "review",
        "decision": "approve",
        "payload_hash": pending.payload_hash,
    }
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(
            DECIDE, ApprovalDecision(reviewer="alice", reviewer_roles=["reviewer"], **decision)
        )
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == ApprovalRejection.FORBIDDEN

    await handle.execute_update(
        DECIDE, ApprovalDecision(reviewer="sam", reviewer_roles=["supervisor"], **decision)
    )
    result = await handle.result()
    assert result.status == "completed"
    assert [d.decision for d in result.approvals[0].decisions] == ["escalate", "approve"]


async def test_escalated_approval_that_times_out_again_is_rejected(
    skipping_runner: Any, registry: Any
) -> None:
    env, queue, _ = skipping_runner
    spec = approval_chain(registry, on_timeout="escalate", escalate_to_role="supervisor")
    handle = await start(env, queue, spec)

    result = await handle.result()

    assert result.status == "rejected"
    assert [d.decision for d in result.approvals[0].decisions] == ["escalate", "timeout_reject"]
    last = result.approvals[0].decisions[-1].at - result.approvals[0].requested_at
    assert timedelta(days=6) <= last < timedelta(days=6, minutes=1)
