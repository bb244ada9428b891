"""`chorus keys` and `chorus chains`: the CLI over the application database,
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from store.crud import get_chain_version, verify_api_key
from store.engine import make_engine, session_scope
from tests.cli_runner import database_env, invoke
from tests.store.conftest import make_spec


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return database_env(database_url, tmp_path / "state")


def test_keys_create_prints_the_key_once_and_it_works(
    cli_env: dict[str, str], database_url: str
) -> None:
    created = invoke(
        [
            "keys",
            "create",
            "--name",
            "alice",
            "--role",
            "reviewer",
            "--approval-role",
            "supervisor",
        ],
        cli_env,
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("chorus_") and "\n" not in key
    assert "will not be shown again" in created.stderr

    listed = invoke(["keys", "list", "--json"], cli_env)
    assert listed.exit_code == 0, listed.output
    assert key not in listed.output
    [entry] = json.loads(listed.stdout)
    assert (entry["name"], entry["role"], entry["approval_roles"]) == (
        "alice",
        "reviewer",
        ["supervisor"],
    )
    assert "key_hash" not in entry

    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            found = verify_api_key(session, presented=key)
            assert found is not None and found.name == "alice"
        with engine.connect() as conn:
            assert key not in str(conn.execute(text("SELECT * FROM api_keys")).all())

        revoked = invoke(["keys", "revoke", "alice"], cli_env)
        assert revoked.exit_code == 0, revoked.output
        with session_scope(engine) as session:
            assert verify_api_key(session, presented=key) is None
    finally:
        engine.dispose()

    again = invoke(["keys", "revoke", "alice"], cli_env)
    assert again.exit_code == 1 and "no active API key named 'alice'" in again.stderr


def test_keys_create_refuses_bad_roles_and_duplicate_names(cli_env: dict[str, str]) -> None:
    bad = invoke(["keys", "create", "--name", "x", "--role", "root"], cli_env)
    assert bad.exit_code == 1 and "unknown role 'root'" in bad.stderr
    assert bad.stdout == ""
    assert invoke(["keys", "create", "--name", "x", "--role", "admin"], cli_env).exit_code == 0
    dup = invoke(["keys", "create", "--name", "x", "--role", "service"], cli_env)
    assert dup.exit_code == 1 and "'x' already exists" in dup.stderr


def test_keys_create_with_a_scope_and_never_the_bootstrap_name(cli_env: dict[str, str]) -> None:
    wide = invoke(
        ["keys", "create", "--name", "ops", "--role", "service", "--scope", "all"], cli_env
    )
    assert wide.exit_code == 0, wide.output
    assert "scope all: sees every run" in wide.stderr
    narrow = invoke(["keys", "create", "--name", "backend", "--role", "service"], cli_env)
    assert "scope own: sees the runs it starts" in narrow.stderr
    bad = invoke(["keys", "create", "--name", "x", "--role", "service", "--scope", "some"], cli_env)
    assert bad.exit_code == 1 and "unknown scope 'some'" in bad.stderr
    reserved = invoke(
        ["keys", "create", "--name", "Bootstrap-Admin", "--role", "reviewer"], cli_env
    )
    assert reserved.exit_code == 1 and "'Bootstrap-Admin' is reserved" in reserved.stderr
    listed = json.loads(invoke(["keys", "list", "--json"], cli_env).stdout)
    assert {(k["name"], k["scope"]) for k in listed} == {("ops", "all"), ("backend", "own")}


def test_chains_publish_validates_numbers_and_skips_unchanged(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "greet.yaml"
    path.write_text(yaml.safe_dump(make_spec().model_dump(mode="json")))
    first = invoke(["chains", "publish", str(path)], cli_env)
    assert first.exit_code == 0, first.output
    assert "published chain greet v1" in first.stdout
    same = invoke(["chains", "publish", str(path)], cli_env)
    assert "unchanged: v1" in same.stdout

    path.write_text(yaml.safe_dump(make_spec(prompt="Hi {{ input.name }}").model_dump(mode="json")))
    assert "greet v2" in invoke(["chains", "publish", str(path)], cli_env).stdout

    bad = make_spec().model_dump(mode="json")
    bad["steps"][0]["model"] = "no_such_model"
    path.write_text(yaml.safe_dump(bad))
    refused = invoke(["chains", "publish", str(path)], cli_env)
    assert refused.exit_code == 1
    assert "unknown model alias 'no_such_model'" in refused.output

    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            latest = get_chain_version(session, name="greet")
        assert latest is not None and latest.version == 2
    finally:
        engine.dispose()


def test_chains_sync_and_list(cli_env: dict[str, str]) -> None:
    empty = invoke(["chains", "list", "--json"], cli_env)
    assert empty.exit_code == 0 and json.loads(empty.stdout) == []
    synced = invoke(["chains", "sync"], cli_env)
    assert synced.exit_code == 0, synced.output
    by_name = invoke(["chains", "publish", "classify_then_answer"], cli_env)
    assert "unchanged: v1" in by_name.stdout
    listed = json.loads(invoke(["chains", "list", "--json"], cli_env).stdout)
    names = {item["name"] for item in listed}
    assert {"classify_then_answer", "cascade_answer", "ask_two_judge"} <= names
    assert all(item["version"] == 1 for item in listed)


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "CHORUS_DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/none",
        "CHORUS_STATE_DIR": str(tmp_path),
    }
    result = invoke(["keys", "list"], env)
    assert result.exit_code == 1
    assert "database error on postgresql://nobody:***@127.0.0.1:1/none" in result.stderr
    assert "secret" not in result.output
