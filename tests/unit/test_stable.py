"""Stable studies: quiet period with an injected clock, job creation, re-opening."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select, update

from dicom_node.db.models import (
    Job,
    JobState,
    ModelVersion,
    Series,
    Study,
    StudyPurpose,
    StudyState,
)
from dicom_node.ingest.stable import promote_stable_studies
from dicom_node.jobs.model_registry import NO_MODEL
from dicom_node.jobs.queue import JobQueue
from dicom_node.settings import QueueSettings, RouteRule

from .conftest import T0, UIDs, add_instance

QUIET = 60.0
ROUTES = (
    RouteRule(name="ct", modality=("CT",), pipelines=("series_stats",)),
    RouteRule(name="hands", modality=("CR",), body_part=("HAND",), pipelines=("hand", "bone")),
)


@pytest.fixture
def queue(engine: Engine) -> JobQueue:
    return JobQueue(engine, QueueSettings(max_attempts=4))


def promote(engine: Engine, queue: JobQueue, seconds_after_t0: float):  # type: ignore[no-untyped-def]
    return promote_stable_studies(
        engine, queue, ROUTES, QUIET, now=T0 + timedelta(seconds=seconds_after_t0)
    )


def jobs(engine: Engine) -> list[tuple[str, str, str, int, str | None, str]]:
    """(series UID, pipeline, model version, revision, route, state) of every job."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Series.series_instance_uid,
                Job.pipeline,
                Job.model_version,
                Job.series_revision,
                Job.route,
                Job.state,
            )
            .join(Series, Series.id == Job.series_id)
            .order_by(Job.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def study_state(engine: Engine, uid: str) -> tuple[str, object, int]:
    with engine.connect() as conn:
        row = conn.execute(
            select(Study.state, Study.stable_at, Study.times_reopened).where(
                Study.study_instance_uid == uid
            )
        ).one()
    return row.state, row.stable_at, row.times_reopened


@pytest.fixture
def study(engine: Engine, uids: UIDs) -> dict[str, str]:
    """One study at T0: a CT series (2 instances), a CR hand series, an unrouted SR series."""
    names = {"study": uids.next(), "ct": uids.next(), "hand": uids.next(), "sr": uids.next()}
    add_instance(engine, names["study"], names["ct"], uids.next(), at=T0, modality="CT")
    add_instance(engine, names["study"], names["ct"], uids.next(), at=T0 - timedelta(seconds=3))
    add_instance(
        engine, names["study"], names["hand"], uids.next(), at=T0, modality="CR", body_part="HAND"
    )
    add_instance(engine, names["study"], names["sr"], uids.next(), at=T0, modality="SR")
    return names


def test_not_stable_before_the_quiet_period(
    engine: Engine, queue: JobQueue, study: dict[str, str]
) -> None:
    report = promote(engine, queue, QUIET - 0.001)
    assert report.studies == []
    assert report.jobs_created == 0
    assert study_state(engine, study["study"]) == (StudyState.RECEIVING, None, 0)
    assert jobs(engine) == []


def test_stable_after_the_quiet_period(
    engine: Engine, queue: JobQueue, study: dict[str, str]
) -> None:
    report = promote(engine, queue, QUIET)
    assert report.studies == [study["study"]]
    assert report.jobs_created == 3
    assert report.unrouted_series == 1
    assert study_state(engine, study["study"]) == (
        StudyState.STABLE,
        T0 + timedelta(seconds=QUIET),
        0,
    )
    assert sorted(jobs(engine)) == sorted(
        [
            (study["ct"], "series_stats", NO_MODEL, 2, "ct", JobState.QUEUED),
            (study["hand"], "hand", NO_MODEL, 1, "hands", JobState.QUEUED),
            (study["hand"], "bone", NO_MODEL, 1, "hands", JobState.QUEUED),
        ]
    )


def test_jobs_carry_the_queues_max_attempts(
    engine: Engine, queue: JobQueue, study: dict[str, str]
) -> None:
    promote(engine, queue, QUIET)
    with engine.connect() as conn:
        assert set(conn.scalars(select(Job.max_attempts))) == {4}


def test_promotion_is_idempotent(engine: Engine, queue: JobQueue, study: dict[str, str]) -> None:
    promote(engine, queue, QUIET)
    before = jobs(engine)
    report = promote(engine, queue, QUIET + 3600)
    assert report.studies == []
    assert report.jobs_created == 0
    assert jobs(engine) == before
    # stable_at is not moved by the second call
    assert study_state(engine, study["study"])[1] == T0 + timedelta(seconds=QUIET)


def test_only_quiet_studies_are_promoted(engine: Engine, queue: JobQueue, uids: UIDs) -> None:
    quiet, busy = uids.next(), uids.next()
    add_instance(engine, quiet, uids.next(), uids.next(), at=T0)
    add_instance(engine, busy, uids.next(), uids.next(), at=T0 + timedelta(seconds=50))
    report = promote(engine, queue, QUIET + 10)
    assert report.studies == [quiet]
    assert study_state(engine, busy)[0] == StudyState.RECEIVING
    assert promote(engine, queue, QUIET + 50).studies == [busy]


def test_late_instance_reopens_and_requeues_only_the_changed_series(
    engine: Engine, queue: JobQueue, study: dict[str, str], uids: UIDs
) -> None:
    promote(engine, queue, QUIET)
    first_jobs = jobs(engine)

    late = T0 + timedelta(seconds=300)
    outcome = add_instance(engine, study["study"], study["ct"], uids.next(), at=late)
    assert outcome.study_reopened
    assert study_state(engine, study["study"])[0] == StudyState.RECEIVING
    assert study_state(engine, study["study"])[2] == 1

    early = promote(engine, queue, 300 + QUIET - 1)
    assert early.studies == [] and early.jobs_created == 0

    report = promote(engine, queue, 300 + QUIET)
    assert report.studies == [study["study"]]
    assert report.jobs_created == 1
    assert report.unrouted_series == 1
    assert jobs(engine) == [
        *first_jobs,
        (study["ct"], "series_stats", NO_MODEL, 3, "ct", JobState.QUEUED),
    ]
    assert study_state(engine, study["study"]) == (
        StudyState.STABLE,
        late + timedelta(seconds=QUIET),
        1,
    )


def test_late_new_series_gets_its_own_job(
    engine: Engine, queue: JobQueue, study: dict[str, str], uids: UIDs
) -> None:
    promote(engine, queue, QUIET)
    new_series = uids.next()
    add_instance(engine, study["study"], new_series, uids.next(), at=T0 + timedelta(seconds=100))
    report = promote(engine, queue, 100 + QUIET)
    assert report.jobs_created == 1
    assert jobs(engine)[-1][:4] == (new_series, "series_stats", NO_MODEL, 1)


def test_late_duplicate_does_not_reopen(engine: Engine, queue: JobQueue, uids: UIDs) -> None:
    study, series, sop = uids.next(), uids.next(), uids.next()
    add_instance(engine, study, series, sop, at=T0)
    promote(engine, queue, QUIET)
    add_instance(engine, study, series, sop, at=T0 + timedelta(seconds=200))
    assert study_state(engine, study)[0] == StudyState.STABLE
    assert promote(engine, queue, 200 + QUIET).jobs_created == 0


def test_active_model_version_is_part_of_the_job(
    engine: Engine, queue: JobQueue, study: dict[str, str]
) -> None:
    with engine.begin() as conn:
        for version, active in (("v1", False), ("v2", True)):
            conn.execute(
                insert(ModelVersion).values(
                    pipeline="series_stats",
                    version=version,
                    path=f"/models/{version}",
                    sha256="0" * 64,
                    created_at=T0,
                    active=active,
                    metrics={},
                )
            )
    promote(engine, queue, QUIET)
    versions = {(j[1], j[2]) for j in jobs(engine)}
    assert versions == {("series_stats", "v2"), ("hand", NO_MODEL), ("bone", NO_MODEL)}


def test_study_with_nothing_routed_is_still_stable(
    engine: Engine, queue: JobQueue, uids: UIDs
) -> None:
    study = uids.next()
    add_instance(engine, study, uids.next(), uids.next(), modality="MR")
    report = promote(engine, queue, QUIET)
    assert report.studies == [study]
    assert (report.jobs_created, report.unrouted_series) == (0, 1)
    assert study_state(engine, study)[0] == StudyState.STABLE


# -- training studies (retrieved from the PACS for retraining) ------------------------------


def set_purpose(engine: Engine, study_uid: str, purpose: StudyPurpose) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Study).where(Study.study_instance_uid == study_uid).values(purpose=purpose)
        )


