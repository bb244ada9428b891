"""`chorus payloads sweep` on the database store (SQLite and PostgreSQL) and
the filesystem store: it removes the blobs unused past the retention, and
only those."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import Session

from core.payload_refs import FilesystemBlobStore, digest_of
from store.payload_blobs import DatabaseBlobStore, PayloadBlob
from tests.cli_runner import database_env, invoke
from tests.pg import BACKENDS, empty_database, engine_with_tables

OLD, NEW = b"o" * 3000, b"n" * 2000


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with empty_database(
        request, request.param, sqlite_file=tmp_path / "chorus.db", schema_prefix="chorus_sweep_"
    ) as url:
        yield url


def test_sweep_removes_only_old_blobs_from_the_database(database_url: str, tmp_path: Path) -> None:
    with engine_with_tables(database_url) as engine:
        store = DatabaseBlobStore(engine)
        for blob in (OLD, NEW):
            store.put(digest_of(blob), blob)
        with Session(engine) as session:
            session.execute(
                update(PayloadBlob)
                .where(PayloadBlob.digest == digest_of(OLD))
                .values(last_used_at=datetime.now(UTC) - timedelta(days=8))
            )
            session.commit()
        env = {**database_env(database_url, tmp_path), "CHORUS_PAYLOAD_RETENTION_DAYS": "7"}

        result = invoke(["payloads", "sweep", "--json"], env)

        assert result.exit_code == 0, result.output
        swept = json.loads(result.stdout)
        assert (swept["store"], swept["blobs"], swept["bytes"]) == ("database", 1, 3000)
        assert store.get(digest_of(OLD)) is None and store.get(digest_of(NEW)) == NEW
        again = invoke(["payloads", "sweep", "--older-than-days", "0"], env)
        assert again.exit_code == 0 and "Removed 1 payload blob(s), 2000 bytes" in again.stdout


def test_sweep_of_the_filesystem_store(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    for blob in (OLD, NEW):
        store.put(digest_of(blob), blob)
    past = (datetime.now(UTC) - timedelta(days=31)).timestamp()
    os.utime(store.root / digest_of(OLD)[:2] / digest_of(OLD), (past, past))
    env = {
        **database_env(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path),
        "CHORUS_PAYLOAD_STORE": "filesystem",
        "CHORUS_PAYLOAD_STORE_DIR": str(store.root),
    }

    result = invoke(["payloads", "sweep", "--json"], env)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["blobs"] == 1
    assert store.get(digest_of(OLD)) is None and store.get(digest_of(NEW)) == NEW
