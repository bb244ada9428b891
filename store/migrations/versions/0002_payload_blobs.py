"""Large payloads by reference: the payload_blobs table.

Payloads over CHORUS_PAYLOAD_OFFLOAD_BYTES leave Temporal's history and are
stored here under the SHA-256 of their bytes (core/payload_refs.py,
store/payload_blobs.py).

Frozen: plain sqlalchemy types, never the models.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "payload_blobs",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("last_used_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_payload_blobs_last_used_at", "payload_blobs", ["last_used_at"])


def downgrade() -> None:
    op.drop_index("ix_payload_blobs_last_used_at", table_name="payload_blobs")
    op.drop_table("payload_blobs")
