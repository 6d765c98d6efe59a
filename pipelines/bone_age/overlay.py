"""The picture a reader is sent: the attention map over the hand, "not for diagnosis".

``attention_picture`` draws the hand crop the network read (grey) with the attention map
of the paper's Fig. 10 over it in the "jet" colours (more opaque where the attention is
higher; the map is stretched between its own minimum and maximum, so it shows where the
network looked relative to the rest of the hand, not an absolute level), and below it a
band with a colour bar as the legend, the result lines and "NOT FOR DIAGNOSIS", burned
into the pixels (``pipelines.overlay``, shared with mura_abnormality's Grad-CAM picture).
"""

from __future__ import annotations

import numpy as np

from pipelines.overlay import NOT_FOR_DIAGNOSIS, heat_over_film, resize

MAX_ALPHA = 0.5
MIN_WIDTH = 512


def stretched(attention: np.ndarray) -> np.ndarray:
    """The map scaled to 0..1 between its own minimum and maximum (flat: all 0)."""
    low, high = float(attention.min()), float(attention.max())
    if high - low < 1e-6:
        return np.zeros_like(attention, dtype=np.float32)
    return ((attention - low) / (high - low)).astype(np.float32)


def attention_picture(
    hand: np.ndarray, attention: np.ndarray, lines: list[str], *, max_side: int = 1024
) -> np.ndarray:
    """(rows, columns, 3) ``uint8``: the square ``hand`` (uint8 or uint16) with
    ``attention`` (2-D, any size) over it and the legend band."""
    if hand.ndim != 2 or hand.shape[0] != hand.shape[1] or attention.ndim != 2:
        raise ValueError("the hand is a square 2-D image and its attention map 2-D")
    side = int(min(max(hand.shape[0], MIN_WIDTH), max_side))
    scale = 1.0 / 65535.0 if hand.dtype == np.uint16 else 1.0 / 255.0
    grey = np.clip(resize(hand.astype(np.float32) * scale, side, side, "area"), 0.0, 1.0)
    warmth = np.clip(resize(stretched(attention), side, side, "bilinear"), 0.0, 1.0)
    return heat_over_film(
        grey,
        warmth,
        lines,
        max_alpha=MAX_ALPHA,
        font_size=max(12, side // 40),
        scale_words=("attention: lowest", "highest"),
    )


__all__ = ["NOT_FOR_DIAGNOSIS", "attention_picture", "stretched"]
