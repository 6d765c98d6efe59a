"""Waiting for the demo's results: the cases brought up to date from the results log."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.console import Console
from sqlalchemy import Connection, Engine, func, select

from dicom_node.db.models import (
    Delivery,
    DeliveryState,
    Job,
    JobState,
    Output,
    Result,
    Series,
    Study,
    TriageState,
)
from dicom_node.demo.entries import DemoCase
from dicom_node.errors import NodeError


class DemoError(NodeError):
    """The demo could not run to the end; the message says where it stopped."""


def wait_for_results(
    engine: Engine, cases: Iterable[DemoCase], timeout: float, console: Console
) -> None:
    """Until every case has its result delivered; ``DemoError`` after ``timeout`` s, on a
    failed job or on a dead delivery."""
    tracked = list(cases)
    deadline = time.monotonic() + timeout
    with console.status("waiting for the results to come back") as status:
        while True:
            pending = refresh(engine, tracked)
            status.update(f"waiting for the results: {pending} of {len(tracked)} studies to go")
            if pending == 0:
                return
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{pending} studies had no delivered result after {timeout:.0f} s; "
                    "see `dicom-node jobs` and `dicom-node deliveries` with the demo's config"
                )
            time.sleep(0.5)


def refresh(engine: Engine, cases: Iterable[DemoCase]) -> int:
    """Update the cases from the results log; the number of studies still in flight."""
    pending = 0
    with engine.connect() as conn:
        for case in cases:
            result = conn.execute(
                select(Result.id, Result.summary).where(
                    Result.study_instance_uid == case.study_instance_uid,
                    Result.pipeline == case.pipeline,
                )
            ).first()
            if result is None:
                failed = conn.scalar(
                    select(Job.last_error).where(Job.state == JobState.FAILED).limit(1)
                )
                if failed is not None:
                    raise DemoError(f"a job failed: {failed}")
                pending += 1
                continue
            case.summary = dict(result.summary or {})
            outputs = conn.execute(
                select(Output.kind, Output.path)
                .where(Output.result_id == result.id)
                .order_by(Output.path)
            ).all()
            case.outputs = sorted(kind for kind, _ in outputs)
            case.output_paths = {}
            for kind, path in outputs:
                case.output_paths.setdefault(kind, []).append(path)
            states = conn.execute(
                select(Delivery.state, func.count())
                .join(Output, Output.id == Delivery.output_id)
                .where(Output.result_id == result.id)
                .group_by(Delivery.state)
            ).all()
            counts = {state: count for state, count in states}
            case.delivered = counts.get(DeliveryState.SENT, 0)
            if counts.get(DeliveryState.DEAD):
                raise DemoError("a result could not be delivered; see `dicom-node deliveries`")
            if counts.get(DeliveryState.PENDING) or not counts:
                case.state = "delivering"
                pending += 1
            elif _study_busy(conn, case.study_instance_uid):
                # A film routed by image: the jobs its classification led to still run.
                case.state = "routing"
                pending += 1
            else:
                case.state = "delivered"
            case.study_pipelines = sorted(
                conn.execute(
                    select(Result.pipeline)
                    .distinct()
                    .where(Result.study_instance_uid == case.study_instance_uid)
                ).scalars()
            )
    return pending


def _study_busy(conn: Connection, study_instance_uid: str) -> bool:
    """Whether the study has a film still being classified or a job not yet ended."""
    in_study = (
        select(Series.id)
        .join(Study, Study.id == Series.study_id)
        .where(Study.study_instance_uid == study_instance_uid)
    )
    waiting = conn.scalar(
        select(func.count(Series.id)).where(
            Series.id.in_(in_study), Series.triage_state == TriageState.PENDING
        )
    )
    running = conn.scalar(
        select(func.count(Job.id)).where(
            Job.series_id.in_(in_study),
            Job.state.in_((JobState.WAITING, JobState.QUEUED, JobState.RUNNING)),
        )
    )
    return bool(waiting or running)
