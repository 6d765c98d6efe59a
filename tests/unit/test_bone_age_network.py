"""The paper's model 2 (bone_age.network): shapes, the sex input and the ImageNet init."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.bone_age.network import (
    BACKBONES,
    SEX_FEMALE,
    SEX_MALE,
    SEX_UNKNOWN,
    build_network,
    load_imagenet_features,
    sex_index,
)
from pipelines.ct_body_part.vgg16_init import STATE_SHAPES, write_vgg16_init


@pytest.mark.parametrize(("architecture", "size"), [("vgg_tiny", 64), ("vgg_small", 96)])
def test_shapes_with_each_sex(architecture: str, size: int) -> None:
    torch.manual_seed(0)
    network = build_network(architecture).eval()
    batch = torch.randn(3, 3, size, size)
    sexes = torch.tensor([SEX_MALE, SEX_FEMALE, SEX_UNKNOWN])
    with torch.no_grad():
        months, attention = network.attend(batch, sexes)
        plain = network(batch, sexes)
    side = size // BACKBONES[architecture].stride
    assert months.shape == (3,)
    assert attention.shape == (3, 1, side, side)
    assert float(attention.min()) >= 0.0 and float(attention.max()) <= 1.0
    assert torch.equal(plain, months)


def test_the_sex_input_changes_the_answer() -> None:
    torch.manual_seed(1)
    network = build_network("vgg_tiny").eval()
    film = torch.randn(1, 3, 64, 64).expand(3, -1, -1, -1)
    with torch.no_grad():
        months = network(film, torch.tensor([SEX_MALE, SEX_FEMALE, SEX_UNKNOWN]))
    assert len({round(float(m), 4) for m in months}) == 3


def test_output_is_in_months_around_the_labels() -> None:
    network = build_network("vgg_tiny", age_mean=150.0, age_std=30.0).eval()
    with torch.no_grad():
        last = network.fc[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.zero_()
        last.bias.fill_(1.0)  # one standard deviation above the mean
        months = network(torch.randn(2, 3, 64, 64), torch.tensor([0, 1]))
    assert torch.allclose(months, torch.tensor([180.0, 180.0]))


def test_bad_inputs_are_refused() -> None:
    network = build_network("vgg_tiny")
    with pytest.raises(ValueError, match="one sex index per film"):
        network(torch.zeros(2, 3, 64, 64), torch.tensor([0]))
    with pytest.raises(ValueError, match="at least"):
        network(torch.zeros(1, 3, 8, 8), torch.tensor([0]))
    with pytest.raises(ValueError, match="N, 3"):
        network(torch.zeros(1, 1, 64, 64), torch.tensor([0]))
    with pytest.raises(ValueError, match="architecture"):
        build_network("resnet50")


@pytest.mark.parametrize(
    ("value", "index"),
    [
        ("M", SEX_MALE),
        ("f", SEX_FEMALE),
        ("O", SEX_UNKNOWN),
        ("", SEX_UNKNOWN),
        (None, SEX_UNKNOWN),
    ],
)
def test_patient_sex_to_the_input(value: object, index: int) -> None:
    assert sex_index(value) == index


def test_vgg16_base_takes_the_converted_imagenet_weights(tmp_path: Path) -> None:
    network = build_network("vgg16")
    keys = {f"features.{key}" for key in network.features.state_dict()}
    assert keys == set(STATE_SHAPES)
    generator = torch.Generator().manual_seed(3)
    state = {key: torch.randn(shape, generator=generator) for key, shape in STATE_SHAPES.items()}
    path = write_vgg16_init(state, tmp_path / "vgg16_imagenet.pt", source={"test": True})
    sidecar = load_imagenet_features(network, path)
    assert sidecar["source"] == {"test": True}
    loaded = network.features.state_dict()
    assert torch.equal(loaded["28.weight"], state["features.28.weight"])
    assert torch.equal(loaded["0.bias"], state["features.0.bias"])


def test_imagenet_weights_are_only_vgg16s(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="VGG16"):
        load_imagenet_features(build_network("vgg_small"), tmp_path / "missing.pt")
