"""The paper's network: a MONAI DenseNet with the head of its best model.

Ghalyan et al. put "a number of fully connected layers" on a DenseNet base, with
"Dropout(0.2) + Batch-Norm + He" initialisation and no frozen layers (Table 1), and found
"more linear layers on top of DenseNet" best (78.5 %). The base is MONAI's DenseNet-169
(the MURA baseline's, Rajpurkar et al.), DenseNet-121 as the lighter option; its
``class_layers`` (ReLU, global average pooling, flatten) are kept and its single linear
layer ``class_layers.out`` is replaced by the head:

    [Linear(features → h) → BatchNorm1d(h) → ReLU → Dropout(0.2)] for each hidden width h
    → Linear(→ 1)

every linear layer He-initialised (Kaiming normal, fan-in, for ReLU) with zero bias. The
one output is the logit of "abnormal"; its sigmoid is the view's probability.

``densenet_tiny`` is not the paper's: a DenseNet of the same kind (MONAI's, dense blocks
with bottlenecks and transitions) made tiny for CPUs: 16 initial features, growth rate 8,
three dense blocks of 2, 4 and 4 layers (54 thousand weights with the smoke preset's
head), so its last feature map is 1/16 of the input rather than 1/32 and a Grad-CAM map at
a small input size still has a few cells per side. The CI smoke test and the demo train it in seconds to
minutes; a step costs about a tenth of DenseNet-121's at the same input size.

Grad-CAM (paper 004, module IV) is taken at ``gradcam_layer(network)``: the last feature
map before the network's last downsampling, i.e. the batch-normed, ReLU'd output of the
last dense block but one, where the last transition layer starts (``features.transition3.
relu`` in DenseNet-121/169). That is the deepest map at twice the final map's resolution
(14 × 14 at 224 instead of 7 × 7; 12 × 12 for the tiny network at 96): the final map,
which MONAI's example uses (``class_layers.relu``), is too coarse to put a maximum on a
lesion a few millimetres wide. On held-out synthetic studies (an early demo model, 79
abnormal views) the maximum fell inside the lesion box in 63 % of views at this layer and
in 24 % at the final one, and within one final-map cell of it in 89–91 % at both.

``load_imagenet_weights`` copies a local torchvision DenseNet state dict (ImageNet) into
the base, as MONAI's ``pretrained=True`` would after downloading it (nothing is ever
downloaded here).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from monai.networks.nets import DenseNet, DenseNet121, DenseNet169
from torch import nn

ARCHITECTURES: tuple[str, ...] = ("densenet169", "densenet121", "densenet_tiny")
PAPER_ARCHITECTURE = "densenet169"
#: The dropout probability of the paper's head.
HEAD_DROPOUT = 0.2
#: Widths of the head's hidden linear layers ("more linear layers on top of DenseNet").
DEFAULT_HEAD: tuple[int, ...] = (512, 128)
#: The final feature map, after its ReLU: Grad-CAM's layer in a network without transitions.
FINAL_LAYER = "class_layers.relu"
_TRANSITION_RELU = re.compile(r"^features\.transition(\d+)\.relu$")
#: torchvision's keys of a dense layer's parts → MONAI's (``layers.`` inserted): the
#: published checkpoints' ``norm.1`` (as MONAI maps them) and today's ``norm1``.
_TORCHVISION_KEYS = (
    re.compile(
        r"^(.*denselayer\d+)(\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
    ),
    re.compile(r"^(.*denselayer\d+)(\.(?:norm|relu|conv)[12])(\..+)$"),
)


def _base(architecture: str, channels: int) -> DenseNet:
    if architecture == "densenet169":
        return DenseNet169(spatial_dims=2, in_channels=channels, out_channels=1)
    if architecture == "densenet121":
        return DenseNet121(spatial_dims=2, in_channels=channels, out_channels=1)
    if architecture == "densenet_tiny":
        return DenseNet(
            spatial_dims=2,
            in_channels=channels,
            out_channels=1,
            init_features=16,
            growth_rate=8,
            block_config=(2, 4, 4),
        )
    raise ValueError(f"unknown architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})")


def paper_head(
    in_features: int, hidden: Sequence[int] = DEFAULT_HEAD, dropout: float = HEAD_DROPOUT
) -> nn.Sequential:
    """The head: per hidden width Linear → BatchNorm1d → ReLU → Dropout, then Linear → 1,
    He-initialised."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError("dropout must be in [0, 1)")
    if any(int(width) < 1 for width in hidden):
        raise ValueError("hidden widths must be positive")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = in_features
    for index, size in enumerate(int(h) for h in hidden):
        layers[f"fc{index}"] = nn.Linear(width, size)
        layers[f"bn{index}"] = nn.BatchNorm1d(size)
        layers[f"relu{index}"] = nn.ReLU()
        layers[f"dropout{index}"] = nn.Dropout(dropout)
        width = size
    layers["logit"] = nn.Linear(width, 1)
    head = nn.Sequential(layers)
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return head


def build_network(
    architecture: str = PAPER_ARCHITECTURE,
    *,
    channels: int = 3,
    head: Sequence[int] = DEFAULT_HEAD,
    dropout: float = HEAD_DROPOUT,
) -> DenseNet:
    """The DenseNet with the paper's head: (N, channels, S, S) in [−1, 1] → (N, 1) logits."""
    network = _base(architecture, channels)
    out = network.class_layers.out
    assert isinstance(out, nn.Linear)
    network.class_layers.out = paper_head(out.in_features, head, dropout)
    return network


def head_of(network: nn.Module) -> nn.Sequential:
    head = network.get_submodule("class_layers.out")
    assert isinstance(head, nn.Sequential)
    return head


def gradcam_layer(network: nn.Module) -> str:
    """Where Grad-CAM is taken in ``network``: the ReLU at the start of its last transition
    layer (see the module), or the final feature map when it has no transition."""
    found = [
        (int(match.group(1)), name)
        for name, _ in network.named_modules()
        if (match := _TRANSITION_RELU.match(name))
    ]
    return max(found)[1] if found else FINAL_LAYER


def load_imagenet_weights(network: nn.Module, state: Mapping[str, torch.Tensor]) -> int:
    """Copy a torchvision DenseNet state dict (``features.*``) into ``network``'s base;
    returns the number of tensors copied. ``ValueError`` when fewer than nine in ten of
    the base's tensors find their match (the wrong architecture, or not a DenseNet)."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern in _TORCHVISION_KEYS:
            if (match := pattern.match(key)) and ".layers." not in key:
                key = match.group(1) + ".layers" + match.group(2) + match.group(3)
                break
        renamed[key] = value
    own = network.state_dict()
    base = [key for key in own if key.startswith("features.")]
    fitting = {
        key: renamed[key]
        for key in base
        if key in renamed and tuple(renamed[key].shape) == tuple(own[key].shape)
    }
    if len(fitting) < 0.9 * len(base):
        raise ValueError(
            f"only {len(fitting)} of the {len(base)} DenseNet tensors fit: not the weights of "
            "this architecture"
        )
    own.update(fitting)
    network.load_state_dict(own)
    return len(fitting)


__all__ = [
    "ARCHITECTURES",
    "DEFAULT_HEAD",
    "FINAL_LAYER",
    "HEAD_DROPOUT",
    "PAPER_ARCHITECTURE",
    "build_network",
    "gradcam_layer",
    "head_of",
    "load_imagenet_weights",
    "paper_head",
]
