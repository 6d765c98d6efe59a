"""Synthetic films for ``xray_triage`` (paper 004, modules I and II): radiographs of the
fourteen X-ray types and images that are not radiographs, as arrays or DICOM files.

Module I tells radiographs from everything else a PACS may receive as CR, DX or SC by
mistake (photos, scanned documents, screenshots); module II names the X-ray type among
``pipelines.xray_triage.body_parts.XRAY_TYPES``. Real films cannot be shipped, so tests,
training runs and the demo use films rendered here:

* the seven MURA regions (elbow, finger, forearm, hand, humerus, shoulder, wrist) are
  views of ``msk_films`` studies (AP, oblique or lateral; normal or, now and then,
  abnormal); half of the hands are ``hand_films`` PA hands instead;
* chest, spine, hip, knee, ankle, foot and dental come from ``xray_anatomy``, drawn the
  same way (analytic bones and soft tissue in millimetres, tone curve, shutter, markers,
  noise);
* photo, document and screenshot come from ``non_xray``.

Every film has its own pose, scale, exposure and display curve, noise and collimation,
so that the label is in the anatomy, not in global statistics.

Images: X-rays and grey non-X-rays are float32 (rows, cols) in [0, 1] in the MONOCHROME2
sense (bone bright; for a grey photo or page, white bright); colour non-X-rays are uint8
(rows, cols, 3) RGB. The longer side is ``size`` pixels.

``write_triage_film`` writes a film as a Part 10 file: an X-ray as DX (Digital X-Ray
Image Storage – For Presentation) or CR, MONOCHROME2 or MONOCHROME1, 8–16 bits stored;
a non-X-ray (or any film with ``modality`` other than DX/CR) as Secondary Capture, RGB
or MONOCHROME2, with the given Modality. Body Part Examined is the true type's value, an
empty element, no element, or a value that lies, as the caller asks. dciodvfy finds no
errors in these files, with one exception asked for on purpose: CR Series makes Body Part
Examined Type 2, so a CR file written with ``body_part_examined=None`` lacks a required
element (such files reach a PACS too).

Determinism: a film depends only on (kind, seed, size); the anatomy, pose and exposure of
an X-ray do not depend on ``size`` (the same seed at another size is the same picture,
finer or coarser). Speed (one core, numpy): about 4–30 ms per 256-pixel film.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import EllipsisType

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

from pipelines.xray_triage.body_parts import NOT_XRAY, XRAY_TYPES, body_part_examined_of
from training.synthetic.hand_films import SYNTHETIC_UID_ROOT, _code, _uid, render_hand_film
from training.synthetic.msk_films import REGIONS as MSK_REGIONS
from training.synthetic.msk_films import make_msk_study
from training.synthetic.non_xray import NON_XRAY_KINDS as _NON_XRAY_KINDS
from training.synthetic.non_xray import render_non_xray
from training.synthetic.xray_anatomy import ANATOMY_REGIONS, render_region

__all__ = [
    "NOT_XRAY_KINDS",
    "TRIAGE_LABELS",
    "XRAY_TYPE_NAMES",
    "TriageFilm",
    "make_triage_films",
    "render_triage_film",
    "write_triage_film",
]

#: Module II's classes, in ``XRAY_TYPES`` order.
XRAY_TYPE_NAMES: tuple[str, ...] = tuple(t.name for t in XRAY_TYPES)

#: The kinds of image that are not radiographs.
NOT_XRAY_KINDS: tuple[str, ...] = _NON_XRAY_KINDS

#: Every label a film can carry: the X-ray types, then ``NOT_XRAY``.
TRIAGE_LABELS: tuple[str, ...] = (*XRAY_TYPE_NAMES, NOT_XRAY)

_KINDS = (*XRAY_TYPE_NAMES, *NOT_XRAY_KINDS)
assert set(MSK_REGIONS) | set(ANATOMY_REGIONS) == set(XRAY_TYPE_NAMES)


@dataclass(frozen=True, eq=False)
class TriageFilm:
    """One film: ``label`` (an X-ray type or ``NOT_XRAY``), ``kind`` (the X-ray type, or
    "photo" / "document" / "screenshot"), the image and its pixel spacing (None for
    non-X-rays)."""

    label: str
    kind: str
    image: npt.NDArray[np.float32] | npt.NDArray[np.uint8]
    pixel_spacing_mm: float | None

    @property
    def is_xray(self) -> bool:
        return self.label != NOT_XRAY

    @property
    def is_color(self) -> bool:
        return self.image.ndim == 3


def _stream(kind: str, seed: int, *tags: int) -> np.random.Generator:
    key = zlib.crc32(kind.encode())
    return np.random.default_rng([abs(int(seed)), 1 if seed < 0 else 0, key, *tags])


def _msk_view(kind: str, seed: int, size: int) -> tuple[npt.NDArray[np.float32], float]:
    r = _stream(kind, seed, 1)
    views = 1 + int(r.integers(0, 3))
    abnormal = bool(r.random() < 0.3)
    study_seed = int(r.integers(0, 2**31 - 1))
    study = make_msk_study(study_seed, region=kind, abnormal=abnormal, views=views, size=size)
    view = study.views[int(r.integers(0, len(study.views)))]
    return view.image.astype(np.float32, copy=False), float(view.pixel_spacing_mm)


def _hand_film(seed: int, size: int) -> tuple[npt.NDArray[np.float32], float]:
    r = _stream("hand", seed, 2)
    aspect = r.uniform(0.74, 0.94)
    angle = 90.0 + r.uniform(-15, 15)
    if r.random() < 0.1:
        angle = r.uniform(0, 360)
    film = render_hand_film(size, max(16, round(size * aspect)), angle_deg=angle, rng=r)
    image = film.pixels.astype(np.float32) / np.float32((1 << film.bits_stored) - 1)
    return image, film.pixel_spacing_mm


def render_triage_film(kind: str, seed: int, *, size: int = 256) -> TriageFilm:
    """One film of ``kind`` (an X-ray type or a non-X-ray kind), deterministic in
    (kind, seed, size); its longer side is ``size`` pixels."""
    if size < 32:
        raise ValueError("size must be at least 32 pixels")
    if kind in NOT_XRAY_KINDS:
        image, _ = render_non_xray(kind, _stream(kind, seed, 3), size)
        return TriageFilm(NOT_XRAY, kind, image, None)
    if kind not in XRAY_TYPE_NAMES:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(_KINDS)}")
    if kind == "hand" and _stream(kind, seed, 0).random() < 0.5:
        grey, spacing = _hand_film(seed, size)
    elif kind in MSK_REGIONS:
        grey, spacing = _msk_view(kind, seed, size)
    else:
        grey, spacing = render_region(kind, _stream(kind, seed, 4), size)
    return TriageFilm(kind, kind, grey, spacing)


def make_triage_films(
    seed: int,
    per_label: int,
    *,
    size: int = 256,
    labels: Sequence[str] | None = None,
) -> list[TriageFilm]:
    """``per_label`` films of each label (``TRIAGE_LABELS`` by default), in label order;
    the non-X-ray films cycle through photo, document and screenshot. Deterministic."""
    if per_label < 0:
        raise ValueError("per_label must not be negative")
    chosen = tuple(TRIAGE_LABELS if labels is None else labels)
    for label in chosen:
        if label not in TRIAGE_LABELS:
            raise ValueError(f"unknown label {label!r}; one of {', '.join(TRIAGE_LABELS)}")
    rng = np.random.default_rng([abs(int(seed)), 1 if seed < 0 else 0, 0x7421])
    films = []
    for label in chosen:
        seeds = rng.integers(0, 2**31 - 1, size=per_label)
        offset = int(rng.integers(0, len(NOT_XRAY_KINDS)))
        for i, s in enumerate(seeds):
            kind = label if label != NOT_XRAY else NOT_XRAY_KINDS[(i + offset) % 3]
            films.append(render_triage_film(kind, int(s), size=size))
    return films


# -- DICOM ---------------------------------------------------------------------------------

_ANATOMY_CODES: dict[str, tuple[str, str, str]] = {
    "ankle": ("70258002", "SCT", "Ankle joint"),
    "spine": ("421060004", "SCT", "Spine"),
    "chest": ("43799004", "SCT", "Chest"),
    "elbow": ("16953009", "SCT", "Elbow joint"),
    "finger": ("7569003", "SCT", "Finger"),
    "foot": ("56459004", "SCT", "Foot"),
    "forearm": ("14975008", "SCT", "Forearm"),
    "hand": ("85562004", "SCT", "Hand"),
    "hip": ("24136001", "SCT", "Hip joint"),
    "humerus": ("85050009", "SCT", "Humerus"),
    "knee": ("72696002", "SCT", "Knee"),
    "shoulder": ("16982005", "SCT", "Shoulder"),
    "dental": ("91609006", "SCT", "Mandible"),
    "wrist": ("74670003", "SCT", "Wrist joint"),
}

_AP_CODE = ("399348003", "SCT", "antero-posterior")
_PA_CODE = ("272479007", "SCT", "postero-anterior")
_PA_TYPES = frozenset({"chest", "hand", "wrist", "finger"})

#: Body Part Examined values of unpaired parts (General Series Laterality must be absent).
_UNPAIRED = frozenset(
    {
        "ABDOMEN",
        "ABDOMENPELVIS",
        "BACK",
        "CHEST",
        "CHESTABDOMEN",
        "CHESTABDPELVIS",
        "COCCYX",
        "CSPINE",
        "CTSPINE",
        "HEAD",
        "HEADNECK",
        "JAW",
        "LSPINE",
        "LSSPINE",
        "MAXILLA",
        "NECK",
        "PELVIS",
        "SKULL",
        "SPINE",
        "SSPINE",
        "TLSPINE",
        "TSPINE",
        "WHOLEBODY",
    }
)

#: Patient Orientation of the upright film (rows, columns), as ``msk_films`` writes it;
#: a film's tilt or a lateral view is not reflected.
_ORIENTATION: dict[str, tuple[str, str]] = {
    "hand": ("L", "H"),
    "finger": ("L", "H"),
    "wrist": ("L", "H"),
    "forearm": ("L", "H"),
    "foot": ("L", "P"),
}


def write_triage_film(
    film: TriageFilm,
    path: Path,
    *,
    modality: str = "DX",
    body_part_examined: str | None | EllipsisType = ...,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    accession_number: str | None = None,
    seed: int = 0,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
) -> Path:
    """Write ``film`` as a Part 10 file at ``path`` (parent folders created); returns it.

    An X-ray with ``modality`` "DX" or "CR" becomes a DX (For Presentation) or CR image,
    ``photometric`` MONOCHROME2 or MONOCHROME1 (stored inverted so both display alike),
    ``bits_stored`` 8–16 (in 16 bits allocated). Anything else — a non-X-ray, a colour
    image, or another ``modality`` ("OT", "XC", "SC" …) — becomes a Secondary Capture
    image with that Modality (a non-X-ray sent as "DX" or "CR" keeps that Modality in the
    SC header), RGB or MONOCHROME2, 8 bits. ``body_part_examined``: ``...`` writes the
    true type's value (``body_part_examined_of``; none for a non-X-ray), "" an empty
    element, None no element, any other string that string. UIDs not given derive from
    ``seed``, the film's kind and its pixels, so the same call writes the same file.
    """
    image = np.asarray(film.image)
    colour = image.ndim == 3
    sc = colour or not film.is_xray or modality not in ("DX", "CR")
    if not sc and photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"unsupported photometric interpretation {photometric!r}")
    if not 8 <= bits_stored <= 16:
        raise ValueError("bits_stored must be between 8 and 16")
    if not modality or len(modality) > 16 or not modality.replace("_", "").isalnum():
        raise ValueError(f"bad modality {modality!r}")
    digest = zlib.crc32(np.ascontiguousarray(image).tobytes())
    key = (seed, film.kind, image.shape, digest)
    study_uid = study_instance_uid or _uid(SYNTHETIC_UID_ROOT, "triage-study", *key)
    series_uid = series_instance_uid or _uid(SYNTHETIC_UID_ROOT, "triage-series", *key, modality)
    sop_uid = _uid(SYNTHETIC_UID_ROOT, "triage-image", *key, modality, photometric, bits_stored)
    extras = np.random.default_rng([abs(int(seed)), digest])
    when = datetime(2025, 1, 1, 8, 0, 0) + timedelta(minutes=int(extras.integers(0, 525600)))
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    number = int(extras.integers(0, 10**8))
    sop_class = (
        SecondaryCaptureImageStorage
        if sc
        else DigitalXRayImageStorageForPresentation
        if modality == "DX"
        else ComputedRadiographyImageStorage
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.PatientName = f"Phantom^Triage{number}"
    ds.PatientID = f"PHANTOM-TRIAGE-{number}"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = date
    ds.StudyTime = time
    ds.ReferringPhysicianName = ""
    ds.StudyID = str(number % 10**6)
    ds.AccessionNumber = accession_number if accession_number is not None else f"TRI{number}"
    ds.StudyDescription = f"XR {film.kind.upper()}" if film.is_xray else "Imported image"
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = film.kind.capitalize()
    if body_part_examined is ...:
        if film.is_xray:
            ds.BodyPartExamined = body_part_examined_of(film.kind)
    elif body_part_examined is not None:
        ds.BodyPartExamined = body_part_examined
    if (sc or modality == "CR") and ds.get("BodyPartExamined") not in _UNPAIRED:
        ds.Laterality = ""  # Type 2C: a paired (or unknown) part; the side is not known
    ds.Manufacturer = "dicom-node synthetic phantom"
    ds.InstitutionName = "Synthetic Hospital"
    ds.StationName = "PHANTOM1"
    ds.ManufacturerModelName = "xray_types"
    ds.SoftwareVersions = "1"
    ds.InstanceNumber = 1
    if sc:
        ds.PatientOrientation = ""
    else:
        ds.PatientOrientation = list(_ORIENTATION.get(film.kind, ("L", "F")))
    ds.ContentDate = date
    ds.ContentTime = time
    ds.ImageComments = f"Synthetic triage film: {film.label} ({film.kind})"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"

    if sc:
        ds.ConversionType = "DV" if film.kind == "document" else "WSD"
        if colour:
            pixels = np.ascontiguousarray(image, dtype=np.uint8)
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
        else:
            pixels = np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        if film.pixel_spacing_mm is not None:
            spacing = f"{film.pixel_spacing_mm:.6g}"
            ds.NominalScannedPixelSpacing = [spacing, spacing]
            ds.PixelSpacing = [spacing, spacing]
        ds.PixelData = pixels.tobytes()
    else:
        top = (1 << bits_stored) - 1
        stored = np.rint(np.clip(image, 0.0, 1.0) * top).astype(np.uint16)
        if photometric == "MONOCHROME1":
            stored = (top - stored).astype(np.uint16)
        if modality == "DX":
            ds.PresentationIntentType = "FOR PRESENTATION"
        ds.AcquisitionDate = date
        ds.AcquisitionTime = time
        ds.ImageType = ["ORIGINAL", "PRIMARY", ""] if modality == "DX" else ["ORIGINAL", "PRIMARY"]
        ds.KVP = "70"
        ds.DistanceSourceToDetector = "1000"
        ds.ExposureTime = "20"
        ds.XRayTubeCurrent = "200"
        ds.Exposure = "4"
        ds.ViewPosition = "PA" if film.kind in _PA_TYPES else "AP"
        spacing = f"{film.pixel_spacing_mm or 0.2:.6g}"
        ds.ImagerPixelSpacing = [spacing, spacing]
        if modality == "DX":
            ds.ImageLaterality = "U"
            ds.AnatomicRegionSequence = DicomSequence([_code(*_ANATOMY_CODES[film.kind])])
            view = _PA_CODE if film.kind in _PA_TYPES else _AP_CODE
            ds.ViewCodeSequence = DicomSequence([_code(*view)])
            ds.PositionerType = "NONE"
            ds.DetectorType = "SCINTILLATOR"
            ds.PixelSpacing = [spacing, spacing]
            ds.PixelSpacingCalibrationType = "GEOMETRY"
            ds.PixelSpacingCalibrationDescription = "Synthetic phantom, no magnification"
            ds.AcquisitionContextSequence = DicomSequence()
            ds.PixelIntensityRelationship = "LOG"
            ds.PixelIntensityRelationshipSign = -1 if photometric == "MONOCHROME2" else 1
            ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
        else:
            ds.PlateID = "PLATE-1"
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
        low, high = int(stored.min()), int(stored.max())
        ds.WindowCenter = f"{(low + high + 1) / 2:g}"
        ds.WindowWidth = f"{max(high - low + 1, 2)}"
        ds.VOILUTFunction = "LINEAR"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.Rows, ds.Columns = stored.shape
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
