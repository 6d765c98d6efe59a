"""The paper's preprocessing (Ghalyan et al., "Experimental Methodology"), as MONAI transforms.

"The image was preprocessed by resizing them to 224 * 224, followed by normalization
between -1 to 1." From a film's display image (``pipelines.film_io``: Modality and VOI
LUTs applied, MONOCHROME1 inverted, so bone is bright in every film):

1. resize to ``size`` × ``size`` (224) without keeping the aspect ratio, by area
   averaging (MONAI ``Resize(mode="area")``), so a 3000-pixel film is not aliased;
2. round to 8-bit grey levels 0..255: the PNGs MURA is published as are 8-bit, and a
   training set keeps these small images in memory (``resized_8bit``);
3. scale 0..255 linearly to [−1, 1] (MONAI ``ScaleIntensityRange``) and copy the grey
   channel to ``channels`` (3: the layout of the ImageNet DenseNet weights).

``InputSpec`` is stored in every model's card, so a model is always fed as it was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Resize, ScaleIntensityRange

#: The paper's input size.
PAPER_SIZE = 224
#: The smallest input the networks take (DenseNet's stem and pools need 32 pixels).
MIN_SIZE = 32


@dataclass(frozen=True)
class InputSpec:
    """How films are fed: ``size`` × ``size`` pixels, ``channels`` copies of the grey level,
    values in [−1, 1]."""

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
        return {**asdict(self), "range": [-1.0, 1.0]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSpec:
        return cls(size=int(data["size"]), channels=int(data.get("channels", 3)))


def _plain(value: Any) -> torch.Tensor:
    """A MONAI transform's output as a plain tensor (no metadata riding through the network)."""
    if isinstance(value, MetaTensor):
        return value.as_tensor()
    return torch.as_tensor(value)


def resized_8bit(display: np.ndarray, size: int) -> np.ndarray:
    """Steps 1–2: a (size, size) ``uint8`` image of one display image (2-D, any numeric
    type; ``uint16`` is read as 0..65535, ``uint8`` as 0..255, floats as 0..1)."""
    if display.ndim != 2 or min(display.shape) < 1:
        raise ValueError(f"expected one 2-D image, not an array of shape {display.shape}")
    if display.dtype == np.uint16:
        scale = 255.0 / 65535.0
    elif display.dtype == np.uint8:
        scale = 1.0
    else:
        scale = 255.0
    image = torch.from_numpy(np.ascontiguousarray(display, dtype=np.float32))[None]
    resized = _plain(Resize(spatial_size=(size, size), mode="area")(image))[0]
    levels = torch.round(resized * scale).clamp_(0.0, 255.0)
    return levels.to(torch.uint8).numpy()


def from_8bit(images: np.ndarray | torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Step 3 for a batch: (N, size, size) 8-bit images → (N, channels, size, size) float32
    in [−1, 1]."""
    batch = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if batch.ndim != 3 or tuple(batch.shape[1:]) != (spec.size, spec.size):
        raise ValueError(f"expected (N, {spec.size}, {spec.size}) images, not {tuple(batch.shape)}")
    scale = ScaleIntensityRange(a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0, dtype=np.float32)
    scaled = _plain(scale(batch.float()))
    return scaled[:, None].expand(-1, spec.channels, -1, -1).contiguous()


def network_input(display: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """All three steps for one film: a (channels, size, size) float32 tensor in [−1, 1]."""
    return from_8bit(resized_8bit(display, spec.size)[None], spec)[0]


__all__ = ["MIN_SIZE", "PAPER_SIZE", "InputSpec", "from_8bit", "network_input", "resized_8bit"]
