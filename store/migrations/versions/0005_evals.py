"""Evaluations (issue 14): the evaluations and eval_case_scores tables.

One row per comparison of chain variants on an eval set, and one per case
and variant with its score (store/evals.py); the unique (eval_id, variant,
case_id) is what keeps a retried scoring activity from storing a case twice.

Frozen: plain sqlalchemy types, never the models.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("eval_id", sa.String(200), nullable=False),
        sa.Column("eval_set", sa.String(200), nullable=False),
        sa.Column("variants", JSON, nullable=False),
        sa.Column("cases_total", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("max_cost_usd", sa.Float(), nullable=True),
        sa.Column("judge_alias", sa.String(200), nullable=True),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("stopped_reason", sa.String(500), nullable=True),
        sa.Column("report", JSON, nullable=True),
        sa.PrimaryKeyConstraint("eval_id"),
    )
    op.create_index("ix_evaluations_status", "evaluations", ["status"])
    op.create_index("ix_evaluations_started_at", "evaluations", ["started_at"])
    op.create_table(
        "eval_case_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("eval_id", sa.String(200), nullable=False),
        sa.Column("variant", sa.String(200), nullable=False),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("run_id", sa.String(400), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("score", JSON, nullable=False),
        sa.Column("scored_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("eval_id", "variant", "case_id", name="uq_eval_case_scores_case"),
    )
    op.create_index("ix_eval_case_scores_eval_id", "eval_case_scores", ["eval_id"])


def downgrade() -> None:
    op.drop_index("ix_eval_case_scores_eval_id", table_name="eval_case_scores")
    op.drop_table("eval_case_scores")
    op.drop_index("ix_evaluations_started_at", table_name="evaluations")
    op.drop_index("ix_evaluations_status", table_name="evaluations")
    op.drop_table("evaluations")
