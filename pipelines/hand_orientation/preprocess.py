"""The paper's preprocessing (Section 3.1), as MONAI transforms.

From the display image (``pipelines.film_io``: Modality and VOI LUT applied, MONOCHROME1
inverted, 16-bit):

1. resize to ``resize`` × ``resize`` (256) *without* keeping the aspect ratio (area
   averaging, so a 3000-pixel film is not aliased);
2. linear 16 → 8 bit (0..255);
3. three channels by copying the grey channel;
4. crop ``crop`` × ``crop`` (224): the centre at inference, a random position in training;
5. zero-centre: subtract the mean (and divide by the standard deviation) of the ImageNet
   images the initial weights were trained on, channel by channel, on the 0..255 scale.

Steps 1–2 give the ``resized`` 8-bit image a training set can keep in memory; steps 3–5
run per sample. The resize happens before the 16 → 8 bit step here (the paper lists them
the other way round); with a linear map the difference is at most one grey level.

Area resizing is MONAI's ``Resize(mode="area")``, i.e. torch's adaptive average pooling:
output pixel i averages the input rows [⌊i·n/m⌋, ⌈(i+1)·n/m⌉) (and likewise columns),
neighbouring windows sharing a row when n/m is not whole. For 8- and 16-bit images
``resized_8bit`` computes exactly these averages from integer sums of the uint16 pixels
(one pass over the rows, then one over the columns of the much smaller result), without
the float32 copy of the whole film that MONAI makes; ``network_input`` does steps 3–5
with plain torch operations. All five steps take about 7 ms for a 3000 × 3000 film on
the benchmark machine instead of 17 ms. The sums are exact and the division is in
float64, so the result equals MONAI's float32 average except where a value falls within
float32 rounding of a half grey level (then the two may round apart: at most 1 grey
level; none seen in tests). Other dtypes go through MONAI's transform itself.

``InputSpec`` is stored in every model's card, so a model is always fed as it was trained.
``input_spec(architecture, resize, crop)`` gives each architecture's step 5: the ResNets
take the torchvision ImageNet mean and standard deviation (the paper's zero-centring);
``vgg16`` takes what its Caffe-lineage ImageNet weights expect (``pipelines.ct_body_part
.vgg16_init``): the grey level 0..255 in all three channels minus the per-channel means in
BGR order, ``CAFFE_MEAN_BGR``, and no scaling — stored as mean = ``CAFFE_MEAN_BGR`` / 255
and std = 1 / 255 on the 0..1 scale, so the same step 5 computes x − mean exactly (the
divisor 255 · float32(1/255) is exactly 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    CenterSpatialCrop,
    Compose,
    NormalizeIntensity,
    RepeatChannel,
    Resize,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The VGG "caffe" means, B, G, R on the 0..255 scale (as ``pipelines.ct_body_part.network
#: .CAFFE_MEAN_BGR``; a unit test holds them equal).
CAFFE_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)
CAFFE_MEAN = (CAFFE_MEAN_BGR[0] / 255.0, CAFFE_MEAN_BGR[1] / 255.0, CAFFE_MEAN_BGR[2] / 255.0)
CAFFE_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)


@dataclass(frozen=True)
class InputSpec:
    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN  # on the 0..1 scale
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 8 <= self.crop <= self.resize:
            raise ValueError(f"crop {self.crop} must be between 8 and resize {self.resize}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values, std positive")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSpec:
        return cls(
            resize=int(data["resize"]),
            crop=int(data["crop"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
        )


def input_spec(architecture: str, resize: int, crop: int) -> InputSpec:
    """The input ``architecture`` is trained and run on: Caffe means for ``vgg16``, the
    torchvision ImageNet mean and standard deviation for the ResNets."""
    if architecture == "vgg16":
        return InputSpec(resize=resize, crop=crop, mean=CAFFE_MEAN, std=CAFFE_STD)
    return InputSpec(resize=resize, crop=crop)


def resized_8bit(display: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """Steps 1–2: (1, resize, resize) float32 holding whole 8-bit grey levels 0..255."""
    if display.ndim != 2:
        raise ValueError("expected one 2-D display image")
    scale = 255.0 / 65535.0 if display.dtype == np.uint16 else 1.0
    if display.dtype in (np.uint8, np.uint16) and min(display.shape) > 0:
        mean = _area_mean(display, spec.resize, spec.resize)
        levels = np.clip(np.rint(mean * scale), 0.0, 255.0).astype(np.float32)
        return torch.from_numpy(levels)[None]
    image = torch.from_numpy(np.ascontiguousarray(display, dtype=np.float32))[None]
    resize = Resize(spatial_size=(spec.resize, spec.resize), mode="area")
    resized = torch.as_tensor(resize(image))
    return torch.round(resized * scale).clamp_(0.0, 255.0)


def _area_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """The [start, end) input windows of adaptive average pooling from ``size`` to ``out``."""
    index = np.arange(out, dtype=np.int64)
    return (index * size) // out, ((index + 1) * size + out - 1) // out


def _area_mean(image: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Adaptive average pooling of an unsigned 8/16-bit image to (rows, columns), float64.

    Row windows are summed straight from the image, one window per call (each call reads
    a few contiguous rows), into uint32 — enough for windows of up to 65,537 rows of
    16-bit values, uint64 beyond; column windows are then summed in int64 from cumulative
    sums of that (rows × columns-of-the-input) result.
    """
    row_start, row_end = _area_windows(image.shape[0], rows)
    widest = int((row_end - row_start).max()) * int(np.iinfo(image.dtype).max)
    accumulator = np.uint32 if widest <= np.iinfo(np.uint32).max else np.uint64
    by_rows = np.empty((rows, image.shape[1]), dtype=accumulator)
    for i, (start, end) in enumerate(zip(row_start.tolist(), row_end.tolist(), strict=True)):
        np.sum(image[start:end], axis=0, dtype=accumulator, out=by_rows[i])
    column_start, column_end = _area_windows(image.shape[1], columns)
    cumulative = np.zeros((rows, image.shape[1] + 1), dtype=np.int64)
    np.cumsum(by_rows, axis=1, dtype=np.int64, out=cumulative[:, 1:])
    sums = cumulative[:, column_end] - cumulative[:, column_start]
    counts = np.outer(row_end - row_start, column_end - column_start)
    return sums / counts


