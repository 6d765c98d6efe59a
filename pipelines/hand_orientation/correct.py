"""Eq. 1 of the paper: rotate the film so the hand stands at the preferred orientation.

Angles follow the pipeline's convention (see ``pipelines.hand_orientation``): θ is the
counter-clockwise angle from the image's +x axis (right) to the hand's main axis (wrist →
middle finger) as the film is displayed, so an upright hand has θ = 90°. A film whose
hand is at φ is brought to the preferred orientation α by turning it counter-clockwise
by α − φ; in the paper's notation the image is mapped by the rotation T(φ − α).

The rotation runs on the full-resolution film. Multiples of 90° are exact (``np.rot90``,
no interpolation, nothing lost). Other angles use bilinear interpolation on an output
canvas large enough to hold the whole rotated film, with black (0) corners; 16-bit films
are resampled in 32-bit float (exact for 16-bit values) and rounded back. The work is
split into horizontal bands, each resampled only where the rotated film lies, computed in
parallel threads (Pillow releases the GIL): a 3000 × 3000 film at 37° (a 4202² canvas)
takes 65–85 ms on the benchmark's two cores, where resampling the whole canvas in two
halves took 150–170 ms (``benchmarks/orientation.py``).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

RIGHT_ANGLE_EPSILON_DEG = 1e-6
#: Pillow memory blocks (16 MB each) kept for reuse between rotations; see _reuse_blocks.
PILLOW_BLOCKS_KEPT = 8


def wrap_degrees(angle: float) -> float:
    """``angle`` in [0, 360)."""
    wrapped = math.fmod(angle, 360.0)
    if wrapped < 0:
        wrapped += 360.0
    return 0.0 if wrapped >= 360.0 else wrapped


def signed_degrees(angle: float) -> float:
    """``angle`` in (−180, 180]."""
    wrapped = wrap_degrees(angle)
    return wrapped - 360.0 if wrapped > 180.0 else wrapped


def correction_degrees(predicted_deg: float, preferred_deg: float = 90.0) -> float:
    """The counter-clockwise turn (in (−180, 180]) that brings φ to α: α − φ."""
    return signed_degrees(preferred_deg - predicted_deg)


def nearest_right_angle(angle_deg: float) -> int:
    """The multiple of 90° nearest ``angle_deg``, as 0, 90, 180 or 270."""
    return int(round(wrap_degrees(angle_deg) / 90.0)) % 4 * 90


def rotate_film(pixels: np.ndarray, ccw_deg: float, *, threads: int = 2) -> np.ndarray:
    """``pixels`` (2-D) turned counter-clockwise by ``ccw_deg`` as displayed.

    Quarter turns are exact; other angles are bilinear with the canvas expanded to hold
    every input pixel (the corners outside the film are 0).
    """
    if pixels.ndim != 2:
        raise ValueError("rotate_film takes one 2-D image")
    quarter = wrap_degrees(ccw_deg) / 90.0
    if abs(quarter - round(quarter)) * 90.0 < RIGHT_ANGLE_EPSILON_DEG:
        return np.ascontiguousarray(np.rot90(pixels, k=int(round(quarter)) % 4))
    return _rotate_bilinear(pixels, ccw_deg, threads)


#: Output rows per band of a free rotation: small enough that a band's float32 pixels stay
#: in the cache between Pillow's transform, the read-back and the rounding to 16 bits.
BAND_ROWS = 128


def _rotate_bilinear(pixels: np.ndarray, ccw_deg: float, threads: int) -> np.ndarray:
    """Bilinear rotation onto an expanded canvas, band by band, inside the film's footprint.

    The canvas is cut into horizontal bands of ``BAND_ROWS`` rows. Each band is resampled
    only over the columns the rotated film covers there (its outline, a rectangle turned
    by ``ccw_deg``, plus one pixel), and the rest of the canvas stays 0. This is exactly
    what resampling the whole canvas gives, because Pillow's bilinear filter returns the
    fill value for every output pixel whose centre maps outside the input; at 37° it
    halves the pixels resampled and read back. Bands are shared out between ``threads``
    threads (Pillow's transform and numpy's rounding run without the GIL).
    """
    _reuse_blocks()
    dtype = pixels.dtype
    if dtype == np.uint8:
        image = Image.fromarray(np.ascontiguousarray(pixels))
    else:
        # Pillow's bilinear resampling of 16-bit ("I;16") images interpolates the bytes
        # separately, which is wrong; 32-bit float ("F") is exact for 16-bit values.
        image = Image.fromarray(pixels.astype(np.float32))
    rows, columns = pixels.shape
    theta = math.radians(ccw_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    out_columns = int(math.ceil(abs(columns * cos) + abs(rows * sin) - 1e-6))
    out_rows = int(math.ceil(abs(columns * sin) + abs(rows * cos) - 1e-6))
    # Output pixel (x, y) (y down) comes from the input at the inverse rotation about the
    # centres. On screen (y down) a counter-clockwise turn by θ maps an offset (dx, dy) to
    # (dx cos θ + dy sin θ, −dx sin θ + dy cos θ); the inverse is its transpose.
    cx_in, cy_in = columns / 2.0, rows / 2.0
    cx_out, cy_out = out_columns / 2.0, out_rows / 2.0
    outline = [
        (
            cx_out + (x - cx_in) * cos + (y - cy_in) * sin,
            cy_out - (x - cx_in) * sin + (y - cy_in) * cos,
        )
        for x, y in ((0, 0), (columns, 0), (columns, rows), (0, rows))
    ]
    canvas = np.zeros((out_rows, out_columns), dtype=dtype)
    # Pillow's AFFINE takes (a, b, c, d, e, f) with x_in = a x + b y + c, y_in = d x + e y + f,
    # (x, y) the output pixel's centre relative to the transformed box's corner.
    a, b = cos, -sin
    d, e = sin, cos

    def band(span: tuple[int, int]) -> None:
        top, bottom = span
        left, right = _columns_covered(outline, top, bottom, out_columns)
        if right <= left:
            return
        ox, oy = left - cx_out, top - cy_out
        part = image.transform(
            (right - left, bottom - top),
            Image.Transform.AFFINE,
            (a, b, cx_in + a * ox + b * oy, d, e, cy_in + d * ox + e * oy),
            resample=Image.Resampling.BILINEAR,
            fillcolor=0,
        )
        values = np.asarray(part)
        target = canvas[top:bottom, left:right]
        if dtype == np.uint16:
            # Values stay within 0..65535 (weights ≥ 0 summing to 1, fill 0): round only.
            np.copyto(target, np.rint(values), casting="unsafe")
        else:
            np.copyto(target, values, casting="unsafe")

    spans = [(top, min(out_rows, top + BAND_ROWS)) for top in range(0, out_rows, BAND_ROWS)]
    if threads <= 1 or len(spans) == 1:
        for span in spans:
            band(span)
    else:
        with ThreadPoolExecutor(max_workers=min(threads, len(spans))) as pool:
            list(pool.map(band, spans))
    return canvas


def _columns_covered(
    outline: list[tuple[float, float]], top: int, bottom: int, width: int
) -> tuple[int, int]:
    """The columns [left, right) of the canvas rows [top, bottom) that the outline reaches.

    ``outline`` is a convex quadrilateral (the rotated film's corners, in canvas
    coordinates); its extent over the band is that of its corners inside the band and of
    its edges' crossings of the band's top and bottom lines. One pixel is added on each
    side, so every pixel whose centre lies inside the outline is covered.
    """
    xs = [x for x, y in outline if top <= y <= bottom]
    for (x0, y0), (x1, y1) in zip(outline, outline[1:] + outline[:1], strict=True):
        if y0 == y1:
            continue
        for line in (top, bottom):
            if min(y0, y1) <= line <= max(y0, y1):
                xs.append(x0 + (x1 - x0) * (line - y0) / (y1 - y0))
    if not xs:
        return 0, 0
    return max(0, math.floor(min(xs)) - 1), min(width, math.ceil(max(xs)) + 1)


def _reuse_blocks() -> None:
    """Let Pillow keep up to ``PILLOW_BLOCKS_KEPT`` freed memory blocks for its next images.

    By default Pillow returns every block of a freed image to the system, so the 36 MB
    float copy of each film (and the bands) is mapped and faulted in afresh: on the
    benchmark's virtual machine that was a quarter of the rotation's time (95 → 70 ms for
    a 3000 × 3000 film at 37°). Pillow's pool is process-wide; it is only ever raised
    here, and not at all where ``PILLOW_BLOCKS_MAX`` is set in the environment (Pillow's
    own setting for it). At most 8 × 16 MB stay allocated between films.
    """
    if "PILLOW_BLOCKS_MAX" in os.environ:
        return
    if Image.core.get_blocks_max() < PILLOW_BLOCKS_KEPT:
        Image.core.set_blocks_max(PILLOW_BLOCKS_KEPT)
