"""Queries of the results log for people: studies, jobs and results as plain rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dicom_node.db.models import (
    Delivery,
    Instance,
    Job,
    Measurement,
    Output,
    Result,
    Series,
    Study,
)

Row = dict[str, Any]

# The fields of each listing, in order: the CSV header is the same with or without rows.
STUDY_FIELDS = (
    "study_instance_uid",
    "state",
    "series",
    "instances",
    "first_received_at",
    "last_received_at",
    "stable_at",
    "times_reopened",
)
JOB_FIELDS = (
    "id",
    "state",
    "pipeline",
    "model_version",
    "series_instance_uid",
    "route",
    "attempts",
    "max_attempts",
    "run_after",
    "lease_owner",
    "finished_at",
    "last_error",
)
RESULT_FIELDS = (
    "id",
    "created_at",
    "pipeline",
    "model_version",
    "study_instance_uid",
    "series_instance_uid",
    "measurements",
    "outputs",
    "deliveries",
    "summary",
)
DELIVERY_FIELDS = (
    "id",
    "state",
    "destination",
    "kind",
    "sop_instance_uid",
    "series_instance_uid",
    "result_id",
    "attempts",
    "next_attempt_at",
    "delivered_at",
    "last_error",
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def list_studies(engine: Engine, state: str | None = None) -> list[Row]:
    series_count = (
        select(func.count(Series.id)).where(Series.study_id == Study.id).scalar_subquery()
    )
    instance_count = (
        select(func.count(Instance.id))
        .join(Series, Series.id == Instance.series_id)
        .where(Series.study_id == Study.id)
        .scalar_subquery()
    )
    query = select(Study, series_count.label("series"), instance_count.label("instances")).order_by(
        Study.last_received_at.desc()
    )
    if state:
        query = query.where(Study.state == state)
    with Session(engine) as session:
        rows = session.execute(query).all()
    return [
        {
            "study_instance_uid": study.study_instance_uid,
            "state": study.state,
            "series": series,
            "instances": instances,
            "first_received_at": _iso(study.first_received_at),
            "last_received_at": _iso(study.last_received_at),
            "stable_at": _iso(study.stable_at),
            "times_reopened": study.times_reopened,
        }
        for study, series, instances in rows
    ]


def list_jobs(engine: Engine, state: str | None = None) -> list[Row]:
    query = (
        select(Job, Series.series_instance_uid)
        .join(Series, Series.id == Job.series_id)
        .order_by(Job.id)
    )
    if state:
        query = query.where(Job.state == state)
    with Session(engine) as session:
        rows = session.execute(query).all()
    out = []
    for job, series_uid in rows:
        out.append(
            {
                "id": job.id,
                "state": job.state,
                "pipeline": job.pipeline,
                "model_version": job.model_version,
                "series_instance_uid": series_uid,
                "route": job.route,
                "attempts": job.attempts,
                "max_attempts": job.max_attempts,
                "run_after": _iso(job.run_after),
                "lease_owner": job.lease_owner,
                "finished_at": _iso(job.finished_at),
                "last_error": job.last_error,
            }
        )
    return out


def list_results(
    engine: Engine,
    *,
    study: str | None = None,
    pipeline: str | None = None,
    since: datetime | None = None,
) -> list[Row]:
    query = select(Result).order_by(Result.created_at, Result.id)
    if study:
        query = query.where(Result.study_instance_uid == study)
    if pipeline:
        query = query.where(Result.pipeline == pipeline)
    if since:
        query = query.where(Result.created_at >= since)
    with Session(engine) as session:
        results = session.execute(query).scalars().all()
        ids = [r.id for r in results]
        values: dict[int, dict[tuple[str, str], list[float]]] = {}
        if ids:
            for m in session.execute(
                select(Measurement).where(Measurement.result_id.in_(ids)).order_by(Measurement.id)
            ).scalars():
                values.setdefault(m.result_id, {}).setdefault((m.name, m.unit), []).append(m.value)
        measurements = {key: _measurement_texts(named) for key, named in values.items()}
        outputs: dict[int, list[str]] = {}
        deliveries: dict[int, list[str]] = {}
        if ids:
            for output in session.execute(
                select(Output).where(Output.result_id.in_(ids)).order_by(Output.id)
            ).scalars():
                outputs.setdefault(output.result_id, []).append(
                    f"{output.kind} {output.sop_instance_uid}"
                )
            for result_id, kind, destination, state in session.execute(
                select(Output.result_id, Output.kind, Delivery.destination, Delivery.state)
                .join(Delivery, Delivery.output_id == Output.id)
                .where(Output.result_id.in_(ids))
                .order_by(Delivery.id)
            ):
                deliveries.setdefault(result_id, []).append(f"{kind}→{destination}: {state}")
    return [
        {
            "id": r.id,
            "created_at": _iso(r.created_at),
            "pipeline": r.pipeline,
            "model_version": r.model_version,
            "study_instance_uid": r.study_instance_uid,
            "series_instance_uid": r.series_instance_uid,
            "measurements": "; ".join(measurements.get(r.id, [])),
            "outputs": "; ".join(outputs.get(r.id, [])),
            "deliveries": "; ".join(deliveries.get(r.id, [])),
            "summary": r.summary,
        }
        for r in results
    ]


#: A measurement name repeated more often than this (a value per slice) is summarised.
REPEATED_MEASUREMENT_LIMIT = 3


def _measurement_texts(named: dict[tuple[str, str], list[float]]) -> list[str]:
    """``name=value unit`` each; a name with many values (e.g. a score per CT slice) as
    ``name: N values min..max unit`` (each value is in the ``measurements`` table)."""
    texts = []
    for (name, unit), found in named.items():
        if len(found) > REPEATED_MEASUREMENT_LIMIT:
            texts.append(f"{name}: {len(found)} values {min(found):g}..{max(found):g} {unit}")
        else:
            texts.extend(f"{name}={value:g} {unit}" for value in found)
    return texts


def list_deliveries(engine: Engine, state: str | None = None) -> list[Row]:
    query = (
        select(Delivery, Output).join(Output, Output.id == Delivery.output_id).order_by(Delivery.id)
    )
    if state:
        query = query.where(Delivery.state == state)
    with Session(engine) as session:
        rows = session.execute(query).all()
    return [
        {
            "id": delivery.id,
            "state": delivery.state,
            "destination": delivery.destination,
            "kind": output.kind,
            "sop_instance_uid": output.sop_instance_uid,
            "series_instance_uid": output.series_instance_uid,
            "result_id": output.result_id,
            "attempts": delivery.attempts,
            "next_attempt_at": _iso(delivery.next_attempt_at),
            "delivered_at": _iso(delivery.delivered_at),
            "last_error": delivery.last_error,
        }
        for delivery, output in rows
    ]
