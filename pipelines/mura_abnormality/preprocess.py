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

Steps 2 and 3 give exactly the values of ``torch.round`` and of the MONAI transform, but
on one thread: the rounding in NumPy, and the scaling as a look-up of the transform's own
output for each of the 256 levels. Done with torch, each of these small steps was split
over torch's threads, and on a busy machine each waited for all of them (about 25 ms of
a film's 30 on two shared cores, 5 ms now); the pipeline also reads and preprocesses the
next film while the network runs.

``InputSpec`` is stored in every model's card, so a model is always fed as it was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
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
    resized = _plain(Resize(spatial_size=(size, size), mode="area")(image))[0].numpy()
    # The few size² values in NumPy, on this thread: torch would split each of these small
    # steps over its threads, and on a busy machine every step waits for them all.
    levels = np.rint(resized * np.float32(scale))  # half to even, as torch.round
    return np.clip(levels, 0.0, 255.0).astype(np.uint8)


@cache
def _unit_range_table() -> np.ndarray:
    """Step 3 (MONAI's ``ScaleIntensityRange``) of each of the 256 levels: a look-up table
    that gives an 8-bit image the very values the transform gives it."""
    return np.asarray(_scale_to_unit_range(torch.arange(256, dtype=torch.float32)).numpy())


def _scale_to_unit_range(images: torch.Tensor) -> torch.Tensor:
    scale = ScaleIntensityRange(a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0, dtype=np.float32)
    return _plain(scale(images.float()))


def from_8bit(images: np.ndarray | torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Step 3 for a batch: (N, size, size) 8-bit images → (N, channels, size, size) float32
    in [−1, 1]."""
    batch = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if batch.ndim != 3 or tuple(batch.shape[1:]) != (spec.size, spec.size):
        raise ValueError(f"expected (N, {spec.size}, {spec.size}) images, not {tuple(batch.shape)}")
    if batch.dtype == torch.uint8:  # the levels looked up (the same values), in NumPy
        scaled = _unit_range_table()[batch.numpy()][:, None]
        shape = (len(scaled), spec.channels, spec.size, spec.size)
        return torch.from_numpy(np.ascontiguousarray(np.broadcast_to(scaled, shape)))
    scaled = _scale_to_unit_range(batch)
    return scaled[:, None].expand(-1, spec.channels, -1, -1).contiguous()


def network_input(display: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """All three steps for one film: a (channels, size, size) float32 tensor in [−1, 1]."""
    return from_8bit(resized_8bit(display, spec.size)[None], spec)[0]


__all__ = ["MIN_SIZE", "PAPER_SIZE", "InputSpec", "from_8bit", "network_input", "resized_8bit"]
