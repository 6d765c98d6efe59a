"""The source instances an output is made from: their headers, and what is copied from them.

``source_headers_for`` gives the headers of a series' source files (the ones the pipeline
parsed, else read without pixel data); ``unique_sources`` checks them and drops repeats.

Patient and study attributes are copied from the sources, values unchanged, and so are
Laterality and Body Part Examined. highdicom's own name checks (which log or refuse some
valid names) are kept away from the real names by building from a copy of the source
header whose patient and study values are empty (``blank_copy``) and copying the real
values in afterwards (``copy_patient_and_study``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicom_node.errors import NodeError
from pipelines.contract import PipelineResult

# Patient and study attributes highdicom reads from the reference dataset at build time;
# they are emptied in the copy handed to highdicom and copied from the source after.
_PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)
# Copied when highdicom does not know the source's IOD (a private SOP class, say).
_FALLBACK_COPY_KEYWORDS = (
    *_PATIENT_STUDY_KEYWORDS,
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "OtherPatientIDsSequence",
    "PatientBirthTime",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
    "ProcedureCodeSequence",
    "PhysiciansOfRecord",
    "ReferringPhysicianIdentificationSequence",
)
_PIXEL_TAGS = {Tag("PixelData"), Tag("FloatPixelData"), Tag("DoubleFloatPixelData")}


class EncodeError(NodeError, ValueError):
    """A result that cannot be encoded with the sources given (a pipeline or caller bug)."""


def read_source_headers(paths: Iterable[str | os.PathLike[str]]) -> list[Dataset]:
    """The stored source files' headers (no pixel data), in the order given."""
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]


def source_headers_for(
    result: PipelineResult, paths: Sequence[str | os.PathLike[str]]
) -> list[Dataset]:
    """The headers of the series' files ``paths`` to encode ``result`` from: the ones the
    pipeline parsed (``result.source_headers``) when it gave one per file, else read."""
    if result.source_headers and len(result.source_headers) == len(paths):
        return list(result.source_headers)
    return read_source_headers(paths)


def unique_sources(sources: Sequence[Dataset]) -> list[Dataset]:
    if not sources:
        raise EncodeError("no source instances to encode against")
    unique: dict[str, Dataset] = {}
    studies: set[str] = set()
    for ds in sources:
        for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            if not ds.get(keyword):
                raise EncodeError(f"a source instance has no {keyword}")
        unique.setdefault(str(ds.SOPInstanceUID), ds)
        studies.add(str(ds.StudyInstanceUID))
    if len(studies) > 1:
        raise EncodeError(f"source instances come from {len(studies)} studies; one expected")
    return list(unique.values())


def blank_copy(source: Dataset) -> Dataset:
    """The source header without pixel data, patient and study values emptied.

    Elements are new objects (sequence values are shared, never changed), so nothing
    done to the copy reaches the caller's dataset.
    """
    copy = Dataset()
    blank = set(_PATIENT_STUDY_KEYWORDS)
    for element in source:
        if element.tag in _PIXEL_TAGS or element.keyword in blank:
            continue
        copy.add(pydicom.DataElement(element.tag, element.VR, element.value))
    for keyword in _PATIENT_STUDY_KEYWORDS:
        setattr(copy, keyword, None)
    return copy


def copy_patient_and_study(target: hd.SOPClass, source: Dataset) -> None:
    """Patient and study modules of ``source`` into ``target``, values unchanged."""
    try:
        target.copy_patient_and_study_information(source)
    except KeyError:  # highdicom does not know the source's IOD
        for keyword in _FALLBACK_COPY_KEYWORDS:
            if keyword in source:
                element = source[keyword]
                target.add(pydicom.DataElement(element.tag, element.VR, element.value))
    for keyword in _PATIENT_STUDY_KEYWORDS:  # Type 2: present, empty if unknown
        if keyword not in target:
            setattr(target, keyword, None)


#: Body Part Examined terms of paired structures, whose series need Laterality (Type 2C).
PAIRED_BODY_PARTS = frozenset(
    {
        "ANKLE", "ARM", "BREAST", "CLAVICLE", "EAR", "ELBOW", "EXTREMITY", "EYE", "FEMUR",
        "FIBULA", "FINGER", "FOOT", "FOREARM", "HAND", "HEEL", "HIP", "HUMERUS", "KIDNEY",
        "KNEE", "LEG", "LOWERLIMB", "LUNG", "ORBIT", "PATELLA", "RADIUS", "SCAPULA",
        "SHOULDER", "THIGH", "THUMB", "TIBIA", "TOE", "ULNA", "UPPERLIMB", "WRIST",
    }
)  # fmt: skip


def copy_laterality_and_body_part(target: Dataset, source: Dataset) -> None:
    """General Series Laterality and Body Part Examined from the source.

    Laterality is Type 2C (required for paired body parts): the source's R or L; empty
    when the part is paired or not named; left out for an unpaired part (a chest CT),
    where dciodvfy counts an empty one as present without its condition. For a part not
    named, dciodvfy calls a missing Laterality an error and an empty one a warning ("only
    permitted to be empty when actually unknown"), which it is: the warning stays."""
    laterality = str(source.get("Laterality") or source.get("ImageLaterality") or "")
    part = str(source.get("BodyPartExamined") or "").strip().upper()
    if laterality in ("R", "L"):
        target.Laterality = laterality
    elif not part or part in PAIRED_BODY_PARTS:
        target.Laterality = ""
    if part:
        target.BodyPartExamined = source.BodyPartExamined


__all__ = [
    "EncodeError",
    "PAIRED_BODY_PARTS",
    "blank_copy",
    "copy_laterality_and_body_part",
    "copy_patient_and_study",
    "read_source_headers",
    "source_headers_for",
    "unique_sources",
]
