"""What the results pages show, read from the results log. The listings reuse the CLI's
queries (``jobs.results_log``, ``jobs.model_registry``, ``retraining.runs``); this module
adds the study page's and the filters' reads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dicom_node.db.models import (
    Delivery,
    DeliveryState,
    Instance,
    Job,
    JobState,
    Output,
    Result,
    Series,
    Study,
)
from dicom_node.jobs.results_log import list_deliveries, list_jobs, list_results

Row = dict[str, Any]
NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class BadFilter(ValueError):
    """A filter the pages cannot use; the message says why (shown with a 400)."""


@dataclass(frozen=True)
class Filters:
    state: str | None = None
    pipeline: str | None = None
    since: datetime | None = None
    destination: str | None = None


def parse_filters(params: dict[str, str], states: tuple[str, ...]) -> Filters:
    """``state``, ``pipeline``, ``destination`` and ``since`` (ISO date) from a query."""
    state = params.get("state") or None
    if state is not None and state not in states:
        raise BadFilter(f"state must be one of {', '.join(states)}")
    names: dict[str, str | None] = {}
    for key in ("pipeline", "destination"):
        value = params.get(key) or None
        if value is not None and not NAME.match(value):
            raise BadFilter(f"{key} must be 1-64 letters, digits, '_', '.' or '-'")
        names[key] = value
    since = None
    if params.get("since"):
        try:
            since = datetime.fromisoformat(params["since"])
        except ValueError:
            raise BadFilter("since must be an ISO date, YYYY-MM-DD[THH:MM]") from None
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    return Filters(state, names["pipeline"], since, names["destination"])


JOB_STATES = tuple(s.value for s in JobState)
DELIVERY_STATES = tuple(s.value for s in DeliveryState)


def _after(row: Row, keys: tuple[str, ...], since: datetime | None) -> bool:
    if since is None:
        return True
    for key in keys:
        if row.get(key):
            return datetime.fromisoformat(row[key]) >= since
    return False


def filtered_jobs(engine: Engine, filters: Filters) -> list[Row]:
    """Failed jobs first (with their errors), then the newest."""
    rows = [
        row
        for row in list_jobs(engine, state=filters.state)
        if (filters.pipeline is None or row["pipeline"] == filters.pipeline)
        and _after(row, ("finished_at", "run_after"), filters.since)
    ]
    return sorted(rows, key=lambda r: (r["state"] != JobState.FAILED, -r["id"]))


def filtered_deliveries(engine: Engine, filters: Filters) -> list[Row]:
    """Dead deliveries first, then the newest."""
    rows = [
        row
        for row in list_deliveries(engine, state=filters.state)
        if (filters.destination is None or row["destination"] == filters.destination)
        and _after(row, ("delivered_at", "next_attempt_at"), filters.since)
    ]
    return sorted(rows, key=lambda r: (r["state"] != DeliveryState.DEAD, -r["id"]))


def jobs_by_study(engine: Engine) -> dict[str, list[tuple[str, str, int]]]:
    """(pipeline, state, count) per study, for the studies list."""
    query = (
        select(Study.study_instance_uid, Job.pipeline, Job.state, func.count(Job.id))
        .join(Series, Series.study_id == Study.id)
        .join(Job, Job.series_id == Series.id)
        .group_by(Study.study_instance_uid, Job.pipeline, Job.state)
        .order_by(Job.pipeline, Job.state)
    )
    found: dict[str, list[tuple[str, str, int]]] = {}
    with Session(engine) as session:
        for uid, pipeline, state, count in session.execute(query):
            found.setdefault(uid, []).append((pipeline, state, count))
    return found


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def _seconds(start: datetime | None, end: datetime | None) -> str:
    return f"{(end - start).total_seconds():.2f} s" if start and end else ""


def study_page(engine: Engine, study_uid: str) -> Row | None:
    """The study with its series, each series' jobs, the results with their outputs and
    deliveries; None for an unknown study."""
    with Session(engine) as session:
        study = session.execute(
            select(Study).where(Study.study_instance_uid == study_uid)
        ).scalar_one_or_none()
        if study is None:
            return None
        counts = select(func.count(Instance.id)).where(Instance.series_id == Series.id)
        series_rows = session.execute(
            select(Series, counts.scalar_subquery()).where(Series.study_id == study.id)
        ).all()
        jobs = (
            session.execute(
                select(Job)
                .where(Job.series_id.in_([s.id for s, _ in series_rows]))
                .order_by(Job.id)
            )
            .scalars()
            .all()
        )
        outputs = session.execute(
            select(Output, Result.job_id)
            .join(Result, Result.id == Output.result_id)
            .where(Result.study_instance_uid == study_uid)
            .order_by(Output.id)
        ).all()
        deliveries = (
            session.execute(
                select(Delivery).where(Delivery.output_id.in_([o.id for o, _ in outputs]))
            )
            .scalars()
            .all()
        )
        result_jobs = session.execute(
            select(Result.id, Result.job_id).where(Result.study_instance_uid == study_uid)
        ).all()
        first_file = session.execute(
            select(Instance.path)
            .join(Series, Series.id == Instance.series_id)
            .where(Series.study_id == study.id)
            .limit(1)
        ).scalar()
    results = {r["id"]: r for r in list_results(engine, study=study_uid)}
    by_output: dict[int, list[Delivery]] = {}
    for delivery in deliveries:
        by_output.setdefault(delivery.output_id, []).append(delivery)
    job_outputs: dict[int, list[Row]] = {}
    for output, job_id in outputs:
        job_outputs.setdefault(job_id, []).append(
            {
                "kind": output.kind,
                "sop_instance_uid": output.sop_instance_uid,
                "path": output.path,
                "result_id": output.result_id,
                "deliveries": by_output.get(output.id, []),
            }
        )
    job_rows: dict[int, list[Row]] = {}
    for job in jobs:
        found = [results[rid] for rid, jid in result_jobs if jid == job.id and rid in results]
        job_rows.setdefault(job.series_id, []).append(
            {
                "id": job.id,
                "pipeline": job.pipeline,
                "model_version": job.model_version,
                "state": job.state,
                "attempts": job.attempts,
                "created_at": _iso(job.created_at),
                "started_at": _iso(job.started_at),
                "finished_at": _iso(job.finished_at),
                "run_time": _seconds(job.started_at, job.finished_at),
                "last_error": job.last_error,
                "results": found,
                "outputs": job_outputs.get(job.id, []),
            }
        )
    return {
        "study_instance_uid": study.study_instance_uid,
        "study_date": study.study_date,
        "state": study.state,
        "first_received_at": _iso(study.first_received_at),
        "last_received_at": _iso(study.last_received_at),
        "stable_at": _iso(study.stable_at),
        "first_file": first_file,
        "series": [
            {
                "series_instance_uid": s.series_instance_uid,
                "modality": s.modality,
                "body_part": s.body_part_examined,
                "triage_state": s.triage_state,
                "routing_body_part": s.routing_body_part,
                "description": s.series_description,
                "instances": n,
                "jobs": job_rows.get(s.id, []),
            }
            for s, n in series_rows
        ],
    }


def output_path(engine: Engine, sop_instance_uid: str, kind: str) -> str | None:
    with Session(engine) as session:
        return session.execute(
            select(Output.path).where(
                Output.sop_instance_uid == sop_instance_uid, Output.kind == kind
            )
        ).scalar()


def patient_identifiers(path: Path) -> tuple[str, str]:
    """PatientName and PatientID from a stored file's header (only when shown)."""
    try:
        header = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["PatientName", "PatientID"]
        )
    except (OSError, pydicom.errors.InvalidDicomError):
        return "", ""
    return str(header.get("PatientName", "")), str(header.get("PatientID", ""))


def model_plots(folder: Path) -> list[str]:
    """The PNG plots in a model folder (roc.png, error_histogram.png, ...)."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.png") if NAME.match(p.stem))


def study_date(value: str | None) -> str:
    if value is None:
        return ""
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8])).isoformat()
    except ValueError:
        return value
