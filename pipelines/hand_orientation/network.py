"""The regression network: a MONAI ResNet whose fc gives the two outputs (cos θ, sin θ).

``resnet50`` is the paper's network (Table 1): conv1 7 × 7 stride 2, max pool, the four
bottleneck stages conv2_x … conv5_x, global average pool, and fc replaced by a 2-output
layer. ``resnet18`` and ``resnet10`` are lighter variants for a quick demo model on a
CPU. The layer names are torchvision's, so a torchvision ResNet-50 state dict (ImageNet
weights a site keeps on disk) loads onto ``resnet50`` with ``load_torchvision_weights``;
its 1000-class fc is left out and the new fc starts from random, as in the paper.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from monai.networks.nets import ResNet
from torch import nn

ARCHITECTURES: dict[str, tuple[str, list[int]]] = {
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet10": ("basic", [1, 1, 1, 1]),
}
#: conv5_x of the paper's Table 1 is MONAI's / torchvision's ``layer4``.
FINE_TUNE_LAYERS = {"conv5": ("layer4", "fc"), "fc": ("fc",), "all": ()}


def build_network(architecture: str = "resnet50") -> ResNet:
    """A fresh network with random weights and a 2-output fc."""
    if architecture not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r} (known: {known})")
    block, layers = ARCHITECTURES[architecture]
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
    """Copy a torchvision-style ResNet state dict onto ``network`` (all but fc).

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
            f"{', '.join(missing[:3])}: is it a torchvision ResNet of this architecture?"
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


def set_trainable(network: nn.Module, fine_tune: str) -> list[nn.Parameter]:
    """Freeze all but the named part (``conv5``: layer4 + fc, as the paper; ``fc``; ``all``).

    Returns the parameters left trainable. Frozen layers' batch-norm statistics stay as
    loaded: call ``freeze_batch_norm`` after ``network.train()``.
    """
    if fine_tune not in FINE_TUNE_LAYERS:
        raise ValueError(f"fine_tune must be one of {', '.join(FINE_TUNE_LAYERS)}")
    prefixes = FINE_TUNE_LAYERS[fine_tune]
    trainable = []
    for name, parameter in network.named_parameters():
        keep = not prefixes or _under(name, prefixes)
        parameter.requires_grad_(keep)
        if keep:
            trainable.append(parameter)
    return trainable


def freeze_batch_norm(network: nn.Module, fine_tune: str) -> None:
    """Put the batch-norm layers outside the fine-tuned part in eval mode."""
    prefixes = FINE_TUNE_LAYERS[fine_tune]
    if not prefixes:
        return
    for name, module in network.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not _under(name, prefixes):
            module.eval()


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _strip_prefix(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key
