"""The application database's schema: every table of the store, created in
one place (the models' modules register their tables on SQLModel.metadata
when imported here)."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

import store.knowledge.tables
import store.models
import store.reply_journal  # noqa: F401

CREATE_ALL_LOCK_KEY = 0x43686F72
"""PostgreSQL advisory lock taken around `create_all`, so an API and a worker
starting at once do not both try to create the same table."""


def create_all(engine: Engine) -> None:
    """Create every missing table and index; a no-op when they exist.

    Safe to call from several processes starting at once: PostgreSQL
    serializes the callers with an advisory lock; on SQLite a lost race
    ("table ... already exists") is retried, which then finds the table.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(CREATE_ALL_LOCK_KEY)))
            SQLModel.metadata.create_all(conn)
        return
    for attempt in range(3):
        try:
            SQLModel.metadata.create_all(engine)
            return
        except OperationalError as exc:
            if "already exists" not in str(exc) or attempt == 2:
                raise
