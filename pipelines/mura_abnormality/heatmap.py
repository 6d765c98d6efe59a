"""Grad-CAM heat maps (paper 004, module IV) and the picture a reader is sent.

``GradCamMaps`` runs MONAI's ``GradCAM`` on a private copy of the network (MONAI hooks the
target layer for good; the copy keeps the network that predicts untouched): the gradient
of the "abnormal" logit with respect to a feature map (``network.gradcam_layer``),
averaged over the map's positions, weights its channels; their weighted sum, through a
ReLU, is the coarse map, upsampled bilinearly to the input size. Each map is scaled to
0..1 by its own maximum (a map without positive evidence stays 0). Only that one gradient
is computed: the copy's weights need none, and the graph starts at the target layer's
input, so the forward pass up to the layer costs what inference costs and the backward
pass runs through the layers after it only (DenseNet-169 at 224², 8 views on 2 shared
cores, ``benchmarks/mura.py``: 2 to 5 times faster than with every weight's gradient;
the maps are the same).

``render_overlay`` draws one film as RGB with its heat map over it (the "jet" colours,
more opaque where the map is higher) and, in a band below the film, a colour bar as the
legend, the probabilities and "NOT FOR DIAGNOSIS", burned into the pixels. Text uses the
DejaVu Sans file bundled with matplotlib, so the same input gives the same pixels.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import torch
from monai.visualize import GradCAM
from torch import nn

from pipelines.mura_abnormality.network import gradcam_layer
from pipelines.overlay import NOT_FOR_DIAGNOSIS, heat_over_film, resize

#: The strongest opacity of the heat map over the film.
MAX_ALPHA = 0.55
#: The longest side of the picture's film part; longer films are scaled down.
DEFAULT_MAX_SIDE = 1024
#: The narrowest the picture is made (small films are scaled up) so the legend is legible.
MIN_WIDTH = 512


def _unit_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map (N, 1, H, W) divided by its own maximum; all-zero maps stay zero."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (maps / peak).clamp_(0.0, 1.0)


def _gradient_starts_here(_module: nn.Module, inputs: tuple[object, ...]) -> tuple[object, ...]:
    """A forward pre-hook: the layer's tensor inputs as new leaves that need a gradient."""
    return tuple(
        x.detach().requires_grad_() if isinstance(x, torch.Tensor) and x.is_floating_point() else x
        for x in inputs
    )


class GradCamMaps:
    """Grad-CAM of the abnormal logit for a batch, on a private copy of ``network``
    (``layer_gradient_only=False`` computes every weight's gradient too, as a plain
    backward pass does: the same maps, slower; ``benchmarks/mura.py`` compares them)."""

    def __init__(
        self,
        network: nn.Module,
        target_layer: str | None = None,
        *,
        layer_gradient_only: bool = True,
    ) -> None:
        own = copy.deepcopy(network).float().eval()
        own = own.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        for module in own.modules():  # backward hooks and in-place activations do not mix
            if isinstance(getattr(module, "inplace", None), bool):
                module.inplace = False
        self.network = own
        self.layer = target_layer or gradcam_layer(own)
        # Only the gradient at the target layer is wanted: no weight gets one, and the
        # layer's input starts the graph, so the forward pass up to it records nothing and
        # the backward pass stops there (registered before MONAI's hooks, so that its
        # backward hook sees the layer's new input).
        # ``layer_gradient_only=False``: the full backward pass, for comparison (benchmarks).
        if layer_gradient_only:
            own.requires_grad_(False)
            own.get_submodule(self.layer).register_forward_pre_hook(_gradient_starts_here)
        self.cam = GradCAM(nn_module=own, target_layers=self.layer, postprocessing=_unit_maps)
        self._lock = threading.Lock()

    def __call__(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(maps, logits): (N, S, S) float32 maps in [0, 1] at the input size, and the
        N logits of the same forward pass."""
        with self._lock, torch.inference_mode(False), torch.enable_grad():
            maps = self.cam(x=batch.detach().clone().float(), class_idx=0)
            score = self.cam.nn_module.score
            assert score is not None
            logits = torch.atleast_1d(score.detach()).float().numpy()
            self.network.zero_grad(set_to_none=True)
        return maps[:, 0].detach().float().numpy(), logits


def heat_peak(heat: np.ndarray, shape: tuple[float, float]) -> tuple[float, float]:
    """Where the heat map (S, S, over the whole film) is highest, as (row, column) in a film
    of ``shape``: the centre of the peak pixel, scaled (the input was the whole film
    resized without keeping its aspect ratio); ``(1.0, 1.0)`` gives fractions."""
    row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return (
        (row + 0.5) * shape[0] / heat.shape[0],
        (column + 0.5) * shape[1] / heat.shape[1],
    )


def overlay_size(shape: tuple[int, int], max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """(rows, columns) of the film part of the picture: the film scaled to a longest side of
    at most ``max_side`` and a width of at least ``MIN_WIDTH``, its aspect ratio kept."""
    rows, columns = shape
    scale = min(1.0, max_side / max(rows, columns))
    scale = max(scale, MIN_WIDTH / columns)
    return max(1, round(rows * scale)), max(1, round(columns * scale))


def render_overlay(
    display: np.ndarray,
    heat: np.ndarray,
    lines: list[str],
    *,
    max_side: int = DEFAULT_MAX_SIDE,
) -> np.ndarray:
    """The film (uint16 display) with ``heat`` (2-D, 0..1, over the whole film) in colour,
    and a legend band with ``lines`` of text and ``NOT_FOR_DIAGNOSIS``: (rows, columns, 3)
    ``uint8``."""
    if display.ndim != 2 or heat.ndim != 2:
        raise ValueError("the film and its heat map are 2-D images")
    rows, columns = overlay_size(display.shape, max_side)
    scale = 1.0 / 65535.0 if display.dtype == np.uint16 else 1.0 / 255.0
    grey = np.clip(resize(display.astype(np.float32) * scale, rows, columns, "area"), 0, 1)
    warmth = np.clip(resize(heat, rows, columns, "bilinear"), 0.0, 1.0)
    return heat_over_film(
        grey,
        warmth,
        lines,
        max_alpha=MAX_ALPHA,
        font_size=max(12, columns // 48),
        scale_words=("Grad-CAM: low", "high"),
    )


__all__ = [
    "DEFAULT_MAX_SIDE",
    "NOT_FOR_DIAGNOSIS",
    "GradCamMaps",
    "heat_peak",
    "overlay_size",
    "render_overlay",
]
