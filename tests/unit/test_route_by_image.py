"""Routing by image: films whose header is unclear (or checked) are classified first and
then routed by what the classifier saw, through the same rules; a non-radiograph is routed
to nothing; a header that lies is recorded and routed as the route says.

A scripted classifier (``tests.support.pipelines.ScriptedTriage``) stands in for the
network here, with the real summary keys; the real ``xray_triage`` pipeline runs through a
real receiver in ``tests/integration/test_xray_triage_routing.py``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ComputedRadiographyImageStorage
from sqlalchemy import Engine, select

from dicom_node.db.models import Job, JobState, Result, Series, TriageState
from dicom_node.ingest.route_by_image import ClassifiedReport
from dicom_node.settings import RouteRule
from dicom_node.store import DurableStore
from pipelines import PipelineRegistry
from tests.support.local_flow import LocalFlow

from .conftest import T0, UIDs, ingest, make_dataset

QUIET = 60.0
PIPELINES = {
    "xray_triage": "tests.support.pipelines:ScriptedTriage",
    "series_stats": "tests.support.pipelines:SeriesStats",
    "study_stats": "tests.support.pipelines:StudyStats",
}


def routes(**triage: Any) -> tuple[RouteRule, ...]:
    """Hands to series_stats, elbows to the study-scoped study_stats (as MURA), chests to
    nothing but their own route; the radiograph routes classify unclear films."""
    by_image = {"when_headers_unclear": "xray_triage", **triage}
    return (
        RouteRule(
            name="hand",
            modality=("CR", "DX"),
            body_part=("HAND",),
            pipelines=("series_stats",),
            **by_image,
        ),
        RouteRule(
            name="msk",
            modality=("CR", "DX"),
            body_part=("ELBOW", "WRIST"),
            pipelines=("study_stats",),
            **by_image,
        ),
    )


@pytest.fixture
def registry() -> PipelineRegistry:
    return PipelineRegistry(PIPELINES)


class Node(LocalFlow):
    """The stable check, the classified-film pass and one worker, on one database."""

    def jobs(self) -> list[tuple[str, str, str | None, str]]:
        """(series UID, pipeline, route, state) of every job, in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Series.series_instance_uid, Job.pipeline, Job.route, Job.state)
                .join(Series, Series.id == Job.series_id)
                .order_by(Job.id)
            ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def series(self, uid: str) -> tuple[str | None, str | None]:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Series.triage_state, Series.routing_body_part).where(
                    Series.series_instance_uid == uid
                )
            ).one()
        return row.triage_state, row.routing_body_part


def film(
    store: DurableStore,
    engine: Engine,
    study: str,
    series: str,
    sop: str,
    *,
    sees: str,
    body_part: str | None,
) -> None:
    attributes: dict[str, Any] = {"SeriesDescription": f"sees:{sees}"}
    if body_part is not None:
        attributes["BodyPartExamined"] = body_part
    ds = make_dataset(
        study,
        series,
        sop,
        modality="CR",
        sop_class=ComputedRadiographyImageStorage,
        **attributes,
    )
    ingest(engine, store, ds, at=T0)


@pytest.fixture
def make_node(
    engine: Engine, store: DurableStore, registry: PipelineRegistry, tmp_path: Path
) -> Any:
    def make(rules: tuple[RouteRule, ...] | None = None) -> Node:
        return Node(
            engine,
            store,
            registry,
            tmp_path / "outputs",
            rules or routes(),
            t0=T0,
            quiet_seconds=QUIET,
        )

    return make


@pytest.mark.parametrize("body_part", [None, "", "LEFT HAND PA", "ABDOMEN"])
def test_an_unclear_film_is_classified_first_then_routed_by_what_the_image_shows(
    make_node: Any, engine: Engine, store: DurableStore, uids: UIDs, body_part: str | None
) -> None:
    node = make_node()
    study, series = uids.next(), uids.next()
    film(store, engine, study, series, uids.next(), sees="HAND", body_part=body_part)

    assert node.promote() == 1
    assert node.jobs() == [(series, "xray_triage", "hand", JobState.QUEUED)]
    assert node.series(series) == (TriageState.PENDING, None)
    assert node.settle().jobs_created == 0  # its classification has not run yet

    assert node.run_jobs() == [JobState.DONE]
    report = node.settle()

    assert report.routed == [series] and report.jobs_created == 1
    assert node.series(series) == (TriageState.DONE, "HAND")
    assert node.jobs()[1:] == [(series, "series_stats", "hand", JobState.QUEUED)]
    assert node.settle() == ClassifiedReport()  # settled once
    assert node.promote(at_s=10 * QUIET) == 0  # and the stable check queues nothing more


