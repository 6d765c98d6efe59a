"""jobs.scope and jobs.input_series: study-scoped jobs (one job per study and pipeline,
over every routed series of the study)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlite3

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The jobs already there are series-scoped: the server default gives them "series".
    op.add_column(
        "jobs",
        sa.Column("scope", sa.String(length=8), nullable=False, server_default="series"),
    )
    op.add_column("jobs", sa.Column("input_series", sa.JSON()))


def downgrade() -> None:
    # In place, never by rebuilding the table (Alembic's batch mode on SQLite): dropping the
    # old jobs table would cascade to every result, measurement and output of the log.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            "downgrading below 0003 needs SQLite 3.35 or newer (ALTER TABLE DROP COLUMN); "
            f"this Python has {sqlite3.sqlite_version}"
        )
    op.drop_column("jobs", "input_series")
    op.drop_column("jobs", "scope")
