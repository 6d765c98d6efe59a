"""The paper's model 2: a VGG16 convolutional base with an attention-map head and sex.

``BoneAgeNetwork`` is, in order (Castillo et al., section IV.B.3 and Fig. 8):

``features``
    the convolutional base: VGG16's conv1–conv5 with their ReLUs and five max pools
    (``"vgg16"``, torchvision's indices 0..30, so the node's converted ImageNet weights,
    ``pipelines.ct_body_part.vgg16_init``, load onto it), or a narrower VGG-style base for
    the CPU (``"vgg_small"``, the CPU variant; ``"vgg_tiny"`` for smoke tests), without
    pool5 so that a small input still gives an attention map of some detail, and with
    batch normalisation after each convolution (VGG-BN), since they learn from scratch. The paper
    used the ImageNet base frozen: its model 2 has about 0.5 M trainable parameters,
    which is the size of this head.
``norm``
    batch normalisation of the feature maps (the paper's "batch normalization layer of
    the VGG portion").
``attention``
    1 × 1 convolutions that turn the C feature maps into a few attention maps; these are
    averaged over their channels and squashed by a sigmoid into one weight per position,
    the attention map A (N, 1, h, w).
pooling
    the features multiplied by A, globally average-pooled and divided by A's own mean,
    so the pooled features are an A-weighted average over the hand (the "multiply" layer
    of the paper's Fig. 10 is F·A).
``sex``
    the patient's sex as a one-hot input of three values, male, female and **unknown**
    (the defined path for a missing or unknown PatientSex; training shows the network
    the "unknown" value on a fraction of the films, ``sex_dropout``), concatenated with
    the pooled features.
``fc``
    dense layers to one output, bone age in months: the network predicts a standardised
    age and un-standardises it with the training labels' mean and standard deviation
    (``age_mean``, ``age_std``, buffers saved with the weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: The three values of the sex input, in one-hot order.
SEX_VALUES: tuple[str, ...] = ("male", "female", "unknown")
SEX_MALE, SEX_FEMALE, SEX_UNKNOWN = 0, 1, 2


@dataclass(frozen=True)
class Backbone:
    """A VGG-style convolutional base: per block its width and number of 3 × 3 convs."""

    widths: tuple[int, ...]
    convs: tuple[int, ...]
    description: str
    pools: int = 5  # max pools after the first ``pools`` blocks
    batch_norm: bool = False  # BatchNorm after each conv (the variants trained from scratch)

    @property
    def channels(self) -> int:
        return self.widths[-1]

    @property
    def stride(self) -> int:
        return 2**self.pools


BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone(
        (64, 128, 256, 512, 512), (2, 2, 3, 3, 3), "VGG16 conv1-conv5 (the paper's base)"
    ),
    "vgg_small": Backbone(
        (16, 32, 64, 128, 128),
        (1, 1, 2, 2, 2),
        "CPU variant: VGG-BN layout at a quarter width, no pool5",
        pools=4,
        batch_norm=True,
    ),
    "vgg_tiny": Backbone(
        (8, 16, 32, 32, 32),
        (1, 1, 1, 1, 1),
        "smoke-test variant: VGG-BN, narrow, no pool5",
        pools=4,
        batch_norm=True,
    ),
}
ARCHITECTURES: tuple[str, ...] = tuple(BACKBONES)


def _features(backbone: Backbone) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for block, (width, count) in enumerate(zip(backbone.widths, backbone.convs, strict=True)):
        for _ in range(count):
            layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))
            if backbone.batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            channels = width
        if block < backbone.pools:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class BoneAgeNetwork(nn.Module):
    """Bone age in months from a (N, 3, S, S) film and a (N,) sex index (``SEX_VALUES``)."""

    def __init__(
        self,
        architecture: str = "vgg16",
        *,
        attention_channels: tuple[int, ...] = (64, 16, 8),
        hidden: int = 512,
        dropout: float = 0.25,
        age_mean: float = 120.0,
        age_std: float = 40.0,
    ) -> None:
        super().__init__()
        if architecture not in BACKBONES:
            raise ValueError(
                f"architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}"
            )
        if not attention_channels or min(attention_channels) < 1:
            raise ValueError("attention_channels must be positive widths")
        if not age_std > 0:
            raise ValueError("age_std must be positive")
        self.architecture = architecture
        self.backbone = BACKBONES[architecture]
        channels = self.backbone.channels
        self.features = _features(self.backbone)
        self.norm = nn.BatchNorm2d(channels)
        layers: list[nn.Module] = []
        width = channels
        for out in attention_channels:
            layers += [nn.Conv2d(width, out, kernel_size=1), nn.ReLU(inplace=True)]
            width = out
        self.attention = nn.Sequential(*layers[:-1])  # the last maps stay linear: averaged
        self.fc = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(channels + len(SEX_VALUES), hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        self.register_buffer("age_mean", torch.tensor(float(age_mean)))
        self.register_buffer("age_std", torch.tensor(float(age_std)))

    @property
    def min_input_size(self) -> int:
        return self.backbone.stride

    def head_parameters(self) -> list[nn.Parameter]:
        """Everything after the convolutional base (what the paper trained)."""
        return [p for name, p in self.named_parameters() if not name.startswith("features.")]

    def attend(self, x: torch.Tensor, sex: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(months (N,), attention map (N, 1, h, w) in [0, 1])."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, S, S) batch, got {tuple(x.shape)}")
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError(
                f"{self.architecture} needs inputs of at least {self.min_input_size} pixels"
            )
        if sex.shape != (x.shape[0],):
            raise ValueError(f"expected one sex index per film, got shape {tuple(sex.shape)}")
        features = self.norm(self.features(x))
        weights = torch.sigmoid(self.attention(features).mean(dim=1, keepdim=True))
        pooled = (features * weights).mean(dim=(2, 3)) / weights.mean(dim=(2, 3)).clamp_min(1e-6)
        one_hot = nn.functional.one_hot(sex.long(), len(SEX_VALUES)).to(pooled.dtype)
        standardised = self.fc(torch.cat([pooled, one_hot], dim=1))[:, 0]
        age_mean, age_std = self.age_mean, self.age_std
        assert isinstance(age_mean, torch.Tensor) and isinstance(age_std, torch.Tensor)
        return age_mean + age_std * standardised, weights

    def forward(self, x: torch.Tensor, sex: torch.Tensor) -> torch.Tensor:
        return self.attend(x, sex)[0]


def build_network(architecture: str = "vgg16", **options: object) -> BoneAgeNetwork:
    return BoneAgeNetwork(architecture, **options)  # type: ignore[arg-type]


def sex_index(patient_sex: object) -> int:
    """The sex input for a PatientSex value: ``M`` male, ``F`` female, anything else
    (``O``, empty, missing) unknown."""
    text = str(patient_sex or "").strip().upper()
    return {"M": SEX_MALE, "F": SEX_FEMALE}.get(text, SEX_UNKNOWN)


def load_imagenet_features(network: BoneAgeNetwork, path: object) -> dict[str, object]:
    """Copy the node's converted ImageNet VGG16 weights (``dicom-node models vgg16-init``)
    onto ``network.features``; returns their sidecar for the model card."""
    from pathlib import Path

    from pipelines.ct_body_part.vgg16_init import STATE_SHAPES, Vgg16InitError, read_vgg16_init

    if network.architecture != "vgg16":
        raise Vgg16InitError(
            f"the ImageNet weights are VGG16's; {network.architecture} has none (random init)"
        )
    state, sidecar = read_vgg16_init(Path(str(path)))
    own = {f"features.{key.split('.', 1)[1]}" for key in STATE_SHAPES}
    features = {key.split(".", 1)[1]: value for key, value in state.items() if key in own}
    network.features.load_state_dict(features, strict=True)
    return dict(sidecar)


__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "SEX_VALUES",
    "BoneAgeNetwork",
    "build_network",
    "load_imagenet_features",
    "sex_index",
]
