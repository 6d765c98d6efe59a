"""A CT series as a stack of axial slices in body order, read from its Part 10 files.

Slices are ordered by geometry, never by Instance Number: each slice's position along
the stack's normal is ``ImagePositionPatient · (row × column direction)`` (PS3.3
C.7.6.2.1.1), and the stack is put in **superior → inferior** order (patient z, which
points to the head in DICOM's LPS coordinates, decreasing), the order in which a body
part score should rise. A series acquired feet first, numbered backwards, or with its
instance numbers in any order gives the same stack.

A series may also come as multi-frame images (Enhanced CT, Legacy Converted Enhanced CT:
one file, one frame per slice): each frame is then a slice, placed by its own Plane
Position (Patient) from the Per-frame Functional Groups, its orientation, pixel spacing
and rescale taken from the frame's functional groups or the shared ones (PS3.3
C.7.6.16). Single-frame files and multi-frame images may be mixed in one series.

Each slice also records how its pixels turn to the standard axial view (``view.py``),
from its orientation; decoding keeps the stored layout, and the pipeline's input
preparation applies the view.

``read_ct_geometry`` reads only the headers (pixel data stays on disk) and sets aside
what is not an axial slice of the stack: localizers, other orientations, other frames of
reference, files or frames without position, and all but one of slices at the same
position (more time points or reconstructions in one series). ``read_slices_hu`` then
decodes slices to Hounsfield units (``read_hu`` one single-frame file). Uncompressed pixel data goes
straight from the file into an array, one frame at a time, from where the header read
found it (``NativePixels``): the file is not parsed a second time, unless it was replaced
in between.

Pixels outside the reconstruction's field of view carry the scanner's padding value
(Pixel Padding Value, up to Pixel Padding Range Limit: PS3.3 C.7.5.1.1.2), which can be
any stored value, a bright one included. Every decode path reads them as air
(``AIR_HU``) before anything is windowed.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from pipelines.ct_body_part.view import STANDARD_VIEW, InPlaneView, in_plane_view
from pipelines.errors import PipelineInputError
from pipelines.film_io import (
    DEFER_BYTES,
    native_frame_layout,
    native_pixels_from_file,
    native_syntax,
)

logger = logging.getLogger(__name__)

#: A stack is axial when its normal is within ~37° of the patient z axis.
AXIAL_MIN_COS = 0.8
#: Image orientations that differ by less than this (direction cosines) are the same.
ORIENTATION_TOLERANCE = 1e-3
#: Slices closer than this along the normal are at the same position.
SAME_POSITION_MM = 0.01
#: What a padding pixel (outside the reconstruction's field of view) reads as.
AIR_HU = -1000.0


@dataclass(frozen=True)
class NativePixels:
    """Where a slice's uncompressed stored values lie in its file, and how they become HU."""

    offset: int  # of the slice's (frame's) first value
    dtype: str  # numpy's, e.g. "<i2"
    rows: int
    columns: int
    bits_stored: int
    slope: float
    intercept: float
    #: The stored values that are padding (``padding_range``), or None.
    padding: tuple[int, int] | None
    #: The file as its header was read (inode, size, mtime): a file replaced since is
    #: parsed again rather than read at an offset that may no longer hold.
    file_identity: tuple[int, int, int]


@dataclass(frozen=True)
class CtSlice:
    """One axial slice of the stack."""

    path: Path
    sop_instance_uid: str
    file_index: int  # position in the files the series came as (SeriesInput.files)
    position_mm: float  # along the stack normal
    z_mm: float  # patient z of the slice centre (superior is +)
    instance_number: int | None
    #: The slice's Frame Number (from 1) in a multi-frame image; None for a single frame.
    frame: int | None = None
    #: Where its uncompressed pixel data lies; None for compressed or unusual data.
    native: NativePixels | None = None
    #: What turns its pixels to the standard axial view (from its orientation).
    view: InPlaneView = STANDARD_VIEW


