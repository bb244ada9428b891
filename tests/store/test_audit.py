"""The approval audit log: one row per decision, however often or
concurrently it is written."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import Engine, func
from sqlmodel import Session, select

from store.crud import insert_approval_audit, list_approval_audit
from store.engine import session_scope
from store.models import ApprovalAudit
from tests.store.conftest import audit_input


def count_rows(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(ApprovalAudit)).one()


def test_insert_keeps_every_field(session: Session) -> None:
    row = insert_approval_audit(session, entry=audit_input())
    session.commit()
    assert row.id is not None
    assert (row.run_id, row.step, row.approval_id, row.sequence) == (
        "run-1",
        "review",
        "review-1",
        0,
    )
    assert (row.reviewer, row.decision, row.comment) == ("alice", "edit", "tone it down")
    assert row.before_text == "Dear customer, NO."
    assert row.after_text == "Dear customer, unfortunately not."
    assert row.payload_hash == "ab" * 32
    assert row.decided_at == datetime(2025, 1, 2, 4, 0, 0, tzinfo=UTC)


def test_a_second_insert_of_the_same_decision_returns_the_first_row(engine: Engine) -> None:
    with session_scope(engine) as session:
        first = insert_approval_audit(session, entry=audit_input())
    with session_scope(engine) as session:
        # A retry that carries a different comment still does not add a row.
        again = insert_approval_audit(session, entry=audit_input(comment="retried"))
    assert again.id == first.id
    assert again.comment == "tone it down"
    assert count_rows(engine) == 1


def test_concurrent_inserts_of_the_same_decision_make_one_row(engine: Engine) -> None:
    writers = 4
    barrier = threading.Barrier(writers)

    def write() -> int | None:
        barrier.wait()
        with session_scope(engine) as session:
            return insert_approval_audit(session, entry=audit_input()).id

    with ThreadPoolExecutor(writers) as pool:
        ids = list(pool.map(lambda _: write(), range(writers)))

    assert len(set(ids)) == 1 and ids[0] is not None
    assert count_rows(engine) == 1


def test_other_sequences_and_approvals_are_separate_rows(session: Session) -> None:
    insert_approval_audit(session, entry=audit_input())
    insert_approval_audit(
        session, entry=audit_input(sequence=1, reviewer="bob", decision="approve")
    )
    insert_approval_audit(session, entry=audit_input(approval_id="review-2"))
    insert_approval_audit(session, entry=audit_input(run_id="run-2", reviewer="bob"))
    session.commit()
    assert len(list_approval_audit(session)) == 4


def test_list_filters_by_run_and_reviewer_in_decision_order(session: Session) -> None:
    insert_approval_audit(
        session,
        entry=audit_input(sequence=1, reviewer="bob", decided_at=datetime(2025, 1, 3, tzinfo=UTC)),
    )
    insert_approval_audit(
        session, entry=audit_input(sequence=0, decided_at=datetime(2025, 1, 2, tzinfo=UTC))
    )
    insert_approval_audit(
        session,
        entry=audit_input(
            run_id="run-2", reviewer="bob", decided_at=datetime(2025, 1, 4, tzinfo=UTC)
        ),
    )
    session.commit()

    assert [(r.run_id, r.sequence) for r in list_approval_audit(session, run_id="run-1")] == [
        ("run-1", 0),
        ("run-1", 1),
    ]
    assert [r.run_id for r in list_approval_audit(session, reviewer="bob")] == ["run-1", "run-2"]
    assert [r.sequence for r in list_approval_audit(session, run_id="run-1", reviewer="bob")] == [1]
    assert list_approval_audit(session, reviewer="nobody") == []
