"""SC images as small PNGs for the results pages, from the output DICOM files.

A PNG is a signature and three chunks (IHDR, IDAT with the zlib-compressed rows, IEND);
the node needs no imaging library for that.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom

MAX_SIDE = 320


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray) -> bytes:
    """8-bit grayscale (H, W) or RGB (H, W, 3) as PNG bytes."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError("encode_png takes uint8 (H, W) or (H, W, 3) pixels")
    height, width = pixels.shape[:2]
    color = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def to_display(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """Scale to 8 bits (grayscale: min..max, MONOCHROME1 inverted) and shrink so that
    the longer side is at most ``MAX_SIDE``."""
    if pixels.ndim == 3 and pixels.shape[-1] != 3:  # frames: the first one
        pixels = pixels[0]
    if pixels.ndim == 4:
        pixels = pixels[0]
    step = max(1, -(-max(pixels.shape[:2]) // MAX_SIDE))
    pixels = pixels[::step, ::step]
    if pixels.ndim == 3:
        return np.ascontiguousarray(pixels.astype(np.uint8))
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    return np.ascontiguousarray(scaled.round().astype(np.uint8))


def thumbnail_png(path: Path) -> bytes:
    """The first frame of the image at ``path`` as a PNG thumbnail."""
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array
    if str(dataset.get("PhotometricInterpretation", "")).startswith("YBR"):
        from pydicom.pixels import convert_color_space

        pixels = convert_color_space(pixels, dataset.PhotometricInterpretation, "RGB")
    return encode_png(to_display(pixels, str(dataset.get("PhotometricInterpretation", ""))))
