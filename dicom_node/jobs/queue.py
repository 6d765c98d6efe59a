"""The job queue in the results database.

Claims are atomic: on SQLite inside ``BEGIN IMMEDIATE``, on PostgreSQL with
``SELECT ... FOR UPDATE SKIP LOCKED``. A claimed job carries a lease; a worker renews it
while it runs, and a job whose lease ran out (its worker died) can be claimed again.
Failures raise ``Retry`` for another attempt after a backoff; after ``max_attempts`` the
job is ``failed`` with the error text, and ``retry`` puts it back in the queue.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from dicom_node.clock import utcnow
from dicom_node.db.engine import write_transaction
from dicom_node.db.models import Job, JobState
from dicom_node.errors import NodeError
from dicom_node.settings import QueueSettings


class LeaseLost(NodeError):
    """The worker no longer holds the job (its lease ran out and another claimed it)."""


class JobNotFound(NodeError):
    pass


@dataclass(frozen=True)
class JobKey:
    """What makes a job: a series (or, for a study-scoped pipeline, the anchor series of
    the study's routed ``input_series``), the pipeline, its model version and how many
    instances its input had (``series_revision``)."""

    series_id: int
    pipeline: str
    model_version: str
    series_revision: int
    scope: str = "series"
    input_series: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.scope not in ("series", "study"):
            raise ValueError(f"job scope {self.scope!r} is not 'series' or 'study'")
        if self.scope == "study" and self.series_id not in self.input_series:
            raise ValueError("a study-scoped job's anchor series is one of its input series")


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    series_id: int
    pipeline: str
    model_version: str
    attempt: int
    lease_owner: str
    lease_expires_at: datetime
    route: str | None = None
    scope: str = "series"
    #: A study-scoped job's series ids (the anchor among them); () for a series job.
    input_series: tuple[int, ...] = ()


class JobQueue:
    def __init__(self, engine: Engine, settings: QueueSettings) -> None:
        self.engine = engine
        self.settings = settings

    # -- producing -------------------------------------------------------------------------

    def enqueue(self, key: JobKey, *, route: str | None = None) -> bool:
        """Add the job unless one with the same key exists; return True if added."""
        with write_transaction(self.engine) as conn:
            return self.enqueue_in(conn, key, route=route)

    def enqueue_in(
        self, conn: Connection, key: JobKey, *, route: str | None = None, waiting: bool = False
    ) -> bool:
        """``enqueue`` inside the caller's transaction; a ``waiting`` job is not claimed
        until ``jobs.ordering`` releases it (the job it runs after has ended)."""
        now = utcnow()
        values = dict(
            series_id=key.series_id,
            pipeline=key.pipeline,
            model_version=key.model_version,
            series_revision=key.series_revision,
            route=route,
            scope=key.scope,
            input_series=list(key.input_series) if key.scope == "study" else None,
            state=JobState.WAITING if waiting else JobState.QUEUED,
            attempts=0,
            max_attempts=self.settings.max_attempts,
            run_after=now,
            created_at=now,
        )
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(Job)
            .values(**values)
            .on_conflict_do_nothing(
                index_elements=["series_id", "pipeline", "model_version", "series_revision"]
            )
            # Not rowcount: on PostgreSQL SQLAlchemy adds an implicit RETURNING, after
            # which psycopg's rowcount is -1. A returned id means the row was inserted.
            .returning(Job.id)
        )
        return conn.execute(statement).first() is not None

    # -- consuming -------------------------------------------------------------------------

    def claim(self, owner: str, pipelines: tuple[str, ...] | None = None) -> ClaimedJob | None:
        """Take the oldest runnable job (queued and due, or running with an expired lease)."""
        now = utcnow()
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        runnable = or_(
            and_(Job.state == JobState.QUEUED, Job.run_after <= now),
            and_(Job.state == JobState.RUNNING, Job.lease_expires_at < now),
        )
        query = select(
            Job.id,
            Job.series_id,
            Job.pipeline,
            Job.model_version,
            Job.attempts,
            Job.route,
            Job.scope,
            Job.input_series,
        ).where(runnable)
        if pipelines is not None:
            query = query.where(Job.pipeline.in_(pipelines))
        query = query.order_by(Job.run_after, Job.id).limit(1).with_for_update(skip_locked=True)
        try:
            with write_transaction(self.engine) as conn:
                self._fail_abandoned(conn, now)
                row = conn.execute(query).first()
                if row is None:
                    return None
                attempt = row.attempts + 1
                conn.execute(
                    update(Job)
                    .where(Job.id == row.id)
                    .values(
                        state=JobState.RUNNING,
                        attempts=attempt,
                        lease_owner=owner,
                        lease_expires_at=lease_until,
                        started_at=now,
                    )
                )
        except OperationalError as exc:
            if "locked" in str(exc.orig).lower():
                return None  # another process holds the write lock; poll again
            raise
        return ClaimedJob(
            row.id,
            row.series_id,
            row.pipeline,
            row.model_version,
            attempt,
            owner,
            lease_until,
            row.route,
            row.scope,
            tuple(int(i) for i in row.input_series or ()),
        )

    @staticmethod
    def _fail_abandoned(conn: Connection, now: datetime) -> None:
        """A job whose lease ran out after its last attempt is failed, not run again.

        Its worker died while running it (killed, out of memory, a crash in native code);
        a job that keeps killing workers must not be retried forever.
        """
        conn.execute(
            update(Job)
            .where(
                Job.state == JobState.RUNNING,
                Job.lease_expires_at < now,
                Job.attempts >= Job.max_attempts,
            )
            .values(
                state=JobState.FAILED,
                finished_at=now,
                lease_expires_at=None,
                last_error=func.coalesce(Job.last_error + "; ", "")
                + "the worker stopped while running the last allowed attempt (lease expired)",
            )
        )

    def _update_held(self, job: ClaimedJob, **values: object) -> None:
        with write_transaction(self.engine) as conn:
            self._update_held_in(conn, job, **values)

    @staticmethod
    def _update_held_in(conn: Connection, job: ClaimedJob, **values: object) -> None:
        result = conn.execute(
            update(Job)
            .where(
                Job.id == job.id, Job.lease_owner == job.lease_owner, Job.state == JobState.RUNNING
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise LeaseLost(f"job {job.id} is no longer held by {job.lease_owner}")

    def renew(self, job: ClaimedJob) -> ClaimedJob:
        until = utcnow() + timedelta(seconds=self.settings.lease_seconds)
        self._update_held(job, lease_expires_at=until)
        return dataclasses.replace(job, lease_expires_at=until)

    def complete(self, job: ClaimedJob) -> None:
        with write_transaction(self.engine) as conn:
            self.complete_in(conn, job)

    def complete_in(self, conn: Connection, job: ClaimedJob) -> None:
        """Finish the job inside the caller's transaction (with its results)."""
        self._update_held_in(
            conn,
            job,
            state=JobState.DONE,
            finished_at=utcnow(),
            lease_expires_at=None,
            last_error=None,
        )

    def backoff_seconds(self, attempt: int) -> float:
        delay = self.settings.retry_backoff_seconds * (2 ** max(attempt - 1, 0))
        return float(min(delay, self.settings.retry_backoff_max_seconds))

    def fail(self, job: ClaimedJob, error: str, *, retry: bool, defer: float | None = None) -> str:
        """Record a failed attempt; requeue it (``retry``) unless attempts are used up.

        Return the job's new state.
        """
        now = utcnow()
        with self.engine.connect() as conn:
            max_attempts = conn.scalar(select(Job.max_attempts).where(Job.id == job.id)) or 1
        if retry and job.attempt < max_attempts:
            delay = self.backoff_seconds(job.attempt) if defer is None else defer
            self._update_held(
                job,
                state=JobState.QUEUED,
                run_after=now + timedelta(seconds=delay),
                lease_owner=None,
                lease_expires_at=None,
                last_error=error,
            )
            return JobState.QUEUED
        self._update_held(
            job, state=JobState.FAILED, finished_at=now, lease_expires_at=None, last_error=error
        )
        return JobState.FAILED

    # -- operators ---------------------------------------------------------------------------

    def retry(self, job_id: int) -> None:
        """Put a failed (or done) job back in the queue with fresh attempts."""
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_([JobState.FAILED, JobState.DONE]))
                .values(
                    state=JobState.QUEUED,
                    attempts=0,
                    run_after=utcnow(),
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=None,
                )
            )
            if result.rowcount != 1:
                state = conn.scalar(select(Job.state).where(Job.id == job_id))
                if state is None:
                    raise JobNotFound(f"no job {job_id}")
                raise NodeError(f"job {job_id} is {state}; only failed or done jobs can be re-run")
