"""Any image → the paper's input: 8-bit greyscale, 224 × 224 (MONAI transforms).

Paper 004, Section III.A: "All images were converted to 8-bit grayscale and resized to
224×224 pixels." Module I exists to tell radiographs from everything else, so every
image a PACS may hold has to get there, not only films:

* a grey radiograph (CR, DX, any single-frame MONOCHROME1/2 image) is read with
  ``pipelines.film_io``: Modality and VOI LUTs applied, MONOCHROME1 inverted, so that bone
  is bright whatever the header says;
* anything else with pixels is decoded by pydicom: colour (RGB, YBR, a palette) becomes
  grey by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B, what PIL's ``"L"`` conversion
  uses for a PNG or JPEG in training); a multi-frame image (an ultrasound cine, an
  enhanced MR) gives its middle frame; a grey image film_io refuses (32-bit, multi-frame)
  gets its Modality/VOI LUTs and a min..max stretch;
* a PNG or JPEG file (training from a folder) is read with PIL and converted alike.

Then (``resized_8bit``): the grey image is resized to ``size`` × ``size`` by area
averaging (MONAI ``Resize(mode="area")``, no aspect kept, so a 3000-pixel film is not
aliased) and rounded to 8-bit levels 0..255. Area averaging is linear, so rounding to 8
bits after resizing rather than before changes a pixel by less than one level and saves a
pass over millions of pixels. Last (``from_8bit``), the levels are scaled to [−1, 1]
(MONAI ``ScaleIntensityRange``, looked up per level) and copied to ``channels`` channels.

``InputSpec`` is on every model card, so a model is always fed as it was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from monai.transforms import Resize, ScaleIntensityRange
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from pipelines.film_io import FilmUnreadable, read_film

#: The paper's input size.
PAPER_SIZE = 224
#: The smallest input a DenseNet takes (its stem and pools need 32 pixels).
MIN_SIZE = 32
#: ITU-R BT.601 luma weights (R, G, B), as PIL's "L" conversion.
LUMA = (0.299, 0.587, 0.114)
#: Suffixes read as pictures (PIL), not DICOM.
PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


@dataclass(frozen=True)
class InputSpec:
    """How images are fed: ``size`` × ``size`` 8-bit grey levels scaled to [−1, 1] and
    copied to ``channels`` channels."""

    size: int = PAPER_SIZE
    channels: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise TypeError("the input size is a whole number of pixels")
        if not MIN_SIZE <= self.size <= 1024:
            raise ValueError(f"input size {self.size} must be in {MIN_SIZE}..1024 pixels")
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "grey": "8-bit", "range": [-1.0, 1.0]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSpec:
        return cls(size=int(data["size"]), channels=int(data.get("channels", 3)))


@dataclass(frozen=True, eq=False)
class TriageImage:
    """One image, grey, at its own size: ``grey`` is 2-D (``uint16`` 0..65535 for a film
    read by film_io, ``uint8`` otherwise), 0 = black. ``header`` is the DICOM header
    without pixel data (None for a picture file); ``how`` says how it became grey:
    ``"film"``, ``"colour"``, ``"frame"`` (one frame of several), ``"grey"`` (a grey image
    film_io refused), ``"picture"`` (PNG/JPEG)."""

    grey: np.ndarray
    header: Dataset | None
    how: str

    @property
    def sop_instance_uid(self) -> str | None:
        if self.header is None:
            return None
        value = self.header.get("SOPInstanceUID")
        return None if value is None else str(value)

    @property
    def body_part_examined(self) -> str | None:
        """The header's Body Part Examined as received: None when absent, "" when empty."""
        if self.header is None or "BodyPartExamined" not in self.header:
            return None
        return str(self.header.BodyPartExamined or "").strip()


def grey_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """(rows, columns, 3) RGB of any numeric type → (rows, columns) float64 luma."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (rows, columns, 3) RGB, not an array of shape {rgb.shape}")
    weights = np.asarray(LUMA, dtype=np.float64)
    return np.asarray(rgb.astype(np.float64) @ weights)


def to_8bit(values: np.ndarray, full_scale: float | None = None) -> np.ndarray:
    """Grey values → ``uint8``: divided by ``full_scale`` (None: stretched min..max)."""
    values = np.asarray(values, dtype=np.float64)
    if full_scale is None:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / max(high - low, 1e-12)
    else:
        scaled = values / full_scale
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def _without_pixels(dataset: Dataset) -> Dataset:
    header = dataset.copy()
    header._dict = dict(dataset._dict)
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in header:
            delattr(header, keyword)
    return header


def _full_scale(dataset: Dataset, values: np.ndarray) -> float | None:
    """The full scale of colour values: 2**BitsStored − 1 for integers, None (stretch) else."""
    if np.issubdtype(values.dtype, np.integer):
        bits = int(dataset.get("BitsStored") or 8 * values.dtype.itemsize)
        return float(2**bits - 1)
    return None


def image_from_dataset(dataset: Dataset) -> TriageImage:
    """Decode a dataset film_io refused (colour, multi-frame, 32-bit) into grey."""
    if not any(k in dataset for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise FilmUnreadable("the dataset has no pixel data")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    index = frames // 2 if frames > 1 else None
    photometric = str(dataset.get("PhotometricInterpretation", "") or "")
    try:
        # pydicom converts YBR to RGB; a palette needs its LUT.
        values = pixel_array(dataset, index=index)
        if photometric == "PALETTE COLOR":
            values = apply_color_lut(values, dataset)
    except Exception as exc:  # a missing decoder, corrupt data, a broken LUT
        raise FilmUnreadable(f"the pixel data cannot be decoded ({exc})") from exc
    how = "frame" if frames > 1 else "grey"
    if values.ndim == 3 and values.shape[2] == 3:
        scale = _full_scale(dataset, values)
        if photometric == "PALETTE COLOR" and np.issubdtype(values.dtype, np.integer):
            scale = float(np.iinfo(values.dtype).max)
        grey = to_8bit(grey_from_rgb(values), scale)
        return TriageImage(grey, _without_pixels(dataset), "colour")
    if values.ndim != 2:
        raise FilmUnreadable(
            f"expected one 2-D image or frame, got an array of shape {values.shape}"
        )
    shown = np.asarray(apply_modality_lut(values, dataset), dtype=np.float64)
    if dataset.get("WindowCenter") is not None or dataset.get("VOILUTSequence"):
        shown = np.asarray(apply_voi_lut(shown, dataset, index=0), dtype=np.float64)
    grey = to_8bit(shown)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return TriageImage(grey, _without_pixels(dataset), how)


def read_picture(path: Path) -> TriageImage:
    """A PNG or JPEG file as grey (colour by the same luma as DICOM colour)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            if opened.mode in ("L", "I;16", "I;16B", "I"):
                pixels = np.asarray(opened)
                scale = 255.0 if pixels.dtype == np.uint8 else 65535.0
                grey = to_8bit(pixels, scale) if pixels.dtype != np.uint8 else pixels
            else:
                grey = to_8bit(grey_from_rgb(np.asarray(opened.convert("RGB"))), 255.0)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise FilmUnreadable(f"{path.name}: not a readable picture ({exc})") from exc
    return TriageImage(np.ascontiguousarray(grey, dtype=np.uint8), None, "picture")


