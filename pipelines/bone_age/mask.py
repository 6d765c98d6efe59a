"""The hand mask of a hand film, as the bone-age paper's preprocessing (paper 002).

Castillo et al. crop each radiograph to the hand before the network sees it: a Sobel
gradient map of the film, a watershed segmentation from markers set by intensity
thresholds, the largest connected object taken as the hand, and that mask applied back
to the film. Labels and markers burned into the film (the lead "L"/"R" sign, a text
label) are separate objects and so are left out.

Steps of ``hand_mask``, all on a copy reduced by a whole factor (block means) to 256-511
pixels on its longer side (a film under 512 pixels is used as it is), the mask then
scaled back up:

1. Robust range: the 0.5th and 99.5th percentiles; an image whose range is (nearly)
   zero has no hand and raises ``ValueError``.
2. Collimation: a film's unexposed border (the shutter) is the brightest thing on it and
   touches the forearm, so it would join the hand. Bright regions (above 85 % of the
   range) that run along the film's edge for at least 15 % of its longer side are the
   shutter, and with a 3-pixel rim (its penumbra) count as background. The edge is the
   image's, or, for a film turned onto a larger canvas (the upright film that
   ``hand_orientation`` makes), that of the constant fill around it (background).
3. Markers for the watershed, from Otsu's threshold ``t`` over the exposed field: below
   the midpoint of ``t`` and the background's median is background, above the midpoint
   of ``t`` and the object's median is object; the shutter is background.
4. ``skimage.segmentation.watershed`` on ``skimage.filters.sobel`` of the (slightly
   smoothed) film floods the rest from those markers: every pixel goes to the marker
   whose basin reaches it first, so the edge sits on the strongest gradient (the skin
   line), not on a threshold.
5. The largest connected component of the object label, grown by one pixel (the
   watershed line runs through the middle of the skin edge), holes filled
   (``scipy.ndimage.binary_fill_holes``).

``masked_hand`` multiplies the film by the mask and crops it to the mask's box.

Time, on one core: about 20 ms for a 256 or 512 px film (the work image is at most
256 px), about 50 ms for a 3000 × 2372 film (the block mean adds the rest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.filters import sobel, threshold_otsu
from skimage.segmentation import watershed

__all__ = ["WORK_SIDE", "HandMask", "hand_mask", "masked_hand"]

#: The mask is computed on a copy of the film reduced by a whole factor to at least this
#: many pixels on its longer side (and fewer than twice as many).
WORK_SIDE = 256

_MIN_RANGE = 1e-3  # a robust range below this (of a [0, 1] film) is a uniform image
_SHUTTER_LEVEL = 0.85  # of the robust range: collimator shutter and lead are brighter
_SHUTTER_CONTACT = 0.15  # of the longer side: how long a bright region must touch the edge
_FILL_TOLERANCE = 1e-6  # a canvas fill is one exact value
_PENUMBRA = 3  # work pixels next to the shutter that count as shutter
_MIN_COVERAGE = 0.005  # a "hand" smaller than this share of the film is none


@dataclass(frozen=True, eq=False)
class HandMask:
    """The hand's mask on the film.

    ``mask``: bool (rows, columns), True on the hand. ``box``: (r0, c0, r1, c1), the
    mask's bounding box with r1 / c1 exclusive. ``coverage``: mask area / image area.
    """

    mask: npt.NDArray[np.bool_]
    box: tuple[int, int, int, int]
    coverage: float


def _reduce(image: npt.NDArray[np.float32], factor: int) -> npt.NDArray[np.float32]:
    """Block means of ``factor`` × ``factor`` pixels (the last partial blocks padded)."""
    if factor == 1:
        return image
    rows, columns = image.shape
    pad_r, pad_c = (-rows) % factor, (-columns) % factor
    if pad_r or pad_c:
        image = np.pad(image, ((0, pad_r), (0, pad_c)), mode="edge")
    r, c = image.shape[0] // factor, image.shape[1] // factor
    blocks = image.reshape(r, factor, c, factor)
    return np.asarray(blocks.mean(axis=(1, 3), dtype=np.float32))


def _exterior(work: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Constant fill around a film turned onto a larger canvas (hand_orientation's
    upright film): pixels at the image's minimum, connected to its edge (a film's own
    darkest background there is included, which is harmless: it is background)."""
    low = work <= float(work.min()) + _FILL_TOLERANCE
    labels, count = ndimage.label(low)
    if count == 0:
        return np.zeros(work.shape, dtype=bool)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    return np.isin(labels, edge)


