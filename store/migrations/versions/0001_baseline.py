"""Baseline: the schema as it was when migrations began.

On an empty database it creates every table. A database made by an earlier
version (`create_all`, no `alembic_version` table) is adopted: the tables it
lacks are created, and the columns that version's tables lacked are added by
the steps that used to run at every start-up (`api_keys.scope`,
`runs.error_type`), so it ends up exactly as a new one.

Frozen: this file describes the tables as they were at this revision and
never imports the models; a later change to a model is a later revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)

TABLES = (
    "api_keys",
    "approval_audit",
    "chain_versions",
    "inbox_sessions",
    "knowledge_collections",
    "model_call_attempts",
    "model_replies",
    "rate_limit_aliases",
    "rate_limit_leases",
    "runs",
    "knowledge_documents",
    "knowledge_chunks",
)
"""Every table of this revision, in an order foreign keys allow."""

SQLITE_SEARCH_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS knowledge_chunks_fts USING fts5("
    "title, text, content='knowledge_chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS knowledge_chunks_fts_insert AFTER INSERT ON knowledge_chunks "
    "BEGIN INSERT INTO knowledge_chunks_fts(rowid, title, text) "
    "VALUES (new.id, new.title, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS knowledge_chunks_fts_delete AFTER DELETE ON knowledge_chunks "
    "BEGIN INSERT INTO knowledge_chunks_fts(knowledge_chunks_fts, rowid, title, text) "
    "VALUES ('delete', old.id, old.title, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS knowledge_chunks_fts_update "
    "AFTER UPDATE OF title, text ON knowledge_chunks "
    "BEGIN INSERT INTO knowledge_chunks_fts(knowledge_chunks_fts, rowid, title, text) "
    "VALUES ('delete', old.id, old.title, old.text); "
    "INSERT INTO knowledge_chunks_fts(rowid, title, text) VALUES (new.id, new.title, new.text); "
    "END",
)
"""The chunks' full-text index (store/knowledge/tables.py at this revision)."""

POSTGRES_SEARCH_DDL = (
    "ALTER TABLE knowledge_chunks ADD COLUMN IF NOT EXISTS search_vector tsvector "
    "GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', text), 'B')) STORED",
    "CREATE INDEX IF NOT EXISTS ix_knowledge_chunks_search_vector "
    "ON knowledge_chunks USING GIN (search_vector)",
)