def read_image(path: str | Path) -> TriageImage:
    """Any DICOM image (or PNG/JPEG) as grey; ``FilmUnreadable`` with the reason, naming
    the file, when it has no pixels that can be decoded."""
    path = Path(path)
    if path.suffix.lower() in PICTURE_SUFFIXES:
        return read_picture(path)
    try:
        film = read_film(path)
        return TriageImage(film.display, film.header, "film")
    except FilmUnreadable as refused:
        reason = str(refused)
        if "not a readable DICOM file" in reason or "no pixel data" in reason:
            raise FilmUnreadable(
                reason if reason.startswith(f"{path.name}:") else f"{path.name}: {reason}"
            ) from refused
    try:
        dataset = pydicom.dcmread(path)
        return image_from_dataset(dataset)
    except FilmUnreadable as exc:
        raise FilmUnreadable(f"{path.name}: {exc}") from exc
    except Exception as exc:  # pydicom raises many types for a broken file
        raise FilmUnreadable(f"{path.name}: cannot be decoded ({exc})") from exc


def _plain(value: Any) -> torch.Tensor:
    if isinstance(value, MetaTensor):
        return value.as_tensor()
    return torch.as_tensor(value)


def resized_8bit(grey: np.ndarray, size: int) -> np.ndarray:
    """A (size, size) ``uint8`` image of one grey image (``uint16`` read as 0..65535,
    ``uint8`` as 0..255, floats as 0..1): area resize, then 8-bit levels."""
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ValueError(f"expected one 2-D image, not an array of shape {grey.shape}")
    if grey.dtype == np.uint16:
        scale = 255.0 / 65535.0
    elif grey.dtype == np.uint8:
        scale = 1.0
    else:
        scale = 255.0
    image = torch.from_numpy(np.ascontiguousarray(grey, dtype=np.float32))[None]
    resized = _plain(Resize(spatial_size=(size, size), mode="area")(image))[0].numpy()
    levels = np.rint(resized * np.float32(scale))
    return np.clip(levels, 0.0, 255.0).astype(np.uint8)


@cache
def _level_table() -> np.ndarray:
    """MONAI's ``ScaleIntensityRange`` (0..255 → −1..1) of each of the 256 levels."""
    scale = ScaleIntensityRange(a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0, dtype=np.float32)
    return np.asarray(_plain(scale(torch.arange(256, dtype=torch.float32))).numpy())


def from_8bit(images: np.ndarray | torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """(N, size, size) ``uint8`` images → (N, channels, size, size) float32 in [−1, 1]."""
    batch = np.asarray(images.numpy() if isinstance(images, torch.Tensor) else images)
    if batch.ndim != 3 or tuple(batch.shape[1:]) != (spec.size, spec.size):
        raise ValueError(f"expected (N, {spec.size}, {spec.size}) images, not {batch.shape}")
    if batch.dtype != np.uint8:
        raise ValueError(f"expected 8-bit images, not {batch.dtype}")
    scaled = _level_table()[batch][:, None]
    shape = (len(scaled), spec.channels, spec.size, spec.size)
    return torch.from_numpy(np.ascontiguousarray(np.broadcast_to(scaled, shape)))


def network_input(grey: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """One grey image → a (channels, size, size) float32 tensor in [−1, 1]."""
    return from_8bit(resized_8bit(grey, spec.size)[None], spec)[0]


__all__ = [
    "LUMA",
    "MIN_SIZE",
    "PAPER_SIZE",
    "PICTURE_SUFFIXES",
    "InputSpec",
    "TriageImage",
    "from_8bit",
    "grey_from_rgb",
    "image_from_dataset",
    "network_input",
    "read_image",
    "read_picture",
    "resized_8bit",
    "to_8bit",
]
