"""initial schema: studies, series, instances, jobs, results, measurements, outputs,
deliveries, model versions

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from dicom_node.db.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("study_date", sa.String(8)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("first_received_at", UTCDateTime(), nullable=False),
        sa.Column("last_received_at", UTCDateTime(), nullable=False),
        sa.Column("stable_at", UTCDateTime()),
        sa.Column("times_reopened", sa.Integer(), nullable=False),
    )
    op.create_index("ix_studies_state_last", "studies", ["state", "last_received_at"])
    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "study_id",
            sa.Integer(),
            sa.ForeignKey("studies.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("series_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("modality", sa.String(16)),
        sa.Column("body_part_examined", sa.String(64)),
        sa.Column("series_description", sa.String(128)),
        sa.Column("sop_class_uid", sa.String(64)),
    )
    op.create_index("ix_series_study_id", "series", ["study_id"])
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "series_id",
            sa.Integer(),
            sa.ForeignKey("series.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("instance_number", sa.Integer()),
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("calling_ae_title", sa.String(16)),
        sa.Column("received_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_instances_series_id", "instances", ["series_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "series_id",
            sa.Integer(),
            sa.ForeignKey("series.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("series_revision", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.UniqueConstraint(
            "series_id", "pipeline", "model_version", "series_revision", name="uq_jobs_key"
        ),
    )
    op.create_index("ix_jobs_series_id", "jobs", ["series_id"])
    op.create_index("ix_jobs_claim", "jobs", ["state", "run_after"])
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
    )
    op.create_index("ix_results_job_id", "results", ["job_id"])
    op.create_index("ix_results_pipeline", "results", ["pipeline"])
    op.create_index("ix_results_study_instance_uid", "results", ["study_instance_uid"])
    op.create_index("ix_results_created_at", "results", ["created_at"])
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "result_id",
            sa.Integer(),
            sa.ForeignKey("results.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("concept_code", sa.String(128)),
        sa.Column("tracking_uid", sa.String(64)),
        sa.Column("slice_index", sa.Integer()),
    )
    op.create_index("ix_measurements_result_id", "measurements", ["result_id"])
    op.create_table(
        "outputs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "result_id",
            sa.Integer(),
            sa.ForeignKey("results.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
    )
    op.create_index("ix_outputs_result_id", "outputs", ["result_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "output_id",
            sa.Integer(),
            sa.ForeignKey("outputs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.Column("delivered_at", UTCDateTime()),
        sa.UniqueConstraint("output_id", "destination", name="uq_deliveries_pair"),
    )
    op.create_index("ix_deliveries_output_id", "deliveries", ["output_id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.UniqueConstraint("pipeline", "version", name="uq_model_versions_key"),
    )


def downgrade() -> None:
    for table in (
        "model_versions",
        "deliveries",
        "outputs",
        "measurements",
        "results",
        "jobs",
        "instances",
        "series",
        "studies",
    ):
        op.drop_table(table)
