"""From Hounsfield units to the network's input.

0. (``slices_to_inputs``) Each slice is turned to the standard axial view its
   orientation calls for (``view.py``).
1. Window: HU clipped to ``hu_window`` and mapped linearly to 0..255 (one wide window
   that keeps air, lung, fat, soft tissue and bone apart; the paper does not state its
   window).
2. Square: a non-square slice is padded with air to a square, so the body keeps its shape.
3. Resize to ``size`` × ``size`` by area averaging (whole-number factors as block means,
   which is the same average and several times faster).
4. Three channels by copying the grey channel; the VGG "caffe" means (B, G, R on the
   0..255 scale) are subtracted, as the ImageNet VGG16 weights expect (for a grey slice
   the channel order only decides which mean goes where), then multiplied by ``scale``:
   1 for the ImageNet weights, which were trained on that range; 1/64 for a network
   trained from scratch, whose default initialisation expects inputs of about unit size
   (at 1 its first SGD steps diverge).

Steps 1–3 give the 8-bit ``size`` × ``size`` image a training set keeps in memory;
``network_batch`` does step 4 for a batch. ``InputSpec`` is stored in every model's card,
so a model is always fed as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from pipelines.ct_body_part.network import CAFFE_MEAN_BGR
from pipelines.ct_body_part.volume import CtSlice, read_slices_hu


@dataclass(frozen=True)
class InputSpec:
    size: int = 128
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    mean_bgr: tuple[float, float, float] = CAFFE_MEAN_BGR
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"input scale {self.scale} must be a positive number")
        if not 32 <= self.size <= 1024:
            raise ValueError(f"input size {self.size} must be 32..1024 pixels")
        low, high = self.hu_window
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise ValueError(f"HU window {self.hu_window} must be two numbers, low < high")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "hu_window": list(self.hu_window), "mean_bgr": list(self.mean_bgr)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSpec:
        low, high = (float(v) for v in data.get("hu_window", (-1000.0, 1000.0)))
        mean = tuple(float(v) for v in data.get("mean_bgr", CAFFE_MEAN_BGR))
        if len(mean) != 3:
            raise ValueError("mean_bgr needs three values")
        return cls(
            size=int(data.get("size", 128)),
            hu_window=(low, high),
            mean_bgr=(mean[0], mean[1], mean[2]),
            scale=float(data.get("scale", 1.0)),
        )


def windowed(hu: np.ndarray, spec: InputSpec) -> np.ndarray:
    """HU → 0..255 float32 through the window."""
    low, high = spec.hu_window
    scale = np.float32(255.0 / (high - low))
    out = np.clip(hu, low, high).astype(np.float32, copy=False)
    out = (out - np.float32(low)) * scale
    return out


def _square(image: np.ndarray, fill: float) -> np.ndarray:
    rows, columns = image.shape
    if rows == columns:
        return image
    side = max(rows, columns)
    out = np.full((side, side), fill, dtype=image.dtype)
    top, left = (side - rows) // 2, (side - columns) // 2
    out[top : top + rows, left : left + columns] = image
    return out


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average a square float image to ``size`` × ``size``."""
    side = image.shape[0]
    if side == size:
        return image
    if side % size == 0:
        factor = side // size
        return image.reshape(size, factor, size, factor).mean(axis=(1, 3), dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if side > size:
        resized = torch.nn.functional.adaptive_avg_pool2d(tensor, size)
    else:
        resized = torch.nn.functional.interpolate(
            tensor, size=(size, size), mode="bilinear", align_corners=False
        )
    return resized[0, 0].numpy()


def slice_to_input(hu: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One HU slice → the ``size`` × ``size`` uint8 image the network is fed (steps 1–3)."""
    if hu.ndim != 2 or min(hu.shape) < 1:
        raise ValueError(f"a slice is a 2-D array, not shape {hu.shape}")
    image = _square(windowed(hu, spec), 0.0)
    resized = area_resize(image, spec.size)
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def slices_to_inputs(slices: Sequence[CtSlice], spec: InputSpec) -> np.ndarray:
    """The network's (N, size, size) uint8 images of ``slices``, decoded in the order given
    (``read_slices_hu``), each turned to the standard axial view (``CtSlice.view``) and
    through ``slice_to_input``."""
    images = np.empty((len(slices), spec.size, spec.size), dtype=np.uint8)
    for row, (item, hu) in enumerate(zip(slices, read_slices_hu(slices), strict=True)):
        images[row] = slice_to_input(item.view.apply(hu), spec)
    return images


def network_batch(images: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """(N, size, size) uint8 images → (N, 3, size, size) float32, means subtracted."""
    if images.ndim != 3:
        raise ValueError(f"expected (N, size, size) images, not shape {images.shape}")
    grey = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32)
    mean = torch.tensor(spec.mean_bgr, dtype=torch.float32).view(1, 3, 1, 1)
    batch = grey.unsqueeze(1).expand(-1, 3, -1, -1) - mean
    if spec.scale != 1.0:
        batch = batch * spec.scale
    return batch.contiguous(memory_format=torch.channels_last)
