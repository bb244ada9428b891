"""Schema migrations (store/migrations, `store.schema`) on a SQLite file and a
PostgreSQL schema: an empty database is upgraded to the head; a database
made by the previous release (before migrations) is adopted with all its
rows; the migrated schema is the models' (Alembic's autogenerate finds
nothing to change); a later revision upgrades a database with data; and the
API and the worker refuse a database that is behind, naming `chorus db
upgrade`.

"The previous release" is frozen here as it was at commit de32797 (before
`api_keys.scope`, `runs.error_type`, the reply journal's attempts, the rate
limiter's tables and the inbox sessions), so later model changes cannot
quietly change what these tests upgrade.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session, SQLModel

from core.settings import Settings
from store import schema
from store.crud import list_api_keys
from store.engine import make_engine
from store.knowledge.search import search
from store.knowledge.tables import ensure_search_index
from store.reply_journal import get_reply
from store.schema import SchemaNotCurrent, SchemaState, check_schema, schema_status, upgrade

ROOT = Path(__file__).resolve().parents[2]
HEAD = "0005"
WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")

NEXT_REVISION = '''"""Test only: a revision after the head, over tables that hold rows.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A type change rebuilds the table on SQLite (batch mode): the documents
    # that point at it must survive the copy.
    with op.batch_alter_table("knowledge_collections") as batch:
        batch.alter_column("embedding_alias", type_=sa.String(200), existing_nullable=True)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("note", sa.String(50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("note")
'''


# -- the previous release ---------------------------------------------------------------


def previous_release() -> sa.MetaData:
    """The tables of the release before migrations (commit de32797), frozen."""
    md = sa.MetaData()
    sa.Table(
        "api_keys",
        md,
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("approval_roles", JSON, nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("revoked_at", WHEN),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Index(
            "uq_api_keys_active_name",
            "name",
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        ),
    )
    sa.Table(
        "approval_audit",
        md,
        sa.Column("run_id", sa.String(255), nullable=False, index=True),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("approval_id", sa.String(255), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False, index=True),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("comment", sa.String),
        sa.Column("before_text", sa.String, nullable=False),
        sa.Column("after_text", sa.String),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("decided_at", WHEN, nullable=False),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.UniqueConstraint(
            "run_id", "approval_id", "sequence", name="uq_approval_audit_run_approval_sequence"
        ),
    )
    sa.Table(
        "chain_versions",
        md,
        sa.Column("name", sa.String(100), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("description", sa.String),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_chain_versions_name_version"),
    )
    sa.Table(
        "knowledge_collections",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("embedding_alias", sa.String(100)),
        sa.Column("created_at", WHEN, nullable=False),
    )
    sa.Table(
        "model_replies",
        md,
        sa.Column("request_id", sa.String(1000), primary_key=True),
        sa.Column("reply", sa.JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False, index=True),
    )
    sa.Table(
        "runs",
        md,
        sa.Column("run_id", sa.String(255), primary_key=True),
        sa.Column("temporal_run_id", sa.String(255)),
        sa.Column("chain", sa.String(100), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("started_at", WHEN, nullable=False, index=True),
        sa.Column("finished_at", WHEN),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("current_step", sa.String),
        sa.Column("error", sa.String),
        sa.Column("created_by", sa.String(200)),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("input_hash", sa.String(64)),
    )
    sa.Table(
        "knowledge_documents",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "collection",
            sa.String(100),
            sa.ForeignKey("knowledge_collections.name", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("source", sa.String(2000), nullable=False),
        sa.Column("title", sa.String(500)),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("chunk_count", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.UniqueConstraint("collection", "name", name="uq_knowledge_documents_collection_name"),
    )
    sa.Table(
        "knowledge_chunks",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "document_id",
            sa.Integer,
            sa.ForeignKey("knowledge_documents.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("collection", sa.String(100), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("title", sa.String),
        sa.Column("text", sa.String, nullable=False),
        sa.Column("embedding", JSON),
        sa.UniqueConstraint(
            "document_id", "position", name="uq_knowledge_chunks_document_position"
        ),
        sqlite_autoincrement=True,
    )
    return md


def _at(engine: Engine, *args: int) -> datetime:
    """A timestamp as the previous release stored it (naive UTC on SQLite)."""
    value = datetime(*args, tzinfo=UTC)  # type: ignore[misc]
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


def rows_of_every_table(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """One or more rows in every table of the previous release."""
    t1, t2 = _at(engine, 2025, 1, 2, 3, 4, 5), _at(engine, 2025, 1, 2, 4, 0, 0)
    return {
        "api_keys": [
            {
                "id": 1,
                "name": "root",
                "role": "admin",
                "approval_roles": [],
                "key_prefix": "chorus_root",
                "created_at": t1,
                "revoked_at": None,
                "key_hash": "a" * 64,
            },
            {
                "id": 2,
                "name": "alice",
                "role": "reviewer",
                "approval_roles": ["supervisor"],
                "key_prefix": "chorus_alice",
                "created_at": t1,
                "revoked_at": t2,
                "key_hash": "b" * 64,
            },
        ],
        "chain_versions": [
            {
                "id": 1,
                "name": "greet",
                "version": 1,
                "description": "hello",
                "created_by": "ops",
                "spec": {"name": "greet", "steps": [{"name": "hi", "kind": "model"}]},
                "spec_hash": "c" * 64,
                "created_at": t1,
            },
        ],
        "runs": [
            {
                "run_id": "run-ok",
                "temporal_run_id": "t-1",
                "chain": "greet",
                "version": 1,
                "status": "completed",
                "started_at": t1,
                "finished_at": t2,
                "cost_usd": 0.0125,
                "input_tokens": 120,
                "output_tokens": 45,
                "current_step": None,
                "error": None,
                "created_by": "backend",
                "revision": 4,
                "input_hash": "d" * 64,
            },
            {
                "run_id": "run-failed",
                "temporal_run_id": "t-2",
                "chain": "greet",
                "version": 1,
                "status": "failed",
                "started_at": t1,
                "finished_at": t2,
                "cost_usd": 0.5,
                "input_tokens": 1,
                "output_tokens": 0,
                "current_step": "hi",
                "error": "boom ünïcode",
                "created_by": None,
                "revision": 2,
                "input_hash": None,
            },
        ],
        "approval_audit": [
            {
                "id": 1,
                "run_id": "run-ok",
                "step": "review",
                "approval_id": "review-1",
                "sequence": 0,
                "reviewer": "alice",
                "decision": "edit",
                "comment": "softer",
                "before_text": "NO.",
                "after_text": "Unfortunately not.",
                "payload_hash": "e" * 64,
                "decided_at": t2,
            },
        ],
        "knowledge_collections": [
            {"id": 1, "name": "help", "embedding_alias": "embed", "created_at": t1},
        ],
        "knowledge_documents": [
            {
                "id": 1,
                "collection": "help",
                "name": "refunds.md",
                "source": "/kb/refunds.md",
                "title": "Refunds",
                "content_hash": "f" * 64,
                "chunk_count": 2,
                "created_at": t1,
                "updated_at": t2,
            },
        ],
        "knowledge_chunks": [
            {
                "id": 1,
                "document_id": 1,
                "collection": "help",
                "position": 0,
                "title": "Refunds > How long",
                "text": "A refund takes five business days.",
                "embedding": [0.6, 0.8],
            },
            {
                "id": 2,
                "document_id": 1,
                "collection": "help",
                "position": 1,
                "title": None,
                "text": "Exchanges are free within thirty days.",
                "embedding": None,
            },
        ],
        "model_replies": [
            {"request_id": "wf/run/1", "reply": {"choices": [{"text": "hi"}]}, "created_at": t1},
        ],
    }


def make_previous_release(engine: Engine) -> tuple[sa.MetaData, dict[str, list[dict[str, Any]]]]:
    """A database as the previous release left it (its `create_all`, the
    full-text index its tables' after-create hook made, no alembic_version),
    with rows in every table."""
    old = previous_release()
    rows = rows_of_every_table(engine)
    with engine.begin() as conn:
        old.create_all(conn)
        ensure_search_index(conn)
        for table in old.sorted_tables:
            conn.execute(table.insert(), rows[table.name])
    return old, rows


def snapshot(engine: Engine, old: sa.MetaData) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the previous release's tables, read through its columns."""
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            ]
            for table in old.sorted_tables
        }


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's empty database (no tables: the tests make them)."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def next_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The shipped migrations plus a revision 0006 after the head: this
    version of Chorus now needs 0006, so a database at 0005 is one behind."""
    migrations = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "0006_test_next.py").write_text(NEXT_REVISION)
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", migrations)
    return "0006"


def settings_for(database_url: str, tmp_path: Path) -> Settings:
    """An API or worker's settings on `database_url`; Temporal is never reached."""
    return Settings(
        temporal_address="127.0.0.1:1",
        database_url=database_url,
        state_dir=tmp_path / "state",
        models_file=ROOT / "chains" / "models.yaml",
        chains_dir=ROOT / "chains",
        admin_key="test-bootstrap-admin-key-0123456789",
        log_format="json",
        log_level="critical",
        _env_file=None,  # type: ignore[call-arg]
    )


# -- tests ------------------------------------------------------------------------------


def test_an_empty_database_is_upgraded_to_the_head(engine: Engine) -> None:
    assert schema.head_revision() == HEAD
    before = schema_status(engine)
    assert (before.state, before.current) == (SchemaState.EMPTY, None)
    assert "chorus db upgrade" in before.message

    was, now = upgrade(engine)
    assert (was.state, now.state, now.current) == (SchemaState.EMPTY, SchemaState.CURRENT, HEAD)
    tables = set(sa.inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD

    again = upgrade(engine)  # idempotent
    assert [s.current for s in again] == [HEAD, HEAD]
    assert check_schema(engine).state is SchemaState.CURRENT


def test_the_migrated_schema_is_the_models_schema(engine: Engine) -> None:
    """Alembic's autogenerate compares the migrated database with the models
    and finds nothing to change: a model changed without a revision fails."""
    upgrade(engine)
    with engine.connect() as conn:
        assert schema.schema_differences(conn) == []
    # The comparison does see a difference (it is not filtering everything out).
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_runs_status"))
    with engine.connect() as conn:
        differences = schema.schema_differences(conn)
    assert [(d[0], d[1].name) for d in differences] == [("add_index", "ix_runs_status")]


def test_a_database_of_the_previous_release_is_upgraded_losing_nothing(engine: Engine) -> None:
    old, _ = make_previous_release(engine)
    before = snapshot(engine, old)
    assert all(before.values()), "every table holds rows"
    status = schema_status(engine)
    assert status.state is SchemaState.UNVERSIONED
    assert "before schema migrations" in status.message
    assert "chorus db upgrade" in status.message

    was, now = upgrade(engine)

    assert (was.state, now.state, now.current) == (
        SchemaState.UNVERSIONED,
        SchemaState.CURRENT,
        HEAD,
    )
    assert snapshot(engine, old) == before, "every row of every table, unchanged"
    with engine.connect() as conn:
        assert schema.schema_differences(conn) == []
    with Session(engine) as session:
        # The columns the release lacked: admins see every run, others their own.
        assert {k.name: k.scope for k in list_api_keys(session)} == {
            "root": "all",
            "alice": "own",
        }
        error_types = session.execute(text("SELECT run_id, error_type FROM runs")).all()
        assert sorted(tuple(r) for r in error_types) == [("run-failed", None), ("run-ok", None)]
        # The full-text index still finds the old chunks; the journal its reply.
        found = search(session, collection="help", query="how long does a refund take", top_k=2)
        assert [p.text for p in found][:1] == ["A refund takes five business days."]
        assert get_reply(session, request_id="wf/run/1") == {"choices": [{"text": "hi"}]}
        # The tables the release did not have are there, empty.
        for table in ("inbox_sessions", "model_call_attempts", "rate_limit_leases"):
            assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_a_later_revision_upgrades_a_database_that_holds_rows(
    engine: Engine, next_revision: str
) -> None:
    old, _ = make_previous_release(engine)
    upgrade(engine, HEAD)
    rows = snapshot(engine, old)
    status = schema_status(engine)
    assert (status.state, status.current, status.head) == (SchemaState.BEHIND, HEAD, "0006")
    assert status.message == (
        f"the database at {status.where} is at schema revision 0005, behind the revision this "
        "version of Chorus needs (0006): run `chorus db upgrade`"
    )

    was, now = upgrade(engine)

    assert (was.current, now.state, now.current) == (HEAD, SchemaState.CURRENT, next_revision)
    # SQLite rebuilt knowledge_collections: the documents and chunks that
    # point at it (ON DELETE CASCADE) are all still there.
    assert snapshot(engine, old) == rows
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("knowledge_collections")}
    assert columns["embedding_alias"]["type"].length == 200
    assert "note" in {c["name"] for c in sa.inspect(engine).get_columns("runs")}


def test_an_empty_database_is_created_once_by_processes_starting_together(
    engine: Engine,
) -> None:
    """The API and a worker meeting a new database at once: each creates it
    under the upgrade's lock, and the second finds the work done."""
    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(lambda _: check_schema(engine), range(3)))
    assert {(s.state, s.current) for s in statuses} == {(SchemaState.CURRENT, HEAD)}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_the_start_up_check_refuses_a_database_made_before_migrations(engine: Engine) -> None:
    make_previous_release(engine)
    with pytest.raises(SchemaNotCurrent, match="run `chorus db upgrade`") as refused:
        check_schema(engine)
    assert refused.value.status.state is SchemaState.UNVERSIONED
    with engine.connect() as conn:
        assert "scope" not in {c["name"] for c in sa.inspect(conn).get_columns("api_keys")}


def test_a_database_at_a_revision_this_version_does_not_know_is_refused(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaNotCurrent, match="does not know") as refused:
        check_schema(engine)
    assert refused.value.status.state is SchemaState.UNKNOWN
    with pytest.raises(SchemaNotCurrent, match="does not know"):
        upgrade(engine)


@pytest.mark.parametrize("behind", ["one revision", "previous release"])
def test_the_api_refuses_to_start_on_a_database_that_is_behind(
    behind: str,
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    from api.server import ApiServer, ApiStartError

    if behind == "one revision":
        upgrade(engine)  # at 0005, the head of the shipped migrations
        request.getfixturevalue("next_revision")  # this version now needs 0006
        expected = "is at schema revision 0005, behind the revision"
    else:
        make_previous_release(engine)
        expected = "was made by a version of Chorus from before schema migrations"

    server = ApiServer(settings_for(database_url, tmp_path))
    with pytest.raises(ApiStartError) as refused:
        server.start()
    message = str(refused.value)
    assert expected in message and "run `chorus db upgrade`" in message, message
    assert schema_status(engine).state is not SchemaState.CURRENT, "nothing was changed"


def test_the_worker_refuses_to_start_on_a_database_one_revision_behind(
    engine: Engine, database_url: str, tmp_path: Path, next_revision: str
) -> None:
    from worker.assembly import ActivityHost

    upgrade(engine, HEAD)
    with pytest.raises(SchemaNotCurrent, match="run `chorus db upgrade`") as refused:
        ActivityHost.from_settings(settings_for(database_url, tmp_path))
    assert (refused.value.status.current, refused.value.status.head) == (HEAD, next_revision)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_worker_process_exits_naming_the_command(
    engine: Engine, database_url: str, tmp_path: Path, temporal_env: Any
) -> None:
    """`python -m worker` on a database from before migrations: exit 1 and a
    one-line message, not a traceback."""
    make_previous_release(engine)
    address = temporal_env.client.service_client.config.target_host
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CHORUS_", "DATABASE_"))},
        "CHORUS_TEMPORAL_ADDRESS": address,
        "CHORUS_DATABASE_URL": database_url,
        "CHORUS_STATE_DIR": str(tmp_path / "state"),
        "CHORUS_TASK_QUEUE": f"migrations-{tmp_path.name}",
        "CHORUS_MODELS_FILE": str(ROOT / "chains" / "models.yaml"),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    stderr = err.decode()
    assert proc.returncode == 1, stderr
    assert "run `chorus db upgrade`" in stderr
    assert "Traceback" not in stderr
