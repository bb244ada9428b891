"""The record activities, run the way a worker runs them (ActivityEnvironment)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func
from sqlalchemy.exc import DBAPIError
from sqlmodel import select
from temporalio.exceptions import ApplicationError

from activities.records.activities import RECORD_REFUSED, RecordActivities
from core.names import RECORD_APPROVAL, RECORD_RUN
from store.crud import get_run, list_approval_audit
from store.engine import make_engine, session_scope
from store.models import RunRecord
from tests.activity_env import ActivityEnv, run_activity
from tests.pg import engine_with_tables, postgres_schema
from tests.store.conftest import audit_input, run_input


def test_activities_are_registered_under_their_stable_names() -> None:
    engine = make_engine("sqlite://")
    try:
        activities = RecordActivities(engine).activities
    finally:
        engine.dispose()
    names = [fn.__temporal_activity_definition.name for fn in activities]  # type: ignore[attr-defined]
    assert names == [RECORD_RUN, RECORD_APPROVAL]


async def test_a_retried_run_write_leaves_one_row(engine: Engine) -> None:
    records = RecordActivities(engine)
    env = ActivityEnv()
    req = run_input(status="awaiting_approval", revision=2, current_step="review")

    await env.execute(records.record_run, req)
    await env.execute(records.record_run, req)  # the retry after a lost completion

    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(RunRecord)).one() == 1
        row = get_run(session, run_id="run-1")
    assert row is not None and (row.status, row.revision) == ("awaiting_approval", 2)


async def test_a_late_run_write_does_not_move_the_run_back(engine: Engine) -> None:
    records = RecordActivities(engine)
    env = ActivityEnv()
    await env.execute(records.record_run, run_input(status="completed", revision=3))
    await env.execute(records.record_run, run_input(status="running", revision=1))
    with session_scope(engine) as session:
        row = get_run(session, run_id="run-1")
    assert row is not None and row.status == "completed"


async def test_a_retried_audit_write_leaves_one_row(engine: Engine) -> None:
    records = RecordActivities(engine)
    env = ActivityEnv()
    await env.execute(records.record_approval, audit_input())
    await env.execute(records.record_approval, audit_input())
    with session_scope(engine) as session:
        rows = list_approval_audit(session, run_id="run-1")
    assert [(r.reviewer, r.decision) for r in rows] == [("alice", "edit")]


async def test_database_work_runs_off_the_event_loop_thread(engine: Engine) -> None:
    threads: set[int] = set()

    def remember(*_: Any) -> None:
        threads.add(threading.get_ident())

    event.listen(engine, "before_cursor_execute", remember)
    try:
        await run_activity(RecordActivities(engine).record_run, run_input())
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert threads and threading.get_ident() not in threads


async def test_a_database_error_propagates_as_retryable(database_url: str) -> None:
    # No tables: the write fails, and must not be turned into a
    # non-retryable ApplicationError (Temporal retries until the DB is back).
    engine = make_engine(database_url)
    try:
        with pytest.raises(DBAPIError) as caught:
            await run_activity(RecordActivities(engine).record_run, run_input())
        assert not isinstance(caught.value, ApplicationError)
    finally:
        engine.dispose()


@pytest.fixture
def postgres_engine(postgres_admin: Engine) -> Iterator[Engine]:
    with (
        postgres_schema(postgres_admin, "chorus_test_records_") as url,
        engine_with_tables(url) as engine,
    ):
        yield engine


@pytest.mark.parametrize(
    ("activity", "payload", "what"),
    [
        ("record_approval", audit_input(step="s" * 65, comment="private words"), "audit row"),
        ("record_run", run_input(status="running", chain="c" * 101), "run index row"),
    ],
)
async def test_a_row_the_database_refuses_fails_at_once_and_is_not_retried(
    postgres_engine: Engine, activity: str, payload: Any, what: str
) -> None:
    """A value too long for its column is refused on every attempt: the
    activity says so as a non-retryable RecordRefused instead of letting
    Temporal retry it (the audit write used to retry forever)."""
    with pytest.raises(ApplicationError) as caught:
        await run_activity(getattr(RecordActivities(postgres_engine), activity), payload)
    err = caught.value
    assert (err.type, err.non_retryable) == (RECORD_REFUSED, True)
    assert f"the database refused the {what}" in err.message
    assert "StringDataRightTruncation" in err.message
    assert err.__cause__ is None  # the statement and the row's texts stay out of history
    assert "private words" not in err.message and "INSERT" not in err.message
