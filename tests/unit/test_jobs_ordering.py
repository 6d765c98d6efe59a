"""A pipeline that runs after another on the same series (``runs_after``): its job waits
for the first one's, then gets that one's result (its corrected film as an SC file); if
the first failed it runs on the film as received and is told why; routed alone it runs at
once; a cycle is refused when the configuration loads."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import DigitalXRayImageStorageForPresentation
from sqlalchemy import Engine, select

from dicom_node.db.models import Job, JobState, Result
from dicom_node.errors import NodeError
from dicom_node.flow import Node
from dicom_node.settings import NodeSettings, RouteRule
from dicom_node.store import DurableStore
from pipelines import PipelineRegistry
from tests.support.local_flow import LocalFlow

from .conftest import T0, UIDs, ingest, make_dataset

QUIET = 60.0
PIPELINES = {
    "turn_upright": "tests.support.pipelines:TurnUpright",
    "after_upright": "tests.support.pipelines:AfterUpright",
    "ouroboros": "tests.support.pipelines:Ouroboros",
}
BOTH = (
    RouteRule(
        name="hands",
        modality=("DX",),
        body_part=("HAND",),
        pipelines=("after_upright", "turn_upright"),  # the order in the route does not matter
    ),
)
ALONE = (RouteRule(name="hands", modality=("DX",), pipelines=("after_upright",)),)


@pytest.fixture
def registry() -> PipelineRegistry:
    return PipelineRegistry(PIPELINES)


class Flow(LocalFlow):
    def jobs(self) -> list[tuple[str, int, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Job.pipeline, Job.series_revision, Job.state).order_by(Job.id)
            ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def summary(self, pipeline: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            summaries = (
                conn.execute(
                    select(Result.summary)
                    .where(Result.pipeline == pipeline)
                    .order_by(Result.id.desc())
                )
                .scalars()
                .all()
            )
        return dict(summaries[0])


@pytest.fixture
def flow(engine: Engine, store: DurableStore, registry: PipelineRegistry, tmp_path: Path) -> Any:
    return lambda routes=BOTH: Flow(
        engine, store, registry, tmp_path / "outputs", routes, t0=T0, quiet_seconds=QUIET
    )


def film(engine: Engine, store: DurableStore, study: str, series: str, sop: str, **kw: Any) -> None:
    at = kw.pop("at", T0)
    ds = make_dataset(
        study,
        series,
        sop,
        modality="DX",
        sop_class=DigitalXRayImageStorageForPresentation,
        rows=4,
        columns=6,
        BodyPartExamined="HAND",
        **kw,
    )
    ingest(engine, store, ds, at=at)


def test_the_second_pipeline_waits_then_gets_the_first_ones_corrected_film(
    flow: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    node = flow()
    film(engine, store, uids.next(), uids.next(), uids.next())

    assert node.promote() == 2
    assert node.jobs() == [
        ("turn_upright", 1, JobState.QUEUED),
        ("after_upright", 1, JobState.WAITING),
    ]
    assert node.release() == 0  # not yet ended
    assert node.run_jobs() == ["done"]  # only the first one could be claimed
    assert node.release() == 1
    assert node.run_jobs() == ["done"]

    summary = node.summary("after_upright")
    assert summary["upstream"] == "done"
    assert summary["film_shape"] == [6, 4]  # the corrected (turned) film, not the 4 × 6 one
    assert summary["upstream_summary"] == {"rotation_deg": 90}


def test_when_the_first_fails_the_second_runs_on_the_film_as_received_and_says_why(
    flow: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    node = flow()
    film(engine, store, uids.next(), uids.next(), uids.next(), SeriesDescription="fail")
    node.promote()
    assert node.run_jobs() == ["failed"]
    assert node.release() == 1

    assert node.run_jobs() == ["done"]
    summary = node.summary("after_upright")
    assert summary["upstream"] == "failed"
    assert "no hand found" in summary["upstream_error"]
    assert summary["film_shape"] == [4, 6]


def test_routed_alone_it_runs_at_once_on_the_film_as_received(
    flow: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    node = flow(ALONE)
    film(engine, store, uids.next(), uids.next(), uids.next())
    node.promote()
    assert node.jobs() == [("after_upright", 1, JobState.QUEUED)]
    assert node.run_jobs() == ["done"]
    assert node.summary("after_upright") == {
        "upstream": None,
        "film_shape": [4, 6],
        "upstream_error": None,
    }


def test_a_late_film_makes_the_second_wait_for_the_first_ones_new_job(
    flow: Any, engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    node = flow()
    study, series = uids.next(), uids.next()
    film(engine, store, study, series, uids.next())
    node.promote()
    node.run_jobs()
    node.release()
    node.run_jobs()
    film(
        engine, store, study, series, uids.next(), InstanceNumber=2, at=T0 + timedelta(seconds=300)
    )

    assert node.promote(at_s=300 + QUIET) == 2
    assert node.jobs()[2:] == [
        ("turn_upright", 2, JobState.QUEUED),
        ("after_upright", 2, JobState.WAITING),  # the first's revision-1 job does not count
    ]


def test_a_cycle_is_refused_by_config_check_and_by_the_node(tmp_path: Path) -> None:
    registry = PipelineRegistry(PIPELINES)
    assert registry.order_problems(["after_upright", "turn_upright"]) == []
    (problem,) = registry.order_problems(["ouroboros"])
    assert "cycle" in problem and "ouroboros -> ouroboros" in problem

    settings = NodeSettings.model_validate(
        {
            "storage_dir": tmp_path / "storage",
            "database_url": f"sqlite:///{tmp_path / 'node.sqlite'}",
            "extra_pipelines": PIPELINES,
            "routes": [{"name": "loop", "modality": ["DX"], "pipelines": ["ouroboros"]}],
        }
    )
    with pytest.raises(NodeError, match="cycle"):
        Node(settings)
