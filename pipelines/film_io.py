"""DICOM radiograph → display pixels, the way a viewer shows them.

``read_film`` decodes one single-frame grayscale image (CR, DX, any transfer syntax
pydicom can decode) and applies, in the order PS3.4 prescribes, the Modality LUT
(rescale slope/intercept or a Modality LUT Sequence), the VOI LUT (window centre/width,
its LINEAR / LINEAR_EXACT / SIGMOID function, or a VOI LUT Sequence) and, for
MONOCHROME1, the inversion, so that 0 is black and bone is bright. The result is one
``uint16`` image scaled to the full 0..65535 range.

The three steps are baked into one look-up table over every possible stored value
(65,536 entries for 16-bit data) and the image goes through that table once: about
20 ms for a 3000 × 2400 film on one core, instead of several passes of float arithmetic
over nine million pixels. Where the header has no window, the range of the image's own
Modality LUT output is stretched linearly (the paper's "linear 16 → 8 bit").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

DISPLAY_MAX = 65535


class FilmUnreadable(ValueError):
    """The file is not a single-frame grayscale image this module can display."""


@dataclass(frozen=True, eq=False)
class Film:
    """One radiograph ready for a pipeline.

    ``display`` is (rows, columns) ``uint16``, MONOCHROME2 (0 = black), with the
    header's Modality and VOI LUTs applied. ``header`` is the dataset without its pixel
    data. ``pixel_spacing`` is (row, column) in mm, from Pixel Spacing or, for
    projection radiographs without it, Imager Pixel Spacing.
    """

    display: np.ndarray
    header: Dataset
    pixel_spacing: tuple[float, float] | None

    @property
    def sop_instance_uid(self) -> str:
        return str(self.header.SOPInstanceUID)


def read_film(path: str | Path) -> Film:
    """Read and decode one film; raises ``FilmUnreadable`` with the reason."""
    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for a broken file
        raise FilmUnreadable(f"{Path(path).name}: not a readable DICOM file ({exc})") from exc
    return film_from_dataset(dataset)


def film_from_dataset(dataset: Dataset) -> Film:
    """The ``Film`` of an already read dataset (with its pixel data)."""
    if "PixelData" not in dataset:
        raise FilmUnreadable("the dataset has no pixel data")
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise FilmUnreadable(f"photometric interpretation {photometric or 'missing'} is not grey")
    if int(dataset.get("NumberOfFrames", 1) or 1) != 1:
        raise FilmUnreadable("multi-frame images are not films")
    bits_allocated = int(dataset.get("BitsAllocated", 0))
    if bits_allocated not in (8, 16):
        raise FilmUnreadable(f"{bits_allocated}-bit pixels are not supported (8 or 16)")
    try:
        stored = dataset.pixel_array
    except Exception as exc:  # a missing decoder or corrupt pixel data
        raise FilmUnreadable(f"the pixel data cannot be decoded ({exc})") from exc
    if stored.ndim != 2:
        raise FilmUnreadable(f"expected one 2-D frame, got an array of shape {stored.shape}")
    table, index = _display_table(dataset, stored)
    display = table[index]
    header = dataset.copy()
    header._dict = dict(dataset._dict)  # a shallow copy shares the caller's element dict
    del header.PixelData
    return Film(display=display, header=header, pixel_spacing=_pixel_spacing(dataset))


def _display_table(dataset: Dataset, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Modality → VOI → presentation table, and the array that indexes it."""
    size = 1 << (8 * stored.dtype.itemsize)
    index_dtype = np.uint8 if size == 256 else np.uint16
    index = stored.view(index_dtype)
    # Entry i of the table is for the stored value whose bits are i.
    domain = np.arange(size, dtype=index_dtype).view(stored.dtype)
    modality = np.asarray(apply_modality_lut(domain, dataset), dtype=np.float64)
    voi = _voi_kind(dataset)
    if voi is not None:
        values = np.asarray(apply_voi_lut(modality, dataset, index=0), dtype=np.float64)
        if voi == "window":
            # The window's own output range: a window wider than the data stays grey.
            edges = np.asarray(apply_voi_lut(np.array([-np.inf, np.inf]), dataset, index=0))
            low, high = float(edges.min()), float(edges.max())
        else:
            low, high = float(values.min()), float(values.max())
    else:
        values = modality
        present = np.bincount(index.ravel(), minlength=size) > 0
        low, high = float(values[present].min()), float(values[present].max())
    if high <= low:  # a blank image, or a window that maps everything to one value
        high = low + 1.0
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    if str(dataset.PhotometricInterpretation) == "MONOCHROME1":
        scaled = 1.0 - scaled
    table = np.rint(scaled * DISPLAY_MAX).astype(np.uint16)
    return table, index


def _voi_kind(dataset: Dataset) -> str | None:
    """What ``apply_voi_lut`` applies: ``"lut"``, ``"window"`` or nothing (empty values)."""
    sequence = dataset.get("VOILUTSequence")
    if sequence and None not in (
        sequence[0].get("LUTDescriptor"),
        sequence[0].get("LUTData"),
    ):
        return "lut"
    if dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
        return "window"
    return None


def _pixel_spacing(dataset: Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            row, column = (float(v) for v in dataset.get(keyword))
        except (TypeError, ValueError):  # absent, empty, one value or three, not numbers
            continue
        if row > 0 and column > 0:
            return row, column
    return None
