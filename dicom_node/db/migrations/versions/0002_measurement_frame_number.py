"""measurements.frame_number: the frame of a multi-frame source instance (e.g. one slice
of an Enhanced CT image) a measurement belongs to

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: the rows already there keep their values and get NULL (they
    # came from single-frame sources).
    op.add_column("measurements", sa.Column("frame_number", sa.Integer()))


def downgrade() -> None:
    # SQLite drops a column by rebuilding the table (batch mode); PostgreSQL in place.
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("frame_number")
