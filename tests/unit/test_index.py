"""Indexing: header parsing and study / series / instance rows."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from sqlalchemy import Engine, func, select, update

from dicom_node.db.engine import make_engine, write_transaction
from dicom_node.db.models import Instance, Series, Study, StudyState
from dicom_node.errors import InvalidUID, OutOfResources, UnreadableDataset
from dicom_node.ingest.index import count_instances, index_instance, lookup_instance, read_header
from dicom_node.store import DurableStore

from .conftest import (
    T0,
    UIDs,
    add_instance,
    header,
    ingest,
    make_dataset,
    sqlite_url,
    write_dataset,
)


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            conn.scalar(select(func.count(Study.id))),
            conn.scalar(select(func.count(Series.id))),
            conn.scalar(select(func.count(Instance.id))),
        )


def study_row(engine: Engine, uid: str) -> Study:
    with engine.connect() as conn:
        return conn.execute(select(Study).where(Study.study_instance_uid == uid)).one()  # type: ignore[return-value]


def mark_stable(engine: Engine, uid: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Study)
            .where(Study.study_instance_uid == uid)
            .values(state=StudyState.STABLE, stable_at=T0)
        )


# -- read_header -------------------------------------------------------------------------------


def test_read_header_of_a_real_ct_file() -> None:
    path = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path)
    parsed = read_header(path)
    assert parsed.study_uid == ds.StudyInstanceUID
    assert parsed.series_uid == ds.SeriesInstanceUID
    assert parsed.sop_instance_uid == ds.SOPInstanceUID
    assert parsed.sop_class_uid == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert parsed.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    assert parsed.modality == "CT"
    assert parsed.instance_number == int(ds.InstanceNumber)
    assert parsed.study_date == ds.StudyDate


def test_read_header_of_a_built_file(tmp_path: Path, uids: UIDs) -> None:
    study, series, sop = uids.next(), uids.next(), uids.next()
    ds = make_dataset(
        study,
        series,
        sop,
        modality="CR",
        number=7,
        BodyPartExamined="HAND",
        SeriesDescription="  PA hand  ",
    )
    parsed = read_header(write_dataset(ds, tmp_path / "a.dcm"))
    assert (parsed.study_uid, parsed.series_uid, parsed.sop_instance_uid) == (study, series, sop)
    assert parsed.transfer_syntax_uid == ExplicitVRLittleEndian
    assert parsed.modality == "CR"
    assert parsed.body_part_examined == "HAND"
    assert parsed.series_description == "PA hand"
    assert parsed.instance_number == 7


def test_read_header_without_optional_fields(tmp_path: Path, uids: UIDs) -> None:
    ds = make_dataset(uids.next(), uids.next(), uids.next(), number=None)
    del ds.Modality
    parsed = read_header(write_dataset(ds, tmp_path / "a.dcm"))
    assert parsed.modality is None
    assert parsed.instance_number is None
    assert parsed.series_description is None


def test_read_header_truncates_long_text(tmp_path: Path, uids: UIDs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LO is 64 characters at most; senders break it
        ds = make_dataset(uids.next(), uids.next(), uids.next(), SeriesDescription="x" * 200)
        path = write_dataset(ds, tmp_path / "a.dcm")
        assert read_header(path).series_description == "x" * 128


def test_read_header_implicit_little_endian(tmp_path: Path, uids: UIDs) -> None:
    ds = make_dataset(uids.next(), uids.next(), uids.next())
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    assert read_header(write_dataset(ds, tmp_path / "a.dcm")).transfer_syntax_uid == (
        ImplicitVRLittleEndian
    )


@pytest.mark.parametrize(
    "content",
    [b"", b"not a dicom file at all", b"\x00" * 128 + b"DICM" + b"\xff" * 7, b"\x00" * 132],
    ids=["empty", "text", "truncated-meta", "preamble-only"],
)
def test_read_header_of_garbage(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.dcm"
    path.write_bytes(content)
    with pytest.raises(UnreadableDataset, match="cannot parse dataset"):
        read_header(path)


def test_read_header_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableDataset):
        read_header(tmp_path / "absent.dcm")


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("SOPInstanceUID", "1.2.3/../../etc"),
        ("StudyInstanceUID", "1.2.a b"),
        ("SeriesInstanceUID", "-1.02.3"),
        ("SOPClassUID", ".."),
    ],
)
def test_read_header_with_an_invalid_uid(
    tmp_path: Path, uids: UIDs, keyword: str, value: str
) -> None:
    ds = make_dataset(uids.next(), uids.next(), uids.next())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UI value
        setattr(ds, keyword, value)
        path = write_dataset(ds, tmp_path / "bad.dcm")
        with pytest.raises(InvalidUID, match=keyword):
            read_header(path)


def test_read_header_with_a_missing_uid(tmp_path: Path, uids: UIDs) -> None:
    ds = make_dataset(uids.next(), uids.next(), uids.next())
    del ds.SeriesInstanceUID
    with pytest.raises(InvalidUID, match="SeriesInstanceUID is missing"):
        read_header(write_dataset(ds, tmp_path / "a.dcm"))


def test_read_header_with_odd_length_uids_strips_padding(tmp_path: Path) -> None:
    # Odd-length UIDs are padded with NUL on disk.
    study, series, sop = "1.2.3", "1.2.3.45", "1.2.3.456"
    parsed = read_header(write_dataset(make_dataset(study, series, sop), tmp_path / "a.dcm"))
    assert (parsed.study_uid, parsed.series_uid, parsed.sop_instance_uid) == (study, series, sop)


# -- index_instance --------------------------------------------------------------------------


def test_first_instance_creates_study_series_instance(
    engine: Engine, store: DurableStore, uids: UIDs
) -> None:
    study, series, sop = uids.next(), uids.next(), uids.next()
    ds = make_dataset(study, series, sop, modality="CR", number=3, BodyPartExamined="HAND")
    result = ingest(engine, store, ds, at=T0)

    assert result.outcome.new is True
    assert result.outcome.study_reopened is False
    assert counts(engine) == (1, 1, 1)
    with engine.connect() as conn:
        s = conn.execute(select(Study)).one()
        se = conn.execute(select(Series)).one()
        i = conn.execute(select(Instance)).one()
    assert s.study_instance_uid == study
    assert s.state == StudyState.RECEIVING
    assert s.first_received_at == s.last_received_at == T0
    assert s.times_reopened == 0
    assert s.study_date == "20260301"
    assert se.study_id == s.id
    assert (se.series_instance_uid, se.modality, se.body_part_examined) == (series, "CR", "HAND")
    assert i.id == result.outcome.instance_id
    assert i.series_id == se.id
    assert i.sop_instance_uid == sop
    assert i.path == f"{study}/{series}/{sop}.dcm"
    assert i.size_bytes == result.stored.size_bytes == result.stored.path.stat().st_size
    assert i.instance_number == 3
    assert i.calling_ae_title == "TEST_SCU"
    assert lookup_instance(engine, sop) == i.id


def test_second_instance_joins_the_series(engine: Engine, uids: UIDs) -> None:
    study, series = uids.next(), uids.next()
    first = add_instance(engine, study, series, uids.next(), at=T0)
    second = add_instance(engine, study, series, uids.next(), at=T0 + timedelta(seconds=5))

    assert second.new and second.instance_id != first.instance_id
    assert counts(engine) == (1, 1, 2)
    row = study_row(engine, study)
    assert row.first_received_at == T0
    assert row.last_received_at == T0 + timedelta(seconds=5)
    with engine.connect() as conn:
        series_id = conn.scalar(select(Series.id))
        assert count_instances(conn, series_id) == 2


def test_second_series_in_the_same_study(engine: Engine, uids: UIDs) -> None:
    study = uids.next()
    add_instance(engine, study, uids.next(), uids.next())
    add_instance(engine, study, uids.next(), uids.next(), modality="SR")
    assert counts(engine) == (1, 2, 2)


def test_duplicate_sop_instance_is_not_duplicated(engine: Engine, uids: UIDs) -> None:
    study, series, sop = uids.next(), uids.next(), uids.next()
    first = add_instance(engine, study, series, sop, at=T0)
    later = T0 + timedelta(minutes=1)
    again = index_instance(
        engine,
        header(study, series, sop),
        relative_path=f"{study}/{series}/{sop}.dcm",
        size_bytes=555,
        calling_ae_title="OTHER",
        received_at=later,
    )
    assert again.new is False
    assert again.instance_id == first.instance_id
    assert again.study_reopened is False
    assert counts(engine) == (1, 1, 1)
    with engine.connect() as conn:
        instance = conn.execute(select(Instance)).one()
    assert instance.size_bytes == 555
    assert instance.received_at == later


def test_new_instance_reopens_a_stable_study(engine: Engine, uids: UIDs) -> None:
    study, series = uids.next(), uids.next()
    add_instance(engine, study, series, uids.next(), at=T0)
    mark_stable(engine, study)

    late = add_instance(engine, study, series, uids.next(), at=T0 + timedelta(minutes=5))

    assert late.new and late.study_reopened
    row = study_row(engine, study)
    assert row.state == StudyState.RECEIVING
    assert row.times_reopened == 1
    assert row.last_received_at == T0 + timedelta(minutes=5)

    mark_stable(engine, study)
    assert add_instance(engine, study, uids.next(), uids.next()).study_reopened
    assert study_row(engine, study).times_reopened == 2


def test_instance_in_a_receiving_study_does_not_count_as_reopening(
    engine: Engine, uids: UIDs
) -> None:
    study, series = uids.next(), uids.next()
    add_instance(engine, study, series, uids.next())
    assert add_instance(engine, study, series, uids.next()).study_reopened is False
    assert study_row(engine, study).times_reopened == 0


def test_duplicate_in_a_stable_study_does_not_reopen_it(engine: Engine, uids: UIDs) -> None:
    study, series, sop = uids.next(), uids.next(), uids.next()
    add_instance(engine, study, series, sop)
    mark_stable(engine, study)
    again = add_instance(engine, study, series, sop, at=T0 + timedelta(hours=1))
    assert again.new is False and again.study_reopened is False
    row = study_row(engine, study)
    assert row.state == StudyState.STABLE
    assert row.times_reopened == 0


def test_lookup_of_an_unknown_instance(engine: Engine) -> None:
    assert lookup_instance(engine, "1.2.3") is None


def test_index_without_schema_is_out_of_resources(tmp_path: Path, uids: UIDs) -> None:
    bare = make_engine(sqlite_url(tmp_path / "bare.sqlite"))
    try:
        with pytest.raises(OutOfResources, match="database unavailable"):
            add_instance(bare, uids.next(), uids.next(), uids.next())
    finally:
        bare.dispose()


def test_index_while_the_database_is_locked_is_out_of_resources(
    engine: Engine, db_path: Path, uids: UIDs
) -> None:
    impatient = make_engine(sqlite_url(db_path), busy_timeout_ms=50)
    try:
        with write_transaction(engine), pytest.raises(OutOfResources, match="locked"):
            add_instance(impatient, uids.next(), uids.next(), uids.next())
        assert counts(engine) == (0, 0, 0)
        add_instance(impatient, uids.next(), uids.next(), uids.next())  # works once free
        assert counts(engine) == (1, 1, 1)
    finally:
        impatient.dispose()