@dataclass(frozen=True)
class CtStack:
    """The slices of a CT series in superior → inferior order, and what was set aside."""

    slices: tuple[CtSlice, ...]
    normal: tuple[float, float, float]
    spacing_mm: float  # median distance between neighbouring slices
    skipped: tuple[str, ...] = ()
    #: Every input file's header as read (no pixel data; None: unreadable), in the order
    #: the files were given.
    headers: tuple[Dataset | None, ...] = ()

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
    candidates: list[_Candidate] = []
    skipped: list[str] = []
    headers: list[Dataset | None] = [None] * len(paths)
    for index, path in enumerate(paths):
        name = Path(path).name
        try:
            with open(path, "rb") as handle:
                header = pydicom.dcmread(handle, stop_before_pixels=True)
                pixel_value = _pixel_value_at(handle, header)
                identity = _file_identity(os.fstat(handle.fileno()))
        except Exception as exc:  # noqa: BLE001  # pydicom raises many types; set aside
            skipped.append(f"{name}: not a readable DICOM file ({type(exc).__name__})")
            continue
        headers[index] = header
        if _is_localizer(header):
            skipped.append(f"{name}: a localizer")
            continue
        if "PixelData" not in header and "FloatPixelData" not in header:
            # stop_before_pixels hides Pixel Data; an image without it has no Rows either.
            if header.get("Rows") is None:
                skipped.append(f"{name}: not an image")
                continue
        frames = _frame_count(header)
        if frames is None:
            skipped.append(f"{name}: Number of Frames is not a positive number")
        elif frames > 1 or "PerFrameFunctionalGroupsSequence" in header:
            found, frame_reasons = _frame_candidates(header, Path(path), index, frames)
            candidates += _located(found, header, pixel_value, identity, frames)
            skipped += [f"{name}: {reason}" for reason in frame_reasons]
        else:
            slice_or_reason = _candidate(
                header,
                Path(path),
                index,
                orientation=_floats(header.get("ImageOrientationPatient"), 6),
                position=_floats(header.get("ImagePositionPatient"), 3),
                pixel_spacing=_floats(header.get("PixelSpacing"), 2),
            )
            if isinstance(slice_or_reason, str):
                skipped.append(f"{name}: {slice_or_reason}")
            else:
                candidates += _located([slice_or_reason], header, pixel_value, identity, 1)
    if not candidates:
        reasons = "; ".join(skipped[:3]) or "the series has no files"
        raise PipelineInputError(f"no CT slice in the series could be used: {reasons}")
    # The stack is the most common orientation within the most common frame of reference.
    reference, _ = Counter(c[2] for c in candidates).most_common(1)[0]
    in_frame = [c for c in candidates if c[2] == reference]
    skipped += [
        f"{_where(c[0])}: another frame of reference" for c in candidates if c[2] != reference
    ]
    orientation_key, _ = Counter(c[1] for c in in_frame).most_common(1)[0]
    stack = [c[0] for c in in_frame if c[1] == orientation_key]
    skipped += [f"{_where(c[0])}: another orientation" for c in in_frame if c[1] != orientation_key]
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
    stack, repeats = _one_per_position(stack)
    if repeats:
        skipped.append(
            f"{repeats} slice(s) at the position of another slice (more time points, "
            "reconstructions or a slice sent again): the first by Instance Number, file "
            "and frame is kept at each position"
        )
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
        headers=tuple(headers),
    )


def _one_per_position(ordered: list[CtSlice]) -> tuple[list[CtSlice], int]:
    """``ordered`` (sorted along the normal) with one slice per position, and how many
    were left out: of slices less than ``SAME_POSITION_MM`` apart, the first by Instance
    Number, file and frame. A body part score depends on the anatomy at a position, not
    on which acquisition showed it, so a series repeating positions scores as one pass."""
    kept: list[CtSlice] = []
    group: list[CtSlice] = []
    for item in ordered:
        if group and abs(item.position_mm - group[0].position_mm) >= SAME_POSITION_MM:
            kept.append(min(group, key=_first_shown))
            group = []
        group.append(item)
    if group:
        kept.append(min(group, key=_first_shown))
    return kept, len(ordered) - len(kept)


def _first_shown(item: CtSlice) -> tuple[bool, int, int, int]:
    number = item.instance_number
    return (number is None, number or 0, item.file_index, item.frame or 0)


#: A slice found in the headers, its orientation (rounded, as a key) and frame of reference.
_Candidate = tuple[CtSlice, tuple[int, ...], str]


