"""Completed model replies by request id, so a retried model call never pays
for an answer the provider already gave.

Temporal runs an activity at least once: when a worker dies (or misses its
heartbeat deadline while busy) right after the provider answered, the retry
would ask, and pay, again. The gateway writes each reply here the moment it
has it, keyed by `<workflow id>/<activity id>` (stable across attempts), and a
retry looks here first. Rows are small and can be pruned once their runs are
closed (`prune_replies`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, delete
from sqlalchemy.types import JSON
from sqlmodel import Field, Session, SQLModel, select

from store.engine import backend_insert
from store.text import storable_text


class ModelReply(SQLModel, table=True):
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
    """Delete replies older than `older_than` (runs long closed); returns how many."""
    cutoff = datetime.now(UTC) - older_than
    result = session.exec(delete(ModelReply).where(ModelReply.created_at < cutoff))  # type: ignore[call-overload]
    return int(result.rowcount or 0)
