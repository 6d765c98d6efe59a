"""The UBR network of paper 003 (Yan et al.): conv1–conv5, conv6, global average pool, fc.

Layout (the paper's "Network Architecture")::

    features   conv1–conv5 with their ReLUs and max pools, as torchvision's
               ``vgg16().features`` (indices 0..30, pool5 included) or
               ``alexnet().features`` (indices 0..12): the same indices, so those
               state dicts load (``features.*`` keys)
    conv6      512 1 × 1 filters, stride 1, then ReLU (trained from scratch)
    pool       global average pooling: one value per activation map → 512-D
    fc         the paper's Fc7: 512 → 1, the slice score (trained from scratch)

``forward`` takes (N, 3, H, W) float and gives (N,) scores, one per slice; thanks to the
global pooling any H, W works from ``MIN_INPUT_SIZE`` up (32 for VGG16's five 2 × 2 pools,
63 for AlexNet's stride-4 conv1 and three 3/2 pools).

Input convention (``pipelines.ct_body_part.preprocess`` does it): a CT slice through a HU
window mapped linearly to 0..255, the grey image repeated into 3 channels, minus the VGG
"caffe" per-channel means in BGR order, ``CAFFE_MEAN_BGR`` = (103.939, 116.779, 123.68),
channel 0 getting the blue mean. No division by a standard deviation: that is what the
ImageNet VGG16 weights of ``pipelines.ct_body_part.vgg16_init`` expect (Keras "caffe"
mode, BGR, 0–255).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import nn

#: The VGG "caffe" means, B, G, R on the 0..255 scale, subtracted from the input.
CAFFE_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)

ARCHITECTURES = ("vgg16", "alexnet")
Architecture = Literal["vgg16", "alexnet"]
TrainablePart = Literal["all", "conv5", "head"]
TRAINABLE_PARTS: tuple[str, ...] = get_args(TrainablePart)

#: conv6's filters (the paper's 512 1 × 1 filters), hence the fc's input width.
CONV6_CHANNELS = 512
#: The smallest height and width each architecture's features accept.
MIN_INPUT_SIZE = {"vgg16": 32, "alexnet": 63}
#: Channels out of conv5.
FEATURE_CHANNELS = {"vgg16": 512, "alexnet": 256}
#: The index in ``features`` where conv5 (VGG16's block 5, AlexNet's last conv) begins.
CONV5_START = {"vgg16": 24, "alexnet": 10}
#: Layers in ``features`` (pool5 the last).
FEATURES_LENGTH = {"vgg16": 31, "alexnet": 13}

# torchvision's VGG16 configuration "D": channels of each 3 × 3 conv, "M" a 2 × 2 max pool.
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out = int(item)
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = out
    return nn.Sequential(*layers)


def _alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


class UBRNetwork(nn.Module):
    """conv1–conv5 (``features``) → ``conv6`` + ReLU → global average pool → ``fc``."""

    def __init__(self, architecture: str = "vgg16") -> None:
        super().__init__()
        _check_architecture(architecture)
        self.architecture = architecture
        self.features = _vgg16_features() if architecture == "vgg16" else _alexnet_features()
        self.conv6 = nn.Conv2d(FEATURE_CHANNELS[architecture], CONV6_CHANNELS, kernel_size=1)
        self.relu6 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(CONV6_CHANNELS, 1)
        self.reset_parameters()

    @property
    def min_input_size(self) -> int:
        return MIN_INPUT_SIZE[self.architecture]

    def reset_parameters(self) -> None:
        """Random weights: He init for the convolutions, a small normal fc, zero biases.

        conv1–conv5 are normally overwritten with ImageNet weights afterwards
        (``vgg16_init.load_vgg16_init``); conv6 and fc are trained from scratch.
        """
        for module in (*self.features, self.conv6):
            if isinstance(module, nn.Conv2d) and module.bias is not None:
                if module is self.conv6:
                    nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                else:
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.fc.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) batch, not shape {tuple(x.shape)}")
        height, width = int(x.shape[2]), int(x.shape[3])
        smallest = self.min_input_size
        if height < smallest or width < smallest:
            raise ValueError(
                f"input {height} × {width} is too small for {self.architecture}: "
                f"height and width must be at least {smallest} pixels"
            )
        x = self.features(x)
        x = self.relu6(self.conv6(x))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x).squeeze(-1)


def build_network(arch: str = "vgg16") -> UBRNetwork:
    """A fresh network (random weights) of the named architecture."""
    return UBRNetwork(arch)


def trainable_prefixes(architecture: str, part: str) -> tuple[str, ...]:
    """The parameter-name prefixes that ``set_trainable`` leaves trainable (() = all)."""
    _check_architecture(architecture)
    if part not in TRAINABLE_PARTS:
        raise ValueError(f"part {part!r} must be one of {', '.join(TRAINABLE_PARTS)}")
    if part == "all":
        return ()
    head = ("conv6", "fc")
    if part == "head":
        return head
    conv5 = _features_from(architecture, CONV5_START[architecture])
    return (*conv5, *head)


def set_trainable(network: nn.Module, part: TrainablePart) -> list[nn.Parameter]:
    """Freeze all but ``part``; returns the parameters left trainable.

    ``head``: conv6 and fc (the layers trained from scratch); ``conv5``: those and conv5
    (VGG16's block 5, ``features.24``–``features.30``; AlexNet's last conv,
    ``features.10``–``features.12``); ``all``: everything.
    """
    if not isinstance(network, UBRNetwork):
        raise TypeError(f"set_trainable needs a UBRNetwork, not {type(network).__name__}")
    prefixes = trainable_prefixes(network.architecture, part)
    trainable = []
    for name, parameter in network.named_parameters():
        keep = not prefixes or _under(name, prefixes)
        parameter.requires_grad_(keep)
        if keep:
            trainable.append(parameter)
    return trainable


def _features_from(architecture: str, start: int) -> tuple[str, ...]:
    return tuple(f"features.{index}" for index in range(start, FEATURES_LENGTH[architecture]))


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})"
        )


__all__ = [
    "ARCHITECTURES",
    "CAFFE_MEAN_BGR",
    "CONV5_START",
    "CONV6_CHANNELS",
    "FEATURES_LENGTH",
    "MIN_INPUT_SIZE",
    "TRAINABLE_PARTS",
    "Architecture",
    "TrainablePart",
    "UBRNetwork",
    "build_network",
    "set_trainable",
    "trainable_prefixes",
]
