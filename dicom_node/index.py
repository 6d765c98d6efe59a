"""Index stored instances: study / series / instance rows in the results database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from dicom_node.db.engine import write_transaction
from dicom_node.db.models import Instance, Series, Study, StudyState
from dicom_node.errors import OutOfResources, UnreadableDataset
from dicom_node.uids import validate_uid

_HEADER_TAGS = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "BodyPartExamined",
    "SeriesDescription",
    "InstanceNumber",
    "StudyDate",
]


@dataclass(frozen=True)
class InstanceHeader:
    """The header fields the node indexes and routes on (no patient identifiers)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str | None = None
    body_part_examined: str | None = None
    series_description: str | None = None
    instance_number: int | None = None
    study_date: str | None = None


def _text(value: object, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] or None


def read_header(path: Path) -> InstanceHeader:
    """Parse the identifying header of a Part 10 file; raise ``UnreadableDataset``."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        transfer_syntax = ds.file_meta.TransferSyntaxUID
    except (InvalidDicomError, AttributeError, ValueError, KeyError, EOFError, OSError) as exc:
        raise UnreadableDataset(f"cannot parse dataset: {exc}") from exc
    # validate_uid raises InvalidUID, which the receiver maps to its own status.
    study = validate_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID")
    series = validate_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID")
    sop = validate_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID")
    sop_class = validate_uid(ds.get("SOPClassUID"), "SOPClassUID")
    number: int | None
    try:
        raw_number = ds.get("InstanceNumber")
        number = int(raw_number) if raw_number not in (None, "") else None
    except (TypeError, ValueError):
        number = None
    return InstanceHeader(
        study_uid=study,
        series_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=sop_class,
        transfer_syntax_uid=validate_uid(str(transfer_syntax), "TransferSyntaxUID"),
        modality=_text(ds.get("Modality"), 16),
        body_part_examined=_text(ds.get("BodyPartExamined"), 64),
        series_description=_text(ds.get("SeriesDescription"), 128),
        instance_number=number,
        study_date=_text(ds.get("StudyDate"), 8),
    )


_RACE_RETRIES = 3


@dataclass(frozen=True)
class IndexOutcome:
    instance_id: int
    new: bool  # False: the SOP Instance UID was already indexed
    study_reopened: bool


def lookup_instance(engine: Engine, sop_instance_uid: str) -> int | None:
    with engine.connect() as conn:
        return conn.scalar(select(Instance.id).where(Instance.sop_instance_uid == sop_instance_uid))


def index_instance(
    engine: Engine,
    header: InstanceHeader,
    *,
    relative_path: str,
    size_bytes: int,
    calling_ae_title: str | None,
    received_at: datetime | None = None,
) -> IndexOutcome:
    """Insert or update the study, series and instance rows in one transaction.

    A new instance in a stable study re-opens it. Raise ``OutOfResources`` when the
    database is locked or unwritable, so the receiver can answer 0xA700.
    """
    now = received_at or datetime.now(UTC)
    for attempt in range(_RACE_RETRIES):
        try:
            with write_transaction(engine) as conn:
                return _index(conn, header, relative_path, size_bytes, calling_ae_title, now)
        except IntegrityError:
            # Another receiver (PostgreSQL, no table lock) inserted the same study,
            # series or instance between our select and insert: look again.
            if attempt == _RACE_RETRIES - 1:
                raise
        except OperationalError as exc:
            raise OutOfResources(f"database unavailable: {exc.orig}") from exc
    raise AssertionError("unreachable")


def _index(
    conn: Connection,
    header: InstanceHeader,
    relative_path: str,
    size_bytes: int,
    calling_ae_title: str | None,
    now: datetime,
) -> IndexOutcome:
    existing = conn.execute(
        select(Instance.id).where(Instance.sop_instance_uid == header.sop_instance_uid)
    ).scalar()
    if existing is not None:
        conn.execute(
            update(Instance)
            .where(Instance.id == existing)
            .values(
                size_bytes=size_bytes,
                received_at=now,
                transfer_syntax_uid=header.transfer_syntax_uid,
            )
        )
        return IndexOutcome(existing, new=False, study_reopened=False)

    study_row = conn.execute(
        select(Study.id, Study.state).where(Study.study_instance_uid == header.study_uid)
    ).first()
    reopened = False
    if study_row is None:
        study_id = conn.execute(
            insert(Study)
            .values(
                study_instance_uid=header.study_uid,
                study_date=header.study_date,
                state=StudyState.RECEIVING,
                first_received_at=now,
                last_received_at=now,
                times_reopened=0,
            )
            .returning(Study.id)
        ).scalar_one()
    else:
        study_id = study_row.id
        reopened = study_row.state == StudyState.STABLE
        conn.execute(
            update(Study)
            .where(Study.id == study_id)
            .values(
                last_received_at=now,
                state=StudyState.RECEIVING,
                times_reopened=Study.times_reopened + (1 if reopened else 0),
            )
        )

    series_id = conn.execute(
        select(Series.id).where(Series.series_instance_uid == header.series_uid)
    ).scalar()
    if series_id is None:
        series_id = conn.execute(
            insert(Series)
            .values(
                study_id=study_id,
                series_instance_uid=header.series_uid,
                modality=header.modality,
                body_part_examined=header.body_part_examined,
                series_description=header.series_description,
                sop_class_uid=header.sop_class_uid,
                last_received_at=now,
            )
            .returning(Series.id)
        ).scalar_one()
    else:
        conn.execute(update(Series).where(Series.id == series_id).values(last_received_at=now))

    instance_id = conn.execute(
        insert(Instance)
        .values(
            series_id=series_id,
            sop_instance_uid=header.sop_instance_uid,
            sop_class_uid=header.sop_class_uid,
            transfer_syntax_uid=header.transfer_syntax_uid,
            instance_number=header.instance_number,
            path=relative_path,
            size_bytes=size_bytes,
            calling_ae_title=calling_ae_title,
            received_at=now,
        )
        .returning(Instance.id)
    ).scalar_one()
    return IndexOutcome(instance_id, new=True, study_reopened=reopened)


def count_instances(conn: Connection, series_id: int) -> int:
    return int(
        conn.execute(
            select(func.count(Instance.id)).where(Instance.series_id == series_id)
        ).scalar_one()
    )