def _candidate(
    header: Dataset,
    path: Path,
    file_index: int,
    *,
    orientation: tuple[float, ...] | None,
    position: tuple[float, ...] | None,
    pixel_spacing: tuple[float, ...] | None,
    frame: int | None = None,
) -> _Candidate | str:
    """One slice of ``header`` (a file, or one frame of it), or why it cannot be one."""
    if orientation is None or position is None:
        return "no Image Orientation/Position (Patient)"
    row, column = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    if length < 0.5:
        return "Image Orientation (Patient) is degenerate"
    normal /= length
    number = header.get("InstanceNumber")
    try:
        instance_number = int(number) if number not in (None, "") else None
    except (TypeError, ValueError):
        instance_number = None
    item = CtSlice(
        path=path,
        sop_instance_uid=str(header.get("SOPInstanceUID", "")),
        file_index=file_index,
        position_mm=float(np.dot(position, normal)),
        z_mm=_centre_z(header, position, row, column, pixel_spacing),
        instance_number=instance_number,
        frame=frame,
        view=in_plane_view(orientation),
    )
    key = tuple(round(v / ORIENTATION_TOLERANCE) for v in orientation)
    return item, key, str(header.get("FrameOfReferenceUID", ""))


def _frame_count(header: Dataset) -> int | None:
    try:
        frames = int(header.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None
    return frames if frames >= 1 else None


def _frame_groups(header: Dataset, frames: int) -> Sequence[Dataset] | None:
    """The Per-frame Functional Groups, one item per frame, or None when they do not fit."""
    groups = header.get("PerFrameFunctionalGroupsSequence")
    if groups is None or len(groups) != frames:
        return None
    return groups


def _functional_group(header: Dataset, frame_group: Dataset | None, keyword: str) -> Dataset | None:
    """The first item of functional group ``keyword`` for one frame: the frame's own,
    else the shared one (PS3.3 C.7.6.16: a group is in one place or the other)."""
    shared = header.get("SharedFunctionalGroupsSequence")
    holders = (frame_group, shared[0] if shared else None)
    for holder in holders:
        if holder is not None and keyword in holder:
            items = holder[keyword].value
            if items:
                return items[0]
    return None


def _group_value(
    header: Dataset, frame_group: Dataset | None, keyword: str, attribute: str
) -> object:
    group = _functional_group(header, frame_group, keyword)
    return None if group is None else group.get(attribute)


def _frame_candidates(
    header: Dataset, path: Path, file_index: int, frames: int
) -> tuple[list[_Candidate], list[str]]:
    """The slices of a multi-frame image, one per frame, and why frames were set aside
    (each reason once, with how many frames it set aside)."""
    groups = _frame_groups(header, frames)
    if groups is None:
        return [], [
            f"a multi-frame image of {frames} frames without a Per-frame Functional Groups "
            "Sequence of as many items (no position per frame)"
        ]
    found: list[_Candidate] = []
    reasons: Counter[str] = Counter()
    for number, group in enumerate(groups, start=1):
        frame_type = _group_value(header, group, "CTImageFrameTypeSequence", "FrameType") or ()
        if "LOCALIZER" in [str(v).upper() for v in frame_type]:  # type: ignore[attr-defined]
            reasons["a localizer"] += 1
            continue
        result = _candidate(
            header,
            path,
            file_index,
            orientation=_floats(
                _group_value(header, group, "PlaneOrientationSequence", "ImageOrientationPatient"),
                6,
            ),
            position=_floats(
                _group_value(header, group, "PlanePositionSequence", "ImagePositionPatient"), 3
            ),
            pixel_spacing=_floats(
                _group_value(header, group, "PixelMeasuresSequence", "PixelSpacing"), 2
            ),
            frame=number,
        )
        if isinstance(result, str):
            reasons[result] += 1
        else:
            found.append(result)
    return found, [f"{count} of {frames} frames: {reason}" for reason, count in reasons.items()]


def _pixel_value_at(handle: BinaryIO, header: Dataset) -> tuple[int, int] | None:
    """(offset, length) of the Pixel Data value whose element starts where ``dcmread``
    with ``stop_before_pixels`` left ``handle``, for uncompressed little-endian data; None
    otherwise (or when the element is not where it was expected)."""
    if not native_syntax(header):
        return None
    explicit = not header.file_meta.TransferSyntaxUID.is_implicit_VR
    start = handle.tell()
    element = handle.read(12 if explicit else 8)
    if len(element) < (12 if explicit else 8) or element[:4] != _PIXEL_DATA_TAG:
        return None
    if explicit:
        if element[4:6] not in (b"OB", b"OW"):
            return None
        (length,) = struct.unpack("<I", element[8:12])
    else:
        (length,) = struct.unpack("<I", element[4:8])
    if length == 0xFFFFFFFF:  # undefined length: encapsulated, not native
        return None
    return start + len(element), length


_PIXEL_DATA_TAG = struct.pack("<HH", 0x7FE0, 0x0010)


def _file_identity(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _located(
    found: list[_Candidate],
    header: Dataset,
    pixel_value: tuple[int, int] | None,
    identity: tuple[int, int, int],
    frames: int,
) -> list[_Candidate]:
    """``found`` with each slice's ``NativePixels`` where its pixel data is uncompressed."""
    layout = native_frame_layout(header)
    if pixel_value is None or layout is None:
        return found
    dtype, rows, columns = layout
    frame_bytes = rows * columns * dtype.itemsize
    offset, length = pixel_value
    if length < frames * frame_bytes:
        return found
    padding = padding_range(header)
    out: list[_Candidate] = []
    for item, key, reference in found:
        try:
            slope, intercept = _rescale(header, item.frame, item.path.name)
        except PipelineInputError:
            out.append((item, key, reference))  # decoded the usual way, which says why
            continue
        native = NativePixels(
            offset=offset + (0 if item.frame is None else item.frame - 1) * frame_bytes,
            dtype=dtype.str,
            rows=rows,
            columns=columns,
            bits_stored=int(header.get("BitsStored") or 8 * dtype.itemsize),
            slope=slope,
            intercept=intercept,
            padding=padding,
            file_identity=identity,
        )
        out.append((replace(item, native=native), key, reference))
    return out


def _where(item: CtSlice) -> str:
    return item.path.name if item.frame is None else f"{item.path.name} frame {item.frame}"


def _centre_z(
    header: Dataset,
    position: tuple[float, ...],
    row: np.ndarray,
    column: np.ndarray,
    spacing: tuple[float, ...] | None,
) -> float:
    """Patient z of the image centre (the corner's z for a gantry-tilted slice differs)."""
    rows, columns = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
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
    """One single-frame slice in Hounsfield units (float32, rows × columns).

    Raises ``PipelineInputError`` when the slice cannot be decoded.
    """
    return _decode_hu(Path(path), _open_image(Path(path)), None)


def read_slices_hu(slices: Iterable[CtSlice]) -> Iterator[np.ndarray]:
    """Each of ``slices`` in Hounsfield units (float32, rows × columns), in the order given.

    A multi-frame image's header is parsed once however many of its frames are read, and
    only the frames asked for are decoded. Raises ``PipelineInputError`` when a slice
    cannot be decoded.
    """
    images: dict[Path, Dataset] = {}
    for item in slices:
        hu = _read_native(item.native, item.path) if item.native is not None else None
        if hu is not None:
            yield hu
            continue
        if item.frame is None:
            yield read_hu(item.path)
            continue
        dataset = images.get(item.path)
        if dataset is None:
            dataset = images[item.path] = _open_image(item.path)
        yield _decode_hu(item.path, dataset, item.frame)


def _read_native(native: NativePixels, path: Path) -> np.ndarray | None:
    """The slice in HU read straight from where its header said; None when the file has
    been replaced since, or is shorter than it said (then it is parsed again)."""
    count = native.rows * native.columns
    try:
        if _file_identity(os.stat(path)) != native.file_identity:
            return None
        stored = np.fromfile(path, dtype=native.dtype, count=count, offset=native.offset)
    except (OSError, ValueError):
        return None
    if stored.size != count:
        return None
    stored = _correct_unused_bits(stored.reshape(native.rows, native.columns), native.bits_stored)
    return _to_hu(stored, native.slope, native.intercept, native.padding)


def _open_image(path: Path) -> Dataset:
    """The file's dataset, its pixel data left on disk until a frame is read."""
    try:
        return pydicom.dcmread(path, defer_size=DEFER_BYTES)
    except Exception as exc:  # pydicom raises many types for a broken file
        raise PipelineInputError(f"{path.name}: not a readable DICOM file ({exc})") from exc


def _decode_hu(path: Path, dataset: Dataset, frame: int | None) -> np.ndarray:
    """Frame ``frame`` (from 1; None: the only one) of ``dataset`` in Hounsfield units."""
    name = path.name if frame is None else f"{path.name} frame {frame}"
    if "PixelData" not in dataset:
        raise PipelineInputError(f"{name}: no pixel data")
    if int(dataset.get("SamplesPerPixel", 1) or 1) != 1:
        raise PipelineInputError(f"{name}: not a grey image")
    frames = _frame_count(dataset)
    if frame is None and frames != 1:
        raise PipelineInputError(f"{name}: a multi-frame image, read frame by frame")
    if frame is not None and (frames is None or not 1 <= frame <= frames):
        raise PipelineInputError(f"{name}: the image has {frames} frame(s)")
    index = 0 if frame is None else frame - 1
    stored = native_pixels_from_file(path, dataset, index)
    if stored is None:
        try:
            stored = dataset.pixel_array if frame is None else pixel_array(dataset, index=index)
        except Exception as exc:  # a missing decoder or corrupt pixel data
            raise PipelineInputError(f"{name}: the pixel data cannot be decoded ({exc})") from exc
    else:
        bits = 8 * stored.dtype.itemsize
        stored = _correct_unused_bits(stored, int(dataset.get("BitsStored") or bits))
    if stored.ndim != 2:
        raise PipelineInputError(f"{name}: expected one 2-D frame")
    return _to_hu(stored, *_rescale(dataset, frame, name), padding_range(dataset))


def _to_hu(
    stored: np.ndarray, slope: float, intercept: float, padding: tuple[int, int] | None
) -> np.ndarray:
    hu = stored.astype(np.float32)
    if slope != 1.0:
        hu *= np.float32(slope)
    if intercept != 0.0:
        hu += np.float32(intercept)
    if padding is not None:
        low, high = padding
        hu[(stored >= low) & (stored <= high)] = AIR_HU
    return hu


def padding_range(dataset: Dataset) -> tuple[int, int] | None:
    """The stored values that are padding: Pixel Padding Value alone, or the range from it
    to Pixel Padding Range Limit (in either order); None when the image names none.

    The values are compared with the stored values, so they are read as the pixel data's
    type: a value written as US for signed pixels (63536 for -2000, as some scanners do)
    is read as the signed value of the same bits.
    """
    value = dataset.get("PixelPaddingValue")
    if value is None:
        return None
    limit = dataset.get("PixelPaddingRangeLimit", value)
    try:
        ends = [int(value), int(limit)]
        bits = int(dataset.get("BitsAllocated") or 16)
        signed = int(dataset.get("PixelRepresentation") or 0) == 1
    except (TypeError, ValueError):
        logger.warning("Pixel Padding Value %r is not a number: padding not masked", value)
        return None
    span = 1 << bits
    for index, end in enumerate(ends):
        if signed and end >= span // 2:
            ends[index] = end - span
        elif not signed and end < 0:
            ends[index] = end + span
    return min(ends), max(ends)


def _rescale(dataset: Dataset, frame: int | None, name: str) -> tuple[float, float]:
    """Rescale Slope and Intercept of a frame (its Pixel Value Transformation, the frame's
    own or the shared one) or of a single-frame image (the top-level attributes)."""
    slope: object = dataset.get("RescaleSlope")
    intercept: object = dataset.get("RescaleIntercept")
    if frame is not None:
        frames = _frame_count(dataset) or 0
        groups = _frame_groups(dataset, frames)
        group = _functional_group(
            dataset, groups[frame - 1] if groups else None, "PixelValueTransformationSequence"
        )
        if group is not None:
            slope, intercept = group.get("RescaleSlope"), group.get("RescaleIntercept")
    try:
        return float(slope or 1), float(intercept or 0)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise PipelineInputError(f"{name}: Rescale Slope/Intercept is not a number") from exc


def _correct_unused_bits(stored: np.ndarray, bits_stored: int) -> np.ndarray:
    """Clear (unsigned) or sign-extend (signed) the bits above Bits Stored, as pydicom does."""
    bits = 8 * stored.dtype.itemsize
    unused = bits - bits_stored
    if 0 < unused < bits:
        return np.right_shift(np.left_shift(stored, unused), unused)
    return stored