def _shutter(
    smooth: npt.NDArray[np.float32], frame: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """The collimator's unexposed border: bright regions that run along the film's edge
    (or the edge of its footprint on a larger canvas, ``frame``) for a good length."""
    bright = smooth >= _SHUTTER_LEVEL
    labels, count = ndimage.label(bright)
    if count == 0:
        return bright
    contact = np.bincount(labels[frame], minlength=count + 1)
    contact[0] = 0
    long_enough = np.flatnonzero(contact >= _SHUTTER_CONTACT * max(smooth.shape))
    return np.isin(labels, long_enough)


def _work_mask(work: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """The hand mask on the reduced film (see the module docstring, steps 1-5)."""
    lo, hi = (float(v) for v in np.percentile(work, (0.5, 99.5)))
    if not math.isfinite(lo) or not math.isfinite(hi) or hi - lo < _MIN_RANGE:
        raise ValueError(
            "no hand-like region: the image is uniform (its intensity range is "
            f"{max(hi - lo, 0.0):.2g})"
        )
    norm = np.clip((work - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    smooth = ndimage.gaussian_filter(norm, 1.0)
    exterior = _exterior(work)
    frame = ndimage.binary_dilation(exterior, iterations=2)
    frame[[0, -1], :] = True
    frame[:, [0, -1]] = True
    # The shutter's penumbra (and the smoothing) leave a ramp inside its edge whose mid
    # values would ring the field as one "object": it counts as shutter too.
    outside = ndimage.binary_dilation(_shutter(smooth, frame), iterations=_PENUMBRA)
    outside |= exterior
    values = smooth[~outside]
    if values.size < 16 or float(values.max() - values.min()) < _MIN_RANGE:
        raise ValueError("no hand-like region: the exposed field is empty or uniform")
    t = float(threshold_otsu(values))
    below, above = values[values < t], values[values >= t]
    if below.size == 0 or above.size == 0:
        raise ValueError("no hand-like region: no object stands out from the background")
    low = 0.5 * (t + float(np.median(below)))
    high = 0.5 * (t + float(np.median(above)))
    markers = np.zeros(smooth.shape, dtype=np.int32)
    markers[smooth < low] = 1
    markers[smooth > high] = 2
    markers[outside] = 1
    labels = watershed(sobel(smooth), markers)
    objects, count = ndimage.label(labels == 2)
    if count == 0:
        raise ValueError("no hand-like region: the watershed found no object")
    sizes = np.bincount(objects.ravel())
    sizes[0] = 0
    largest = objects == int(np.argmax(sizes))
    # The watershed line runs through the middle of the skin's edge: one pixel more
    # keeps the whole edge (and never reaches a marker, which stands further off).
    grown = ndimage.binary_dilation(largest, iterations=1) & ~outside
    return np.asarray(ndimage.binary_fill_holes(grown), dtype=bool)


def hand_mask(image: npt.ArrayLike) -> HandMask:
    """The hand's mask on a film: float (rows, columns) in [0, 1], bone bright.

    Raises ``ValueError`` when the image is not 2-D, is empty or uniform, or no object
    of at least 0.5 % of the film stands out from its background.
    """
    film = np.asarray(image, dtype=np.float32)
    if film.ndim != 2 or min(film.shape) < 8:
        raise ValueError(f"a film must be a 2-D image of at least 8 × 8, not {film.shape}")
    if not np.isfinite(film).all():
        raise ValueError("the film has non-finite pixels")
    rows, columns = film.shape
    factor = max(1, max(rows, columns) // WORK_SIDE)
    small = _work_mask(_reduce(film, factor))
    if factor > 1:
        small = np.repeat(np.repeat(small, factor, axis=0), factor, axis=1)
    mask = np.ascontiguousarray(small[:rows, :columns])
    area = int(np.count_nonzero(mask))
    coverage = area / float(rows * columns)
    if coverage < _MIN_COVERAGE:
        raise ValueError(
            f"no hand-like region: the largest object covers {100 * coverage:.2f} % of the film"
        )
    r_any, c_any = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (int(r_any[0]), int(c_any[0]), int(r_any[-1]) + 1, int(c_any[-1]) + 1)
    return HandMask(mask=mask, box=box, coverage=coverage)


def masked_hand(
    image: npt.ArrayLike, mask: HandMask, *, margin: int = 4
) -> npt.NDArray[np.float32]:
    """The film times the mask, cropped to the mask's box widened by ``margin`` pixels."""
    film = np.asarray(image, dtype=np.float32)
    if film.shape != mask.mask.shape:
        raise ValueError(f"film {film.shape} and mask {mask.mask.shape} differ in shape")
    if margin < 0:
        raise ValueError("margin must not be negative")
    r0, c0, r1, c1 = mask.box
    rows, columns = film.shape
    r0, c0 = max(r0 - margin, 0), max(c0 - margin, 0)
    r1, c1 = min(r1 + margin, rows), min(c1 + margin, columns)
    out = film[r0:r1, c0:c1] * mask.mask[r0:r1, c0:c1]
    return np.ascontiguousarray(out, dtype=np.float32)
