"""The paper's pieces: Eq. 2, atan2 recovery, Eq. 1 rotation, preprocessing, the network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipelines.hand_orientation.angles import (
    angular_error,
    embed,
    orientation_loss,
    output_to_degrees,
    quadrant,
)
from pipelines.hand_orientation.correct import (
    correction_degrees,
    nearest_right_angle,
    rotate_film,
    signed_degrees,
    wrap_degrees,
)
from pipelines.hand_orientation.network import (
    build_network,
    freeze_batch_norm,
    load_torchvision_weights,
    set_trainable,
)
from pipelines.hand_orientation.preprocess import InputSpec, network_input, resized_8bit

# -- Eq. 2 and the angle read-back ------------------------------------------------------------


def test_loss_matches_a_hand_computation() -> None:
    output = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    theta = torch.tensor([90.0, 180.0])
    # (cos 90 - 1)^2 + (sin 90 - 0)^2 = 1 + 1 = 2; (-1 - .5)^2 + (0 - .5)^2 = 2.25 + .25 = 2.5
    assert orientation_loss(output, theta).item() == pytest.approx((2.0 + 2.5) / 2, abs=1e-6)


def test_loss_of_2_and_359_degrees_is_that_of_3_degrees() -> None:
    near = orientation_loss(embed(torch.tensor([359.0])), torch.tensor([2.0])).item()
    # |z(2°) - z(359°)|^2 = 2 - 2 cos(3°), by hand
    assert near == pytest.approx(2 - 2 * math.cos(math.radians(3)), rel=1e-4)
    three = orientation_loss(embed(torch.tensor([5.0])), torch.tensor([2.0])).item()
    assert near == pytest.approx(three, rel=1e-4)
    # Plain MSE on degrees would make (2°, 359°) the worst pair; here it costs next to nothing.
    opposite = orientation_loss(embed(torch.tensor([182.0])), torch.tensor([2.0])).item()
    assert near < 0.01 < 3.9 < opposite


def test_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="does not match"):
        orientation_loss(torch.zeros(3, 2), torch.zeros(4))


@pytest.mark.parametrize("theta", [0.0, 0.5, 45.0, 89.9, 90.0, 179.0, 180.0, 271.3, 359.99])
def test_angle_is_recovered_from_cos_and_sin(theta: float) -> None:
    for scale in (1.0, 0.2, 7.5):  # the network's output need not be on the unit circle
        recovered = output_to_degrees(scale * embed(torch.tensor([theta], dtype=torch.float64)))
        assert float(angular_error(recovered, torch.tensor([theta]))) == pytest.approx(0, abs=1e-4)
        assert 0.0 <= float(recovered) < 360.0


def test_angular_error_wraps() -> None:
    errors = angular_error(
        torch.tensor([359.0, 1.0, 180.0, 90.0]), torch.tensor([1.0, 359.0, 0.0, 300.0])
    )
    assert errors.tolist() == pytest.approx([-2.0, 2.0, 180.0, 150.0])


def test_four_way_bins() -> None:
    assert [quadrant(a) for a in (90, 46, 134.9, 135, 180, 224, 225, 300, 314.9, 315, 0, 44.9)] == [
        0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3,
    ]  # fmt: skip


# -- Eq. 1 ---------------------------------------------------------------------------------------


def test_correction_turns_the_prediction_to_the_preferred_angle() -> None:
    assert correction_degrees(90.0) == 0.0
    assert correction_degrees(0.0) == 90.0  # fingers to the right: a quarter turn left
    assert correction_degrees(180.0) == -90.0
    assert correction_degrees(300.0) == 150.0
    assert correction_degrees(270.0) == 180.0
    assert correction_degrees(10.0, preferred_deg=0.0) == -10.0
    assert wrap_degrees(-30.0) == 330.0 and signed_degrees(350.0) == -10.0
    assert [nearest_right_angle(a) for a in (1.0, 88.0, -91.0, 179.0, 359.0)] == [
        0,
        90,
        270,
        180,
        0,
    ]


def test_quarter_turns_are_exact_and_counter_clockwise() -> None:
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    turned = rotate_film(image, 90.0)
    # Counter-clockwise as displayed: the top-right pixel goes to the top-left.
    assert turned[0, 0] == image[0, 3] and turned.shape == (4, 3)
    assert np.array_equal(rotate_film(image, -90.0), np.rot90(image, -1))
    assert np.array_equal(rotate_film(image, 180.0), image[::-1, ::-1])
    assert np.array_equal(rotate_film(image, 360.0), image)


def test_free_rotation_turns_counter_clockwise_and_keeps_everything() -> None:
    image = np.zeros((101, 161), dtype=np.uint16)
    image[45:56, 100:150] = 60000  # a bar to the right of the centre
    turned = rotate_film(image, 30.0)
    rows, columns = turned.shape
    cos, sin = math.cos(math.radians(30)), math.sin(math.radians(30))
    assert columns == pytest.approx(161 * cos + 101 * sin, abs=1.5)
    assert rows == pytest.approx(161 * sin + 101 * cos, abs=1.5)
    ys, xs = np.nonzero(turned > 30000)
    dx, dy = xs.mean() - columns / 2, -(ys.mean() - rows / 2)  # y up
    assert math.degrees(math.atan2(dy, dx)) == pytest.approx(30.0, abs=1.0)
    # Nothing falls off the canvas: the bar's mass is kept.
    assert turned.astype(np.float64).sum() == pytest.approx(
        image.astype(np.float64).sum(), rel=0.02
    )
    assert turned.dtype == np.uint16


# -- preprocessing -----------------------------------------------------------------------------


def test_preprocessing_resizes_without_keeping_the_aspect_and_crops() -> None:
    spec = InputSpec(resize=64, crop=56)
    display = np.zeros((300, 200), dtype=np.uint16)
    display[:150] = 65535  # top half white
    resized = resized_8bit(display, spec)
    assert resized.shape == (1, 64, 64)
    assert float(resized[0, :32].min()) == 255.0 and float(resized[0, 32:].max()) == 0.0
    assert torch.equal(resized, resized.round())
    x = network_input(display, spec)
    assert x.shape == (3, 56, 56) and x.dtype == torch.float32
    # Channel-wise zero-centring with the ImageNet mean and std on the 0..255 scale.
    expected_white = (255 - spec.mean[0] * 255) / (spec.std[0] * 255)
    assert float(x[0, 0, 0]) == pytest.approx(expected_white, rel=1e-5)
    assert not torch.equal(x[0], x[2])  # per-channel statistics differ


def test_input_spec_rejects_a_crop_larger_than_the_image() -> None:
    with pytest.raises(ValueError, match="crop"):
        InputSpec(resize=64, crop=80)
    assert InputSpec.from_json(InputSpec().to_json()) == InputSpec()


# -- the network --------------------------------------------------------------------------------


def test_resnet50_follows_table_1() -> None:
    network = build_network("resnet50").eval()
    features: dict[str, tuple[int, ...]] = {}

    def keep(name: str) -> object:
        def hook(module: object, inputs: object, output: torch.Tensor) -> None:
            features[name] = tuple(output.shape)

        return hook

    network.conv1.register_forward_hook(keep("conv1"))
    network.layer4.register_forward_hook(keep("conv5"))
    with torch.no_grad():
        output = network(torch.zeros(1, 3, 224, 224))
    assert output.shape == (1, 2)
    assert features["conv1"] == (1, 64, 112, 112)
    assert features["conv5"] == (1, 2048, 7, 7)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("vgg99")


def _torchvision_style_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict as torchvision's ResNet-50 saves it: same names, a 1000-class fc."""
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, value in network.state_dict().items():
        if key.startswith("fc."):
            continue
        state[key] = (
            torch.rand(value.shape, generator=generator) if value.is_floating_point() else value
        )
    state["fc.weight"] = torch.rand(1000, 2048, generator=generator)
    state["fc.bias"] = torch.rand(1000, generator=generator)
    return {f"module.{k}" if i % 2 else k: v for i, (k, v) in enumerate(state.items())}


