"""A CT series as a stack of axial slices in body order, read from its Part 10 files.

Slices are ordered by geometry, never by Instance Number: each slice's position along
the stack's normal is ``ImagePositionPatient · (row × column direction)`` (PS3.3
C.7.6.2.1.1), and the stack is put in **superior → inferior** order (patient z, which
points to the head in DICOM's LPS coordinates, decreasing), the order in which a body
part score should rise. A series acquired feet first, numbered backwards, or with its
instance numbers in any order gives the same stack.

``read_ct_geometry`` reads only the headers (pixel data stays on disk) and sets aside
what is not an axial slice of the stack: localizers, other orientations, other frames of
reference, files without position. ``read_hu`` then decodes a slice to Hounsfield
units; uncompressed pixel data goes straight from the file into an array.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from pipelines.errors import PipelineInputError
from pipelines.film_io import DEFER_BYTES, native_pixels_from_file

logger = logging.getLogger(__name__)

#: A stack is axial when its normal is within ~37° of the patient z axis.
AXIAL_MIN_COS = 0.8
#: Image orientations that differ by less than this (direction cosines) are the same.
ORIENTATION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class CtSlice:
    """One axial slice of the stack."""

    path: Path
    sop_instance_uid: str
    file_index: int  # position in the files the series came as (SeriesInput.files)
    position_mm: float  # along the stack normal
    z_mm: float  # patient z of the slice centre (superior is +)
    instance_number: int | None


@dataclass(frozen=True)
class CtStack:
    """The slices of a CT series in superior → inferior order, and what was set aside."""

    slices: tuple[CtSlice, ...]
    normal: tuple[float, float, float]
    spacing_mm: float  # median distance between neighbouring slices
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.slices)

    @property
    def z_mm(self) -> np.ndarray:
        return np.array([s.z_mm for s in self.slices], dtype=np.float64)

    @property
    def positions_mm(self) -> np.ndarray:
        return np.array([s.position_mm for s in self.slices], dtype=np.float64)


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(np.isfinite(numbers)):
        return None
    return numbers


def _is_localizer(header: Dataset) -> bool:
    image_type = [str(v).upper() for v in (header.get("ImageType") or [])]
    return "LOCALIZER" in image_type


def read_ct_geometry(paths: list[Path] | tuple[Path, ...]) -> CtStack:
    """Read the headers of ``paths`` and order the axial slices superior → inferior.

    Raises ``PipelineInputError`` when no axial stack of at least two slices is left.
    """
    candidates: list[tuple[CtSlice, tuple[float, ...], str]] = []
    skipped: list[str] = []
    for index, path in enumerate(paths):
        name = Path(path).name
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001  # pydicom raises many types; set aside
            skipped.append(f"{name}: not a readable DICOM file ({type(exc).__name__})")
            continue
        if _is_localizer(header):
            skipped.append(f"{name}: a localizer")
            continue
        orientation = _floats(header.get("ImageOrientationPatient"), 6)
        position = _floats(header.get("ImagePositionPatient"), 3)
        if orientation is None or position is None:
            skipped.append(f"{name}: no Image Orientation/Position (Patient)")
            continue
        if "PixelData" not in header and "FloatPixelData" not in header:
            # stop_before_pixels hides Pixel Data; an image without it has no Rows either.
            if header.get("Rows") is None:
                skipped.append(f"{name}: not an image")
                continue
        row, column = np.array(orientation[:3]), np.array(orientation[3:])
        normal = np.cross(row, column)
        length = float(np.linalg.norm(normal))
        if length < 0.5:
            skipped.append(f"{name}: Image Orientation (Patient) is degenerate")
            continue
        normal /= length
        number = header.get("InstanceNumber")
        candidates.append(
            (
                CtSlice(
                    path=Path(path),
                    sop_instance_uid=str(header.get("SOPInstanceUID", "")),
                    file_index=index,
                    position_mm=float(np.dot(position, normal)),
                    z_mm=_centre_z(header, position, row, column),
                    instance_number=int(number) if number not in (None, "") else None,
                ),
                tuple(round(v / ORIENTATION_TOLERANCE) for v in orientation),
                str(header.get("FrameOfReferenceUID", "")),
            )
        )
    if not candidates:
        reasons = "; ".join(skipped[:3]) or "the series has no files"
        raise PipelineInputError(f"no CT slice in the series could be used: {reasons}")
    # The stack is the most common orientation within the most common frame of reference.
    frame, _ = Counter(c[2] for c in candidates).most_common(1)[0]
    in_frame = [c for c in candidates if c[2] == frame]
    skipped += [
        f"{c[0].path.name}: another frame of reference" for c in candidates if c[2] != frame
    ]
    orientation_key, _ = Counter(c[1] for c in in_frame).most_common(1)[0]
    stack = [c[0] for c in in_frame if c[1] == orientation_key]
    skipped += [
        f"{c[0].path.name}: another orientation" for c in in_frame if c[1] != orientation_key
    ]
    cosines = np.array(orientation_key, dtype=np.float64) * ORIENTATION_TOLERANCE
    normal = np.cross(cosines[:3], cosines[3:])
    normal /= np.linalg.norm(normal)
    if abs(normal[2]) < AXIAL_MIN_COS:
        raise PipelineInputError(
            "the series is not axial (its slices face "
            f"({normal[0]:.2f}, {normal[1]:.2f}, {normal[2]:.2f}) in patient coordinates); "
            "body part regression needs axial CT slices"
        )
    if len(stack) < 2:
        raise PipelineInputError(
            f"the series has {len(stack)} usable axial slice; body part regression needs at least 2"
        )
    # Superior first: sort along the normal, the way patient z decreases.
    stack.sort(key=lambda s: s.position_mm, reverse=bool(normal[2] > 0))
    positions = np.array([s.position_mm for s in stack])
    gaps = np.abs(np.diff(positions))
    spacing = float(np.median(gaps)) if gaps.size else 0.0
    if skipped:
        logger.info("ct stack: %d slice(s) used, %d set aside", len(stack), len(skipped))
    return CtStack(
        slices=tuple(stack),
        normal=(float(normal[0]), float(normal[1]), float(normal[2])),
        spacing_mm=spacing,
        skipped=tuple(skipped),
    )


def _centre_z(
    header: Dataset, position: tuple[float, ...], row: np.ndarray, column: np.ndarray
) -> float:
    """Patient z of the image centre (the corner's z for a gantry-tilted slice differs)."""
    rows, columns = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    spacing = _floats(header.get("PixelSpacing"), 2)
    if spacing is None or rows == 0 or columns == 0:
        return float(position[2])
    # Pixel Spacing is (between rows, between columns); the row direction moves along
    # columns. The centre is half the image along each direction.
    centre = (
        np.array(position)
        + row * spacing[1] * (columns - 1) / 2.0
        + column * spacing[0] * (rows - 1) / 2.0
    )
    return float(centre[2])


def read_hu(path: Path) -> np.ndarray:
    """One slice in Hounsfield units (float32, rows × columns).

    Raises ``PipelineInputError`` when the slice cannot be decoded.
    """
    try:
        dataset = pydicom.dcmread(path, defer_size=DEFER_BYTES)
    except Exception as exc:  # pydicom raises many types for a broken file
        raise PipelineInputError(f"{Path(path).name}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in dataset:
        raise PipelineInputError(f"{Path(path).name}: no pixel data")
    if int(dataset.get("SamplesPerPixel", 1) or 1) != 1:
        raise PipelineInputError(f"{Path(path).name}: not a grey image")
    if int(dataset.get("NumberOfFrames", 1) or 1) != 1:
        raise PipelineInputError(f"{Path(path).name}: multi-frame CT is not supported")
    stored = native_pixels_from_file(Path(path), dataset)
    if stored is None:
        try:
            stored = dataset.pixel_array
        except Exception as exc:  # a missing decoder or corrupt pixel data
            raise PipelineInputError(
                f"{Path(path).name}: the pixel data cannot be decoded ({exc})"
            ) from exc
    else:
        stored = _correct_unused_bits(stored, dataset)
    if stored.ndim != 2:
        raise PipelineInputError(f"{Path(path).name}: expected one 2-D frame")
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    hu = stored.astype(np.float32)
    if slope != 1.0:
        hu *= np.float32(slope)
    if intercept != 0.0:
        hu += np.float32(intercept)
    return hu


def _correct_unused_bits(stored: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Clear (unsigned) or sign-extend (signed) the bits above Bits Stored, as pydicom does."""
    bits = 8 * stored.dtype.itemsize
    unused = bits - int(dataset.get("BitsStored") or bits)
    if 0 < unused < bits:
        return np.right_shift(np.left_shift(stored, unused), unused)
    return stored
