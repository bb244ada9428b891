"""What every workflow that waits for people shares: the `decide` Update and
Signal, the `pending_approvals` query, the durable wait with its timeout
policy, and audit writes. ChainWorkflow and AgentWorkflow inherit it, so a
reviewer decides the same way whichever of them is waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from core.chain_errors import ChainErrorType
    from core.names import DECIDE, PENDING_APPROVALS_QUERY, RECORD_APPROVAL
    from core.records import ApprovalAuditInput, DecisionRecordInput, RunRecordInput
    from workflows import metrics
    from workflows.activity_options import DEFAULT_ACTIVITY_OPTIONS, ActivityOptions
    from workflows.approvals import ApprovalDesk, AuditEntry, DecisionRejected
    from workflows.failures import ChainFailure, describe_activity_error
    from workflows.patches import applies
    from workflows.types import (
        ApprovalDecision,
        ApprovalRejection,
        ApprovalState,
        DecisionOutcome,
    )


TIMEOUT_AUDIT_FAILURE_STOPS_THE_RUN = "timeout-audit-failure-stops-the-run"
"""Patch: a timeout policy's decision that the audit log does not take ends
the run as `AuditWriteFailed` (a ChainFailure: status, run index and error
type as for any failed run) instead of an unclassified ActivityError."""


AUDIT_WITH_RUN_INDEX = "audit-with-run-index"
"""Patch: a decision's audit row is written by a local activity that also
writes the run index row the decision leaves the run in (one write, inside
the workflow task that takes the decision, where it used to be an activity
of its own, a second workflow task, and a separate run-index write). A chain
run asks at its start, with its other patches: the SDK records each new
patch id in the TemporalChangeVersion search attribute, and there that
costs no upsert of its own."""


@dataclass(frozen=True)
class ApprovalRequest:
    """One thing to ask people, with its deadline policy."""

    approval_id: str
    step: str
    text: str
    context: dict[str, str]
    instructions: str | None
    required_role: str
    required_approvals: int
    timeout_s: float
    on_timeout: Literal["reject", "approve", "escalate"] = "reject"
    escalate_to_role: str | None = None
    escalation_timeout_s: float | None = None


class ApprovalHost:
    """Mixin for workflow classes (call `__init__` from theirs)."""

    activity_options: ClassVar[ActivityOptions] = DEFAULT_ACTIVITY_OPTIONS
    """Timeouts and retries of every activity the workflow schedules."""

    def __init__(self) -> None:
        self._desk = ApprovalDesk()
        self._ignored_signals: list[str] = []
        self._audits_with_run_index = False
        """Whether a decision's audit row is a local activity that carries
        the run-index row too (`AUDIT_WITH_RUN_INDEX`, decided when a chain
        run starts). Off for agents: they keep no index row, and while a
        local activity runs the workflow task stays open, so their other
        tool calls would wait for a slow audit write."""

    @workflow.query(name=PENDING_APPROVALS_QUERY)
    def pending_approvals(self) -> list[ApprovalState]:
        return self._desk.pending()

    @workflow.update(name=DECIDE)
    async def decide(self, payload: RawValue) -> DecisionOutcome:
        """A reviewer's decision; answered once its audit row is written.

        Taken raw and decoded here, so a payload that does not parse (from
        the Temporal CLI, say) is refused by the validator as a
        MalformedDecision instead of failing to decode, retryably."""
        decision = _decode_decision(payload)
        entry = self._desk.apply(decision, workflow.now())
        _count_decision(entry)
        await self._audit(entry)
        return self._desk.outcome(decision.approval_id)

    @decide.validator
    def _check_decision(self, payload: RawValue) -> None:
        # Raising here rejects the Update before it enters history: the caller
        # learns why at once and the run is unchanged.
        decision = _decode_decision(payload)
        try:
            self._desk.check(decision)
        except DecisionRejected as rejected:
            raise ApplicationError(
                str(rejected), type=rejected.error_type, non_retryable=True
            ) from None

    @workflow.signal(name=DECIDE)
    async def decide_signal(self, payload: RawValue) -> None:
        """The same decision for tools that can only signal. A signal cannot be
        refused, so an invalid one is logged and listed in the run's state."""
        try:
            decision = _decode_decision(payload)
        except ApplicationError as malformed:
            workflow.logger.warning("ignored decision signal: %s", malformed.message)
            self._ignored_signals.append(f"{malformed.type}: {malformed.message}")
            return
        try:
            entry = self._desk.apply(decision, workflow.now())
        except DecisionRejected as rejected:
            reason = f"{rejected.error_type}: {rejected}"
            workflow.logger.warning(
                "ignored decision signal from %s: %s", decision.reviewer, reason
            )
            self._ignored_signals.append(f"{decision.reviewer}: {reason}")
            return
        _count_decision(entry)
        await self._audit(entry)

    async def _on_approvals_changed(self) -> None:
        """Hook: an approval opened or settled (status, search attributes)."""

    def _index_with_decision(self) -> RunRecordInput | None:
        """Hook: the run-index row to write with a decision's audit row (the
        run as the decision leaves it), or None for no index write."""
        return None

    async def _ask_people(self, request: ApprovalRequest) -> ApprovalState:
        """Open an approval and wait, durably, until it is settled by people
        or by its timeout policy. Returns it approved or rejected."""
        now = workflow.now()
        approval = self._desk.open(
            approval_id=request.approval_id,
            step=request.step,
            text=request.text,
            context=request.context,
            instructions=request.instructions,
            required_role=request.required_role,
            required_approvals=request.required_approvals,
            now=now,
            deadline=now + timedelta(seconds=request.timeout_s),
        )
        await self._on_approvals_changed()
        while approval.status == "pending":
            remaining = (approval.deadline - workflow.now()).total_seconds()
            try:
                await workflow.wait_condition(
                    lambda: approval.status != "pending", timeout=max(remaining, 0.001)
                )
            except TimeoutError:
                await self._audit_timeout(request, self._on_timeout(request, approval))
        await self._on_approvals_changed()
        return approval

    def _on_timeout(self, request: ApprovalRequest, approval: ApprovalState) -> AuditEntry:
        now = workflow.now()
        if request.on_timeout == "escalate" and not approval.escalated:
            assert request.escalate_to_role is not None
            extra = request.escalation_timeout_s or request.timeout_s
            return self._desk.escalate(
                approval.approval_id, request.escalate_to_role, now + timedelta(seconds=extra), now
            )
        outcome = "approve" if request.on_timeout == "approve" else "reject"
        return self._desk.time_out(approval.approval_id, outcome, now)

    async def _audit_timeout(self, request: ApprovalRequest, entry: AuditEntry) -> None:
        """Audit what a timeout policy decided. A reviewer whose decision
        cannot be audited is told so (their Update fails) and the decision
        stands; at a deadline nobody is there to be told, so a write that
        failed for good (`RecordRefused`, or retries spent) stops the run
        with a typed error instead of letting it act, unaudited, on an
        automatic approval, rejection or escalation."""
        try:
            await self._audit(entry)
        except FailureError as err:  # ActivityError; a local activity's own error
            if not applies(TIMEOUT_AUDIT_FAILURE_STOPS_THE_RUN):
                raise  # runs recorded before: failed with the ActivityError itself
            raise ChainFailure(
                ChainErrorType.AUDIT_WRITE_FAILED,
                f"step {request.step}: approval {request.approval_id!r} reached its deadline "
                f"({entry.decision.decision}), but the audit log did not take the row "
                f"({_describe_audit_failure(err)}); the run stops rather than go on with a "
                "decision the audit log does not hold",
            ) from None

    async def _audit(self, entry: AuditEntry) -> None:
        """Write one decision to the audit log, retried for a while
        (`ActivityOptions.audit_retry`): an audit log with holes is worse
        than a late answer, and a run held open for good worse still.

        In a chain run, a local activity that also writes the run index row
        the decision changes: the decision's Update is answered in the
        workflow task that took it, once both rows are written. Agents, and
        runs that scheduled the audit as an activity of its own before
        `AUDIT_WITH_RUN_INDEX`, keep the activity."""
        approval, decision = entry.approval, entry.decision
        audit = ApprovalAuditInput(
            run_id=workflow.info().workflow_id,
            step=approval.step,
            approval_id=approval.approval_id,
            sequence=entry.sequence,
            reviewer=decision.reviewer,
            decision=decision.decision,
            comment=decision.comment,
            before_text=entry.before_text,
            after_text=entry.after_text,
            payload_hash=decision.payload_hash,
            decided_at=decision.at,
        )
        summary = f"audit {approval.approval_id}: {decision.decision} by {decision.reviewer}"
        if not self._audits_with_run_index:
            await workflow.execute_activity(
                RECORD_APPROVAL,
                audit,
                start_to_close_timeout=self.activity_options.audit_timeout,
                retry_policy=self.activity_options.audit_retry,
                summary=summary,
            )
            return
        await workflow.execute_local_activity(
            RECORD_APPROVAL,
            DecisionRecordInput(**audit.model_dump(), run_record=self._index_with_decision()),
            start_to_close_timeout=self.activity_options.audit_timeout,
            retry_policy=self.activity_options.audit_retry,
            summary=summary,
        )


