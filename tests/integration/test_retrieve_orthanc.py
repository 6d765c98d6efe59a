"""Training data from a real PACS (Orthanc): C-FIND, then C-MOVE to the node's receiver
or C-GET (``dicom_node.retraining.retrieve``).

Orthanc holds four synthetic studies (no real patient data):

======  ==========  ================================  ===========
study   StudyDate   series                            instances
======  ==========  ================================  ===========
hand1   20240110    DX, HAND                          1
hand2   20240220    DX, HAND                          1
hand3   20231201    DX, HAND                          1
ct      20240115    CT, CHEST (3 slices); MR, HEAD    3 + 2
======  ==========  ================================  ===========

What is retrieved is indexed in a study of purpose ``training`` that becomes stable
without jobs; a second call fetches nothing again. A PACS that is down raises
``PacsUnavailable`` with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import Engine, select

from dicom_node.clock import utcnow
from dicom_node.db.models import Instance, Job, Series, Study, StudyPurpose
from dicom_node.ingest.index import index_instance, read_header
from dicom_node.ingest.stable import promote_stable_studies
from dicom_node.jobs.queue import JobQueue
from dicom_node.net import pacs_select
from dicom_node.retraining.retrieve import (
    PacsQuery,
    PacsUnavailable,
    RetrieveReport,
    retrieve_for_training,
)
from dicom_node.settings import NodeSettings, QueueSettings, RouteRule
from dicom_node.store import DurableStore
from tests.integration.conftest import (
    LOCALHOST,
    NODE_AET,
    RunningReceiver,
    SettingsBuilder,
    open_node_storage,
)
from tests.integration.node_process import make_series
from tests.peers import OrthancProcess, free_port, require_tool
from training.synthetic.hand_films import write_hand_studies

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]

ROUTES = (
    RouteRule(name="hands", modality=("DX", "CR"), pipelines=("hand_orientation",)),
    RouteRule(name="ct", modality=("CT", "MR"), pipelines=("ct_body_part",)),
)


# -- the PACS's studies -----------------------------------------------------------------------


@dataclass(frozen=True)
class PacsStudies:
    hand1: str
    hand2: str
    hand3: str
    ct: str
    ct_series: str
    mr_series: str
    files: dict[str, list[Path]]  # study UID -> its files


def _restamp(path: Path, **attributes: Any) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


@pytest.fixture
def pacs_studies(tmp_path: Path) -> PacsStudies:
    films = write_hand_studies(tmp_path / "films", 3, seed=7, scale=0.04, modality="DX")
    files: dict[str, list[Path]] = {}
    for film, study_date in zip(films, ("20240110", "20240220", "20231201"), strict=True):
        _restamp(film.path, StudyDate=study_date)
        files[film.study_instance_uid] = [film.path]
    ct_study = generate_uid()
    ct = make_series(tmp_path / "ct", 3, size=32, study_uid=ct_study, modality="CT", seed=1)
    mr = make_series(tmp_path / "mr", 2, size=32, study_uid=ct_study, modality="MR", seed=2)
    for path in ct:
        _restamp(path, StudyDate="20240115", BodyPartExamined="CHEST")
    for path in mr:
        _restamp(path, StudyDate="20240115", BodyPartExamined="HEAD")
    files[ct_study] = ct + mr
    return PacsStudies(
        hand1=films[0].study_instance_uid,
        hand2=films[1].study_instance_uid,
        hand3=films[2].study_instance_uid,
        ct=ct_study,
        ct_series=str(pydicom.dcmread(ct[0], stop_before_pixels=True).SeriesInstanceUID),
        mr_series=str(pydicom.dcmread(mr[0], stop_before_pixels=True).SeriesInstanceUID),
        files=files,
    )


@pytest.fixture
def orthanc_with(
    tmp_path: Path, pacs_studies: PacsStudies
) -> Iterator[Callable[[int], OrthancProcess]]:
    """``orthanc_with(node_port) -> OrthancProcess`` holding ``pacs_studies``, knowing the
    node (AE title DICOM_NODE) as modality ``node`` at ``node_port``; stopped in teardown."""
    require_tool("Orthanc")
    started: list[OrthancProcess] = []

    def start(node_port: int) -> OrthancProcess:
        orthanc = OrthancProcess(
            modalities={"node": [NODE_AET, LOCALHOST, node_port]},
            workdir=tmp_path / "orthanc",
            graceful_stop=False,
        )
        orthanc.start()
        started.append(orthanc)
        for paths in pacs_studies.files.values():
            for path in paths:
                orthanc.upload(path)
        return orthanc

    yield start
    for orthanc in started:
        orthanc.kill()


def with_retrieval(settings: NodeSettings, orthanc_port: int, **retrieval: Any) -> NodeSettings:
    pacs = {"host": LOCALHOST, "port": orthanc_port, "ae_title": "ORTHANC", "timeout_seconds": 10}
    return NodeSettings(**{**settings.model_dump(), "retrieval": {**pacs, **retrieval}})


# -- what the node holds ---------------------------------------------------------------------


def studies(engine: Engine) -> dict[str, str]:
    """Study UID -> purpose of every indexed study."""
    with engine.connect() as conn:
        return {
            row.study_instance_uid: row.purpose
            for row in conn.execute(select(Study.study_instance_uid, Study.purpose))
        }


def indexed_series(engine: Engine) -> dict[str, int]:
    """Series UID -> indexed instances."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Series.series_instance_uid, Instance.id).join(
                Instance, Instance.series_id == Series.id
            )
        ).all()
    counts: dict[str, int] = {}
    for uid, _id in rows:
        counts[uid] = counts.get(uid, 0) + 1
    return counts


