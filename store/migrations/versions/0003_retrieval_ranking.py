"""Retrieval ranking: indexes for the per-collection statistics' fingerprint.

Every search checks whether a collection changed since its statistics were
computed (store/knowledge/statistics.py): the highest chunk id and the
latest document update of the collection. These two indexes make both an
index lookup instead of a scan of the collection (40,000 chunks, 5,500
documents in bench/retrieval_scale.py).

Frozen: plain sqlalchemy types, never the models.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_knowledge_chunks_collection_id", "knowledge_chunks", ["collection", "id"])
    op.create_index(
        "ix_knowledge_documents_collection_updated_at",
        "knowledge_documents",
        ["collection", "updated_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_knowledge_documents_collection_updated_at", table_name="knowledge_documents")
    op.drop_index("ix_knowledge_chunks_collection_id", table_name="knowledge_chunks")
