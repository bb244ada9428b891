"""What the inbox reads from the application database besides sessions: run
index rows (chain and cost of a run) and the approval audit log (the run's
earlier decisions, a reviewer's recent ones). Plain functions of a session,
for `Database.read`."""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import Session, col, desc, select

from store.models import ApprovalAudit, RunRecord

CHILD_SEPARATOR = "--"
"""An agent step's child run is `{parent run id}--{step name}`."""


def lineage(run_id: str) -> list[str]:
    """The run, then each run it may be a child of, nearest first."""
    ids = [run_id]
    rest = run_id
    while (cut := rest.rfind(CHILD_SEPARATOR)) > 0:
        rest = rest[:cut]
        ids.append(rest)
    return ids


def root_of(run_id: str) -> str:
    """The top-level chain run of a run or of an agent's child run."""
    return lineage(run_id)[-1]


def run_records(session: Session, *, run_ids: Collection[str]) -> dict[str, RunRecord]:
    """Index rows of these runs and of every run they are children of."""
    wanted = {i for run_id in run_ids for i in lineage(run_id)}
    if not wanted:
        return {}
    rows = session.exec(select(RunRecord).where(col(RunRecord.run_id).in_(wanted))).all()
    return {row.run_id: row for row in rows}


def nearest_record(records: dict[str, RunRecord], run_id: str) -> RunRecord | None:
    """The run's own row, else its nearest parent's (an agent's child run has none)."""
    return next((records[i] for i in lineage(run_id) if i in records), None)


def run_audit(session: Session, *, run_ids: Collection[str]) -> list[ApprovalAudit]:
    """Every decision on these runs, oldest first."""
    statement = (
        select(ApprovalAudit)
        .where(col(ApprovalAudit.run_id).in_(list(run_ids)))
        .order_by(col(ApprovalAudit.decided_at), col(ApprovalAudit.id))
    )
    return list(session.exec(statement).all())


def recent_decisions(session: Session, *, reviewer: str, limit: int = 50) -> list[ApprovalAudit]:
    """A reviewer's latest decisions, newest first."""
    statement = (
        select(ApprovalAudit)
        .where(ApprovalAudit.reviewer == reviewer)
        .order_by(desc(col(ApprovalAudit.decided_at)), desc(col(ApprovalAudit.id)))
        .limit(limit)
    )
    return list(session.exec(statement).all())


def has_decided_on(session: Session, *, reviewer: str, run_ids: Collection[str]) -> bool:
    statement = (
        select(ApprovalAudit.id)
        .where(ApprovalAudit.reviewer == reviewer, col(ApprovalAudit.run_id).in_(list(run_ids)))
        .limit(1)
    )
    return session.exec(statement).first() is not None