def assert_files_in_place(engine: Engine, store: DurableStore) -> None:
    with engine.connect() as conn:
        for sop_uid, path in conn.execute(select(Instance.sop_instance_uid, Instance.path)):
            stored = pydicom.dcmread(store.root / path, stop_before_pixels=True)
            assert stored.SOPInstanceUID == sop_uid
    assert list(store.spool_dir.iterdir()) == []


def promote_all(engine: Engine) -> Any:
    queue = JobQueue(engine, QueueSettings())
    return promote_stable_studies(engine, queue, ROUTES, 1.0, now=utcnow() + timedelta(seconds=30))


def job_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(Job.id)).all())


def assert_clean(report: RetrieveReport) -> None:
    assert report.failures == [], report.failures


# -- (1) C-MOVE to the node's own receiver ------------------------------------------------------


def test_c_move_retrieves_the_selected_studies_into_training_studies_once(
    tmp_path: Path,
    receiver: Callable[..., RunningReceiver],
    orthanc_with: Callable[[int], OrthancProcess],
    pacs_studies: PacsStudies,
) -> None:
    node = receiver()
    orthanc = orthanc_with(node.port)
    settings = with_retrieval(node.settings, orthanc.dicom_port, method="move")
    query = PacsQuery(modality=("DX",), body_part=("hand",), study_date_from="20240101")
    seen: list[tuple[int, int]] = []

    report = retrieve_for_training(
        settings, node.engine, query, progress=lambda done, total: seen.append((done, total))
    )

    assert_clean(report)
    assert report.study_instance_uids == [pacs_studies.hand2, pacs_studies.hand1]  # newest first
    assert (report.studies_found, report.series_found, report.instances_found) == (2, 2, 2)
    assert (report.instances_retrieved, report.instances_already_stored) == (2, 0)
    assert seen == [(0, 2), (1, 2), (2, 2)]
    assert studies(node.engine) == {
        pacs_studies.hand1: StudyPurpose.TRAINING,
        pacs_studies.hand2: StudyPurpose.TRAINING,
    }
    callers = {row.calling_ae_title for row in node.instances()}
    assert callers == {orthanc.aet}  # they came through the receiver, from the PACS
    assert_files_in_place(node.engine, node.store)

    stable = promote_all(node.engine)
    assert sorted(stable.training_studies) == sorted([pacs_studies.hand1, pacs_studies.hand2])
    assert stable.jobs_created == 0
    assert job_count(node.engine) == 0  # a route matches DX: a clinical study would have jobs

    again = retrieve_for_training(settings, node.engine, query)
    assert_clean(again)
    assert again.study_instance_uids == report.study_instance_uids
    assert (again.instances_retrieved, again.instances_already_stored) == (0, 2)
    assert len(node.instances()) == 2


