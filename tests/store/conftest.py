"""Fixtures for the store tests: every test runs once on a SQLite file and
once on PostgreSQL.

PostgreSQL is the one on 127.0.0.1:5432 (`.ci/run` starts it; override with
CHORUS_TEST_POSTGRES_URL). Each test gets a schema of its own, dropped
afterwards, so tests are isolated and re-runnable. An unreachable server
fails the tests: skipping them would hide that half the suite did not run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from activities.records.types import ApprovalAuditInput, RunRecordInput
from store.engine import create_all, make_engine
from workflows.spec import ChainSpec

POSTGRES_URL = os.environ.get(
    "CHORUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An engine on the test database's default schema, to create and drop
    the per-test schemas."""
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


def _postgres_schema(admin: Engine) -> Iterator[str]:
    schema = f"chorus_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'chorus.db'}"
        return
    yield from _postgres_schema(request.getfixturevalue("postgres_admin"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's database, tables created."""
    engine = make_engine(database_url)
    create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def make_spec(name: str = "greet", prompt: str = "Say hello to {{ input.name }}.") -> ChainSpec:
    return ChainSpec.model_validate(
        {
            "name": name,
            "description": f"test chain {name}",
            "steps": [{"name": "hello", "kind": "model", "model": "cheap", "prompt": prompt}],
        }
    )


def run_input(run_id: str = "run-1", **changes: Any) -> RunRecordInput:
    values: dict[str, Any] = {
        "run_id": run_id,
        "temporal_run_id": "temporal-run-1",
        "chain": "greet",
        "version": 1,
        "status": "running",
        "revision": 1,
        "started_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    return RunRecordInput.model_validate(values | changes)


def audit_input(**changes: Any) -> ApprovalAuditInput:
    values: dict[str, Any] = {
        "run_id": "run-1",
        "step": "review",
        "approval_id": "review-1",
        "sequence": 0,
        "reviewer": "alice",
        "decision": "edit",
        "comment": "tone it down",
        "before_text": "Dear customer, NO.",
        "after_text": "Dear customer, unfortunately not.",
        "payload_hash": "ab" * 32,
        "decided_at": datetime(2025, 1, 2, 4, 0, 0, tzinfo=UTC),
    }
    return ApprovalAuditInput.model_validate(values | changes)
