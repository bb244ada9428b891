"""A NUL character in the text a run writes (approval texts, comments, edits,
error messages, model replies) is stored on both backends: PostgreSQL's text
columns refuse NUL outright, which made these writes fail on every attempt."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError

from activities.records.activities import RecordActivities
from store.crud import get_run, insert_approval_audit, list_approval_audit, upsert_run_record
from store.engine import session_scope
from store.reply_journal import get_reply, record_reply
from store.text import NUL_SYMBOL, storable_text, storable_values
from tests.activity_env import ActivityEnv
from tests.store.conftest import audit_input, run_input

NUL = "\x00"


def test_storable_text_replaces_only_nul() -> None:
    assert storable_text("a\x00b\x00") == "a\u2400b\u2400"
    plain = "no nul here: \u2400 \x01 \ud7ff é"
    assert storable_text(plain) is plain
    assert storable_values({"a": "x\x00", "b": 3, "c": None}) == {"a": "x\u2400", "b": 3, "c": None}


def test_an_audit_row_with_nul_in_every_text_is_stored(engine: Engine) -> None:
    entry = audit_input(
        comment=f"ok{NUL}",
        before_text=f"Refund {NUL}42{NUL} EUR?",
        after_text=f"Refund 42 EUR{NUL}",
        reviewer=f"al{NUL}ice",
    )
    with session_scope(engine) as session:
        row = insert_approval_audit(session, entry=entry)
    assert row.before_text == f"Refund {NUL_SYMBOL}42{NUL_SYMBOL} EUR?"
    assert (row.comment, row.after_text) == (f"ok{NUL_SYMBOL}", f"Refund 42 EUR{NUL_SYMBOL}")

    with session_scope(engine) as session:  # the activity's retry: still one row
        again = insert_approval_audit(session, entry=entry)
        rows = list_approval_audit(session, run_id="run-1")
    assert again.id == row.id
    assert [r.reviewer for r in rows] == [f"al{NUL_SYMBOL}ice"]


def test_a_run_row_with_nul_in_its_error_is_stored(engine: Engine) -> None:
    record = run_input(
        status="rejected",
        revision=3,
        current_step=f"review{NUL}",
        error=f"step review: rejected by bob: no{NUL}pe",
    )
    with session_scope(engine) as session:
        upsert_run_record(session, record=record)
    with session_scope(engine) as session:
        row = get_run(session, run_id="run-1")
    assert row is not None
    assert (row.status, row.error) == (
        "rejected",
        f"step review: rejected by bob: no{NUL_SYMBOL}pe",
    )
    assert row.current_step == f"review{NUL_SYMBOL}"


def test_a_reply_with_nul_is_journalled_exactly(engine: Engine) -> None:
    """Replies are JSON (NUL escaped as \\u0000, which PostgreSQL's `json`
    takes), so they come back exactly; the key is made storable."""
    reply: dict[str, Any] = {"text": f"a{NUL}b", "usage": {"input_tokens": 1}}
    with session_scope(engine) as session:
        record_reply(session, request_id=f"wf{NUL}/1", reply=reply)
    with session_scope(engine) as session:
        assert get_reply(session, request_id=f"wf{NUL}/1") == reply


async def test_the_record_activities_take_nul_on_both_backends(engine: Engine) -> None:
    records = RecordActivities(engine)
    env = ActivityEnv()
    await env.execute(records.record_approval, audit_input(comment=f"fine{NUL}", sequence=1))
    await env.execute(records.record_run, run_input(error=f"x{NUL}"))
    with session_scope(engine) as session:
        (row,) = list_approval_audit(session, run_id="run-1")
        run = get_run(session, run_id="run-1")
    assert row.comment == f"fine{NUL_SYMBOL}"
    assert run is not None and run.error == f"x{NUL_SYMBOL}"


def test_without_the_replacement_postgresql_refuses_the_row(engine: Engine) -> None:
    """What the replacement guards against (SQLite would store the NUL)."""
    statement = text(
        "INSERT INTO model_replies (request_id, reply, created_at) VALUES (:k, '{}', :t)"
    )
    values = {"k": f"raw{NUL}", "t": "2025-01-01 00:00:00"}
    with session_scope(engine) as session:
        if engine.dialect.name == "postgresql":
            with pytest.raises(DataError, match="cannot contain NUL"):
                session.execute(statement, values)
        else:
            session.execute(statement, values)
