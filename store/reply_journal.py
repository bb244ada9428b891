"""The reply journal: every provider call attempt, recorded before the
request is sent, and its raw reply the moment it arrives.

Temporal runs an activity at least once: when a worker dies (or misses its
heartbeat deadline while busy) right after the provider answered, the retry
would ask, and pay, again. The gateway records each attempt as in flight
before it calls (`record_attempt`: its worst-case cost included), stores the
provider's raw reply as soon as it has it, before parsing it
(`record_raw_reply`), and marks an attempt the provider refused with an HTTP
error as failed (nothing billed). A retry reads the earlier attempts of its
call (`earlier_attempts`): a raw reply is parsed and reused instead of
calling again; an attempt still in flight with no reply may have been billed
without anyone seeing the bill, so its worst case is counted as unconfirmed.

Keys are `<workflow id>/<run id>/<activity id>`: activity ids restart when a
workflow continues as new and when a closed run's workflow id is reused, so
without the run id a retry could be handed another run's reply.
`model_replies` is the journal of versions before that: parsed replies keyed
`<workflow id>/<activity id>`, no longer read (such a key cannot tell runs
apart) nor written; `prune_replies` clears both tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Column, Table, bindparam, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.types import JSON
from sqlmodel import Field, Session, SQLModel, select

from store.engine import backend_insert
from store.prebuilt import PerBackend
from store.text import storable_text

AttemptState = Literal["in_flight", "replied", "failed"]
"""`in_flight`: sent (or about to be) with no reply seen: it may have been
billed. `replied`: the provider's raw reply is stored. `failed`: the provider
answered with an HTTP error, or the request never left: nothing was billed."""


class ModelCallAttempt(SQLModel, table=True):
    """One attempt of one model call, recorded before its request is sent."""

    __tablename__ = "model_call_attempts"

    request_id: str = Field(primary_key=True, max_length=1000)
    """`<workflow id>/<run id>/<activity id>`: one model call, all its attempts."""
    attempt: int = Field(primary_key=True)
    workflow_id: str = Field(max_length=1000)
    run_id: str = Field(max_length=200)
    activity_id: str = Field(max_length=200)
    alias: str = Field(max_length=200)
    worst_case_usd: float
    """The most this attempt can cost: prompt estimate plus max_tokens at the
    alias's prices (what the workflow reserved in the run's budget)."""
    state: str = Field(max_length=16)
    raw_reply: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The provider's response body, exactly as received (parsed on reuse)."""
    latency_ms: float | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC), index=True)
    finished_at: datetime | None = None


@dataclass(frozen=True)
class EarlierAttempt:
    """What a retry reads of an attempt before it."""

    attempt: int
    alias: str
    worst_case_usd: float
    state: AttemptState
    raw_reply: dict[str, Any] | None
    latency_ms: float | None


def record_attempt(
    session: Session,
    *,
    request_id: str,
    attempt: int,
    workflow_id: str,
    run_id: str,
    activity_id: str,
    alias: str,
    worst_case_usd: float,
) -> None:
    """Record an attempt as in flight, before its request is sent.
    Idempotent: a second record of the same attempt changes nothing."""
    session.execute(
        _statements(session).insert_in_flight,
        {
            "request_id": storable_text(request_id),
            "attempt": attempt,
            "workflow_id": storable_text(workflow_id),
            "run_id": storable_text(run_id),
            "activity_id": storable_text(activity_id),
            "alias": alias,
            "worst_case_usd": worst_case_usd,
            "state": "in_flight",
            "started_at": datetime.now(UTC),
        },
    )


