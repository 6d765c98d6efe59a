"""Stable studies: after a quiet period a study is complete; route its series into jobs.

A series-scoped pipeline gets one job per routed series. A study-scoped pipeline (it
decides over every view of a study: MURA) gets one job per study: its input is every
series routed to it, its anchor the first of them (the lowest series id, i.e. the first
received) and its revision their instance count, so a late view, even in a new series,
makes one new job for the whole study and a re-check makes none.

A film that a route has classified by image first (``route.triage_rule``: its Body Part
Examined is unclear, or the route checks every header) gets its classifier's job and waits:
``route_by_image`` routes it once that job is done, and a study with a film waiting gets
its study-scoped jobs only then, so a late-classified view joins its study's job.

A study retrieved from the PACS for retraining (purpose ``training``,
``dicom_node/retraining/retrieve.py``) is marked stable like any other, but never routed: it
gets no jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from dicom_node.clock import utcnow
from dicom_node.db.engine import write_transaction
from dicom_node.db.models import Instance, Series, Study, StudyPurpose, StudyState, TriageState
from dicom_node.ingest.index import count_instances
from dicom_node.ingest.route import (
    RouteMatch,
    SeriesHeader,
    route_series,
    triage_rule,
    waits_for_triage,
)
from dicom_node.jobs.model_registry import active_model_version
from dicom_node.jobs.ordering import RunsAfter, no_ordering, predecessor_ended
from dicom_node.jobs.queue import JobKey, JobQueue
from dicom_node.settings import RouteRule

logger = logging.getLogger(__name__)

#: A pipeline's scope by name: "series" or "study" (``PipelineRegistry.scope``).
ScopeOf = Callable[[str], str]


def every_pipeline_per_series(_pipeline: str) -> str:
    return "series"


@dataclass
class StableReport:
    studies: list[str] = field(default_factory=list)
    jobs_created: int = 0
    unrouted_series: int = 0
    #: The stable studies among ``studies`` that are training data: no jobs for them.
    training_studies: list[str] = field(default_factory=list)


def promote_stable_studies(
    engine: Engine,
    queue: JobQueue,
    routes: tuple[RouteRule, ...],
    quiet_seconds: float,
    now: datetime | None = None,
    scope_of: ScopeOf = every_pipeline_per_series,
    runs_after: RunsAfter = no_ordering,
) -> StableReport:
    """Mark every study quiet for ``quiet_seconds`` stable and create its jobs.

    Each study is marked and its jobs created in one transaction, so a crash never
    leaves a stable study without its jobs. Jobs are idempotent: a study re-opened by a
    late instance gets a new job only for a series whose instance count changed (for a
    study-scoped pipeline, ``scope_of(name) == "study"``: only when its series' count did).
    A study whose purpose is ``training`` is marked stable and gets no jobs.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=quiet_seconds)
    report = StableReport()
    with engine.connect() as conn:
        candidates = (
            conn.execute(
                select(Study.id).where(
                    Study.state == StudyState.RECEIVING, Study.last_received_at <= cutoff
                )
            )
            .scalars()
            .all()
        )
    for study_id in candidates:
        with write_transaction(engine) as conn:
            study = conn.execute(
                select(
                    Study.study_instance_uid, Study.state, Study.last_received_at, Study.purpose
                ).where(Study.id == study_id)
            ).first()
            # An instance may have arrived since the candidates were read.
            if (
                study is None
                or study.state != StudyState.RECEIVING
                or study.last_received_at > cutoff
            ):
                continue
            conn.execute(
                update(Study)
                .where(Study.id == study_id)
                .values(state=StudyState.STABLE, stable_at=now)
            )
            training = study.purpose == StudyPurpose.TRAINING
            if training:
                series_count, instance_count = _counts(conn, study_id)
            else:
                created, unrouted = create_jobs(conn, queue, routes, study_id, scope_of, runs_after)
        report.studies.append(study.study_instance_uid)
        if training:
            report.training_studies.append(study.study_instance_uid)
            logger.info(
                "study %s stable: training data (%d series, %d instance(s)), no jobs",
                study.study_instance_uid,
                series_count,
                instance_count,
            )
            continue
        report.jobs_created += created
        report.unrouted_series += unrouted
        logger.info(
            "study %s stable: %d new job(s), %d series without a route",
            study.study_instance_uid,
            created,
            unrouted,
        )
    return report


def _counts(conn: Connection, study_id: int) -> tuple[int, int]:
    """(series, instances) of a study."""
    row = conn.execute(
        select(func.count(func.distinct(Series.id)), func.count(Instance.id))
        .select_from(Series)
        .outerjoin(Instance, Instance.series_id == Series.id)
        .where(Series.study_id == study_id)
    ).one()
    return int(row[0]), int(row[1])


