"""The paper's augmentation (Section 3.1), with the label carried through each step.

Per training sample, drawn at random:

1. a counter-clockwise quarter turn by k · 90°, k ∈ {0, 1, 2, 3} (``np.rot90`` / MONAI
   ``Rotate90(k, spatial_axes=(0, 1))`` turn counter-clockwise as displayed): θ → θ + 90°k;
2. a horizontal flip (mirror left ↔ right, MONAI ``Flip(spatial_axis=1)``) with
   probability ½: the axis (dx, dy) becomes (−dx, dy), so θ → 180° − θ;
3. a random ``crop`` × ``crop`` window of the ``resize`` × ``resize`` image (MONAI
   ``RandSpatialCrop``); validation and evaluation take the centre window exactly as
   ``CenterSpatialCrop`` (and the pipeline) do;

then, as the pipeline's ``finishing_transform``, three channels and the ImageNet
normalisation of ``preprocess.normalizer``.

The steps run on whole batches with the torch operations MONAI's transforms wrap
(``torch.rot90``, ``torch.flip``, slicing, one broadcast subtraction and division):
calling the MONAI transforms per sample costs about 9 ms a sample on this project's CPU,
mostly in ``NormalizeIntensity``, more than the network's forward and backward pass at
the demo's input size. The unit tests check that the batch path gives what the MONAI
transforms give, sample by sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipelines.hand_orientation.correct import wrap_degrees
from pipelines.hand_orientation.preprocess import InputSpec
from training.hand_orientation.data import OrientationSample


@dataclass(frozen=True)
class Augmentation:
    """What was drawn for one sample."""

    quarter_turns: int  # k: counter-clockwise turns by 90°
    flip: bool  # mirrored left ↔ right after the turn
    top: int  # crop window's first row
    left: int  # crop window's first column


def augmented_angle(theta_deg: float, quarter_turns: int, flip: bool) -> float:
    """The hand's angle after the turn and the flip: θ + 90°k, then 180° − that."""
    angle = theta_deg + 90.0 * quarter_turns
    if flip:
        angle = 180.0 - angle
    return wrap_degrees(angle)


def draw_augmentation(rng: np.random.Generator, spec: InputSpec) -> Augmentation:
    """k uniform in 0..3, a flip with probability ½, a uniform crop position."""
    slack = spec.resize - spec.crop
    return Augmentation(
        quarter_turns=int(rng.integers(4)),
        flip=bool(rng.integers(2)),
        top=int(rng.integers(slack + 1)),
        left=int(rng.integers(slack + 1)),
    )


def centre_offset(spec: InputSpec) -> int:
    """The first row and column of the centre window, as MONAI's ``CenterSpatialCrop``."""
    return spec.resize // 2 - spec.crop // 2


def apply_geometry(image: torch.Tensor, augmentation: Augmentation, crop: int) -> torch.Tensor:
    """Turn, flip and crop one (C, R, R) image as ``augmentation`` says."""
    out = image
    if augmentation.quarter_turns % 4:
        out = torch.rot90(out, augmentation.quarter_turns % 4, dims=(-2, -1))
    if augmentation.flip:
        out = torch.flip(out, dims=(-1,))
    top, left = augmentation.top, augmentation.left
    return out[..., top : top + crop, left : left + crop]


def normalize_batch(batch: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """(N, 1, H, W) grey levels 0..255 → (N, 3, H, W) float32, as ``preprocess.normalizer``."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    grey = batch.to(torch.float32)
    return (grey.expand(-1, 3, -1, -1) - mean) / std


def training_batch(
    samples: Sequence[OrientationSample], spec: InputSpec, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A randomly augmented batch: network input (N, 3, crop, crop) and labels θ (N,)."""
    images = []
    angles = []
    for sample in samples:
        augmentation = draw_augmentation(rng, spec)
        images.append(apply_geometry(sample.image, augmentation, spec.crop))
        angles.append(
            augmented_angle(sample.angle_deg, augmentation.quarter_turns, augmentation.flip)
        )
    return normalize_batch(torch.stack(images), spec), torch.tensor(angles, dtype=torch.float32)


def evaluation_batch(
    samples: Sequence[OrientationSample], spec: InputSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre-cropped batch as the pipeline sees it, and the labels θ (N,)."""
    offset = centre_offset(spec)
    window = slice(offset, offset + spec.crop)
    images = torch.stack([sample.image[:, window, window] for sample in samples])
    angles = torch.tensor([sample.angle_deg for sample in samples], dtype=torch.float32)
    return normalize_batch(images, spec), angles
