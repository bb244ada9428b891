"""The application database: one engine per process, SQLite or PostgreSQL.

SQLite (a file in the state directory) is the zero-setup default for one
machine; PostgreSQL is the shared database of a deployment with several API
and worker processes. Both are tuned here, once, so callers only pass a URL:
SQLite gets WAL (readers never block the writer), foreign keys and a busy
timeout (a second process waits for the write lock instead of failing), and
PostgreSQL URLs are pointed at the psycopg 3 driver.

A server sizes the pool for its own concurrency (`make_engine(url,
pool_size=..., max_overflow=...)`): a request that finds no free connection
within `pool_timeout` gets an error, never a wait without end.

SQLite has one writer at a time, and a transaction that read before it wrote
fails at once with "database is locked" (busy timeout or not) when another
connection committed in between. `write_scope` avoids both: the writers of a
process queue on one lock per database file, then open their transaction
with `BEGIN IMMEDIATE` (which takes the write lock before reading anything,
waiting through the busy timeout for another process's writer).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite connection waits for another process's write lock."""

SQLITE_WRITE_LOCK_TIMEOUT_S = 10.0
"""How long `write_scope` waits for this process's other SQLite writers: a
write takes milliseconds, so a longer wait means the process is overloaded."""

POSTGRES_CONNECT_TIMEOUT_S = 10
"""Default psycopg connect timeout, so a down database fails a readiness check
in seconds rather than hanging (a `connect_timeout` in the URL wins)."""


class UnsupportedDatabaseError(ValueError):
    """The database URL names a backend Chorus does not support."""


class WriteLockTimeout(TimeoutError):
    """This process's SQLite writers did not let a write through in time."""


def _normalize_url(database_url: str) -> URL:
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise UnsupportedDatabaseError(
            f"invalid database URL ({exc}); expected sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        # `postgresql://` means psycopg2 to SQLAlchemy; Chorus ships psycopg 3.
        # `postgres://` is the spelling of Heroku-style DATABASE_URLs.
        return url.set(drivername=f"postgresql+{driver or 'psycopg'}")
    if backend == "sqlite":
        return url
    raise UnsupportedDatabaseError(
        f"unsupported database {url.drivername!r} in the database URL: "
        "Chorus supports sqlite:///PATH and postgresql://USER:PASSWORD@HOST:PORT/DB"
    )


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url.query)


def make_engine(
    database_url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout_s: float | None = None,
) -> Engine:
    """An engine for a `sqlite:///PATH` or `postgresql://...` URL.

    The pool keeps `pool_size` connections and opens up to `max_overflow`
    more under load; a checkout waits at most `pool_timeout_s` (SQLAlchemy's
    defaults, 5 + 10 and 30 s, where not given). For a SQLite file the parent
    directory is created. Raises UnsupportedDatabaseError for any other
    backend or a malformed URL.
    """
    url = _normalize_url(database_url)
    pool_args: dict[str, Any] = {
        name: value
        for name, value in (
            ("pool_size", pool_size),
            ("max_overflow", max_overflow),
            ("pool_timeout", pool_timeout_s),
        )
        if value is not None
    }
    if url.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool_args)

    sqlite_args: dict[str, Any] = {
        # Sessions hop threads (asyncio.to_thread, FastAPI's threadpool).
        "check_same_thread": False,
        "timeout": SQLITE_BUSY_TIMEOUT_S,
    }
    if _is_sqlite_memory(url):
        # One shared connection, or every connection would see its own empty database.
        engine = create_engine(url, connect_args=sqlite_args, poolclass=StaticPool)
    else:
        Path(url.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args=sqlite_args, **pool_args)
    event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL loses nothing when a process dies (a killed worker:
        # the case Chorus is built for), only the last commits on a power
        # loss, and spares an fsync per commit (one per model call, through
        # the reply journal). PostgreSQL is the store for stronger needs.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises.

    Objects stay readable after the block (no expiry on commit), so a caller
    can return or print the rows it wrote.
    """
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(engine: Engine) -> threading.Lock:
    """The process's lock for writes to this engine's SQLite database: one per
    file (engines of the API and an in-process worker share it), one per
    engine for an in-memory database."""
    url = engine.url
    key = (
        f"memory:{id(engine)}"
        if _is_sqlite_memory(url)
        else str(Path(url.database or "").expanduser().resolve())
    )
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


@contextlib.contextmanager
def write_scope(
    engine: Engine, *, lock_timeout_s: float = SQLITE_WRITE_LOCK_TIMEOUT_S
) -> Iterator[Session]:
    """A session for a short write transaction (committed when the block
    ends, rolled back if it raises), which on SQLite never fails with
    "database is locked" because another writer got there first.

    On SQLite the process's writers take turns (WriteLockTimeout after
    `lock_timeout_s`), and the transaction starts with `BEGIN IMMEDIATE`, so
    what it reads cannot go stale before it writes. The lock is taken before
    a pooled connection, so a waiting writer holds none. On PostgreSQL this is
    `session_scope`: row locks and `ON CONFLICT` order concurrent writers.
    Keep the block short and free of waits on anything but the database.
    """
    if engine.dialect.name != "sqlite":
        with session_scope(engine) as session:
            yield session
        return
    lock = _write_lock(engine)
    if not lock.acquire(timeout=lock_timeout_s):
        raise WriteLockTimeout(
            f"other writers held the database for more than {lock_timeout_s:.0f} s"
        )
    try:
        with session_scope(engine) as session:
            # The driver starts no transaction of its own once one is open.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session
    finally:
        lock.release()


def backend_insert(session: Session, model: type[SQLModel]) -> postgresql.Insert | sqlite.Insert:
    """INSERT for the session's backend, which has `on_conflict_do_*`
    (the generic `insert` has no upsert)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"the store supports sqlite and postgresql, not {dialect}")
