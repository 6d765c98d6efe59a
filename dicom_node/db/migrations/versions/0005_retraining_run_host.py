"""retraining_runs.host: the machine a run's process runs on, so that a node judges by
its pid only the runs of its own host (nodes of several hosts may share a PostgreSQL
database, and a pid means nothing on another machine)

Runs recorded before this revision have no host (NULL): they are judged as before, by
their pid on whichever host looks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

import sqlite3

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("retraining_runs", sa.Column("host", sa.String(length=255)))


def downgrade() -> None:
    # In place, as 0004: ALTER TABLE DROP COLUMN, never a rebuild of the table.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            "downgrading below 0005 needs SQLite 3.35 or newer (ALTER TABLE DROP COLUMN); "
            f"this Python has {sqlite3.sqlite_version}"
        )
    op.drop_column("retraining_runs", "host")
