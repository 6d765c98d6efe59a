"""Films → the network's input, as the paper prepares them (section III.B).

1. **Which film.** bone_age runs after hand_orientation (``runs_after``) and takes the
   film that pipeline turned upright: ``upright_films(series)`` reads each film of the
   series and, from ``series.after``,

   * ``"upright"`` — the Secondary Capture hand_orientation wrote for it (matched by its
     Source Image Sequence), read as it is;
   * ``"turned"`` — no SC for it (hand_orientation's ``gsps = "instead"`` writes only a
     presentation state for a right-angle turn): the original film turned here by the
     ``rotation_deg`` hand_orientation's summary gives for it;
   * ``"as_received"`` — hand_orientation failed, was not routed to the series, or said
     nothing of this film: the film as received, and the result says why.

2. **Hand mask** (``pipelines.bone_age.mask``): Sobel gradient and watershed, the largest
   connected component as the hand; the film outside it is set to black and the film is
   cropped to it, which leaves out the "L"/"R" marker and text labels. When no hand is
   found the whole film is used, and the result says so.
3. **Grey scale**: the levels inside the hand are stretched between their 0.5th and
   99.5th percentiles to 0..1 (the paper does not say; the node does it so that the input
   does not depend on how a film or an upstream Secondary Capture happens to be windowed).
4. **Square and resize**: the crop is padded with black to a square (the hand keeps its
   proportions) and resized (area averaging) to ``InputSpec.size`` — the paper's 500 × 500
   for VGG16, smaller for the CPU variant.
5. **Normalise** as the ImageNet VGG16 weights expect (Keras "caffe" mode): the grey value
   on 0–255 in all three channels, minus the per-channel means in BGR order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
import torch
import torch.nn.functional as F

from pipelines.bone_age.mask import hand_mask, masked_hand
from pipelines.contract import SeriesInput, UpstreamResult
from pipelines.film_io import Film, FilmUnreadable, read_film
from pipelines.hand_orientation.correct import rotate_film

logger = logging.getLogger(__name__)

UPSTREAM = "hand_orientation"
#: VGG16's ImageNet means per channel, BGR order (Keras "caffe" preprocessing).
CAFFE_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)
#: Hand crops are kept at most this large (longest side) for the picture sent back.
OVERLAY_CROP_MAX = 1024
#: The grey levels inside the hand stretched to 0..1 (paper: not said; see ``stretched``).
STRETCH_PERCENTILES = (0.5, 99.5)
#: A mask covering less than this fraction of the film is taken as no hand found.
MIN_MASK_COVERAGE = 0.01

FilmSource = Literal["upright", "turned", "as_received"]


@dataclass(frozen=True)
class InputSpec:
    """What the network is fed: ``size`` × ``size`` pixels, the hand masked or not."""

    size: int = 500
    mask: bool = True

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 2048:
            raise ValueError(f"input size {self.size} must be 16..2048 pixels")

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mask": self.mask,
            "normalisation": "caffe",
            "mean_bgr": list(CAFFE_MEAN_BGR),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSpec:
        return cls(size=int(data["size"]), mask=bool(data.get("mask", True)))


@dataclass(frozen=True, eq=False)
class UprightFilm:
    """One film of the series, the way bone age reads it.

    ``film`` is the film as received (its header: UIDs, sex, dates); ``pixels`` the
    display image (uint16) the network is given; ``source`` and ``note`` say which.
    """

    film: Film
    pixels: np.ndarray
    source: FilmSource
    note: str
    rotation_deg: float | None = None

    @property
    def sop_instance_uid(self) -> str:
        return self.film.sop_instance_uid


@dataclass(frozen=True, eq=False)
class HandCrop:
    """The masked hand on a black square (``pixels``, uint16) and what the mask found."""

    pixels: np.ndarray
    coverage: float
    masked: bool


def upstream_note(after: UpstreamResult | None) -> str:
    """What ``series.after`` means for the whole series, in words."""
    if after is None:
        return f"{UPSTREAM} was not routed to this series: films used as received"
    if after.state == "failed":
        return f"{UPSTREAM} failed ({after.error or 'no reason given'}): films used as received"
    return f"films turned upright by {UPSTREAM} (model {after.model_version})"


def _derived_by_source(after: UpstreamResult) -> dict[str, Path]:
    """hand_orientation's SC files by the SOP Instance UID of the film each was made from."""
    found: dict[str, Path] = {}
    for path in after.derived_files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001  # pydicom raises many types; logged
            logger.warning("bone_age: %s from %s cannot be read: %s", path.name, UPSTREAM, exc)
            continue
        for item in header.get("SourceImageSequence", []):
            uid = item.get("ReferencedSOPInstanceUID")
            if uid:
                found.setdefault(str(uid), Path(path))
    return found


def _rotations(after: UpstreamResult) -> dict[str, float]:
    """hand_orientation's counter-clockwise turn per film (its summary's ``films``)."""
    films = after.summary.get("films")
    rotations: dict[str, float] = {}
    if isinstance(films, list):
        for entry in films:
            if isinstance(entry, dict) and "sop_instance_uid" in entry:
                try:
                    rotations[str(entry["sop_instance_uid"])] = float(entry["rotation_deg"])
                except (KeyError, TypeError, ValueError):
                    continue
    return rotations


