"""The approvals a run is waiting on, and the rules a decision must pass.

Pure and deterministic: the workflow owns waiting, timers and audit writes;
this module decides whether a decision is acceptable (the Update validator
calls `check`, so a bad decision is rejected to the caller before it enters
history) and what it changes (`apply`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from workflows.types import (
    ApprovalDecision,
    ApprovalRejection,
    ApprovalState,
    DecisionOutcome,
    ReviewerDecision,
)

SYSTEM_REVIEWER = "system:timeout"


def payload_hash(text: str, context: dict[str, str]) -> str:
    """What a reviewer saw, as a short stable digest they send back."""
    canonical = json.dumps(
        {"text": text, "context": context}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class DecisionRejected(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class AuditEntry:
    """One decision as the audit log records it."""

    approval: ApprovalState
    decision: ReviewerDecision
    sequence: int
    before_text: str
    after_text: str | None


class ApprovalDesk:
    def __init__(self) -> None:
        self._items: dict[str, ApprovalState] = {}

    def open(
        self,
        *,
        approval_id: str,
        step: str,
        text: str,
        context: dict[str, str],
        instructions: str | None,
        required_role: str,
        required_approvals: int,
        now: datetime,
        deadline: datetime,
    ) -> ApprovalState:
        state = ApprovalState(
            approval_id=approval_id,
            step=step,
            status="pending",
            text=text,
            context=context,
            instructions=instructions,
            payload_hash=payload_hash(text, context),
            required_role=required_role,
            required_approvals=required_approvals,
            requested_at=now,
            deadline=deadline,
        )
        self._items[approval_id] = state
        return state

    def all(self) -> list[ApprovalState]:
        return list(self._items.values())

    def pending(self) -> list[ApprovalState]:
        return [a for a in self._items.values() if a.status == "pending"]

    def outcome(self, approval_id: str) -> DecisionOutcome:
        state = self._items[approval_id]
        return DecisionOutcome(
            approval_id=approval_id,
            status=state.status,
            approvals=len(state.approvals),
            required_approvals=state.required_approvals,
            payload_hash=state.payload_hash,
        )

    def check(self, decision: ApprovalDecision) -> ApprovalState:
        """Raise `DecisionRejected` unless `decision` may be applied now."""
        state = self._items.get(decision.approval_id)
        if state is None:
            known = ", ".join(self._items) or "none"
            raise DecisionRejected(
                ApprovalRejection.NOT_FOUND,
                f"no approval {decision.approval_id!r} in this run (approvals: {known})",
            )
        if state.status != "pending":
            raise DecisionRejected(
                ApprovalRejection.ALREADY_DECIDED,
                f"approval {state.approval_id!r} is already {state.status}",
            )
        if decision.payload_hash != state.payload_hash:
            raise DecisionRejected(
                ApprovalRejection.STALE,
                f"approval {state.approval_id!r} changed since it was shown "
                f"(hash {decision.payload_hash!r}, now {state.payload_hash!r}): "
                "read it again before deciding",
            )
        if state.required_role not in decision.reviewer_roles:
            raise DecisionRejected(
                ApprovalRejection.FORBIDDEN,
                f"approval {state.approval_id!r} needs role {state.required_role!r}; "
                f"{decision.reviewer!r} has {', '.join(decision.reviewer_roles) or 'no roles'}",
            )
        if decision.reviewer in state.approvals:
            raise DecisionRejected(
                ApprovalRejection.DUPLICATE_REVIEWER,
                f"{decision.reviewer!r} already approved {state.approval_id!r}; "
                f"it needs {state.required_approvals} distinct reviewers",
            )
        if decision.decision == "edit" and not (decision.edited_text or "").strip():
            raise DecisionRejected(
                ApprovalRejection.MALFORMED, "an edit needs a non-empty edited_text"
            )
        if decision.decision == "reject" and not (decision.comment or "").strip():
            raise DecisionRejected(
                ApprovalRejection.MALFORMED, "a rejection needs a comment giving the reason"
            )
        if decision.decision != "edit" and decision.edited_text is not None:
            raise DecisionRejected(
                ApprovalRejection.MALFORMED,
                f"edited_text is only allowed with decision 'edit', not {decision.decision!r}",
            )
        return state

    def apply(self, decision: ApprovalDecision, now: datetime) -> AuditEntry:
        """Apply a checked decision. An edit replaces the text under review,
        so approvals given to the old text no longer count; the editor's own
        edit counts as their approval of the new text."""
        state = self.check(decision)
        before = state.text
        entry = ReviewerDecision(
            reviewer=decision.reviewer,
            decision=decision.decision,
            comment=decision.comment,
            at=now,
            payload_hash=state.payload_hash,
        )
        after: str | None = None
        if decision.decision == "reject":
            state.status = "rejected"
        elif decision.decision == "edit":
            assert decision.edited_text is not None
            after = state.text = decision.edited_text
            state.payload_hash = payload_hash(state.text, state.context)
            state.approvals = [decision.reviewer]
        else:
            state.approvals.append(decision.reviewer)
        if state.status == "pending" and len(state.approvals) >= state.required_approvals:
            state.status = "approved"
        return self._log(state, entry, before, after)

    def time_out(self, approval_id: str, outcome: str, now: datetime) -> AuditEntry:
        state = self._items[approval_id]
        kind = "timeout_approve" if outcome == "approve" else "timeout_reject"
        state.status = "approved" if outcome == "approve" else "rejected"
        entry = ReviewerDecision(
            reviewer=SYSTEM_REVIEWER,
            decision=kind,  # type: ignore[arg-type]
            comment=f"no decision by {state.deadline.isoformat()}",
            at=now,
            payload_hash=state.payload_hash,
        )
        return self._log(state, entry, state.text, None)

    def escalate(
        self, approval_id: str, role: str, deadline: datetime, now: datetime
    ) -> AuditEntry:
        state = self._items[approval_id]
        entry = ReviewerDecision(
            reviewer=SYSTEM_REVIEWER,
            decision="escalate",
            comment=f"no decision by {state.deadline.isoformat()}: escalated to {role!r}",
            at=now,
            payload_hash=state.payload_hash,
        )
        state.required_role = role
        state.escalated = True
        state.deadline = deadline
        return self._log(state, entry, state.text, None)

    @staticmethod
    def _log(
        state: ApprovalState, entry: ReviewerDecision, before: str, after: str | None
    ) -> AuditEntry:
        state.decisions.append(entry)
        return AuditEntry(
            approval=state,
            decision=entry,
            sequence=len(state.decisions),
            before_text=before,
            after_text=after,
        )
