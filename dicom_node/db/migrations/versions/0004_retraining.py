"""studies.purpose and retraining_runs: studies retrieved for training make no jobs, and
every retraining run is recorded with its data, its candidate and the gate's decision

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlite3

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The studies already there came from the PACS's sends: the default makes them clinical.
    op.add_column(
        "studies",
        sa.Column("purpose", sa.String(length=16), nullable=False, server_default="clinical"),
    )
    op.create_table(
        "retraining_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("pipeline", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime()),
        sa.Column("pid", sa.Integer()),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("studies", sa.Integer()),
        sa.Column("instances", sa.Integer()),
        sa.Column("active_version", sa.String(length=64)),
        sa.Column("active_metrics", sa.JSON()),
        sa.Column("candidate_version", sa.String(length=64)),
        sa.Column("candidate_metrics", sa.JSON()),
        sa.Column("decision", sa.String(length=16)),
        sa.Column("reason", sa.Text()),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_retraining_runs_pipeline_state", "retraining_runs", ["pipeline", "state"])


def downgrade() -> None:
    # In place, never by rebuilding the studies table (it would cascade to the whole log).
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            "downgrading below 0004 needs SQLite 3.35 or newer (ALTER TABLE DROP COLUMN); "
            f"this Python has {sqlite3.sqlite_version}"
        )
    op.drop_index("ix_retraining_runs_pipeline_state", table_name="retraining_runs")
    op.drop_table("retraining_runs")
    op.drop_column("studies", "purpose")
