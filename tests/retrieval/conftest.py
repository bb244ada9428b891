"""Fixtures for the retrieval tests and the sample help-center collection
shipped in chains/knowledge/help_center.

`kb_engine` is one database per module and backend (a SQLite file, or a
fresh PostgreSQL schema on the test server of tests/pg.py); `session` is a session
on it whose work is rolled back after the test, so tests are isolated
without paying for a new schema each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine
from sqlmodel import Session

from store.knowledge.crud import IngestResult, ingest_document
from tests.pg import BACKENDS, empty_database, engine_with_tables

ROOT = Path(__file__).resolve().parents[2]
HELP_CENTER = ROOT / "chains" / "knowledge" / "help_center"
QA_FILE = Path(__file__).with_name("qa_pairs.yaml")
COLLECTION = "help_center"


@pytest.fixture(scope="module", params=BACKENDS)
def kb_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database for the module: a SQLite file or a fresh PostgreSQL schema."""
    with empty_database(
        request,
        request.param,
        sqlite_file=tmp_path_factory.mktemp("kb") / "chorus.db",
        schema_prefix="chorus_kb_test_",
    ) as url:
        yield url


@pytest.fixture(scope="module")
def kb_engine(kb_database_url: str) -> Iterator[Engine]:
    with engine_with_tables(kb_database_url) as engine:
        yield engine


@pytest.fixture
def session(kb_engine: Engine) -> Iterator[Session]:
    """A session whose writes are never committed: rolled back after the test."""
    with Session(kb_engine, expire_on_commit=False) as session:
        try:
            yield session
        finally:
            session.rollback()


@dataclass(frozen=True)
class QAPair:
    query: str
    document: str
    heading: str
    answer: str


def qa_pairs(section: str = "pairs") -> list[QAPair]:
    data: dict[str, Any] = yaml.safe_load(QA_FILE.read_text(encoding="utf-8"))
    return [QAPair(**item) for item in data[section]]


def help_center_files() -> list[Path]:
    return sorted(HELP_CENTER.glob("*.md"))


def ingest_help_center(session: Session, collection: str = COLLECTION) -> list[IngestResult]:
    return [
        ingest_document(
            session,
            collection=collection,
            name=path.name,
            source=str(path.relative_to(ROOT)),
            text=path.read_text(encoding="utf-8"),
        )
        for path in help_center_files()
    ]
