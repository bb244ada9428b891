"""The test databases: a SQLite file, or a fresh schema on the PostgreSQL
server at 127.0.0.1:5432/test (`.ci/run` starts it; override with
CHORUS_TEST_POSTGRES_URL).

Suites that run on both backends parametrize over `BACKENDS` at the scope
that suits them and get their URL from `empty_database`; the admin engine
that creates and drops the schemas is the session fixture `postgres_admin`
(tests/conftest.py). An unreachable server fails the tests: skipping them
would hide that half the suite did not run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from store.engine import make_engine
from store.schema import upgrade

POSTGRES_URL = os.environ.get(
    "CHORUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


def connect_postgres_admin() -> Iterator[Engine]:
    """An engine on the test database's default schema (for the session
    fixture); fails the tests at once, naming the server, when it does not answer."""
    engine = make_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {make_url(POSTGRES_URL).render_as_string()} "
            f"({exc.orig}); start it (`bash .ci/run` does) or set CHORUS_TEST_POSTGRES_URL",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@contextmanager
def postgres_schema(admin: Engine, prefix: str) -> Iterator[str]:
    """A URL whose search_path is a new schema `<prefix><random>`, dropped
    with everything in it on exit, so tests are isolated and re-runnable."""
    schema = f"{prefix}{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@contextmanager
def empty_database(
    request: pytest.FixtureRequest, backend: str, *, sqlite_file: Path, schema_prefix: str
) -> Iterator[str]:
    """An empty database on `backend`: the SQLite file `sqlite_file`, or a
    fresh PostgreSQL schema (asks `request` for `postgres_admin` only then,
    so SQLite-only runs never need the server)."""
    if backend == "sqlite":
        yield f"sqlite:///{sqlite_file}"
        return
    with postgres_schema(request.getfixturevalue("postgres_admin"), schema_prefix) as url:
        yield url


@contextmanager
def engine_with_tables(database_url: str) -> Iterator[Engine]:
    """An engine on `database_url` with every Chorus table, made by the
    migrations (`chorus db upgrade`) so the suite runs them; disposed on exit."""
    engine = make_engine(database_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()
