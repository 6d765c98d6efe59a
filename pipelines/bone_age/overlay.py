"""The picture a reader is sent: the attention map over the hand, "not for diagnosis".

``attention_picture`` draws the hand crop the network read (grey) with the attention map
of the paper's Fig. 10 over it in the "jet" colours (more opaque where the attention is
higher; the map is stretched between its own minimum and maximum, so it shows where the
network looked relative to the rest of the hand, not an absolute level), and below it a
band with a colour bar as the legend, the result lines and "NOT FOR DIAGNOSIS", burned
into the pixels. Text uses the DejaVu Sans file bundled with matplotlib, so the same
input gives the same pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.fonts import bundled_font_file

MAX_ALPHA = 0.5
MIN_WIDTH = 512
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSIS"


def _resize(image: np.ndarray, side: int, mode: str) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if mode == "area" and side > image.shape[0]:
        mode = "bilinear"
    options = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(tensor, size=(side, side), mode=mode, **options)[0, 0].numpy()


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
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    if hand.ndim != 2 or hand.shape[0] != hand.shape[1] or attention.ndim != 2:
        raise ValueError("the hand is a square 2-D image and its attention map 2-D")
    side = int(min(max(hand.shape[0], MIN_WIDTH), max_side))
    scale = 1.0 / 65535.0 if hand.dtype == np.uint16 else 1.0 / 255.0
    grey = np.clip(_resize(hand.astype(np.float32) * scale, side, "area"), 0.0, 1.0)
    warmth = np.clip(_resize(stretched(attention), side, "bilinear"), 0.0, 1.0)
    colours = np.asarray(matplotlib.colormaps["jet"](warmth)[..., :3], dtype=np.float32)
    alpha = (MAX_ALPHA * warmth)[..., None]
    film = (1.0 - alpha) * grey[..., None] + alpha * colours
    size = max(12, side // 40)
    font = ImageFont.truetype(bundled_font_file(), size)
    bar_height = max(8, size // 2)
    pad = max(4, size // 3)
    band = pad + bar_height + pad + (len(lines) + 2) * (size + pad)
    picture = np.zeros((side + band, side, 3), dtype=np.float32)
    picture[:side] = film
    top = side + pad
    left, right = pad, side - pad
    ramp = np.linspace(0.0, 1.0, max(2, right - left), dtype=np.float32)
    picture[top : top + bar_height, left : left + len(ramp)] = np.asarray(
        matplotlib.colormaps["jet"](ramp)[..., :3], dtype=np.float32
    )[None]
    image = Image.fromarray(np.rint(picture * 255.0).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    y = top + bar_height + pad
    draw.text((left, y), "attention: lowest", font=font, fill=(255, 255, 255))
    draw.text((right, y), "highest", font=font, fill=(255, 255, 255), anchor="ra")
    for line in lines:
        y += size + pad
        draw.text((left, y), line, font=font, fill=(255, 255, 255))
    y += size + pad
    draw.text((left, y), NOT_FOR_DIAGNOSIS, font=font, fill=(255, 210, 0))
    return np.asarray(image, dtype=np.uint8).copy()


__all__ = ["NOT_FOR_DIAGNOSIS", "attention_picture", "stretched"]
