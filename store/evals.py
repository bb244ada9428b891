"""Evaluations' stored results: one `evaluations` row per comparison and one
`eval_case_scores` row per case and variant.

The EvalWorkflow's activities are the only writers; the API and `chorus
compare` read. Every write is idempotent because activities run at least
once: an evaluation row is inserted once and then only moves forward (a
finished row is never reopened), and a case's score is keyed by (evaluation,
variant, case) and the first write wins, so a retried scoring activity never
stores a case twice, and a test can count rows to show each case was scored
exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from store.engine import backend_insert, session_scope, write_scope
from store.models import JSONType, UTCDateTime, utcnow

EVALUATIONS_TABLE = "evaluations"
CASE_SCORES_TABLE = "eval_case_scores"

EvaluationStatus = Literal["running", "completed", "stopped"]
"""`stopped`: ended before every case was scored (`stopped_reason` says why)."""


class Evaluation(SQLModel, table=True):
    """One comparison of chain variants on an eval set."""

    __tablename__ = EVALUATIONS_TABLE

    eval_id: str = Field(primary_key=True, max_length=200)
    eval_set: str = Field(max_length=200)
    variants: list[str] = Field(sa_type=JSONType)
    cases_total: int
    """Cases times variants: the scores a complete evaluation stores."""
    status: str = Field(max_length=20, index=True)
    concurrency: int
    max_cost_usd: float | None = None
    judge_alias: str | None = Field(default=None, max_length=200)
    simulated: bool = False
    created_by: str | None = Field(default=None, max_length=200)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stopped_reason: str | None = Field(default=None, max_length=500)
    report: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    """The EvalReport as JSON, once the evaluation has ended."""


class EvalCaseScore(SQLModel, table=True):
    """One case of the eval set run through one variant, and its score."""

    __tablename__ = CASE_SCORES_TABLE
    __table_args__ = (
        sa.UniqueConstraint("eval_id", "variant", "case_id", name="uq_eval_case_scores_case"),
    )

    id: int | None = Field(default=None, primary_key=True)
    eval_id: str = Field(max_length=200, index=True)
    variant: str = Field(max_length=200)
    case_id: str = Field(max_length=200)
    run_id: str = Field(max_length=400)
    passed: bool
    cost_usd: float
    latency_s: float
    score: dict[str, Any] = Field(sa_type=JSONType)
    """The CaseScore as JSON (checks with their details, labels, judge)."""
    scored_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


def begin_evaluation(engine: Engine, row: Evaluation) -> None:
    """Insert the evaluation's row; a row already there (a retried or
    continued workflow) is left as it is."""
    with write_scope(engine) as session:
        values = row.model_dump()
        statement = backend_insert(session, Evaluation).values(**values)
        session.execute(statement.on_conflict_do_nothing(index_elements=["eval_id"]))


def write_case_score(
    engine: Engine,
    *,
    eval_id: str,
    variant: str,
    case_id: str,
    run_id: str,
    passed: bool,
    cost_usd: float,
    latency_s: float,
    score: dict[str, Any],
) -> bool:
    """Store a case's score once; False when it was already stored (a retried
    activity), in which case the first score stands."""
    with write_scope(engine) as session:
        statement = backend_insert(session, EvalCaseScore).values(
            eval_id=eval_id,
            variant=variant,
            case_id=case_id,
            run_id=run_id,
            passed=passed,
            cost_usd=cost_usd,
            latency_s=latency_s,
            score=score,
            scored_at=utcnow(),
        )
        result = session.execute(
            statement.on_conflict_do_nothing(index_elements=["eval_id", "variant", "case_id"])
        )
        return bool(result.rowcount)


def finish_evaluation(
    engine: Engine,
    eval_id: str,
    *,
    status: EvaluationStatus,
    stopped_reason: str | None,
    report: dict[str, Any],
) -> None:
    """Record how the evaluation ended and its report (idempotent: the same
    values again change nothing that matters)."""
    with write_scope(engine) as session:
        row = session.get(Evaluation, eval_id)
        if row is None:
            raise LookupError(f"no evaluation {eval_id!r} in the database to finish")
        row.status = status
        row.stopped_reason = stopped_reason
        row.report = report
        row.finished_at = row.finished_at or utcnow()
        session.add(row)


def get_evaluation(engine: Engine, eval_id: str) -> Evaluation | None:
    with session_scope(engine) as session:
        return session.get(Evaluation, eval_id)


def case_scores(engine: Engine, eval_id: str) -> list[EvalCaseScore]:
    """Every stored score of an evaluation, by variant then case."""
    with session_scope(engine) as session:
        statement = (
            select(EvalCaseScore)
            .where(EvalCaseScore.eval_id == eval_id)
            .order_by(col(EvalCaseScore.variant), col(EvalCaseScore.case_id))
        )
        return list(session.exec(statement).all())


def read_evaluation(session: Session, eval_id: str) -> Evaluation | None:
    """The evaluation's row, in the caller's session (the API's `db.read`)."""
    return session.get(Evaluation, eval_id)
