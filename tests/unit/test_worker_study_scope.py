"""Study-scoped jobs end to end without the network: a study whose views arrive in two
series, then a late third view in a new series, gives one result over all views each
time, and the rerun's output objects have the same UIDs (derived from the study)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DigitalXRayImageStorageForPresentation
from sqlalchemy import Engine, select

from dicom_node.db.models import Job, JobState, Measurement, Output, Result
from dicom_node.ingest.stable import promote_stable_studies
from dicom_node.jobs.queue import JobQueue
from dicom_node.jobs.worker import OutputPlan, Worker
from dicom_node.output.encode import DeviceIdentity
from dicom_node.settings import QueueSettings, RouteRule
from dicom_node.store import DurableStore
from pipelines import PipelineRegistry, PipelineUnavailable

from .conftest import T0, UIDs, ingest, make_dataset

QUIET = 60.0
ROUTES = (RouteRule(name="msk", modality=("DX",), pipelines=("study_stats",)),)
PIPELINES = {
    "study_stats": "tests.support.pipelines:StudyStats",
    "series_stats": "tests.support.pipelines:SeriesStats",
}


@pytest.fixture
def registry() -> PipelineRegistry:
    return PipelineRegistry(PIPELINES)


def make_worker(
    engine: Engine, store: DurableStore, registry: PipelineRegistry, tmp_path: Path
) -> Worker:
    plan = OutputPlan(
        device=DeviceIdentity(ae_title="NODE", software_version="test"),
        uid_root="1.2.826.0.1.3680043.8.498.99",
        outputs_dir=tmp_path / "outputs",
    )
    return Worker(engine, JobQueue(engine, QueueSettings()), store, registry, "test-worker", plan)


def add_view(
    engine: Engine, store: DurableStore, study: str, series: str, sop: str, at_s: float
) -> None:
    ds = make_dataset(
        study, series, sop, modality="DX", sop_class=DigitalXRayImageStorageForPresentation
    )
    ingest(engine, store, ds, at=T0 + timedelta(seconds=at_s))


def promote(engine: Engine, registry: PipelineRegistry, at_s: float) -> int:
    report = promote_stable_studies(
        engine,
        JobQueue(engine, QueueSettings()),
        ROUTES,
        QUIET,
        now=T0 + timedelta(seconds=at_s),
        scope_of=registry.scope,
    )
    return report.jobs_created


def test_a_study_job_runs_over_every_series_and_a_late_view_reruns_it_with_the_same_uids(
    engine: Engine, store: DurableStore, registry: PipelineRegistry, uids: UIDs, tmp_path: Path
) -> None:
    study, first, second, late = uids.next(), uids.next(), uids.next(), uids.next()
    views = [uids.next(), uids.next(), uids.next()]
    add_view(engine, store, study, first, views[0], 0)
    add_view(engine, store, study, second, views[1], 0)
    assert promote(engine, registry, QUIET) == 1
    worker = make_worker(engine, store, registry, tmp_path)

    assert worker.run_once().state == "done"  # type: ignore[union-attr]

    add_view(engine, store, study, late, views[2], 200)
    assert promote(engine, registry, 200 + QUIET) == 1
    assert worker.run_once().state == "done"  # type: ignore[union-attr]
    assert worker.run_once() is None

    with engine.connect() as conn:
        results = conn.execute(select(Result).order_by(Result.id)).all()
        jobs = conn.execute(select(Job.scope, Job.state).order_by(Job.id)).all()
        tracked = conn.execute(
            select(Measurement.result_id, Measurement.tracking_uid)
            .where(Measurement.tracking_uid.is_not(None))
            .order_by(Measurement.id)
        ).all()
        outputs = conn.execute(select(Output.result_id, Output.sop_instance_uid, Output.path)).all()
    assert [tuple(j) for j in jobs] == [("study", JobState.DONE)] * 2
    assert [r.summary["instances"] for r in results] == [2, 3]
    assert [r.summary["input_series"] for r in results] == [[first, second], [first, second, late]]
    assert all(r.series_instance_uid == first for r in results)  # the anchor
    assert [uid for result_id, uid in tracked if result_id == results[1].id] == views
    # One SR for the study: the rerun took over the first run's object (same UID).
    assert len(outputs) == 1 and outputs[0].result_id == results[1].id
    sr = pydicom.dcmread(tmp_path / "outputs" / outputs[0].path)
    assert sr.StudyInstanceUID == study
    referenced = {
        item.ReferencedSOPInstanceUID
        for evidence in sr.CurrentRequestedProcedureEvidenceSequence
        for series in evidence.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert referenced == set(views)


def test_a_pipeline_whose_scope_differs_from_the_jobs_fails_the_job_clearly(
    engine: Engine, store: DurableStore, uids: UIDs, tmp_path: Path
) -> None:
    """The job was made for a study; the pipeline under that name now decides per series."""
    study = uids.next()
    add_view(engine, store, study, uids.next(), uids.next(), 0)
    promote_stable_studies(
        engine, JobQueue(engine, QueueSettings()), ROUTES, QUIET,
        now=T0 + timedelta(seconds=QUIET), scope_of=lambda _name: "study",
    )  # fmt: skip
    registry = PipelineRegistry({"study_stats": "tests.unit.test_worker_study_scope:PerSeries"})

    outcome = make_worker(engine, store, registry, tmp_path).run_once()

    assert outcome is not None and outcome.state == JobState.FAILED
    assert "decides per series; the job was made per study" in (outcome.error or "")


class PerSeries:
    name = "study_stats"

    def run(self, series: object) -> object:  # never called: the scope check comes first
        raise AssertionError("a study job was run per series")


def test_registry_scopes() -> None:
    registry = PipelineRegistry(PIPELINES)
    assert registry.scope("study_stats") == "study"
    assert registry.scope("series_stats") == "series"
    assert registry.scope("hand_orientation") == "series"  # a built-in: declared, not loaded
    with pytest.raises(PipelineUnavailable):
        registry.scope("nothing_by_that_name")