def finishing_transform(spec: InputSpec) -> Compose:
    """Steps 3–5 with the centre crop (inference)."""
    return Compose([RepeatChannel(repeats=3), CenterSpatialCrop(spec.crop), normalizer(spec)])


def normalizer(spec: InputSpec) -> NormalizeIntensity:
    return NormalizeIntensity(
        subtrahend=np.array(spec.mean, dtype=np.float32) * 255.0,
        divisor=np.array(spec.std, dtype=np.float32) * 255.0,
        channel_wise=True,
    )


def network_input(display: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """All five steps: a (3, crop, crop) float32 tensor for one film.

    Steps 3–5 are computed here with plain torch operations, the same float32 operations
    in the same order as ``finishing_transform`` (the unit tests hold them equal), so the
    result is a plain ``torch.Tensor``: a MONAI ``MetaTensor`` would carry its metadata
    through every layer of the network (a ``__torch_function__`` call per operation) and
    cannot be fed to a ``torch.compile``d network.
    """
    resized = resized_8bit(display, spec)
    size = resized.shape[-1]
    start = size // 2 - spec.crop // 2  # CenterSpatialCrop's window
    window = resized[0, start : start + spec.crop, start : start + spec.crop]
    mean = torch.tensor(np.array(spec.mean, dtype=np.float32) * 255.0)[:, None, None]
    std = torch.tensor(np.array(spec.std, dtype=np.float32) * 255.0)[:, None, None]
    return (window[None].expand(3, -1, -1) - mean) / std
