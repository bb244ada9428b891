"""Fixtures for the store tests: every test runs once on a SQLite file and
once on PostgreSQL.

PostgreSQL is the test server of tests/pg.py. Each test gets a schema of its
own, dropped afterwards, so tests are isolated and re-runnable.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from core.chain_spec import ChainSpec
from core.records import ApprovalAuditInput, RunRecordInput
from tests.pg import BACKENDS, empty_database, engine_with_tables


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database per test: a SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    with empty_database(
        request,
        request.param,
        sqlite_file=tmp_path / "db" / "chorus.db",
        schema_prefix="chorus_test_",
    ) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's database, tables created."""
    with engine_with_tables(database_url) as engine:
        yield engine


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