def test_c_move_to_a_destination_the_pacs_does_not_know_is_a_failure_line(
    receiver: Callable[..., RunningReceiver],
    orthanc_with: Callable[[int], OrthancProcess],
    pacs_studies: PacsStudies,
) -> None:
    node = receiver()
    orthanc = orthanc_with(node.port)
    settings = with_retrieval(
        node.settings, orthanc.dicom_port, method="move", move_destination="NOBODY"
    )
    report = retrieve_for_training(settings, node.engine, PacsQuery(modality=("CT",)))
    assert report.study_instance_uids == [pacs_studies.ct]
    assert report.instances_retrieved == 0
    assert len(report.failures) == 1
    assert pacs_studies.ct_series in report.failures[0]
    assert "C-MOVE to NOBODY status 0x" in report.failures[0]
    assert studies(node.engine) == {}  # the empty training study is not left behind


# -- (2) C-GET, no receiver ------------------------------------------------------------------


def _store_clinically(settings: NodeSettings, engine: Engine, path: Path) -> None:
    """As the receiver would have stored it when the PACS sent it (purpose clinical)."""
    store = DurableStore(settings.storage_dir, min_free_bytes=0)
    header = read_header(path)
    relative = store.relative_path_for(header.study_uid, header.series_uid, header.sop_instance_uid)
    spooled = store.spool_dir / "clinical.dcm"
    spooled.write_bytes(path.read_bytes())
    stored = store.place(spooled, relative, overwrite=False)
    index_instance(
        engine,
        header,
        relative_path=stored.relative_path,
        size_bytes=stored.size_bytes,
        calling_ae_title="ORTHANC",
    )


def test_c_get_stores_through_the_receivers_path_without_a_receiver(
    tmp_path: Path,
    node_settings: SettingsBuilder,
    orthanc_with: Callable[[int], OrthancProcess],
    pacs_studies: PacsStudies,
) -> None:
    orthanc = orthanc_with(free_port())  # the port is never called: C-GET needs none
    settings = with_retrieval(node_settings(tmp_path), orthanc.dicom_port, method="get")
    engine, store = open_node_storage(settings)
    try:
        query = PacsQuery(modality=("ct", "DX"), study_date_from="20240112")
        report = retrieve_for_training(settings, engine, query)
        assert_clean(report)
        assert report.study_instance_uids == [pacs_studies.hand2, pacs_studies.ct]
        # The MR series of the CT study is no CT or DX: not retrieved.
        assert (report.series_found, report.instances_found) == (2, 4)
        assert (report.instances_retrieved, report.instances_already_stored) == (4, 0)
        counts = indexed_series(engine)
        assert counts[pacs_studies.ct_series] == 3
        assert sorted(counts.values()) == [1, 3]
        assert studies(engine) == {
            pacs_studies.hand2: StudyPurpose.TRAINING,
            pacs_studies.ct: StudyPurpose.TRAINING,
        }
        assert_files_in_place(engine, store)
        stable = promote_all(engine)
        assert (len(stable.training_studies), stable.jobs_created) == (2, 0)

        again = retrieve_for_training(settings, engine, query)
        assert_clean(again)
        assert (again.instances_retrieved, again.instances_already_stored) == (0, 4)
    finally:
        engine.dispose()


