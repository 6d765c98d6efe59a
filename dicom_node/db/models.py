"""SQLAlchemy 2 models of the results database.

``docs/results-log.md`` documents every table and column for people who open the file
with ``sqlite3``; keep the two in step, and add an Alembic migration for every change.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class Base(DeclarativeBase):
    pass


class StudyState(enum.StrEnum):
    RECEIVING = "receiving"
    STABLE = "stable"


class StudyPurpose(enum.StrEnum):
    CLINICAL = "clinical"  # sent by the PACS or a modality: routed into jobs
    TRAINING = "training"  # retrieved for a retraining run: indexed, never routed


class RunState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RunDecision(enum.StrEnum):
    PROMOTED = "promoted"  # the candidate passed the gate and was activated
    PASSED = "passed"  # it passed the gate; auto_activate is off, a person activates it
    REJECTED = "rejected"  # it failed the gate: registered, inactive


class JobState(enum.StrEnum):
    WAITING = "waiting"  # runs after another pipeline's job on its series, not yet ended
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC: stored without zone (ISO text on SQLite), read back aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_date: Mapped[str | None] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RECEIVING)
    first_received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stable_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    times_reopened: Mapped[int] = mapped_column(Integer, default=0)
    # Server default only: an INSERT that leaves it out (the receiver's) makes a clinical
    # study, and works on a database one revision older during a rolling upgrade.
    purpose: Mapped[str] = mapped_column(String(16), server_default=StudyPurpose.CLINICAL.value)

    __table_args__ = (Index("ix_studies_state_last", "state", "last_received_at"),)


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    body_part_examined: Mapped[str | None] = mapped_column(String(64))
    series_description: Mapped[str | None] = mapped_column(String(128))
    sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    #: Routing by image (``dicom_node/ingest/route_by_image.py``): ``TriageState`` while
    #: and after a film is classified, and the body part routing used; None by header.
    triage_state: Mapped[str | None] = mapped_column(String(16))
    routing_body_part: Mapped[str | None] = mapped_column(String(64))


class TriageState(enum.StrEnum):
    PENDING = "pending"  # its triage job is queued or running
    DONE = "done"  # routed by what the image shows (or the header, where they agree)
    NOT_XRAY = "not_xray"  # not a radiograph: routed to nothing, recorded
    FAILED = "failed"  # the triage job failed: routed by the header alone


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    calling_ae_title: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    series_revision: Mapped[int] = mapped_column(Integer)
    route: Mapped[str | None] = mapped_column(String(64))
    # "series", or "study": then series_id is the study's first routed series (the job's
    # anchor), input_series every routed series id and series_revision their instances.
    scope: Mapped[str] = mapped_column(String(8), default="series", server_default="series")
    input_series: Mapped[list[int] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint(
            "series_id", "pipeline", "model_version", "series_revision", name="uq_jobs_key"
        ),
        Index("ix_jobs_claim", "state", "run_after"),
    )


class Result(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    pipeline: Mapped[str] = mapped_column(String(64), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    summary: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)


class Measurement(Base):
    __tablename__ = "measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32))
    concept_code: Mapped[str | None] = mapped_column(String(128))
    tracking_uid: Mapped[str | None] = mapped_column(String(64))
    slice_index: Mapped[int | None] = mapped_column(Integer)
    frame_number: Mapped[int | None] = mapped_column(Integer)


class Output(Base):
    __tablename__ = "outputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(255))


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    output_id: Mapped[int] = mapped_column(ForeignKey("outputs.id", ondelete="CASCADE"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("output_id", "destination", name="uq_deliveries_pair"),)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    metrics: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)

    __table_args__ = (UniqueConstraint("pipeline", "version", name="uq_model_versions_key"),)


class RetrainingRun(Base):
    """One retraining run: where its data came from, the candidate it made, the gate's
    decision and why (``docs/results-log.md``)."""

    __tablename__ = "retraining_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # archive | pacs | folder
    trigger: Mapped[str] = mapped_column(String(16))  # manual | schedule
    state: Mapped[str] = mapped_column(String(16), default=RunState.RUNNING)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pid: Mapped[int | None] = mapped_column(Integer)
    # The machine of ``pid`` (socket.gethostname()); NULL for runs recorded before 0005.
    host: Mapped[str | None] = mapped_column(String(255))
    selection: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    studies: Mapped[int | None] = mapped_column(Integer)
    instances: Mapped[int | None] = mapped_column(Integer)
    active_version: Mapped[str | None] = mapped_column(String(64))
    active_metrics: Mapped[dict[str, object] | None] = mapped_column(JSON)
    candidate_version: Mapped[str | None] = mapped_column(String(64))
    candidate_metrics: Mapped[dict[str, object] | None] = mapped_column(JSON)
    decision: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_retraining_runs_pipeline_state", "pipeline", "state"),)
