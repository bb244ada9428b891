"""The application database's schema: every table of the store, created in
one place (the models' modules register their tables on SQLModel.metadata
when imported here), and brought up to date when an earlier version made it.

`create_all` creates missing tables but never adds a column to a table that
exists, so each column added since a release has a small idempotent step in
`upgrade`: the API, the worker and the CLI run it at start-up with
`create_all`, and a database made by an earlier version keeps working.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

import store.inbox_sessions
import store.knowledge.tables
import store.models
import store.rate_limits
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
            upgrade(conn)
        return
    for attempt in range(3):
        try:
            SQLModel.metadata.create_all(engine)
            with engine.begin() as conn:
                upgrade(conn)
            return
        except OperationalError as exc:
            lost_race = "already exists" in str(exc) or "duplicate column" in str(exc)
            if not lost_race or attempt == 2:
                raise


def upgrade(conn: Connection) -> None:
    """Add the columns an earlier version's tables lack; a no-op when they
    have them. On SQLite a process that loses the race to add a column gets
    "duplicate column name", which `create_all` retries."""
    _add_api_key_scope(conn)
    _add_run_error_type(conn)


def _add_api_key_scope(conn: Connection) -> None:
    """`api_keys.scope` (which runs a key sees): existing keys get `own`, the
    narrow scope, except admin keys, which see everything anyway."""
    if "scope" in {column["name"] for column in inspect(conn).get_columns("api_keys")}:
        return
    conn.execute(text("ALTER TABLE api_keys ADD COLUMN scope VARCHAR(16) NOT NULL DEFAULT 'own'"))
    conn.execute(text("UPDATE api_keys SET scope = 'all' WHERE role = 'admin'"))


def _add_run_error_type(conn: Connection) -> None:
    """`runs.error_type`: rows written before it have none, and say so
    when read (`api.runs`)."""
    if "error_type" in {column["name"] for column in inspect(conn).get_columns("runs")}:
        return
    conn.execute(text("ALTER TABLE runs ADD COLUMN error_type VARCHAR(64)"))