def upright_film(
    film: Film, after: UpstreamResult | None, derived: dict[str, Path], rotations: dict[str, float]
) -> UprightFilm:
    """The upright version of ``film`` by ``series.after`` (see the module's description)."""
    uid = film.sop_instance_uid
    if after is None or after.state != "done":
        return UprightFilm(film, film.display, "as_received", upstream_note(after))
    if uid in derived:
        try:
            corrected = read_film(derived[uid])
        except FilmUnreadable as exc:
            logger.warning("bone_age: the upright film from %s is unreadable: %s", UPSTREAM, exc)
        else:
            return UprightFilm(
                film,
                corrected.display,
                "upright",
                f"the upright film {UPSTREAM} wrote",
                rotations.get(uid),
            )
    if uid in rotations:
        turn = rotations[uid]
        return UprightFilm(
            film,
            rotate_film(film.display, turn),
            "turned",
            f"turned {turn:g} deg counter-clockwise, as {UPSTREAM} found (it wrote no SC)",
            turn,
        )
    return UprightFilm(
        film, film.display, "as_received", f"{UPSTREAM} gave no result for this film"
    )


def upright_films(series: SeriesInput) -> tuple[list[UprightFilm], list[str]]:
    """Each readable film of the series, upright where hand_orientation says how; and the
    reasons the unreadable ones were skipped."""
    after = series.after
    derived = _derived_by_source(after) if after is not None and after.state == "done" else {}
    rotations = _rotations(after) if after is not None and after.state == "done" else {}
    films: list[UprightFilm] = []
    skipped: list[str] = []
    for path in series.files:
        try:
            film = read_film(path)
        except FilmUnreadable as exc:
            logger.warning("bone_age: %s", exc)
            skipped.append(str(exc))
            continue
        films.append(upright_film(film, after, derived, rotations))
    return films, skipped


def unit_film(display: np.ndarray) -> np.ndarray:
    """A display image (uint8, uint16 or float in [0, 1]) as float32 in [0, 1]."""
    if display.dtype == np.uint16:
        return display.astype(np.float32) / 65535.0
    if display.dtype == np.uint8:
        return display.astype(np.float32) / 255.0
    return np.clip(display.astype(np.float32), 0.0, 1.0)


def stretched(image: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``image`` with its ``STRETCH_PERCENTILES`` inside the hand mapped to 0 and 1 and
    everything outside the hand 0: the same input whatever linear grey scale the film was
    displayed with (a film's own window, or the Secondary Capture hand_orientation wrote)."""
    values = image[inside]
    if values.size == 0:
        return np.zeros_like(image, dtype=np.float32)
    low, high = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
    if high - low < 1e-6:
        return np.where(inside, 1.0, 0.0).astype(np.float32)
    out = np.clip((image - low) / (high - low), 0.0, 1.0)
    return np.where(inside, out, 0.0).astype(np.float32)


def hand_crop(display: np.ndarray, *, use_mask: bool = True) -> HandCrop:
    """The hand masked and cropped (paper III.B), padded with black to a square of
    ``uint16`` pixels; the whole film when no hand is found (``masked`` False)."""
    if display.ndim != 2:
        raise ValueError("a film is one 2-D image")
    unit = unit_film(display)
    image, inside = unit, np.ones(unit.shape, dtype=bool)
    coverage = 1.0
    masked = False
    if use_mask:
        try:
            found = hand_mask(unit)
        except ValueError as exc:
            logger.info("bone_age: no hand mask (%s); the whole film is used", exc)
        else:
            if found.coverage >= MIN_MASK_COVERAGE:
                image = masked_hand(unit, found)
                inside = masked_hand(np.ones(unit.shape, dtype=np.float32), found) > 0.5
                coverage = float(found.coverage)
                masked = True
    image = stretched(image, inside)
    rows, columns = image.shape
    side = max(rows, columns)
    square = np.zeros((side, side), dtype=np.uint16)
    top, left = (side - rows) // 2, (side - columns) // 2
    square[top : top + rows, left : left + columns] = np.rint(np.clip(image, 0, 1) * 65535.0)
    if side > OVERLAY_CROP_MAX:
        square = resize_square(square, OVERLAY_CROP_MAX, dtype=np.uint16)
    return HandCrop(square, coverage, masked)


def resize_square(image: np.ndarray, size: int, *, dtype: Any = np.uint8) -> np.ndarray:
    """A square image resized to ``size`` × ``size`` (area averaging down, bilinear up),
    scaled to 0–255 for ``uint8`` (from 16 bits) or kept on its own scale."""
    scale = 255.0 / 65535.0 if (image.dtype == np.uint16 and dtype == np.uint8) else 1.0
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if size < image.shape[0]:
        resized = F.interpolate(tensor, size=(size, size), mode="area")
    else:
        resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    out = resized[0, 0].numpy() * scale
    top = 255.0 if dtype == np.uint8 else float(np.iinfo(dtype).max)
    return np.clip(np.rint(out), 0, top).astype(dtype)


def network_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, S, S) grey 0–255 → (N, 3, S, S) float, BGR minus the ImageNet means."""
    batch = torch.as_tensor(images).float()
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        raise ValueError(f"expected (N, S, S) images, got shape {tuple(batch.shape)}")
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    return batch[:, None].expand(-1, 3, -1, -1) - mean


def film_input(display: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, HandCrop]:
    """One display image → the network's (S, S) uint8 image and the hand crop it came from."""
    crop = hand_crop(display, use_mask=spec.mask)
    return resize_square(crop.pixels, spec.size), crop


__all__ = [
    "CAFFE_MEAN_BGR",
    "HandCrop",
    "InputSpec",
    "UprightFilm",
    "film_input",
    "hand_crop",
    "network_input",
    "unit_film",
    "resize_square",
    "upright_films",
    "upstream_note",
]
