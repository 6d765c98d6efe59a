"""Jobs that run after another pipeline's job on the same series (``runs_after``).

A pipeline may declare that it runs after another on the same series and takes its result
(bone age on the film ``hand_orientation`` turned upright): ``BUILTIN_RUNS_AFTER`` in
``pipelines/registry.py``, or ``runs_after`` on the class. The node never lets one call
the other. When a series is routed to both, the stable check queues the first as usual and
the second as ``waiting`` (``stable.create_jobs``); each stable check then releases the
waiting jobs whose predecessor's job on the same series and revision has ended
(``release_waiting_jobs``), and the worker hands the second pipeline the first one's
result (``upstream_result``: its summary and the Secondary Capture files it wrote).

If the first job failed for good, the second still runs, on the series as received, and
is told so (``UpstreamResult.state == "failed"`` with the error): a result late and
stated is worth more to a reader than none. A series routed to the second pipeline only
runs it at once, on the series as received (``SeriesInput.after`` is None). Cycles, and
orderings across scopes, are refused when the configuration loads
(``PipelineRegistry.order_problems``: ``config check`` and ``serve``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine, select, update

from dicom_node.clock import utcnow
from dicom_node.db.engine import write_transaction
from dicom_node.db.models import Job, JobState, Output, Result
from pipelines.contract import UpstreamResult

logger = logging.getLogger(__name__)

#: The pipeline a pipeline runs after, or None (``PipelineRegistry.runs_after``).
RunsAfter = Callable[[str], str | None]

_ENDED = (JobState.DONE, JobState.FAILED)


def no_ordering(_pipeline: str) -> str | None:
    return None


def _predecessor_job(
    conn: Connection, series_id: int, pipeline: str, revision: int
) -> tuple[int, str, str, str | None] | None:
    """(id, state, model version, last error) of the latest job of ``pipeline`` on the
    series at that revision."""
    row = conn.execute(
        select(Job.id, Job.state, Job.model_version, Job.last_error)
        .where(
            Job.series_id == series_id,
            Job.pipeline == pipeline,
            Job.series_revision == revision,
        )
        .order_by(Job.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.id, row.state, row.model_version, row.last_error)


def predecessor_ended(conn: Connection, series_id: int, pipeline: str, revision: int) -> bool:
    """Whether ``pipeline``'s job on the series at ``revision`` has ended (or there is
    none to wait for)."""
    job = _predecessor_job(conn, series_id, pipeline, revision)
    return job is None or job[1] in _ENDED


def release_waiting_jobs(engine: Engine, runs_after: RunsAfter) -> int:
    """Queue every waiting job whose predecessor's job has ended; the number released."""
    with engine.connect() as conn:
        waiting = conn.execute(
            select(Job.id, Job.series_id, Job.pipeline, Job.series_revision).where(
                Job.state == JobState.WAITING
            )
        ).all()
    released = 0
    for job in waiting:
        after = runs_after(job.pipeline)
        with write_transaction(engine) as conn:
            if after is not None and not predecessor_ended(
                conn, job.series_id, after, job.series_revision
            ):
                continue
            done = conn.execute(
                update(Job)
                .where(Job.id == job.id, Job.state == JobState.WAITING)
                .values(state=JobState.QUEUED, run_after=utcnow())
                .returning(Job.id)
            ).first()
        if done is not None:
            released += 1
            logger.info("job %d (%s) released: %s has ended", job.id, job.pipeline, after)
    return released


def upstream_result(
    conn: Connection, job_id: int, after: str, outputs_dir: Path
) -> UpstreamResult | None:
    """What ``after`` made of the job's series at the job's revision; None when it has no
    job there (it was not routed to the series)."""
    series_id, revision = conn.execute(
        select(Job.series_id, Job.series_revision).where(Job.id == job_id)
    ).one()
    job = _predecessor_job(conn, series_id, after, revision)
    if job is None or job[1] not in _ENDED:
        return None
    job_id_before, state, version, error = job
    if state == JobState.FAILED:
        return UpstreamResult(after, "failed", version, error=error or "failed")
    result = conn.execute(
        select(Result.id, Result.summary)
        .where(Result.job_id == job_id_before)
        .order_by(Result.id.desc())
        .limit(1)
    ).first()
    if result is None:
        return UpstreamResult(after, "failed", version, error="its job recorded no result")
    paths = conn.execute(
        select(Output.path)
        .where(Output.result_id == result.id, Output.kind == "sc")
        .order_by(Output.path)
    ).scalars()
    return UpstreamResult(
        after,
        "done",
        version,
        summary=dict(result.summary or {}),
        derived_files=tuple(outputs_dir / p for p in paths),
    )
