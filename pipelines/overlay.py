"""A map over a film with its legend, burned into the pixels: what the pipelines that send
a heat or attention picture to a reader share (mura_abnormality's Grad-CAM, bone_age's
attention map).

``heat_over_film`` blends the "jet" colours of ``warmth`` (0..1) over the grey film, more
opaque where warmer, and adds a band below: a colour bar with its two end words, the
result lines and "NOT FOR DIAGNOSIS". Text uses the font matplotlib bundles
(``pipelines.fonts``), so the same input gives the same pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.fonts import bundled_font_file

__all__ = ["NOT_FOR_DIAGNOSIS", "heat_over_film", "resize"]

NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSIS"


def resize(image: np.ndarray, rows: int, columns: int, mode: str) -> np.ndarray:
    """``image`` (2-D) at (rows, columns), float32; "area" becomes "bilinear" to enlarge."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if mode == "area" and (rows > image.shape[0] or columns > image.shape[1]):
        mode = "bilinear"
    options = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(tensor, size=(rows, columns), mode=mode, **options)[0, 0].numpy()


def heat_over_film(
    grey: np.ndarray,
    warmth: np.ndarray,
    lines: list[str],
    *,
    max_alpha: float,
    font_size: int,
    scale_words: tuple[str, str],
) -> np.ndarray:
    """(rows + band, columns, 3) ``uint8``: ``grey`` and ``warmth`` (both (rows, columns),
    0..1) blended, and the legend band with ``scale_words`` at the colour bar's two ends,
    ``lines`` and ``NOT_FOR_DIAGNOSIS``."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    rows, columns = grey.shape
    colours = np.asarray(matplotlib.colormaps["jet"](warmth)[..., :3], dtype=np.float32)
    alpha = (max_alpha * warmth)[..., None]
    film = (1.0 - alpha) * grey[..., None] + alpha * colours
    font = ImageFont.truetype(bundled_font_file(), font_size)
    bar_height = max(8, font_size // 2)
    pad = max(4, font_size // 3)
    band = pad + bar_height + pad + (len(lines) + 2) * (font_size + pad)
    picture = np.zeros((rows + band, columns, 3), dtype=np.float32)
    picture[:rows] = film
    top = rows + pad
    left, right = pad, columns - pad
    ramp = np.linspace(0.0, 1.0, max(2, right - left), dtype=np.float32)
    bar = np.asarray(matplotlib.colormaps["jet"](ramp)[..., :3], dtype=np.float32)
    picture[top : top + bar_height, left : left + len(ramp)] = bar[None]
    image = Image.fromarray(np.rint(picture * 255.0).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    y = top + bar_height + pad
    low, high = scale_words
    draw.text((left, y), low, font=font, fill=(255, 255, 255))
    draw.text((right, y), high, font=font, fill=(255, 255, 255), anchor="ra")
    for line in lines:
        y += font_size + pad
        draw.text((left, y), line, font=font, fill=(255, 255, 255))
    y += font_size + pad
    draw.text((left, y), NOT_FOR_DIAGNOSIS, font=font, fill=(255, 210, 0))
    return np.asarray(image, dtype=np.uint8).copy()
