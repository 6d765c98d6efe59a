"""series.triage_state and series.routing_body_part: routing by image (xray_triage)

A film whose Body Part Examined is missing, empty or unknown (or any film, where a route
checks headers) is classified before it is routed: ``triage_state`` says where that
stands (pending, done, not_xray, failed; NULL for a series routed by its header alone)
and ``routing_body_part`` is the body part routing used once it is done.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

import sqlite3

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("series", sa.Column("triage_state", sa.String(length=16)))
    op.add_column("series", sa.Column("routing_body_part", sa.String(length=64)))


def downgrade() -> None:
    # In place (see 0003): rebuilding the series table would cascade to the whole log.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            "downgrading below 0006 needs SQLite 3.35 or newer (ALTER TABLE DROP COLUMN); "
            f"this Python has {sqlite3.sqlite_version}"
        )
    op.drop_column("series", "routing_body_part")
    op.drop_column("series", "triage_state")
