"""Routing by image: a film classified first is routed once its classifier's job ends.

A route with ``when_headers_unclear = "xray_triage"`` has a film whose Body Part Examined
is missing, empty or names no X-ray type (or any film, with ``check_headers``) classified
before it is routed (``stable.create_jobs`` queues the classifier's job and marks the
series ``pending``). Each stable check then looks at the pending films whose job has
ended and settles them, reading the job's result (``pipelines.xray_triage.body_parts``
names its keys):

- not an X-ray: routed to nothing (``not_xray``); the result log keeps the classifier's
  verdict and the series says why it has no job;
- a film whose header was unclear: routed by the type the image shows, through the same
  rules (a hand becomes a hand film; an elbow joins its study's MURA job, since a study
  with a film waiting gets its study-scoped jobs only now);
- a film whose header names another type, with the classifier confident (its result's
  ``header_disagrees``): routed by the header or the image as the route's
  ``when_headers_disagree`` says; the disagreement is in the result log and in the
  classifier's SR either way;
- the classifier's job failed (no model, say): routed by the header alone (``failed``).

A study-scoped job waits while any film of its study does, and films settle one
transaction each, so a crash never leaves a settled film without its jobs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from dicom_node.db.engine import write_transaction
from dicom_node.db.models import Job, JobState, Result, Series, TriageState
from dicom_node.ingest.route import SeriesHeader, header_is_unclear, triage_rule
from dicom_node.ingest.stable import ScopeOf, create_jobs, every_pipeline_per_series
from dicom_node.jobs.ordering import RunsAfter, no_ordering
from dicom_node.jobs.queue import JobQueue
from dicom_node.settings import RouteRule
from pipelines.xray_triage.body_parts import SUMMARY

logger = logging.getLogger(__name__)


@dataclass
class ClassifiedReport:
    """What one pass settled: series UIDs by outcome, and the jobs it created."""

    routed: list[str] = field(default_factory=list)
    not_xray: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    jobs_created: int = 0


@dataclass(frozen=True)
class _Outcome:
    state: TriageState
    routing_body_part: str | None
    disagrees: bool = False


def route_classified_films(
    engine: Engine,
    queue: JobQueue,
    routes: tuple[RouteRule, ...],
    scope_of: ScopeOf = every_pipeline_per_series,
    runs_after: RunsAfter = no_ordering,
) -> ClassifiedReport:
    """Route every pending film whose classifier's job has ended (see the module)."""
    report = ClassifiedReport()
    with engine.connect() as conn:
        pending = (
            conn.execute(select(Series.id).where(Series.triage_state == TriageState.PENDING))
            .scalars()
            .all()
        )
    for series_id in pending:
        with write_transaction(engine) as conn:
            row = conn.execute(
                select(
                    Series.id,
                    Series.study_id,
                    Series.series_instance_uid,
                    Series.modality,
                    Series.body_part_examined,
                    Series.series_description,
                    Series.sop_class_uid,
                    Series.triage_state,
                ).where(Series.id == series_id)
            ).first()
            if row is None or row.triage_state != TriageState.PENDING:
                continue  # settled by another pass meanwhile
            outcome = _outcome(conn, row, routes)
            if outcome is None:
                continue  # its classification has not ended
            conn.execute(
                update(Series)
                .where(Series.id == series_id)
                .values(triage_state=outcome.state, routing_body_part=outcome.routing_body_part)
            )
            created, _unrouted = create_jobs(
                conn, queue, routes, row.study_id, scope_of, runs_after
            )
        report.jobs_created += created
        uid = row.series_instance_uid
        {
            TriageState.DONE: report.routed,
            TriageState.NOT_XRAY: report.not_xray,
            TriageState.FAILED: report.failed,
        }[outcome.state].append(uid)
        if outcome.disagrees:
            report.disagreements.append(uid)
        logger.info(
            "series %s classified: %s%s, %d new job(s)",
            uid,
            _describe(outcome),
            " (its header names another body part)" if outcome.disagrees else "",
            created,
        )
    return report


def _describe(outcome: _Outcome) -> str:
    if outcome.state == TriageState.NOT_XRAY:
        return "not an X-ray, routed to nothing"
    if outcome.state == TriageState.FAILED:
        return "its classification failed, routed by its header"
    return f"routed as {outcome.routing_body_part or 'no body part'}"


def _outcome(conn: Connection, row: Any, routes: tuple[RouteRule, ...]) -> _Outcome | None:
    header = SeriesHeader(
        row.modality, row.body_part_examined, row.series_description, row.sop_class_uid
    )
    by_header = None if header_is_unclear(header) else row.body_part_examined
    rule = triage_rule(routes, header)
    if rule is None or rule.when_headers_unclear is None:
        # The configuration changed since: no route classifies it any more.
        return _Outcome(TriageState.FAILED, by_header)
    job = conn.execute(
        select(Job.id, Job.state)
        .where(Job.series_id == row.id, Job.pipeline == rule.when_headers_unclear)
        .order_by(Job.id.desc())
        .limit(1)
    ).first()
    if job is None or job.state == JobState.FAILED:
        return _Outcome(TriageState.FAILED, by_header)
    if job.state != JobState.DONE:
        return None
    summary = conn.execute(
        select(Result.summary).where(Result.job_id == job.id).order_by(Result.id.desc()).limit(1)
    ).scalar()
    if not isinstance(summary, dict) or SUMMARY.is_xray not in summary:
        logger.warning(
            "series %s: %s's result has no verdict; routed by its header",
            row.series_instance_uid,
            rule.when_headers_unclear,
        )
        return _Outcome(TriageState.FAILED, by_header)
    if not summary[SUMMARY.is_xray]:
        return _Outcome(TriageState.NOT_XRAY, None)
    seen = summary.get(SUMMARY.body_part_examined)
    seen = str(seen) if seen else None
    disagrees = bool(summary.get(SUMMARY.header_disagrees))
    if by_header is None or (disagrees and rule.when_headers_disagree == "image"):
        return _Outcome(TriageState.DONE, seen, disagrees)
    return _Outcome(TriageState.DONE, by_header, disagrees)
