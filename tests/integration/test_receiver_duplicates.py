"""The same SOP Instance received twice: Success both times, one file, one row, and the
duplicate policy decides whose bytes are kept. Stable-study promotion makes one job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom.dsutils import split_dataset
from sqlalchemy import func, select

from dicom_node.clock import utcnow
from dicom_node.db.models import Job, Study, StudyState
from dicom_node.ingest.receive import StoreStatus
from dicom_node.ingest.stable import promote_stable_studies
from dicom_node.jobs.queue import JobQueue

pytestmark = pytest.mark.timeout(60)

CT_ROUTE = {"name": "ct", "pipelines": ["ct_body_part"], "modality": ["CT"]}


def after_meta(path: Path) -> bytes:
    _meta, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def twins(make_instance: Callable[..., Path]) -> tuple[Path, Path]:
    """Two files with the same UIDs and different pixel data."""
    first = make_instance(seed=1)
    ds = dcmread(first)
    second = make_instance(
        study_uid=ds.StudyInstanceUID,
        series_uid=ds.SeriesInstanceUID,
        sop_uid=ds.SOPInstanceUID,
        seed=2,
    )
    assert after_meta(first) != after_meta(second)
    return first, second


def stored_path(node: Any, source: Path) -> Path:
    ds = dcmread(source, stop_before_pixels=True)
    return node.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def promote(node: Any) -> int:
    """Run the stable check as if the quiet period had passed; return jobs created."""
    settings = node.settings
    report = promote_stable_studies(
        node.engine,
        JobQueue(node.engine, settings.queue),
        settings.routes,
        settings.stable_after_seconds,
        now=utcnow() + timedelta(seconds=settings.stable_after_seconds + 1),
    )
    return report.jobs_created


def job_count(node: Any) -> int:
    with node.engine.connect() as conn:
        return int(conn.scalar(select(func.count(Job.id))) or 0)


@pytest.mark.parametrize(
    ("policy", "kept"), [("keep_first", 0), ("overwrite", 1)], ids=["keep_first", "overwrite"]
)
def test_duplicate_is_acknowledged_and_stored_once(
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
    policy: str,
    kept: int,
) -> None:
    node = receiver(duplicate_policy=policy)
    sources = twins(make_instance)

    first = store_scu(node.port, [sources[0]])
    second = store_scu(node.port, [sources[1]])
    # The same file again, within one association.
    again = store_scu(node.port, [sources[1], sources[1]])

    assert first.statuses == [StoreStatus.SUCCESS]
    assert second.statuses == [StoreStatus.SUCCESS]
    assert again.statuses == [StoreStatus.SUCCESS, StoreStatus.SUCCESS]
    target = stored_path(node, sources[0])
    assert node.stored_files() == [target]
    assert after_meta(target) == after_meta(sources[kept])
    [row] = node.instances()
    assert node.root / row.path == target
    assert row.size_bytes == target.stat().st_size
    assert node.spool_files() == []


@pytest.mark.parametrize("policy", ["keep_first", "overwrite"])
def test_duplicates_make_one_job(
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
    policy: str,
) -> None:
    node = receiver(duplicate_policy=policy, routes=[CT_ROUTE])
    source = make_instance(modality="CT")

    assert store_scu(node.port, [source, source]).statuses == [0, 0]
    assert promote(node) == 1
    assert job_count(node) == 1

    # A duplicate arriving after the study went stable is not a new instance: the study
    # is not re-opened and no second job appears.
    assert store_scu(node.port, [source]).statuses == [0]
    assert promote(node) == 0
    assert job_count(node) == 1
    with node.engine.connect() as conn:
        state, reopened = conn.execute(select(Study.state, Study.times_reopened)).one()
    assert (state, reopened) == (StudyState.STABLE, 0)


def test_keep_first_restores_a_missing_file(
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> None:
    """A row whose file was lost (deleted by hand) does not make a resend a no-op."""
    node = receiver(duplicate_policy="keep_first")
    source = make_instance()
    assert store_scu(node.port, [source]).statuses == [0]
    target = stored_path(node, source)
    target.unlink()

    assert store_scu(node.port, [source]).statuses == [0]

    assert target.exists()
    assert after_meta(target) == after_meta(source)
    assert len(node.instances()) == 1


# -- the same SOP Instance UID under another study or series -----------------------------------


def moved_twin(make_instance: Callable[..., Path]) -> tuple[Path, Path]:
    """Two files with the same SOP Instance UID in different series."""
    first = make_instance(seed=3)
    ds = dcmread(first)
    second = make_instance(study_uid=ds.StudyInstanceUID, sop_uid=ds.SOPInstanceUID, seed=4)
    assert dcmread(second).SeriesInstanceUID != ds.SeriesInstanceUID
    return first, second


def test_keep_first_keeps_an_instance_resent_under_another_series_where_it_was(
    receiver: Callable[..., Any], make_instance: Callable[..., Path], store_scu: Callable[..., Any]
) -> None:
    node = receiver(duplicate_policy="keep_first")
    first, second = moved_twin(make_instance)

    outcome = store_scu(node.port, [first, second])

    assert outcome.statuses == [StoreStatus.SUCCESS, StoreStatus.SUCCESS]
    assert node.stored_files() == [stored_path(node, first)]
    assert after_meta(stored_path(node, first)) == after_meta(first)
    [row] = node.instances()
    assert node.root / row.path == stored_path(node, first)


def test_overwrite_moves_an_instance_resent_under_another_series(
    receiver: Callable[..., Any], make_instance: Callable[..., Path], store_scu: Callable[..., Any]
) -> None:
    node = receiver(duplicate_policy="overwrite")
    first, second = moved_twin(make_instance)

    outcome = store_scu(node.port, [first, second])

    assert outcome.statuses == [StoreStatus.SUCCESS, StoreStatus.SUCCESS]
    assert node.stored_files() == [stored_path(node, second)]
    [row] = node.instances()
    assert node.root / row.path == stored_path(node, second)
    assert after_meta(stored_path(node, second)) == after_meta(second)
