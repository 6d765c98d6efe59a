"""Index stored instances: study / series / instance rows in the results database."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import Connection, Engine, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from dicom_node.db.engine import write_transaction
from dicom_node.db.models import Instance, Series, Study, StudyState, UTCDateTime
from dicom_node.errors import OutOfResources, UnreadableDataset
from dicom_node.uids import is_conformant_uid, received_uid, validate_uid

logger = logging.getLogger(__name__)

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
    # received_uid raises InvalidUID, which the receiver maps to its own status.
    study = received_uid(ds.get("StudyInstanceUID"), "StudyInstanceUID")
    series = received_uid(ds.get("SeriesInstanceUID"), "SeriesInstanceUID")
    sop = received_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID")
    sop_class = validate_uid(ds.get("SOPClassUID"), "SOPClassUID")
    odd = [name for name, uid in (("Study", study), ("Series", series), ("SOP", sop))
           if not is_conformant_uid(uid)]  # fmt: skip
    if odd:
        logger.warning(
            "instance %s: its %s Instance UID is not a conformant UID; kept as sent",
            sop,
            " and ".join(odd),
        )
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


#: How often an instance is indexed again after an IntegrityError: on PostgreSQL another
#: process may insert the same study, series or instance between our select and insert.
RACE_RETRIES = 3


@dataclass(frozen=True)
class IndexOutcome:
    instance_id: int
    new: bool  # False: the SOP Instance UID was already indexed
    study_reopened: bool
    # The same SOP Instance UID arrived under another study or series:
    moved_from: str | None = None  # replace_moved: the old file, now unreferenced
    kept_at: str | None = None  # not replace_moved: the first copy, which stays indexed


def lookup_instance(engine: Engine, sop_instance_uid: str) -> int | None:
    """The instance row's id, if the SOP Instance UID is indexed."""
    with engine.connect() as conn:
        return conn.scalar(_SELECT_INSTANCE, {"p_sop_uid": sop_instance_uid})


def index_instance(
    engine: Engine,
    header: InstanceHeader,
    *,
    relative_path: str,
    size_bytes: int,
    calling_ae_title: str | None,
    received_at: datetime | None = None,
    replace_moved: bool = False,
) -> IndexOutcome:
    """Insert or update the study, series and instance rows in one transaction.

    A new instance in a stable study re-opens it. An instance already indexed under
    another study or series keeps its first place, or moves (``replace_moved``); the
    outcome names the file that is no longer referenced. Raise ``OutOfResources`` when the
    database is locked or unwritable, so the receiver can answer 0xA700.
    """
    now = received_at or datetime.now(UTC)
    for attempt in range(RACE_RETRIES):
        try:
            with write_transaction(engine) as conn:
                return index_rows(
                    conn, header, relative_path, size_bytes, calling_ae_title, now, replace_moved
                )
        except IntegrityError:
            # Another receiver (PostgreSQL, no table lock) inserted the same study,
            # series or instance between our select and insert: look again.
            if attempt == RACE_RETRIES - 1:
                raise
        except OperationalError as exc:
            raise OutOfResources(f"database unavailable: {exc.orig}") from exc
    raise AssertionError("unreachable")


# The C-STORE fast path runs these for every instance: they are built once, on the
# tables rather than the ORM classes, so executing them costs no expression building.
_studies = cast(Table, Study.__table__)
_series = cast(Table, Series.__table__)
_instances = cast(Table, Instance.__table__)

_SELECT_INSTANCE = select(_instances.c.id, _instances.c.path).where(
    _instances.c.sop_instance_uid == bindparam("p_sop_uid")
)
_DELETE_INSTANCE = delete(_instances).where(_instances.c.id == bindparam("p_id"))
_UPDATE_DUPLICATE = (
    update(_instances)
    .where(_instances.c.id == bindparam("p_id"))
    .values(
        size_bytes=bindparam("p_size"),
        received_at=bindparam("p_now", type_=UTCDateTime()),
        transfer_syntax_uid=bindparam("p_syntax"),
    )
)
_TOUCH_RECEIVING_STUDY = (
    update(_studies)
    .where(
        _studies.c.study_instance_uid == bindparam("p_study_uid"),
        _studies.c.state == StudyState.RECEIVING.value,
    )
    .values(last_received_at=bindparam("p_now", type_=UTCDateTime()))
)
_SELECT_SERIES = select(_series.c.id).where(
    _series.c.series_instance_uid == bindparam("p_series_uid")
)
_SELECT_STUDY = select(_studies.c.id, _studies.c.state).where(
    _studies.c.study_instance_uid == bindparam("p_study_uid")
)
_INSERT_STUDY = insert(_studies).returning(_studies.c.id)
_REOPEN_STUDY = (
    update(_studies)
    .where(_studies.c.id == bindparam("p_id"))
    .values(
        last_received_at=bindparam("p_now", type_=UTCDateTime()),
        state=StudyState.RECEIVING.value,
        times_reopened=_studies.c.times_reopened + 1,
    )
)
_INSERT_SERIES = insert(_series).returning(_series.c.id)
_INSERT_INSTANCE = insert(_instances).returning(_instances.c.id)