def _describe_audit_failure(err: FailureError) -> str:
    """`Type: message` of a failed audit write: an activity's failure comes
    wrapped in an ActivityError, a local activity's as its own error (the
    ApplicationError it raised, or a TimeoutError)."""
    if isinstance(err, ActivityError):
        return describe_activity_error(err)
    if isinstance(err, ApplicationError):
        return f"{err.type or 'Error'}: {err.message}"
    return f"{type(err).__name__}: {err.message}"


def _count_decision(entry: AuditEntry) -> None:
    waited = entry.decision.at - entry.approval.requested_at
    metrics.decision_latency(entry.decision.decision, waited.total_seconds())


def rejection_message(step: str, approval: ApprovalState) -> str:
    last = approval.decisions[-1]
    return f"step {step}: rejected by {last.reviewer}" + (
        f": {last.comment}" if last.comment else ""
    )


def _decode_decision(payload: RawValue) -> ApprovalDecision:
    """The decision a `decide` Update or Signal carries, or a non-retryable
    MalformedDecision naming what does not parse (unknown fields included)."""
    try:
        decoded = workflow.payload_converter().from_payload(payload.payload, ApprovalDecision)
    except Exception as err:  # any decoding or validation failure of the payload
        problems = err.errors() if isinstance(err, ValidationError) else []
        what = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'decision'}: {problem['msg']}"
            for problem in problems
        ) or str(err)
        raise ApplicationError(
            f"malformed decision: {what}"[:500],
            type=ApprovalRejection.MALFORMED,
            non_retryable=True,
        ) from None
    if not isinstance(decoded, ApprovalDecision):  # pragma: no cover - converter contract
        decoded = ApprovalDecision.model_validate(decoded)
    return decoded
