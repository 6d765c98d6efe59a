"""Angles on the unit circle: the paper's embedding z(θ) = (cos θ, sin θ) and loss (Eq. 2).

The network regresses the two Cartesian coordinates of z(θ); the angle is read back with
``atan2``. Eq. 2 is the squared Euclidean distance between the embeddings, averaged over
the batch, so a pair such as (2°, 359°) costs what a 3° error costs, not what 357° would.
"""

from __future__ import annotations

import math

import torch


def embed(theta_deg: torch.Tensor) -> torch.Tensor:
    """z(θ) = (cos θ, sin θ) for angles in degrees; shape (..., 2)."""
    radians = torch.deg2rad(theta_deg)
    return torch.stack((torch.cos(radians), torch.sin(radians)), dim=-1)


def orientation_loss(output: torch.Tensor, theta_deg: torch.Tensor) -> torch.Tensor:
    """Eq. 2: mean over the batch of ‖z(θ) − output‖², output = the network's (cos, sin)."""
    if output.shape[-1] != 2 or output.shape[:-1] != theta_deg.shape:
        raise ValueError(
            f"output of shape {tuple(output.shape)} does not match angles {tuple(theta_deg.shape)}"
        )
    return ((embed(theta_deg).to(output.dtype) - output) ** 2).sum(dim=-1).mean()


def output_to_degrees(output: torch.Tensor) -> torch.Tensor:
    """θ = atan2(sin, cos) in [0°, 360°) from the network's (cos, sin) output."""
    degrees = torch.rad2deg(torch.atan2(output[..., 1], output[..., 0]))
    return torch.remainder(degrees, 360.0)


def angular_error(predicted_deg: torch.Tensor, true_deg: torch.Tensor) -> torch.Tensor:
    """Signed smallest difference predicted − true, in (−180°, 180°]."""
    difference = torch.remainder(predicted_deg - true_deg, 360.0)
    return torch.where(difference > 180.0, difference - 360.0, difference)


def quadrant(theta_deg: float) -> int:
    """The four-way bin of an angle: 0 for [45°, 135°) (upright), then counter-clockwise.

    The paper bins its results into the four classes earlier methods classify
    (0°, 90°, 180°, 270° turns); a prediction is right when it falls in the true bin.
    """
    return int(math.floor(((theta_deg - 45.0) % 360.0) / 90.0))
