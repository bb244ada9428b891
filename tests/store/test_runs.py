"""The run index: stubs for idempotent starts, revision-ordered upserts, listings."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, text
from sqlmodel import Session

from store.crud import create_run_stub, get_run, hash_json, list_runs, upsert_run_record
from store.engine import make_engine, session_scope
from store.errors import RunExistsError
from store.models import RunRecord
from store.schema import create_all
from tests.store.conftest import run_input


def stub(session: Session, run_id: str = "run-1", **changes: object) -> None:
    values: dict[str, object] = {
        "run_id": run_id,
        "chain": "greet",
        "version": 1,
        "input_hash": hash_json({"name": "Ada"}),
        "created_by": "svc",
    }
    create_run_stub(session, **(values | changes))  # type: ignore[arg-type]


def test_stub_starts_a_run_and_refuses_its_id_twice(session: Session) -> None:
    row = create_run_stub(
        session,
        run_id="run-1",
        chain="greet",
        version=3,
        input_hash=hash_json({"name": "Ada"}),
        created_by="svc",
    )
    session.commit()
    assert (row.status, row.revision, row.version, row.created_by) == ("starting", 0, 3, "svc")
    assert row.started_at.tzinfo is not None

    with pytest.raises(RunExistsError, match="'run-1' already exists") as caught:
        stub(session, input_hash=hash_json({"name": "Bob"}), created_by="other")
    existing = caught.value.existing
    assert existing.input_hash == hash_json({"name": "Ada"})
    assert existing.created_by == "svc"


def test_upsert_fills_the_stub_but_keeps_its_input_hash_and_creator(session: Session) -> None:
    stub(session)
    upsert_run_record(session, record=run_input(revision=1, current_step="hello"))
    session.commit()

    row = get_run(session, run_id="run-1")
    assert row is not None
    assert (row.status, row.revision, row.current_step) == ("running", 1, "hello")
    assert row.temporal_run_id == "temporal-run-1"
    assert row.started_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row.input_hash == hash_json({"name": "Ada"})
    assert row.created_by == "svc"


def test_upsert_without_a_stub_inserts(session: Session) -> None:
    # Runs started by a plain Temporal client (the CLI) have no stub.
    row = upsert_run_record(session, record=run_input("cli-run", revision=2))
    session.commit()
    assert (row.run_id, row.revision, row.input_hash, row.created_by) == ("cli-run", 2, None, None)


def test_an_older_revision_never_overwrites_a_newer_one(session: Session) -> None:
    done = run_input(
        status="completed",
        revision=5,
        finished_at=datetime(2025, 1, 2, 3, 5, tzinfo=UTC),
        cost_usd=0.25,
        input_tokens=100,
        output_tokens=40,
    )
    upsert_run_record(session, record=done)
    late = upsert_run_record(
        session, record=run_input(status="awaiting_approval", revision=4, current_step="review")
    )
    session.commit()

    assert (late.status, late.revision, late.current_step) == ("completed", 5, None)
    row = get_run(session, run_id="run-1")
    assert row is not None
    assert (row.status, row.revision, row.cost_usd, row.input_tokens) == ("completed", 5, 0.25, 100)
    assert row.finished_at == datetime(2025, 1, 2, 3, 5, tzinfo=UTC)


def test_the_same_revision_again_applies_and_a_newer_one_moves_on(session: Session) -> None:
    upsert_run_record(session, record=run_input(revision=3, cost_usd=0.1))
    # A retried write of the same revision is harmless and idempotent.
    again = upsert_run_record(session, record=run_input(revision=3, cost_usd=0.1))
    assert (again.revision, again.cost_usd) == (3, 0.1)
    newer = upsert_run_record(
        session, record=run_input(status="failed", revision=4, error="ModelError: boom")
    )
    session.commit()
    assert (newer.status, newer.revision, newer.error) == ("failed", 4, "ModelError: boom")


def test_writes_from_another_session_are_seen(engine: Engine) -> None:
    with session_scope(engine) as reader:
        upsert_run_record(reader, record=run_input(revision=1))
    with session_scope(engine) as reader:
        assert get_run(reader, run_id="run-1") is not None
        with session_scope(engine) as writer:
            upsert_run_record(writer, record=run_input(status="completed", revision=2))
        row = get_run(reader, run_id="run-1")
        assert row is not None and row.status == "completed"


def test_list_runs_newest_first_with_filters_and_pages(session: Session) -> None:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    for i, (chain, status) in enumerate(
        [("greet", "completed"), ("greet", "running"), ("other", "running"), ("greet", "failed")]
    ):
        upsert_run_record(
            session,
            record=run_input(
                f"run-{i}", chain=chain, status=status, started_at=base + timedelta(minutes=i)
            ),
        )
    session.commit()

    assert [r.run_id for r in list_runs(session)] == ["run-3", "run-2", "run-1", "run-0"]
    assert [r.run_id for r in list_runs(session, chain="greet")] == ["run-3", "run-1", "run-0"]
    assert [r.run_id for r in list_runs(session, status="running")] == ["run-2", "run-1"]
    assert [r.run_id for r in list_runs(session, chain="greet", status="running")] == ["run-1"]
    assert [r.run_id for r in list_runs(session, limit=2, offset=1)] == ["run-2", "run-1"]
    assert list_runs(session, chain="missing") == []
    assert get_run(session, run_id="missing") is None


def test_concurrent_writes_end_at_the_highest_revision(engine: Engine) -> None:
    revisions = [3, 1, 6, 2, 5, 4]
    barrier = threading.Barrier(len(revisions))

    def write(revision: int) -> None:
        barrier.wait()
        status = "completed" if revision == 6 else "running"
        with session_scope(engine) as session:
            upsert_run_record(session, record=run_input(status=status, revision=revision))

    with ThreadPoolExecutor(len(revisions)) as pool:
        list(pool.map(write, revisions))
    with session_scope(engine) as session:
        row = get_run(session, run_id="run-1")
    assert row is not None and (row.revision, row.status) == (6, "completed")


def test_a_run_index_made_before_error_types_is_upgraded(database_url: str) -> None:
    """A `runs` table without `error_type` gains it at start-up: old rows read
    as None, the workflow's next write stores the type."""
    old = sa.MetaData()
    columns = RunRecord.__table__.columns  # type: ignore[attr-defined]
    sa.Table(
        "runs",
        old,
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in columns
            if c.name != "error_type"
        ),
    )
    engine = make_engine(database_url)
    try:
        old.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO runs (run_id, chain, version, status, started_at, cost_usd,"
                    " input_tokens, output_tokens, error, revision)"
                    " VALUES ('old', 'greet', 1, 'failed', '2025-01-01', 0, 0, 0, 'boom', 1)"
                )
            )
        create_all(engine)
        create_all(engine)  # idempotent: the second finds the column

        with session_scope(engine) as session:
            upsert_run_record(
                session, record=run_input("new", status="failed", error="x", error_type="Boom")
            )
        with session_scope(engine) as session:
            before, after = get_run(session, run_id="old"), get_run(session, run_id="new")
            assert before is not None and after is not None
            assert (before.error, before.error_type) == ("boom", None)
            assert (after.error, after.error_type) == ("x", "Boom")
    finally:
        engine.dispose()
