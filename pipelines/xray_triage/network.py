"""The paper's networks: two DenseNet-121s from MONAI, one per module.

Urinbayev et al. (paper 004, Section III) build modules I and II on ChexNet, a
DenseNet-121 whose classifier is replaced by a linear layer with one output per class.
MONAI's ``DenseNet121`` is that network: dense blocks of 6, 12, 24 and 16 layers, growth
rate 32, and ``class_layers`` (ReLU, global average pooling, flatten, ``out``: one linear
layer of 1024 features) with ``out_channels`` outputs. Module I has two classes
(``MODULE_1_CLASSES``: not an X-ray, X-ray), module II the fourteen X-ray types of
Table I (``MODULE_2_CLASSES``, ``body_parts.XRAY_TYPES`` order); each gives logits, and
softmax gives the probabilities (the paper trains both with cross-entropy).

``TriageNetworks`` holds both modules, so that one model version is one state dict in
one weights file: ``xray_or_not.*`` (module I) and ``xray_type.*`` (module II).

``densenet_tiny`` is not the paper's: a DenseNet of the same kind (MONAI's, dense blocks
with bottlenecks and transitions) made small for CPUs, 16 initial features, growth rate
8, blocks of 2, 4 and 4 layers; the CI smoke test and the demo train it in seconds to
minutes, where a DenseNet-121 takes a GPU or hours.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet, DenseNet121
from torch import nn

from pipelines.xray_triage.body_parts import NOT_XRAY, XRAY_TYPES

ARCHITECTURES: tuple[str, ...] = ("densenet121", "densenet_tiny")
PAPER_ARCHITECTURE = "densenet121"
XRAY = "xray"
#: Module I's classes, in output order: P(X-ray) is the softmax's second entry.
MODULE_1_CLASSES: tuple[str, ...] = (NOT_XRAY, XRAY)
#: Module II's classes, in output order (the paper's Table I / Fig. 3 order).
MODULE_2_CLASSES: tuple[str, ...] = tuple(t.name for t in XRAY_TYPES)


def build_module(architecture: str, classes: int, *, channels: int = 3) -> DenseNet:
    """One module: (N, channels, S, S) in [−1, 1] → (N, classes) logits."""
    if classes < 2:
        raise ValueError("a classifier needs at least two classes")
    if architecture == "densenet121":
        return DenseNet121(spatial_dims=2, in_channels=channels, out_channels=classes)
    if architecture == "densenet_tiny":
        return DenseNet(
            spatial_dims=2,
            in_channels=channels,
            out_channels=classes,
            init_features=16,
            growth_rate=8,
            block_config=(2, 4, 4),
        )
    raise ValueError(f"unknown architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})")


class TriageNetworks(nn.Module):
    """Module I (``xray_or_not``) and module II (``xray_type``), one state dict."""

    def __init__(
        self,
        architecture: str = PAPER_ARCHITECTURE,
        *,
        channels: int = 3,
        type_classes: int = len(MODULE_2_CLASSES),
    ) -> None:
        super().__init__()
        self.architecture = architecture
        self.xray_or_not = build_module(architecture, len(MODULE_1_CLASSES), channels=channels)
        self.xray_type = build_module(architecture, type_classes, channels=channels)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both modules' logits: (N, 2) and (N, type classes)."""
        return self.xray_or_not(batch), self.xray_type(batch)


__all__ = [
    "ARCHITECTURES",
    "MODULE_1_CLASSES",
    "MODULE_2_CLASSES",
    "PAPER_ARCHITECTURE",
    "XRAY",
    "TriageNetworks",
    "build_module",
]
