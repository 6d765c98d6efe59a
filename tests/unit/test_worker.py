"""Worker.run_once and the pipeline registry, with real files and a real SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import highdicom as hd
import pydicom
import pytest
from sqlalchemy import Engine, func, select, update

from dicom_node.db.models import Instance, Job, JobState, Measurement, Output, Result, Series
from dicom_node.jobs.queue import JobKey, JobQueue
from dicom_node.jobs.worker import OutputPlan, Worker
from dicom_node.output.encode import DeviceIdentity
from dicom_node.settings import QueueSettings
from dicom_node.store import DurableStore
from pipelines import (
    Code,
    Finding,
    PipelineRegistry,
    PipelineResult,
    PipelineUnavailable,
    SeriesInput,
)
from pipelines import (
    Measurement as PipelineMeasurement,
)
from pipelines.contract import Pipeline
from pipelines.registry import BUILTIN_PIPELINES

from .conftest import UIDs, ingest, job_row, make_dataset

TEST_PIPELINES = {
    "series_stats": "tests.support.pipelines:SeriesStats",
    "always_retry": "tests.support.pipelines:AlwaysRetry",
    "broken": "tests.support.pipelines:Broken",
}


# -- pipelines for the registry tests (found by name like any site pipeline) ---------------


class NoRun:
    name = "no_run"


class NoName:
    def run(self, series: SeriesInput) -> PipelineResult:
        return PipelineResult("no_name", series.model_version)


class Echo:
    name = "echo"

    def run(self, series: SeriesInput) -> PipelineResult:
        return PipelineResult(self.name, series.model_version, {"files": len(series.files)})


def make_echo() -> Echo:
    return Echo()


ECHO_INSTANCE = Echo()
NOT_CALLABLE = 42


class LeaseThief:
    """While it runs, its lease runs out and another worker claims the job."""

    name = "lease_thief"
    engine: ClassVar[Engine | None] = None

    def run(self, series: SeriesInput) -> PipelineResult:
        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.execute(
                update(Job).values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        other = JobQueue(self.engine, QueueSettings()).claim("other-worker")
        assert other is not None
        return PipelineResult(self.name, series.model_version, {"stolen": True})


SLICE_SCORE = Code("UBR-SCORE", "99DCMNODE", "Body part regression score")
CHEST = Code("816094009", "SCT", "Chest")


class SliceScores:
    """Reports a series-level range and a finding; one score per slice for the log only."""

    name = "slice_scores"

    def run(self, series: SeriesInput) -> PipelineResult:
        uids = [
            str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in series.files
        ]
        per_slice = [
            PipelineMeasurement(
                "Body part score",
                0.5 * i - 1,
                "{score}",
                SLICE_SCORE,
                tracking_uid=uid,
                slice_index=i,
            )
            for i, uid in enumerate(uids)
        ]
        return PipelineResult(
            self.name,
            series.model_version,
            {"slices": len(uids)},
            measurements=(
                PipelineMeasurement("Highest score", 0.5 * len(uids) - 1.5, "{score}"),
                PipelineMeasurement("chest length", 42.0, "mm", finding_site=CHEST),
            ),
            findings=(Finding(Code("123014", "DCM", "Target Region"), CHEST),),
            log_measurements=tuple(per_slice),
        )


THIS_MODULE = __name__


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def registry() -> PipelineRegistry:
    return PipelineRegistry(
        {**TEST_PIPELINES, "lease_thief": f"{THIS_MODULE}:LeaseThief"},
    )


@pytest.fixture
def ct_series(engine: Engine, store: DurableStore, uids: UIDs) -> dict[str, object]:
    """Three stored CT instances of different sizes, indexed, in one series."""
    study, series = uids.next(), uids.next()
    for number, rows in ((1, 8), (2, 16), (3, 12)):
        ingest(engine, store, make_dataset(study, series, uids.next(), rows=rows, number=number))
    with engine.connect() as conn:
        series_id = conn.scalar(select(Series.id))
    return {"study": study, "series": series, "id": series_id}


def make_worker(
    engine: Engine,
    store: DurableStore,
    registry: PipelineRegistry,
    **queue_settings: float,
) -> Worker:
    queue = JobQueue(engine, QueueSettings(**queue_settings))  # type: ignore[arg-type]
    return Worker(engine, queue, store, registry, owner="test-worker")


def enqueue(worker: Worker, series_id: int, pipeline: str) -> int:
    assert worker.queue.enqueue(JobKey(series_id, pipeline, "none", 3), route="test")
    with worker.engine.connect() as conn:
        return int(conn.scalar(select(func.max(Job.id))))  # type: ignore[arg-type]


def results_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count(Result.id))))  # type: ignore[arg-type]


# -- worker ------------------------------------------------------------------------------------------


def test_nothing_to_do(engine: Engine, store: DurableStore, registry: PipelineRegistry) -> None:
    assert make_worker(engine, store, registry).run_once() is None


def test_done_job_records_result_and_measurements(
    engine: Engine, store: DurableStore, registry: PipelineRegistry, ct_series: dict[str, object]
) -> None:
    worker = make_worker(engine, store, registry)
    job_id = enqueue(worker, ct_series["id"], "series_stats")  # type: ignore[arg-type]

    outcome = worker.run_once()

    assert outcome is not None
    assert (outcome.job_id, outcome.state, outcome.error) == (job_id, "done", None)
    job = job_row(engine, job_id)
    assert (job.state, job.attempts, job.lease_owner) == (JobState.DONE, 1, "test-worker")
    assert job.finished_at is not None
    with engine.connect() as conn:
        result = conn.execute(select(Result)).one()
        measurements = conn.execute(
            select(
                Measurement.name, Measurement.value, Measurement.unit, Measurement.result_id
            ).order_by(Measurement.id)
        ).all()
    assert result.job_id == job_id
    assert result.pipeline == "series_stats"
    assert result.model_version == "none"
    assert result.study_instance_uid == ct_series["study"]
    assert result.series_instance_uid == ct_series["series"]
    assert result.summary == {"instances": 3, "modality": "CT"}
    assert [tuple(m) for m in measurements] == [
        ("instance count", 3.0, "{instances}", result.id),
        ("max rows", 16.0, "{pixels}", result.id),  # read from the stored files
    ]
    assert worker.run_once() is None


def test_log_measurements_are_recorded_with_the_reported_ones_but_not_sent(
    engine: Engine, store: DurableStore, ct_series: dict[str, object], tmp_path: Path
) -> None:
    registry = PipelineRegistry({"slice_scores": f"{THIS_MODULE}:SliceScores"})
    plan = OutputPlan(
        device=DeviceIdentity(ae_title="NODE", software_version="test"),
        uid_root="1.2.826.0.1.3680043.8.498.99",
        outputs_dir=tmp_path / "outputs",
    )
    worker = Worker(engine, JobQueue(engine, QueueSettings()), store, registry, "test-worker", plan)
    enqueue(worker, ct_series["id"], "slice_scores")  # type: ignore[arg-type]

    outcome = worker.run_once()

    assert outcome is not None and outcome.state == "done", outcome
    with engine.connect() as conn:
        result_id = conn.scalar(select(Result.id))
        rows = conn.execute(
            select(
                Measurement.result_id,
                Measurement.name,
                Measurement.value,
                Measurement.unit,
                Measurement.concept_code,
                Measurement.tracking_uid,
                Measurement.slice_index,
            ).order_by(Measurement.id)
        ).all()
        outputs = conn.execute(select(Output.kind, Output.path)).all()
        uids = list(
            conn.execute(
                select(Instance.sop_instance_uid)
                .where(Instance.series_id == ct_series["id"])
                .order_by(Instance.instance_number)
            ).scalars()
        )
    assert [tuple(r) for r in rows] == [
        (result_id, "Highest score", 0.0, "{score}", None, None, None),
        (result_id, "chest length", 42.0, "mm", None, None, None),
        *(
            (result_id, "Body part score", 0.5 * i - 1, "{score}", "99DCMNODE:UBR-SCORE", uid, i)
            for i, uid in enumerate(uids)
        ),
    ]
    # The SR carries the reported measurements and the finding, no per-slice score.
    ((kind, path),) = outputs
    assert kind == "sr"
    sr = hd.sr.srread(tmp_path / "outputs" / path)
    assert isinstance(sr.content, hd.sr.MeasurementReport)
    groups = sr.content.get_image_measurement_groups()
    measured = [(m.name.meaning, m.value) for g in groups for m in g.get_measurements()]
    assert sorted(measured) == [("Highest score", 0.0), ("chest length", 42.0)]
    assert all(not g.source_images for g in groups)
    assert "UBR-SCORE" not in str(sr)


def test_always_retry_ends_failed_after_max_attempts(
    engine: Engine, store: DurableStore, registry: PipelineRegistry, ct_series: dict[str, object]
) -> None:
    worker = make_worker(engine, store, registry, max_attempts=3, retry_backoff_seconds=0)
    job_id = enqueue(worker, ct_series["id"], "always_retry")  # type: ignore[arg-type]

    states = [worker.run_once() for _ in range(3)]

    assert [(o.job_id, o.state) for o in states if o] == [
        (job_id, JobState.QUEUED),
        (job_id, JobState.QUEUED),
        (job_id, JobState.FAILED),
    ]
    assert all(o and o.error == "transient failure for the test" for o in states)
    job = job_row(engine, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 3)
    assert job.last_error == "transient failure for the test"
    assert worker.run_once() is None
    assert results_count(engine) == 0


def test_unexpected_error_is_retried_with_backoff_then_failed(
    engine: Engine, store: DurableStore, registry: PipelineRegistry, ct_series: dict[str, object]
) -> None:
    worker = make_worker(engine, store, registry, max_attempts=2, retry_backoff_seconds=0)
    job_id = enqueue(worker, ct_series["id"], "broken")  # type: ignore[arg-type]
    first, second = worker.run_once(), worker.run_once()
    assert first is not None and first.state == JobState.QUEUED
    assert second is not None and second.state == JobState.FAILED
    assert job_row(engine, job_id).last_error == "RuntimeError: pipeline bug for the test"


def test_unexpected_error_waits_for_the_backoff(
    engine: Engine, store: DurableStore, registry: PipelineRegistry, ct_series: dict[str, object]
) -> None:
    worker = make_worker(engine, store, registry, max_attempts=3, retry_backoff_seconds=30)
    job_id = enqueue(worker, ct_series["id"], "broken")  # type: ignore[arg-type]
    outcome = worker.run_once()
    assert outcome is not None and outcome.state == JobState.QUEUED
    assert worker.run_once() is None  # not due for 30 s
    assert job_row(engine, job_id).run_after > datetime.now(UTC) + timedelta(seconds=25)


def test_unknown_pipeline_fails_at_once(
    engine: Engine, store: DurableStore, registry: PipelineRegistry, ct_series: dict[str, object]
) -> None:
    worker = make_worker(engine, store, registry, max_attempts=5, retry_backoff_seconds=0)
    job_id = enqueue(worker, ct_series["id"], "no_such_pipeline")  # type: ignore[arg-type]

    outcome = worker.run_once()

    assert outcome is not None and outcome.state == JobState.FAILED
    job = job_row(engine, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)
    assert "no pipeline named 'no_such_pipeline'" in job.last_error
    known = sorted({*BUILTIN_PIPELINES, *TEST_PIPELINES, "lease_thief"})
    assert f"known: {', '.join(known)}" in job.last_error
    assert worker.run_once() is None


def test_pipeline_breaking_the_contract_fails_at_once(
    engine: Engine, store: DurableStore, ct_series: dict[str, object]
) -> None:
    registry = PipelineRegistry({"no_run": f"{THIS_MODULE}:NoRun"})
    worker = make_worker(engine, store, registry, max_attempts=5, retry_backoff_seconds=0)
    job_id = enqueue(worker, ct_series["id"], "no_run")  # type: ignore[arg-type]
    outcome = worker.run_once()
    assert outcome is not None and outcome.state == JobState.FAILED
    job = job_row(engine, job_id)
    assert job.attempts == 1
    assert "does not meet the Pipeline contract" in job.last_error


def test_result_of_a_job_whose_lease_was_lost_is_dropped(
    engine: Engine,
    store: DurableStore,
    registry: PipelineRegistry,
    ct_series: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(LeaseThief, "engine", engine)
    worker = make_worker(engine, store, registry)
    job_id = enqueue(worker, ct_series["id"], "lease_thief")  # type: ignore[arg-type]

    outcome = worker.run_once()

    assert outcome is not None and outcome.state == "lease_lost"
    assert results_count(engine) == 0
    job = job_row(engine, job_id)
    assert (job.state, job.lease_owner, job.attempts) == (JobState.RUNNING, "other-worker", 2)


def test_a_worker_runs_jobs_in_order(
    engine: Engine, store: DurableStore, registry: PipelineRegistry, ct_series: dict[str, object]
) -> None:
    worker = make_worker(engine, store, registry, max_attempts=1)
    first = enqueue(worker, ct_series["id"], "series_stats")  # type: ignore[arg-type]
    second = enqueue(worker, ct_series["id"], "broken")  # type: ignore[arg-type]
    outcomes = [worker.run_once(), worker.run_once(), worker.run_once()]
    assert [(o.job_id, o.state) if o else None for o in outcomes] == [
        (first, "done"),
        (second, JobState.FAILED),
        None,
    ]


# -- registry ---------------------------------------------------------------------------------------


def test_registry_names_are_sorted() -> None:
    names = PipelineRegistry(TEST_PIPELINES).names()
    assert names == sorted({*BUILTIN_PIPELINES, *TEST_PIPELINES})
    assert {"always_retry", "broken", "hand_orientation", "series_stats"} <= set(names)


def test_registry_loads_once_and_meets_the_contract(registry: PipelineRegistry) -> None:
    pipeline = registry.get("series_stats")
    assert isinstance(pipeline, Pipeline)
    assert pipeline.name == "series_stats"
    assert registry.get("series_stats") is pipeline


@pytest.mark.parametrize("attribute", ["Echo", "make_echo", "ECHO_INSTANCE"])
def test_registry_accepts_classes_factories_and_objects(attribute: str) -> None:
    pipeline = PipelineRegistry({"echo": f"{THIS_MODULE}:{attribute}"}).get("echo")
    assert isinstance(pipeline, Echo)


def test_registry_without_the_name() -> None:
    known = ", ".join(sorted({*BUILTIN_PIPELINES, "broken"}))
    with pytest.raises(PipelineUnavailable, match=rf"no pipeline named 'x' \(known: {known}\)"):
        PipelineRegistry({"broken": TEST_PIPELINES["broken"]}).get("x")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (f"{THIS_MODULE}:NoRun", "does not meet the Pipeline contract"),
        (f"{THIS_MODULE}:NoName", "does not meet the Pipeline contract"),
        (f"{THIS_MODULE}:NOT_CALLABLE", "does not meet the Pipeline contract"),
        (f"{THIS_MODULE}:Echo", "calls itself 'echo'"),
        (THIS_MODULE, "is not 'module:attribute'"),
        ("tests.unit.no_such_module:Thing", "cannot import tests.unit.no_such_module"),
        (f"{THIS_MODULE}:Missing", f"{THIS_MODULE} has no Missing"),
    ],
)
def test_registry_rejects_bad_targets(target: str, message: str) -> None:
    registry = PipelineRegistry({"candidate": target})
    with pytest.raises(PipelineUnavailable, match=message):
        registry.get("candidate")
    with pytest.raises(PipelineUnavailable):  # not cached as loaded
        registry.get("candidate")


def test_results_listing_summarises_per_slice_values() -> None:
    from dicom_node.jobs.results_log import _measurement_texts

    named = {
        ("Lowest score", "{score}"): [-3.5],
        ("Body part score", "{score}"): [float(v) for v in range(-5, 295)],
    }
    texts = _measurement_texts(named)
    assert texts == ["Lowest score=-3.5 {score}", "Body part score: 300 values -5..294 {score}"]
