"""Which studies and series ``retrieve`` takes from the PACS: the query and the C-FINDs.

Study level first, with the date range and the modalities (``ModalitiesInStudy``) as
matching keys; the answers are checked again here, since PACSes differ in what they
match, and taken newest first (StudyDate, StudyTime; undated last; then by UID). Then, for
one study after the other, the series level: Modality and BodyPartExamined are filtered
here. A study with at least one matching series is selected, until the limit. Each
series is compared with the index: it is complete when the index holds as many of its
instances as the PACS reports (``NumberOfSeriesRelatedInstances``; where the PACS does not
say and some are stored, an image-level C-FIND counts them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from pydantic import field_validator, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydicom.dataset import Dataset
from sqlalchemy import Engine, func, select

from dicom_node.db.models import Instance, Series
from dicom_node.net.pacs_link import (
    FindFailed,
    PacsLink,
    RetrieveError,
    find,
    integer,
    text,
    values,
)
from dicom_node.uids import is_conformant_uid

logger = logging.getLogger(__name__)

_DATE = re.compile(r"^\d{8}$")
_CODE_STRING = re.compile(r"^[A-Z0-9_ ]{1,16}$")


@pydantic_dataclass(frozen=True)
class PacsQuery:
    """Which studies to retrieve. Every filter that is set must match; list filters match
    any of their values (case-insensitive). Dates are YYYYMMDD, both ends inclusive.
    ``max_studies`` None: ``[retrieval] max_studies``. Invalid values raise pydantic's
    ``ValidationError``, which says which field and why."""

    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    study_date_from: str | None = None  # YYYYMMDD, inclusive
    study_date_to: str | None = None
    max_studies: int | None = None

    @field_validator("modality", "body_part")
    @classmethod
    def _code_strings(cls, given: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = []
        for value in given:
            upper = value.strip().upper()
            if not _CODE_STRING.match(upper):
                raise ValueError(
                    f"{value!r} is not a DICOM code string (1-16 of A-Z, 0-9, space, "
                    "underscore; no wildcards)"
                )
            cleaned.append(upper)
        return tuple(dict.fromkeys(cleaned))

    @field_validator("study_date_from", "study_date_to")
    @classmethod
    def _date(cls, value: str | None) -> str | None:
        if value is None:
            return None
        stripped = value.strip()
        try:
            if not _DATE.match(stripped):
                raise ValueError
            date(int(stripped[:4]), int(stripped[4:6]), int(stripped[6:]))
        except ValueError:
            raise ValueError(f"{value!r} is not a date as YYYYMMDD, e.g. 20240131") from None
        return stripped

    @field_validator("max_studies")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("max_studies must be at least 1 (None: the configured cap)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> PacsQuery:
        if (
            self.study_date_from is not None
            and self.study_date_to is not None
            and self.study_date_from > self.study_date_to
        ):
            raise ValueError(
                f"study_date_from {self.study_date_from} is after "
                f"study_date_to {self.study_date_to}"
            )
        return self

    def date_range(self) -> str:
        """The StudyDate matching key: ``from-to``, ``from-``, ``-to`` or empty."""
        if self.study_date_from is None and self.study_date_to is None:
            return ""
        return f"{self.study_date_from or ''}-{self.study_date_to or ''}"

    def in_range(self, study_date: str | None) -> bool:
        if study_date is None:
            return True  # the PACS matched it and did not say its date
        if self.study_date_from is not None and study_date < self.study_date_from:
            return False
        return self.study_date_to is None or study_date <= self.study_date_to


@dataclass
class SeriesPlan:
    uid: str
    number: int | None
    count: int | None  # instances the PACS holds, where it says
    stored_before: int = 0  # instances the index held before the call

    @property
    def complete(self) -> bool:
        return self.count is not None and self.stored_before >= self.count


@dataclass
class StudyPlan:
    uid: str
    study_date: str | None
    study_time: str
    sop_classes: tuple[str, ...]  # SOPClassesInStudy, where the PACS says
    series: list[SeriesPlan] = field(default_factory=list)

    def missing(self) -> list[SeriesPlan]:
        """The matching series the index does not hold completely."""
        return [s for s in self.series if not s.complete]


@dataclass
class Selection:
    studies_found: int  # at study level, after the study-level filters
    studies: list[StudyPlan]
    failures: list[str]


def find_studies(link: PacsLink, query: PacsQuery) -> list[StudyPlan]:
    """The study-level matches, newest first; ``RetrieveError`` when the C-FIND fails."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    identifier.StudyDate = query.date_range()
    identifier.StudyTime = ""
    identifier.ModalitiesInStudy = list(query.modality) if query.modality else ""
    identifier.SOPClassesInStudy = ""
    try:
        answers = find(link, identifier)
    except FindFailed as exc:
        raise RetrieveError(
            f"the study-level C-FIND at the PACS {link.peer} failed: {exc}"
        ) from exc
    wanted = set(query.modality)
    studies: dict[str, StudyPlan] = {}
    for answer in answers:
        uid = text(answer, "StudyInstanceUID")
        if not uid or not is_conformant_uid(uid) or uid in studies:
            continue
        raw_date = text(answer, "StudyDate")
        study_date = raw_date if _DATE.match(raw_date) else None
        if not query.in_range(study_date):
            continue
        modalities = {m.upper() for m in values(answer, "ModalitiesInStudy")}
        if wanted and modalities and not modalities & wanted:
            continue
        studies[uid] = StudyPlan(
            uid=uid,
            study_date=study_date,
            study_time=text(answer, "StudyTime"),
            sop_classes=values(answer, "SOPClassesInStudy"),
        )
    dated = sorted((s for s in studies.values() if s.study_date), key=lambda s: s.uid)
    dated.sort(key=lambda s: (s.study_date or "", s.study_time), reverse=True)  # stable
    undated = sorted((s for s in studies.values() if not s.study_date), key=lambda s: s.uid)
    return dated + undated