def test_torchvision_weights_map_onto_the_monai_network() -> None:
    network = build_network("resnet50")
    state = _torchvision_style_state(build_network("resnet50"))
    fc_before = network.fc.weight.detach().clone()
    report = load_torchvision_weights(network, state)
    assert report.skipped == ("fc.bias", "fc.weight")
    own = network.state_dict()
    clean = {k.removeprefix("module."): v for k, v in state.items()}
    assert report.loaded == len([k for k in own if not k.startswith("fc.")])
    for key in ("conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_var"):
        assert torch.equal(own[key], clean[key])
    assert torch.equal(network.fc.weight, fc_before)  # the new fc keeps its random start


def test_torchvision_weights_of_another_architecture_are_refused() -> None:
    state = _torchvision_style_state(build_network("resnet18"))
    with pytest.raises(ValueError, match="lacks"):
        load_torchvision_weights(build_network("resnet50"), state)
    resnet50 = {
        k.removeprefix("module."): v
        for k, v in _torchvision_style_state(build_network("resnet50")).items()
    }
    resnet50["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    with pytest.raises(ValueError, match="do not fit"):
        load_torchvision_weights(build_network("resnet50"), resnet50)


def test_fine_tuning_conv5_trains_layer4_and_fc_only() -> None:
    network = build_network("resnet18")
    trainable = set(map(id, set_trainable(network, "conv5")))
    for name, parameter in network.named_parameters():
        expected = name.startswith(("layer4.", "fc."))
        assert (id(parameter) in trainable) == expected == parameter.requires_grad, name
    network.train()
    freeze_batch_norm(network, "conv5")
    assert not network.bn1.training and not network.layer3[0].bn1.training
    assert network.layer4[0].bn1.training
    assert len(set_trainable(network, "all")) == len(list(network.parameters()))


@pytest.mark.parametrize("theta", [0.0, 20.0, 90.0, 137.0, 180.0, 251.0, 333.0])
def test_a_synthetic_film_rotated_by_theta_comes_back_upright_within_1_degree(
    theta: float,
) -> None:
    from training.synthetic.hand_films import hand_axis_angle, render_hand

    film = render_hand(300, 237, angle_deg=theta, rng=np.random.default_rng(int(theta) + 1))
    assert abs(signed_degrees(hand_axis_angle(film) - theta)) <= 1.0  # the measurement is sound
    upright = rotate_film(film, correction_degrees(theta))
    # Measured from the image moments of the corrected film, not from any network.
    assert abs(signed_degrees(hand_axis_angle(upright) - 90.0)) <= 1.0
    # Another preferred orientation (Eq. 1 with α = 0: fingers to the right).
    right = rotate_film(film, correction_degrees(theta, preferred_deg=0.0))
    assert abs(signed_degrees(hand_axis_angle(right) - 0.0)) <= 1.0