def test_a_film_with_a_clear_header_is_routed_by_it_without_classification(
    make_node: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    node = make_node()
    study, series = uids.next(), uids.next()
    film(store, engine, study, series, uids.next(), sees="CHEST", body_part="HAND")

    assert node.promote() == 1
    assert node.jobs() == [(series, "series_stats", "hand", JobState.QUEUED)]
    assert node.series(series) == (None, None)


def test_a_non_radiograph_is_routed_to_nothing_and_recorded(
    make_node: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    node = make_node()
    study, series = uids.next(), uids.next()
    film(store, engine, study, series, uids.next(), sees="not_xray", body_part=None)
    node.promote()
    node.run_jobs()

    report = node.settle()

    assert report.not_xray == [series] and report.jobs_created == 0
    assert node.series(series) == (TriageState.NOT_XRAY, None)
    assert [job[1] for job in node.jobs()] == ["xray_triage"]
    with engine.connect() as conn:
        summary = conn.execute(select(Result.summary)).scalar_one()
    assert summary["is_xray"] is False  # the verdict stays in the results log


def test_a_classified_view_joins_its_studys_study_scoped_job(
    make_node: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    """One elbow view has its header, the other none: one study job over both, made only
    once the unclear one is classified (not a job over the first, then another)."""
    node = make_node()
    study, labelled, unclear = uids.next(), uids.next(), uids.next()
    film(store, engine, study, labelled, uids.next(), sees="ELBOW", body_part="ELBOW")
    film(store, engine, study, unclear, uids.next(), sees="ELBOW", body_part=None)

    assert node.promote() == 1  # the classification only
    assert node.run_jobs() == [JobState.DONE]
    assert node.settle().jobs_created == 1
    assert node.run_jobs() == [JobState.DONE]

    with engine.connect() as conn:
        study_jobs = conn.execute(
            select(Job.pipeline, Job.input_series).where(Job.scope == "study")
        ).all()
        results = conn.execute(select(Result.summary).where(Result.pipeline == "study_stats")).all()
    assert len(study_jobs) == 1
    assert results[0].summary["series"] == [labelled, unclear]


def test_a_study_job_waits_for_a_film_being_classified_whatever_else_the_study_holds(
    make_node: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    """A labelled elbow, an unclear elbow and a labelled hand film (a series job of its
    own, queued at once): the study job still waits for the unclear film."""
    node = make_node()
    study, elbow, unclear, hand = uids.next(), uids.next(), uids.next(), uids.next()
    film(store, engine, study, elbow, uids.next(), sees="ELBOW", body_part="ELBOW")
    film(store, engine, study, unclear, uids.next(), sees="ELBOW", body_part=None)
    film(store, engine, study, hand, uids.next(), sees="HAND", body_part="HAND")

    assert node.promote() == 2  # the classification and the hand's job, no study job yet
    assert sorted(job[1] for job in node.jobs()) == ["series_stats", "xray_triage"]
    node.run_jobs()
    assert node.settle().jobs_created == 1
    with engine.connect() as conn:
        (inputs,) = conn.execute(select(Job.input_series).where(Job.scope == "study")).scalars()
    assert len(inputs) == 2  # both elbows


@pytest.mark.parametrize(
    ("follow", "routed_as", "pipeline"),
    [("header", "ELBOW", "study_stats"), ("image", "HAND", "series_stats")],
)
def test_a_header_that_disagrees_with_the_image_is_recorded_and_routed_as_configured(
    make_node: Any,
    engine: Engine,
    store: DurableStore,
    uids: UIDs,
    follow: str,
    routed_as: str,
    pipeline: str,
) -> None:
    node = make_node(routes(check_headers=True, when_headers_disagree=follow))
    study, series = uids.next(), uids.next()
    film(store, engine, study, series, uids.next(), sees="HAND", body_part="ELBOW")

    node.promote()
    if follow == "header":  # the header routes at once; the classifier only checks it
        assert {job[1] for job in node.jobs()} == {"xray_triage", "study_stats"}
    else:
        assert [job[1] for job in node.jobs()] == ["xray_triage"]
    node.run_jobs()
    report = node.settle()

    assert report.disagreements == [series]
    assert node.series(series) == (TriageState.DONE, routed_as)
    assert sorted({job[1] for job in node.jobs()}) == sorted({"xray_triage", pipeline})
    with engine.connect() as conn:
        summary = conn.execute(
            select(Result.summary).where(Result.pipeline == "xray_triage")
        ).scalar_one()
    assert summary["header_disagrees"] is True
    assert (summary["header_body_part"], summary["body_part_examined"]) == ("ELBOW", "HAND")


def test_a_failed_classification_routes_by_the_header_and_loses_nothing(
    make_node: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    node = make_node()
    study, series = uids.next(), uids.next()
    film(store, engine, study, series, uids.next(), sees="fail", body_part="WRIST PA")
    node.promote()
    assert node.run_jobs() == [JobState.FAILED]

    report = node.settle()

    assert report.failed == [series]
    assert node.series(series) == (TriageState.FAILED, None)
    assert [job[1] for job in node.jobs()] == ["xray_triage"]  # its header routes nowhere


def test_a_late_film_in_a_classified_series_is_routed_the_same_way_without_reclassifying(
    make_node: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    node = make_node()
    study, series = uids.next(), uids.next()
    film(store, engine, study, series, uids.next(), sees="HAND", body_part=None)
    node.promote()
    node.run_jobs()
    node.settle()
    node.run_jobs()

    late = make_dataset(
        study,
        series,
        uids.next(),
        modality="CR",
        sop_class=ComputedRadiographyImageStorage,
        SeriesDescription="sees:HAND",
    )
    ingest(engine, store, late, at=T0 + timedelta(seconds=500))

    assert node.promote(at_s=500 + QUIET) == 1
    assert [job[1] for job in node.jobs()] == ["xray_triage", "series_stats", "series_stats"]


def test_the_study_page_data_says_how_each_series_was_routed(
    make_node: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    from dicom_node.http.page_queries import study_page

    node = make_node()
    study, photo, hand = uids.next(), uids.next(), uids.next()
    film(store, engine, study, photo, uids.next(), sees="not_xray", body_part=None)
    film(store, engine, study, hand, uids.next(), sees="HAND", body_part="")
    node.promote()
    node.run_jobs()
    node.settle()

    page = study_page(engine, study)
    assert page is not None
    routed = {s["series_instance_uid"]: s for s in page["series"]}
    assert (routed[photo]["triage_state"], routed[hand]["routing_body_part"]) == (
        TriageState.NOT_XRAY,
        "HAND",
    )