def test_a_training_study_becomes_stable_without_jobs(
    engine: Engine,
    queue: JobQueue,
    study: dict[str, str],
    uids: UIDs,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its series would match routes (CT, CR hand): a clinical study got 3 jobs."""
    clinical = uids.next()
    add_instance(engine, clinical, uids.next(), uids.next(), at=T0, modality="CT")
    set_purpose(engine, study["study"], StudyPurpose.TRAINING)
    with caplog.at_level(logging.INFO, logger="dicom_node.ingest.stable"):
        report = promote(engine, queue, QUIET)
    assert sorted(report.studies) == sorted([study["study"], clinical])
    assert report.training_studies == [study["study"]]
    assert study_state(engine, study["study"])[0] == StudyState.STABLE
    assert [j[0] for j in jobs(engine)] == [clinical_series(engine, clinical)]
    assert report.jobs_created == 1
    assert f"study {study['study']} stable: training data (3 series, 4 instance(s)), no jobs" in (
        caplog.text
    )
    # A late instance re-opens it; stable again, still no jobs and its purpose kept.
    add_instance(engine, study["study"], study["ct"], uids.next(), at=T0 + timedelta(seconds=100))
    report = promote(engine, queue, 100 + QUIET)
    assert report.training_studies == [study["study"]]
    assert report.jobs_created == 0
    assert study_state(engine, study["study"]) == (
        StudyState.STABLE,
        T0 + timedelta(seconds=100 + QUIET),
        1,
    )
    assert len(jobs(engine)) == 1
    with engine.connect() as conn:
        purpose = conn.scalar(
            select(Study.purpose).where(Study.study_instance_uid == study["study"])
        )
    assert purpose == StudyPurpose.TRAINING


def clinical_series(engine: Engine, study_uid: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.scalar(
                select(Series.series_instance_uid)
                .join(Study, Study.id == Series.study_id)
                .where(Study.study_instance_uid == study_uid)
            )
        )


# -- study-scoped pipelines -----------------------------------------------------------------

STUDY_ROUTES = (
    RouteRule(name="msk", modality=("DX",), pipelines=("mura", "series_stats")),
    RouteRule(name="ct", modality=("CT",), pipelines=("series_stats",)),
)


def scope_of(pipeline: str) -> str:
    return "study" if pipeline == "mura" else "series"


def promote_study(engine: Engine, queue: JobQueue, seconds_after_t0: float):  # type: ignore[no-untyped-def]
    return promote_stable_studies(
        engine,
        queue,
        STUDY_ROUTES,
        QUIET,
        now=T0 + timedelta(seconds=seconds_after_t0),
        scope_of=scope_of,
    )


def study_jobs(engine: Engine) -> list[tuple[str, str, int, str, list[int] | None]]:
    """(anchor series UID, pipeline, revision, scope, input series ids) of every job."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                Series.series_instance_uid,
                Job.pipeline,
                Job.series_revision,
                Job.scope,
                Job.input_series,
            )
            .join(Series, Series.id == Job.series_id)
            .order_by(Job.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def series_ids(engine: Engine, *uids: str) -> list[int]:
    with engine.connect() as conn:
        return [
            conn.scalar(select(Series.id).where(Series.series_instance_uid == uid)) for uid in uids
        ]


def test_a_study_scoped_pipeline_gets_one_job_over_every_routed_series(
    engine: Engine, queue: JobQueue, uids: UIDs
) -> None:
    study, first, second, ct = uids.next(), uids.next(), uids.next(), uids.next()
    add_instance(engine, study, first, uids.next(), at=T0, modality="DX")
    add_instance(engine, study, first, uids.next(), at=T0, modality="DX")
    add_instance(engine, study, second, uids.next(), at=T0, modality="DX")
    add_instance(engine, study, ct, uids.next(), at=T0, modality="CT")

    report = promote_study(engine, queue, QUIET)

    # mura once for the study (2 DX series, 3 views); series_stats per series as before.
    assert report.jobs_created == 4
    found = study_jobs(engine)
    mura = [j for j in found if j[1] == "mura"]
    assert mura == [(first, "mura", 3, "study", series_ids(engine, first, second))]
    per_series = sorted((j[0], j[2], j[3], j[4]) for j in found if j[1] == "series_stats")
    assert per_series == sorted(
        [(first, 2, "series", None), (second, 1, "series", None), (ct, 1, "series", None)]
    )
    # Checked again: nothing new.
    assert promote_study(engine, queue, QUIET + 3600).jobs_created == 0


def test_a_late_view_in_a_new_series_reruns_the_study_job_once(
    engine: Engine, queue: JobQueue, uids: UIDs
) -> None:
    study, first, second, late_series = uids.next(), uids.next(), uids.next(), uids.next()
    add_instance(engine, study, first, uids.next(), at=T0, modality="DX")
    add_instance(engine, study, second, uids.next(), at=T0, modality="DX")
    promote_study(engine, queue, QUIET)

    add_instance(
        engine, study, late_series, uids.next(), at=T0 + timedelta(seconds=200), modality="DX"
    )
    report = promote_study(engine, queue, 200 + QUIET)

    mura = [j for j in study_jobs(engine) if j[1] == "mura"]
    assert mura == [
        (first, "mura", 2, "study", series_ids(engine, first, second)),
        (first, "mura", 3, "study", series_ids(engine, first, second, late_series)),
    ]
    assert report.jobs_created == 2  # the study job again, and series_stats for the new series
    # A late instance of a series no route sends to mura changes no mura job.
    add_instance(
        engine, study, uids.next(), uids.next(), at=T0 + timedelta(seconds=400), modality="SR"
    )
    promote_study(engine, queue, 400 + QUIET)
    assert len([j for j in study_jobs(engine) if j[1] == "mura"]) == 2
