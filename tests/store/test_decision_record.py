"""`record_approval` with a `DecisionRecordInput`: a decision's audit row and
the run-index row it changes, written together (one local activity, one
transaction), and an index row the database refuses never costs the audit row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from temporalio.exceptions import ApplicationError

from activities.records.activities import RECORD_REFUSED, RecordActivities
from core.records import DecisionRecordInput
from store.crud import get_run, list_approval_audit
from store.engine import session_scope
from tests.activity_env import ActivityEnv
from tests.pg import engine_with_tables
from tests.store.conftest import audit_input, run_input


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite database, where a trigger can refuse a row the way a
    constraint does (IntegrityError)."""
    with engine_with_tables(f"sqlite:///{tmp_path / 'chorus.db'}") as engine:
        yield engine


def decision(**run_changes: object) -> DecisionRecordInput:
    record = run_input(status="running", revision=3, current_step="review", **run_changes)
    return DecisionRecordInput(**audit_input().model_dump(), run_record=record)


async def test_the_audit_row_and_the_index_row_are_written_together(engine: Engine) -> None:
    records, env = RecordActivities(engine), ActivityEnv()
    await env.execute(records.record_run, run_input(status="awaiting_approval", revision=2))

    await env.execute(records.record_approval, decision())
    await env.execute(records.record_approval, decision())  # a retry changes nothing

    with session_scope(engine) as session:
        rows = list_approval_audit(session, run_id="run-1")
        index = get_run(session, run_id="run-1")
    assert [(r.reviewer, r.decision) for r in rows] == [("alice", "edit")]
    assert index is not None and (index.status, index.revision) == ("running", 3)


async def test_without_an_index_row_only_the_audit_row_is_written(engine: Engine) -> None:
    records = RecordActivities(engine)
    await ActivityEnv().execute(
        records.record_approval, DecisionRecordInput(**audit_input().model_dump())
    )
    with session_scope(engine) as session:
        assert len(list_approval_audit(session, run_id="run-1")) == 1
        assert get_run(session, run_id="run-1") is None


async def test_a_refused_index_row_leaves_the_audit_row_written(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    records = RecordActivities(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER no_running BEFORE INSERT ON runs WHEN NEW.status = 'running' "
                "BEGIN SELECT RAISE(ABORT, 'constraint failed: no_running'); END"
            )
        )
    await ActivityEnv().execute(records.record_approval, decision())
    with session_scope(engine) as session:
        assert len(list_approval_audit(session, run_id="run-1")) == 1
        assert get_run(session, run_id="run-1") is None


async def test_a_refused_audit_row_fails_at_once_and_the_index_row_is_still_written(
    sqlite_engine: Engine,
) -> None:
    engine = sqlite_engine
    records = RecordActivities(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER no_alice BEFORE INSERT ON approval_audit "
                "WHEN NEW.reviewer = 'alice' "
                "BEGIN SELECT RAISE(ABORT, 'constraint failed: no_alice'); END"
            )
        )
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnv().execute(records.record_approval, decision())
    assert (caught.value.type, caught.value.non_retryable) == (RECORD_REFUSED, True)
    with session_scope(engine) as session:
        assert list_approval_audit(session, run_id="run-1") == []
        index = get_run(session, run_id="run-1")
    assert index is not None and index.status == "running"