def _api_keys() -> None:
    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("approval_roles", JSON, nullable=False),
        sa.Column("scope", sa.String(16), server_default="own", nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_api_keys_key_prefix", "api_keys", ["key_prefix"])
    op.create_index(
        "uq_api_keys_active_name",
        "api_keys",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def _approval_audit() -> None:
    op.create_table(
        "approval_audit",
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("approval_id", sa.String(255), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("comment", sa.String(), nullable=True),
        sa.Column("before_text", sa.String(), nullable=False),
        sa.Column("after_text", sa.String(), nullable=True),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("decided_at", WHEN, nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "run_id", "approval_id", "sequence", name="uq_approval_audit_run_approval_sequence"
        ),
    )
    op.create_index("ix_approval_audit_reviewer", "approval_audit", ["reviewer"])
    op.create_index("ix_approval_audit_run_id", "approval_audit", ["run_id"])


def _chain_versions() -> None:
    op.create_table(
        "chain_versions",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_chain_versions_name_version"),
    )
    op.create_index("ix_chain_versions_name", "chain_versions", ["name"])


def _inbox_sessions() -> None:
    op.create_table(
        "inbox_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_inbox_sessions_ended_at", "inbox_sessions", ["ended_at"])
    op.create_index("ix_inbox_sessions_expires_at", "inbox_sessions", ["expires_at"])
    op.create_index("ix_inbox_sessions_key_hash", "inbox_sessions", ["key_hash"])


def _knowledge_collections() -> None:
    op.create_table(
        "knowledge_collections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("embedding_alias", sa.String(100), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def _model_call_attempts() -> None:
    op.create_table(
        "model_call_attempts",
        sa.Column("request_id", sa.String(1000), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(1000), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("activity_id", sa.String(200), nullable=False),
        sa.Column("alias", sa.String(200), nullable=False),
        sa.Column("worst_case_usd", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("raw_reply", sa.JSON(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("request_id", "attempt"),
    )
    op.create_index("ix_model_call_attempts_started_at", "model_call_attempts", ["started_at"])


def _model_replies() -> None:
    op.create_table(
        "model_replies",
        sa.Column("request_id", sa.String(1000), nullable=False),
        sa.Column("reply", sa.JSON(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_model_replies_created_at", "model_replies", ["created_at"])


def _rate_limit_aliases() -> None:
    op.create_table(
        "rate_limit_aliases",
        sa.Column("alias", sa.String(200), nullable=False),
        sa.Column("blocked_until", sa.Float(), nullable=False),
        sa.Column("blocked_reason", sa.String(500), nullable=True),
        sa.Column("requests_remaining", sa.Integer(), nullable=True),
        sa.Column("requests_reset_at", sa.Float(), nullable=True),
        sa.Column("tokens_remaining", sa.Integer(), nullable=True),
        sa.Column("tokens_reset_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("alias"),
    )


def _rate_limit_leases() -> None:
    op.create_table(
        "rate_limit_leases",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("alias", sa.String(200), nullable=False),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("active_until", sa.Float(), nullable=True),
        sa.Column("ticket", sa.String(1000), nullable=True),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_rate_limit_leases_alias_granted", "rate_limit_leases", ["alias", "granted_at"]
    )
    op.create_index("ix_rate_limit_leases_ticket", "rate_limit_leases", ["ticket"])


def _runs() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("temporal_run_id", sa.String(255), nullable=True),
        sa.Column("chain", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("current_step", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("error_type", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("input_hash", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_runs_chain", "runs", ["chain"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_index("ix_runs_status", "runs", ["status"])


def _knowledge_documents() -> None:
    op.create_table(
        "knowledge_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("source", sa.String(2000), nullable=False),
        sa.Column("title", sa.String(500), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["collection"], ["knowledge_collections.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection", "name", name="uq_knowledge_documents_collection_name"),
    )
    op.create_index("ix_knowledge_documents_collection", "knowledge_documents", ["collection"])


def _knowledge_chunks() -> None:
    op.create_table(
        "knowledge_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("collection", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(), nullable=True),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("embedding", JSON, nullable=True),
        sa.ForeignKeyConstraint(["document_id"], ["knowledge_documents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "document_id", "position", name="uq_knowledge_chunks_document_position"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_knowledge_chunks_collection", "knowledge_chunks", ["collection"])
    op.create_index("ix_knowledge_chunks_document_id", "knowledge_chunks", ["document_id"])


CREATE: dict[str, Callable[[], None]] = {
    "api_keys": _api_keys,
    "approval_audit": _approval_audit,
    "chain_versions": _chain_versions,
    "inbox_sessions": _inbox_sessions,
    "knowledge_collections": _knowledge_collections,
    "model_call_attempts": _model_call_attempts,
    "model_replies": _model_replies,
    "rate_limit_aliases": _rate_limit_aliases,
    "rate_limit_leases": _rate_limit_leases,
    "runs": _runs,
    "knowledge_documents": _knowledge_documents,
    "knowledge_chunks": _knowledge_chunks,
}


def _columns(bind: sa.Connection, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(bind).get_columns(table)}


def _adopt(bind: sa.Connection, existing: set[str]) -> None:
    """The steps earlier versions ran at every start-up, for the columns
    their `create_all` could not add to a table that existed."""
    if "api_keys" in existing and "scope" not in _columns(bind, "api_keys"):
        # Existing keys get `own`, the narrow scope, except admin keys,
        # which see everything anyway.
        op.add_column(
            "api_keys", sa.Column("scope", sa.String(16), server_default="own", nullable=False)
        )
        op.execute("UPDATE api_keys SET scope = 'all' WHERE role = 'admin'")
    if "runs" in existing and "error_type" not in _columns(bind, "runs"):
        # Rows written before it have none, and say so when read (api.runs).
        op.add_column("runs", sa.Column("error_type", sa.String(64), nullable=True))


def upgrade() -> None:
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names()) & set(TABLES)
    _adopt(bind, existing)
    for table in TABLES:
        if table not in existing:
            CREATE[table]()
    ddl = {"sqlite": SQLITE_SEARCH_DDL, "postgresql": POSTGRES_SEARCH_DDL}[bind.dialect.name]
    for statement in ddl:
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS knowledge_chunks_fts")
    for table in reversed(TABLES):
        op.drop_table(table)
