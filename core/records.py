"""Payloads of the activities that keep the application database's run index
and approval audit log. They outlive Temporal's retention, so they carry what
an auditor needs, and every write is idempotent (an activity runs at least
once): a retried write never adds a second row."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from core.names import RECORD_APPROVAL as RECORD_APPROVAL
from core.statuses import WorkflowRunStatus


class RunRecordInput(BaseModel):
    """Upsert of one run's index row, keyed by `run_id` (the workflow id).
    `revision` orders the writes: an older revision never overwrites a newer one."""

    run_id: str
    temporal_run_id: str
    chain: str
    version: int
    status: WorkflowRunStatus
    revision: int
    started_at: datetime
    finished_at: datetime | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    current_step: str | None = None
    error: str | None = None
    error_type: str | None = None


class ApprovalAuditInput(BaseModel):
    """One decision on one approval. (`run_id`, `approval_id`, `sequence`) is
    unique: `sequence` is the decision's position within that approval."""

    run_id: str
    step: str
    approval_id: str
    sequence: int
    reviewer: str
    decision: Literal["approve", "reject", "edit", "timeout_approve", "timeout_reject", "escalate"]
    comment: str | None = None
    before_text: str
    after_text: str | None = None
    payload_hash: str
    decided_at: datetime


class DecisionRecordInput(ApprovalAuditInput):
    """What workflows send `record_approval` (`chorus.record_approval`, a
    local activity): a decision's audit row (the fields of
    `ApprovalAuditInput`, so a worker that reads the payload as one writes
    the audit row alone) and the run-index row the decision leaves the run
    in, written in one transaction; `run_record` is None when the decision
    does not change the index (a run without one, an agent's tool approval,
    an escalation that keeps the run waiting)."""

    run_record: RunRecordInput | None = None

    def audit(self) -> ApprovalAuditInput:
        return ApprovalAuditInput.model_validate(self.model_dump(exclude={"run_record"}))
