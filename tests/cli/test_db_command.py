"""`chorus db upgrade | current | history` on a SQLite file, and the CLI's
database commands refusing a database that is behind (the migrations
themselves are tested on both backends in tests/store/test_migrations.py)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from store.engine import make_engine
from store.schema import head_revision
from tests.cli_runner import database_env, invoke
from tests.store.test_migrations import make_previous_release


def test_upgrade_current_and_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chorus.db'}"
    env = database_env(url, tmp_path / "state")
    head = head_revision()

    result = invoke(["db", "current", "--check"], env)
    assert result.exit_code == 1, result.output
    assert "revision none (empty" in result.output
    assert "run `chorus db upgrade`" in result.output

    result = invoke(["db", "upgrade"], env)
    assert result.exit_code == 0, result.output
    assert f"from an empty database to revision {head}." in result.output

    result = invoke(["db", "upgrade"], env)
    assert result.exit_code == 0, result.output
    assert f"is already at revision {head}." in result.output

    result = invoke(["db", "current", "--check"], env)
    assert result.exit_code == 0, result.output
    assert f"revision {head} (current)" in result.output

    result = invoke(["db", "history"], env)
    assert result.exit_code == 0, result.output
    assert "<base> -> 0001: Baseline" in result.output  # every revision, oldest last
    assert f"-> {head} (head): " in result.output


def test_a_database_from_before_migrations_is_refused_then_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chorus.db'}"
    env = database_env(url, tmp_path / "state")
    engine = make_engine(url)
    try:
        make_previous_release(engine)
    finally:
        engine.dispose()

    result = invoke(["keys", "list"], env)
    assert result.exit_code == 1
    assert "before schema migrations: run `chorus db upgrade`" in " ".join(result.output.split())

    result = invoke(["db", "upgrade"], env)
    assert result.exit_code == 0, result.output
    assert "from a database from before migrations to revision" in result.output

    result = invoke(["keys", "list"], env)
    assert result.exit_code == 0, result.output
    assert "root" in result.output and "alice" in result.output
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            scopes = dict(conn.execute(text("SELECT name, scope FROM api_keys")).all())
    finally:
        engine.dispose()
    assert scopes == {"root": "all", "alice": "own"}