def test_c_get_from_a_pacs_that_does_not_name_the_sop_classes_of_its_studies(
    tmp_path: Path,
    node_settings: SettingsBuilder,
    orthanc_with: Callable[[int], OrthancProcess],
    pacs_studies: PacsStudies,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without SOPClassesInStudy the node offers the SCP role for common classes."""
    find_studies = pacs_select.find_studies

    def without_sop_classes(link: Any, query: PacsQuery) -> list[Any]:
        return [dataclasses.replace(study, sop_classes=()) for study in find_studies(link, query)]

    monkeypatch.setattr(pacs_select, "find_studies", without_sop_classes)
    orthanc = orthanc_with(free_port())
    settings = with_retrieval(node_settings(tmp_path), orthanc.dicom_port, method="get")
    engine, store = open_node_storage(settings)
    try:
        report = retrieve_for_training(settings, engine, PacsQuery(study_date_from="20240111"))
        assert_clean(report)
        assert report.study_instance_uids == [pacs_studies.hand2, pacs_studies.ct]
        assert (report.instances_retrieved, report.instances_found) == (6, 6)
        assert_files_in_place(engine, store)
    finally:
        engine.dispose()


def test_c_get_fetches_only_what_a_clinical_study_lacks_and_keeps_its_purpose(
    tmp_path: Path,
    node_settings: SettingsBuilder,
    orthanc_with: Callable[[int], OrthancProcess],
    pacs_studies: PacsStudies,
) -> None:
    orthanc = orthanc_with(free_port())
    settings = with_retrieval(node_settings(tmp_path), orthanc.dicom_port, method="get")
    engine, store = open_node_storage(settings)
    try:
        ct_files = [
            p
            for p in pacs_studies.files[pacs_studies.ct]
            if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT"
        ]
        _store_clinically(settings, engine, ct_files[0])  # one of the three CT slices
        report = retrieve_for_training(settings, engine, PacsQuery(body_part=("CHEST",)))
        assert_clean(report)
        assert report.study_instance_uids == [pacs_studies.ct]
        assert (report.instances_retrieved, report.instances_already_stored) == (2, 1)
        assert indexed_series(engine) == {pacs_studies.ct_series: 3}
        assert studies(engine) == {pacs_studies.ct: StudyPurpose.CLINICAL}
        assert_files_in_place(engine, store)
    finally:
        engine.dispose()


# -- (3) the filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected", "series"),
    [
        (PacsQuery(), ["hand2", "ct", "hand1", "hand3"], 5),
        (PacsQuery(max_studies=2), ["hand2", "ct"], 3),
        (PacsQuery(modality=("DX",), max_studies=1), ["hand2"], 1),
        (PacsQuery(study_date_from="20231101", study_date_to="20231231"), ["hand3"], 1),
        (PacsQuery(study_date_to="20240110"), ["hand1", "hand3"], 2),
        (PacsQuery(body_part=("CHEST",)), ["ct"], 1),
        (PacsQuery(modality=("MR",)), ["ct"], 1),
        (PacsQuery(modality=("CR",)), [], 0),
        (PacsQuery(body_part=("HAND",), study_date_from="20240111"), ["hand2"], 1),
    ],
)
def test_filters_select_the_right_studies_and_series(
    tmp_path: Path,
    node_settings: SettingsBuilder,
    orthanc_with: Callable[[int], OrthancProcess],
    pacs_studies: PacsStudies,
    query: PacsQuery,
    expected: list[str],
    series: int,
) -> None:
    orthanc = orthanc_with(free_port())
    settings = with_retrieval(node_settings(tmp_path), orthanc.dicom_port, method="get")
    engine, _store = open_node_storage(settings)
    try:
        report = retrieve_for_training(settings, engine, query)
        assert_clean(report)
        assert report.study_instance_uids == [getattr(pacs_studies, name) for name in expected]
        assert report.series_found == series
        assert report.instances_retrieved == report.instances_found
        assert set(studies(engine)) == set(report.study_instance_uids)
    finally:
        engine.dispose()


def test_the_configured_cap_applies_when_the_query_sets_none(
    tmp_path: Path,
    node_settings: SettingsBuilder,
    orthanc_with: Callable[[int], OrthancProcess],
    pacs_studies: PacsStudies,
) -> None:
    orthanc = orthanc_with(free_port())
    settings = with_retrieval(
        node_settings(tmp_path), orthanc.dicom_port, method="get", max_studies=1
    )
    engine, _store = open_node_storage(settings)
    try:
        report = retrieve_for_training(settings, engine, PacsQuery(modality=("DX",)))
        assert report.studies_found == 3
        assert report.study_instance_uids == [pacs_studies.hand2]
    finally:
        engine.dispose()


# -- (4) a PACS that is down -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["move", "get"])
def test_a_pacs_that_is_down_raises_a_clear_error(
    tmp_path: Path, node_settings: SettingsBuilder, method: str
) -> None:
    port = free_port()
    settings = with_retrieval(node_settings(tmp_path), port, method=method)
    engine, _store = open_node_storage(settings)
    try:
        with pytest.raises(PacsUnavailable) as info:
            retrieve_for_training(settings, engine, PacsQuery(modality=("DX",)))
        message = str(info.value)
        assert f"ORTHANC@{LOCALHOST}:{port}" in message
        assert "cannot connect" in message
        assert "Traceback" not in message
        assert studies(engine) == {}
    finally:
        engine.dispose()
