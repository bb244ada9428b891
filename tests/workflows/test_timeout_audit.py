"""An approval whose deadline passes, with an audit log that will not take
the timeout's row (`RecordRefused`): the run fails as `AuditWriteFailed`,
saying what was decided and why it was not recorded, instead of with an
unclassified ActivityError; a later step never acts on the unaudited
decision. A reviewer's decision that cannot be audited fails only its
Update (tests/integration/test_nul_approvals.py): the reviewer is told. At
a deadline nobody is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.gateway.types import ModelCallInput, ModelCallResult, ToolCall
from core.chain_errors import ChainErrorType
from core.names import CALL_MODEL, RECORD_APPROVAL
from core.records import ApprovalAuditInput
from tests.workflows.stubs import USAGE, Harness, Stubs, model
from worker.assembly import create_worker

REFUSAL = "the database refused the audit row: CheckViolation: no_timeouts"


class RefusingAudits(Stubs):
    """An audit log that refuses every row, as the record activity does
    when the database refuses one; a model that asks for a refund."""

    @activity.defn(name=RECORD_APPROVAL)
    async def record_approval(self, entry: ApprovalAuditInput) -> None:
        self.audits.append(entry)
        raise ApplicationError(REFUSAL, type="RecordRefused", non_retryable=True)

    @activity.defn(name=CALL_MODEL)
    async def call_model(self, inp: ModelCallInput) -> ModelCallResult:
        if inp.step != "helper":
            return await super().call_model(inp)
        self.model_calls.append(inp)
        refund = ToolCall(id="r1", name="refund", arguments={"order_id": "A1", "amount": 5})
        return ModelCallResult(
            alias=inp.alias,
            provider="stub",
            model=f"stub-{inp.alias}",
            text="",
            tool_calls=[refund],
            usage=USAGE,
            cost_usd=0.0,
            latency_ms=1.0,
        )


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    harness = Harness(temporal_env, task_queue)
    harness.stubs = RefusingAudits()
    async with create_worker(
        temporal_env.client, task_queue=task_queue, activities=harness.stubs.activities
    ):
        yield harness


def review(on_timeout: str) -> dict[str, Any]:
    return {
        "name": "review",
        "kind": "approval",
        "text": "Refund approved.",
        "timeout_s": 0.3,
        "on_timeout": on_timeout,
        **({"escalate_to_role": "lead"} if on_timeout == "escalate" else {}),
    }


@pytest.mark.parametrize("on_timeout", ["reject", "approve", "escalate"])
async def test_a_timeout_the_audit_log_refuses_fails_the_run_as_audit_write_failed(
    chains: Harness, on_timeout: str
) -> None:
    error, partial = await chains.failure([review(on_timeout), model("send", "mailer")])

    assert error.type == ChainErrorType.AUDIT_WRITE_FAILED
    assert error.non_retryable
    decided = "escalate" if on_timeout == "escalate" else f"timeout_{on_timeout}"
    assert error.message == (
        f"step review: approval 'review' reached its deadline ({decided}), but the audit log "
        f"did not take the row (RecordRefused: {REFUSAL}); the run stops rather than go on "
        "with a decision the audit log does not hold"
    )
    assert partial.status == "failed" and partial.error_type == ChainErrorType.AUDIT_WRITE_FAILED
    assert partial.steps["review"].status == "failed"
    assert "send" not in partial.steps and chains.stubs.model_calls == []
    [approval] = partial.approvals
    assert [d.reviewer for d in approval.decisions] == ["system:timeout"]
    assert len(chains.stubs.audits) == 1  # refused for good: not retried
    last = chains.stubs.run_records[-1]
    assert (last.status, last.finished_at is not None) == ("failed", True)
    assert last.error == error.message


async def test_an_agent_tool_approval_the_audit_log_refuses_fails_the_run_the_same_way(
    chains: Harness,
) -> None:
    agent = {
        "name": "helper",
        "kind": "agent",
        "model": "cheap",
        "prompt": "Refund order A1.",
        "tools": ["refund"],
        "approval_timeout_s": 0.3,
    }

    error, partial = await chains.failure([agent])

    assert error.type == ChainErrorType.AUDIT_WRITE_FAILED
    assert "approval 'helper-r1' reached its deadline" in error.message
    assert "RecordRefused" in error.message
    assert partial.steps["helper"].status == "failed"
    assert chains.stubs.tool_calls == []  # the refund never ran