def create_jobs(
    conn: Connection,
    queue: JobQueue,
    routes: tuple[RouteRule, ...],
    study_id: int,
    scope_of: ScopeOf,
    runs_after: RunsAfter = no_ordering,
) -> tuple[int, int]:
    """Queue the jobs a study's series are routed to; (jobs created, series unrouted).

    Idempotent: a job already queued for the same input is not queued again, so this runs
    again safely when a classified film's route is known (``route_by_image``).
    """
    created = unrouted = 0
    series_rows = conn.execute(
        select(
            Series.id,
            Series.series_instance_uid,
            Series.modality,
            Series.body_part_examined,
            Series.series_description,
            Series.sop_class_uid,
            Series.triage_state,
            Series.routing_body_part,
        )
        .where(Series.study_id == study_id)
        .order_by(Series.id)
    ).all()
    # Study-scoped pipelines: pipeline -> (its first route match, [(series id, count)]).
    per_study: dict[str, tuple[RouteMatch, list[tuple[int, int]]]] = {}
    classifying = 0  # films of the study waiting for their classification
    for row in series_rows:
        header = SeriesHeader(
            row.modality, row.body_part_examined, row.series_description, row.sop_class_uid
        )
        revision = count_instances(conn, row.id)
        state, routing = row.triage_state, row.routing_body_part
        rule = triage_rule(routes, header) if state is None else None
        if rule is not None:
            if not waits_for_triage(rule, header):
                routing = row.body_part_examined  # routes now; classifying only checks it
            created += _queue_triage(conn, queue, rule, row, routing, revision)
            state = TriageState.PENDING
        if state == TriageState.PENDING and routing is None:
            classifying += 1
            continue
        if state == TriageState.NOT_XRAY:
            unrouted += 1
            continue
        if state is not None and routing is not None:
            header = replace(header, body_part_examined=routing)
        matches = route_series(routes, header)
        if not matches:
            unrouted += 1
            continue
        routed = {match.pipeline for match in matches}
        for match in sorted(matches, key=lambda m: _depth(m.pipeline, runs_after)):
            if scope_of(match.pipeline) == "study":
                per_study.setdefault(match.pipeline, (match, []))[1].append((row.id, revision))
                continue
            key = JobKey(
                row.id, match.pipeline, active_model_version(conn, match.pipeline), revision
            )
            # A pipeline that runs after another routed here waits for that one's job.
            after = runs_after(match.pipeline)
            waits = (
                after is not None
                and after in routed
                and not predecessor_ended(conn, row.id, after, revision)
            )
            if queue.enqueue_in(conn, key, route=match.route, waiting=waits):
                created += 1
                logger.info(
                    "job queued: series %s -> %s (route %s)",
                    row.series_instance_uid,
                    match.pipeline,
                    match.route,
                )
    if classifying:
        if per_study:
            logger.info(
                "study-scoped job(s) of %s wait for %d film(s) being classified",
                ", ".join(per_study),
                classifying,
            )
        return created, unrouted
    for pipeline, (match, inputs) in per_study.items():
        series_ids = tuple(series_id for series_id, _count in inputs)
        key = JobKey(
            series_ids[0],
            pipeline,
            active_model_version(conn, pipeline),
            sum(count for _series_id, count in inputs),
            scope="study",
            input_series=series_ids,
        )
        if queue.enqueue_in(conn, key, route=match.route):
            created += 1
            logger.info(
                "job queued: study (%d series) -> %s (route %s)",
                len(series_ids),
                pipeline,
                match.route,
            )
    return created, unrouted


def _depth(pipeline: str, runs_after: RunsAfter) -> int:
    """How many pipelines run before ``pipeline`` on a series: predecessors queue first."""
    seen = [pipeline]
    while (after := runs_after(seen[-1])) is not None and after not in seen:
        seen.append(after)
    return len(seen) - 1


def _queue_triage(
    conn: Connection,
    queue: JobQueue,
    rule: RouteRule,
    row: Any,
    routing: str | None,
    revision: int,
) -> int:
    """Queue the classifier's job for a film routed by image and mark the series pending
    (with the body part it routes by now, when the header does not wait for the image)."""
    conn.execute(
        update(Series)
        .where(Series.id == row.id)
        .values(triage_state=TriageState.PENDING, routing_body_part=routing)
    )
    classifier = rule.when_headers_unclear
    assert classifier is not None  # triage_rule returns only rules that name one
    key = JobKey(row.id, classifier, active_model_version(conn, classifier), revision)
    queued = queue.enqueue_in(conn, key, route=rule.name)
    logger.info(
        "job queued: series %s -> %s first (route %s routes by image)",
        row.series_instance_uid,
        classifier,
        rule.name,
    )
    return int(queued)