def find_series(link: PacsLink, study: StudyPlan, query: PacsQuery) -> list[SeriesPlan]:
    """The study's series that match the query, by series number; ``FindFailed``."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = study.uid
    identifier.SeriesInstanceUID = ""
    identifier.Modality = ""
    identifier.BodyPartExamined = ""
    identifier.SeriesNumber = ""
    identifier.NumberOfSeriesRelatedInstances = ""
    found: dict[str, SeriesPlan] = {}
    for answer in find(link, identifier):
        uid = text(answer, "SeriesInstanceUID")
        if not uid or not is_conformant_uid(uid) or uid in found:
            continue
        if text(answer, "StudyInstanceUID") not in ("", study.uid):
            continue
        if query.modality and text(answer, "Modality").upper() not in query.modality:
            continue
        if query.body_part and text(answer, "BodyPartExamined").upper() not in query.body_part:
            continue
        found[uid] = SeriesPlan(
            uid=uid,
            number=integer(answer, "SeriesNumber"),
            count=integer(answer, "NumberOfSeriesRelatedInstances"),
        )
    return sorted(found.values(), key=lambda s: (s.number is None, s.number or 0, s.uid))


def count_images(link: PacsLink, study_uid: str, series_uid: str) -> int:
    """The instances of a series, by an image-level C-FIND; ``FindFailed``."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = study_uid
    identifier.SeriesInstanceUID = series_uid
    identifier.SOPInstanceUID = ""
    uids = {text(answer, "SOPInstanceUID") for answer in find(link, identifier)}
    uids.discard("")
    return len(uids)


def stored_counts(engine: Engine, series_uids: Sequence[str]) -> dict[str, int]:
    """Instances the index holds per series UID (series it does not know are left out)."""
    if not series_uids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(Series.series_instance_uid, func.count(Instance.id))
            .outerjoin(Instance, Instance.series_id == Series.id)
            .where(Series.series_instance_uid.in_(list(series_uids)))
            .group_by(Series.series_instance_uid)
        ).all()
    return {str(uid): int(count) for uid, count in rows}


def select_studies(link: PacsLink, engine: Engine, query: PacsQuery, limit: int) -> Selection:
    """At most ``limit`` studies with their matching series, compared with the index.
    ``RetrieveError`` when the study-level C-FIND fails; a failed series-level C-FIND is
    a failure line, and its study is left out."""
    candidates = find_studies(link, query)
    selection = Selection(len(candidates), [], [])
    for study in candidates:
        if len(selection.studies) >= limit:
            break
        try:
            study.series = find_series(link, study, query)
        except FindFailed as exc:
            selection.failures.append(f"study {study.uid}: the series-level C-FIND failed: {exc}")
            continue
        if not study.series:
            continue
        stored = stored_counts(engine, [s.uid for s in study.series])
        for series in study.series:
            series.stored_before = stored.get(series.uid, 0)
            if series.count is None and series.stored_before:
                # Partly stored, and the PACS did not say how many it holds: count them.
                try:
                    series.count = count_images(link, study.uid, series.uid)
                except FindFailed as exc:
                    logger.info(
                        "series %s: the image-level C-FIND failed (%s); fetched again",
                        series.uid,
                        exc,
                    )
        selection.studies.append(study)
    return selection
