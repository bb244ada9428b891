"""The rules of the approval desk: what a decision must satisfy and what it changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from workflows.approvals import ApprovalDesk, DecisionRejected, payload_hash
from workflows.types import ApprovalDecision, ApprovalRejection

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def desk(required: int = 1, role: str = "reviewer") -> tuple[ApprovalDesk, str]:
    d = ApprovalDesk()
    state = d.open(
        approval_id="review",
        step="review",
        text="Draft v1",
        context={"message": "help"},
        instructions=None,
        required_role=role,
        required_approvals=required,
        now=NOW,
        deadline=NOW + timedelta(days=3),
    )
    return d, state.payload_hash


def decision(h: str, **fields: Any) -> ApprovalDecision:
    base: dict[str, Any] = {
        "approval_id": "review",
        "decision": "approve",
        "reviewer": "alice",
        "reviewer_roles": ["reviewer"],
        "payload_hash": h,
    }
    return ApprovalDecision(**{**base, **fields})


def test_payload_hash_covers_text_and_context() -> None:
    assert payload_hash("a", {"x": "1"}) == payload_hash("a", {"x": "1"})
    assert payload_hash("a", {"x": "1"}) != payload_hash("b", {"x": "1"})
    assert payload_hash("a", {"x": "1"}) != payload_hash("a", {"x": "2"})


@pytest.mark.parametrize(
    ("fields", "error_type", "phrase"),
    [
        ({"approval_id": "other"}, ApprovalRejection.NOT_FOUND, "no approval 'other'"),
        ({"payload_hash": "stale"}, ApprovalRejection.STALE, "changed since it was shown"),
        ({"reviewer_roles": ["service"]}, ApprovalRejection.FORBIDDEN, "needs role 'reviewer'"),
        ({"decision": "edit"}, ApprovalRejection.MALFORMED, "non-empty edited_text"),
        ({"decision": "reject"}, ApprovalRejection.MALFORMED, "comment giving the reason"),
        ({"edited_text": "x"}, ApprovalRejection.MALFORMED, "only allowed with decision 'edit'"),
    ],
)
def test_bad_decisions_are_refused(fields: dict[str, Any], error_type: str, phrase: str) -> None:
    d, h = desk()
    with pytest.raises(DecisionRejected) as caught:
        d.check(decision(h, **fields))
    assert caught.value.error_type == error_type
    assert phrase in str(caught.value)
    assert d.pending()[0].decisions == []


def test_approve_completes_and_a_second_decision_is_already_decided() -> None:
    d, h = desk()
    entry = d.apply(decision(h), NOW)
    assert entry.approval.status == "approved" and entry.sequence == 1
    with pytest.raises(DecisionRejected) as caught:
        d.check(decision(h, reviewer="bob"))
    assert caught.value.error_type == ApprovalRejection.ALREADY_DECIDED


def test_n_approvals_need_distinct_reviewers() -> None:
    d, h = desk(required=2)
    assert d.apply(decision(h), NOW).approval.status == "pending"
    with pytest.raises(DecisionRejected) as caught:
        d.check(decision(h))
    assert caught.value.error_type == ApprovalRejection.DUPLICATE_REVIEWER
    assert d.apply(decision(h, reviewer="bob"), NOW).approval.status == "approved"


def test_an_edit_replaces_the_text_and_voids_earlier_approvals() -> None:
    d, h = desk(required=2)
    d.apply(decision(h), NOW)  # alice approves v1
    entry = d.apply(decision(h, reviewer="bob", decision="edit", edited_text="Draft v2"), NOW)
    state = entry.approval
    assert (entry.before_text, entry.after_text) == ("Draft v1", "Draft v2")
    assert state.text == "Draft v2" and state.payload_hash != h
    assert state.approvals == ["bob"] and state.status == "pending"
    # alice's decision on the old text is stale; on the new one it completes.
    with pytest.raises(DecisionRejected):
        d.check(decision(h))
    assert d.apply(decision(state.payload_hash), NOW).approval.status == "approved"


def test_reject_and_timeouts() -> None:
    d, h = desk()
    assert d.apply(decision(h, decision="reject", comment="wrong tone"), NOW).approval.status == (
        "rejected"
    )
    d2, _ = desk(role="reviewer")
    escalated = d2.escalate("review", "supervisor", NOW + timedelta(days=4), NOW)
    assert escalated.approval.required_role == "supervisor" and escalated.approval.escalated
    assert escalated.decision.decision == "escalate"
    timed_out = d2.time_out("review", "approve", NOW)
    assert timed_out.approval.status == "approved" and timed_out.sequence == 2
