"""The engine: URLs, SQLite tuning, table creation and session scopes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from sqlmodel import select

from core.settings import Settings
from store.crud import create_api_key
from store.engine import UnsupportedDatabaseError, make_engine, session_scope
from store.models import ApiKey
from store.schema import create_all

TABLES = {"chain_versions", "runs", "approval_audit", "api_keys"}


def test_postgresql_urls_use_psycopg3() -> None:
    for url in ("postgresql://u:p@db:5432/chorus", "postgres://u:p@db:5432/chorus"):
        engine = make_engine(url)
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        engine.dispose()


def test_unsupported_and_malformed_urls_name_the_problem() -> None:
    with pytest.raises(UnsupportedDatabaseError, match="unsupported database 'mysql'"):
        make_engine("mysql://u@h/db")
    with pytest.raises(UnsupportedDatabaseError, match="invalid database URL"):
        make_engine("not a url")


def test_sqlite_file_gets_its_directory_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "chorus.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 5000
        assert path.exists()
    finally:
        engine.dispose()


def test_sqlite_connections_may_cross_threads(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'chorus.db'}")
    create_all(engine)
    errors: list[BaseException] = []
    try:
        with engine.connect() as conn:

            def use() -> None:
                try:
                    conn.execute(text("SELECT 1"))
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=use)
            thread.start()
            thread.join()
        assert errors == []
    finally:
        engine.dispose()


def test_an_in_memory_sqlite_database_is_shared_by_its_sessions() -> None:
    engine = make_engine("sqlite://")
    try:
        create_all(engine)
        with session_scope(engine) as session:
            create_api_key(session, name="mem", role="service")
        with session_scope(engine) as session:
            assert session.exec(select(ApiKey.name)).all() == ["mem"]
    finally:
        engine.dispose()


def test_create_all_is_idempotent(engine: Engine) -> None:
    create_all(engine)
    create_all(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_session_scope_commits_or_rolls_back(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_api_key(session, name="kept", role="service")
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        create_api_key(session, name="dropped", role="service")
        raise RuntimeError("boom")
    with session_scope(engine) as session:
        names = session.exec(select(ApiKey.name)).all()
    assert names == ["kept"]


def test_settings_default_to_a_sqlite_file_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "CHORUS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(state_dir=tmp_path / "state", _env_file=None)  # type: ignore[call-arg]
    assert settings.database_url is None
    assert settings.effective_database_url == f"sqlite:///{tmp_path}/state/chorus.db"
    monkeypatch.setenv("DATABASE_URL", "postgresql://generic@db/chorus")
    assert Settings(_env_file=None).effective_database_url == "postgresql://generic@db/chorus"  # type: ignore[call-arg]
    monkeypatch.setenv("CHORUS_DATABASE_URL", "postgresql://chorus@db/chorus")
    assert Settings(_env_file=None).effective_database_url == "postgresql://chorus@db/chorus"  # type: ignore[call-arg]