def record_raw_reply(
    session: Session,
    *,
    request_id: str,
    attempt: int,
    reply: dict[str, Any],
    latency_ms: float,
) -> None:
    """Store the provider's raw reply to an attempt (JSON: a NUL inside
    travels escaped, which PostgreSQL's `json` takes). Creates the row when
    the in-flight record was never written (the database was down then)."""
    key = storable_text(request_id)
    now = datetime.now(UTC)
    changed = session.execute(
        _statements(session).store_reply,
        {
            "key": key,
            "key_attempt": attempt,
            "raw_reply": reply,
            "latency_ms": latency_ms,
            "finished_at": now,
        },
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        session.add(
            ModelCallAttempt(
                request_id=key,
                attempt=attempt,
                workflow_id="",
                run_id="",
                activity_id="",
                alias="",
                worst_case_usd=0.0,
                state="replied",
                raw_reply=reply,
                latency_ms=latency_ms,
                started_at=now,
                finished_at=now,
            )
        )


@dataclass(frozen=True)
class _Statements:
    insert_in_flight: Insert
    store_reply: Update


def _build_statements(dialect: str) -> _Statements:
    """The two writes of every model call, built once per backend with bound
    parameters: building an ORM statement per call (coercing each value,
    then its cache key) cost about three times the SQLite work itself. Core
    statements on the table, not the mapped class, so the session does not
    run its ORM bulk-update machinery either."""
    table: Table = ModelCallAttempt.__table__  # type: ignore[attr-defined]
    module = postgresql if dialect == "postgresql" else sqlite
    insert = module.insert(table).on_conflict_do_nothing(index_elements=["request_id", "attempt"])
    store_reply = (
        update(table)
        .where(table.c.request_id == bindparam("key"), table.c.attempt == bindparam("key_attempt"))
        .values(
            state="replied",
            raw_reply=bindparam("raw_reply"),
            latency_ms=bindparam("latency_ms"),
            finished_at=bindparam("finished_at"),
        )
    )
    return _Statements(insert_in_flight=insert, store_reply=store_reply)


_statements = PerBackend(_build_statements)


def record_attempt_failed(session: Session, *, request_id: str, attempt: int) -> None:
    """The provider refused the attempt with an HTTP error, or it was never
    sent: nothing was billed, so a retry does not count it."""
    session.exec(  # type: ignore[call-overload]
        update(ModelCallAttempt)
        .where(
            ModelCallAttempt.request_id == storable_text(request_id),  # type: ignore[arg-type]
            ModelCallAttempt.attempt == attempt,  # type: ignore[arg-type]
            ModelCallAttempt.state == "in_flight",  # type: ignore[arg-type]
        )
        .values(state="failed", finished_at=datetime.now(UTC))
    )


def earlier_attempts(session: Session, *, request_id: str, before: int) -> list[EarlierAttempt]:
    """The attempts of a call numbered below `before`, oldest first."""
    rows = session.exec(
        select(ModelCallAttempt)
        .where(
            ModelCallAttempt.request_id == storable_text(request_id),
            ModelCallAttempt.attempt < before,
        )
        .order_by(ModelCallAttempt.attempt)  # type: ignore[arg-type]
    ).all()
    return [
        EarlierAttempt(
            attempt=row.attempt,
            alias=row.alias,
            worst_case_usd=row.worst_case_usd,
            state=row.state,  # type: ignore[arg-type]
            raw_reply=None if row.raw_reply is None else dict(row.raw_reply),
            latency_ms=row.latency_ms,
        )
        for row in rows
    ]


class ModelReply(SQLModel, table=True):
    """Parsed replies as versions before run-id keys journaled them, keyed
    `<workflow id>/<activity id>`: kept for `prune_replies`, never read."""

    __tablename__ = "model_replies"

    request_id: str = Field(primary_key=True, max_length=1000)
    reply: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC), index=True)


def get_reply(session: Session, *, request_id: str) -> dict[str, Any] | None:
    key = storable_text(request_id)
    row = session.exec(select(ModelReply).where(ModelReply.request_id == key)).first()
    return None if row is None else dict(row.reply)


def record_reply(session: Session, *, request_id: str, reply: dict[str, Any]) -> None:
    """Idempotent: the first reply recorded for a request id stays. The reply
    is JSON text (a NUL inside travels escaped, which PostgreSQL's `json`
    takes); the key goes through `store.text` like every text column."""
    statement = backend_insert(session, ModelReply).values(
        request_id=storable_text(request_id), reply=reply, created_at=datetime.now(UTC)
    )
    session.exec(statement.on_conflict_do_nothing(index_elements=["request_id"]))  # type: ignore[call-overload]


def prune_replies(session: Session, *, older_than: timedelta) -> int:
    """Delete journaled attempts and replies older than `older_than` (runs
    long closed); returns how many rows went."""
    cutoff = datetime.now(UTC) - older_than
    attempts = session.exec(  # type: ignore[call-overload]
        delete(ModelCallAttempt).where(ModelCallAttempt.started_at < cutoff)  # type: ignore[arg-type]
    )
    replies = session.exec(delete(ModelReply).where(ModelReply.created_at < cutoff))  # type: ignore[call-overload]
    return int(attempts.rowcount or 0) + int(replies.rowcount or 0)