def index_rows(
    conn: Connection,
    header: InstanceHeader,
    relative_path: str,
    size_bytes: int,
    calling_ae_title: str | None,
    now: datetime,
    replace_moved: bool,
) -> IndexOutcome:
    """The study, series and instance statements of one instance, in the caller's write
    transaction (``index_instance`` for one instance, ``IndexWriter`` for a group); the
    caller commits. Duplicates as ``index_instance`` describes."""
    existing = conn.execute(_SELECT_INSTANCE, {"p_sop_uid": header.sop_instance_uid}).first()
    moved_from = None
    if existing is not None and existing.path != relative_path:
        if not replace_moved:
            return IndexOutcome(existing.id, new=False, study_reopened=False, kept_at=existing.path)
        conn.execute(_DELETE_INSTANCE, {"p_id": existing.id})
        moved_from = existing.path
    elif existing is not None:
        conn.execute(
            _UPDATE_DUPLICATE,
            {
                "p_id": existing.id,
                "p_size": size_bytes,
                "p_now": now,
                "p_syntax": header.transfer_syntax_uid,
            },
        )
        return IndexOutcome(existing.id, new=False, study_reopened=False)

    # Common case first: the study exists and is still receiving.
    touched = conn.execute(
        _TOUCH_RECEIVING_STUDY, {"p_study_uid": header.study_uid, "p_now": now}
    ).rowcount
    reopened = False
    series_id = conn.execute(_SELECT_SERIES, {"p_series_uid": header.series_uid}).scalar()
    if not touched or series_id is None:
        study_id, reopened = _touch_study(conn, header, now, already_touched=bool(touched))
        if series_id is None:
            series_id = conn.execute(
                _INSERT_SERIES,
                {
                    "study_id": study_id,
                    "series_instance_uid": header.series_uid,
                    "modality": header.modality,
                    "body_part_examined": header.body_part_examined,
                    "series_description": header.series_description,
                    "sop_class_uid": header.sop_class_uid,
                },
            ).scalar_one()

    instance_id = conn.execute(
        _INSERT_INSTANCE,
        {
            "series_id": series_id,
            "sop_instance_uid": header.sop_instance_uid,
            "sop_class_uid": header.sop_class_uid,
            "transfer_syntax_uid": header.transfer_syntax_uid,
            "instance_number": header.instance_number,
            "path": relative_path,
            "size_bytes": size_bytes,
            "calling_ae_title": calling_ae_title,
            "received_at": now,
        },
    ).scalar_one()
    return IndexOutcome(instance_id, new=True, study_reopened=reopened, moved_from=moved_from)


def _touch_study(
    conn: Connection, header: InstanceHeader, now: datetime, *, already_touched: bool
) -> tuple[int, bool]:
    """Return (study id, re-opened): create the study, or re-open it if it was stable."""
    row = conn.execute(_SELECT_STUDY, {"p_study_uid": header.study_uid}).first()
    if row is None:
        study_id = conn.execute(
            _INSERT_STUDY,
            {
                "study_instance_uid": header.study_uid,
                "study_date": header.study_date,
                "state": StudyState.RECEIVING.value,
                "first_received_at": now,
                "last_received_at": now,
                "times_reopened": 0,
            },
        ).scalar_one()
        return study_id, False
    if already_touched or row.state == StudyState.RECEIVING:
        return row.id, False
    conn.execute(_REOPEN_STUDY, {"p_id": row.id, "p_now": now})
    return row.id, True


def count_instances(conn: Connection, series_id: int) -> int:
    return int(
        conn.execute(
            select(func.count(Instance.id)).where(Instance.series_id == series_id)
        ).scalar_one()
    )
