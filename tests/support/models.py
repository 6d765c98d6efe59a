"""Model folders for tests: real networks whose prediction is known in advance.

``write_constant_orientation_model`` zeroes the fc weights of a small network and puts
(cos φ, sin φ) in its bias, so the model predicts exactly φ for every film: the pipeline's
decisions (turn, right angle, GSPS) can then be checked without training anything.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from pipelines.hand_orientation.network import build_network
from pipelines.hand_orientation.preprocess import InputSpec
from pipelines.model_store import WEIGHTS_FILE, ModelCard, file_sha256, write_model_card

SMALL_SPEC = InputSpec(resize=64, crop=56)


def write_constant_orientation_model(
    folder: Path,
    angle_deg: float,
    *,
    version: str = "const-1",
    architecture: str = "resnet10",
    spec: InputSpec = SMALL_SPEC,
) -> ModelCard:
    torch.manual_seed(0)
    network = build_network(architecture)
    with torch.no_grad():
        network.fc.weight.zero_()
        network.fc.bias.copy_(
            torch.tensor([math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))])
        )
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / WEIGHTS_FILE)
    card = ModelCard(
        pipeline="hand_orientation",
        version=version,
        created=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        architecture={"name": architecture},
        input_spec=spec.to_json(),
        weights_sha256=file_sha256(folder / WEIGHTS_FILE),
        training_data={"kind": "constant test model"},
        metrics={"mae_deg": 0.0},
    )
    write_model_card(folder, card)
    return card


# -- ct_body_part -------------------------------------------------------------------------------

_UBR_SMOKE_MODELS: dict[str, Path] = {}


def smoke_ubr_model(root: Path) -> Path:
    """A ``ct_body_part`` model trained with the ``smoke`` preset (AlexNet from scratch on
    synthetic phantoms, 1–2 minutes on 2 cores), trained once per test process.

    ``root`` is a session-wide folder (``tmp_path_factory``); the folder returned is the
    complete model folder, calibrated on two phantoms with their true zones.
    """
    key = str(root)
    if key not in _UBR_SMOKE_MODELS:
        from training.ct_body_part.train import preset, train_ubr

        trained = train_ubr(preset("smoke", out_dir=root, progress=False, version="smoke-1"))
        _UBR_SMOKE_MODELS[key] = trained.folder
    return _UBR_SMOKE_MODELS[key]


# -- xray_triage --------------------------------------------------------------------------------


def write_constant_triage_model(
    folder: Path,
    *,
    xray_probability: float = 0.99,
    xray_type: str = "hand",
    type_probability: float = 0.95,
    version: str = "const-triage-1",
    size: int = 32,
    xray_threshold: float = 0.5,
    disagreement_threshold: float = 0.9,
) -> ModelCard:
    """An ``xray_triage`` model (the tiny DenseNets) whose answer is known in advance: the
    last linear layer of each module is zeroed and its bias set so that every image gets
    P(X-ray) = ``xray_probability`` and module II's softmax puts ``type_probability`` on
    ``xray_type`` (the rest shared by the other 13 types)."""
    from pipelines.xray_triage.model import architecture_json
    from pipelines.xray_triage.network import MODULE_2_CLASSES, TriageNetworks
    from pipelines.xray_triage.preprocess import InputSpec as TriageSpec

    if not 0 < xray_probability < 1 or not 1 / 14 < type_probability < 1:
        raise ValueError("probabilities must be in (0, 1), the type's above 1/14")
    torch.manual_seed(0)
    networks = TriageNetworks("densenet_tiny")
    others = len(MODULE_2_CLASSES) - 1
    with torch.no_grad():
        first = networks.xray_or_not.get_submodule("class_layers.out")
        assert isinstance(first, torch.nn.Linear)
        first.weight.zero_()
        first.bias.copy_(torch.tensor([0.0, math.log(xray_probability / (1.0 - xray_probability))]))
        second = networks.xray_type.get_submodule("class_layers.out")
        assert isinstance(second, torch.nn.Linear)
        second.weight.zero_()
        bias = torch.zeros(len(MODULE_2_CLASSES))
        bias[MODULE_2_CLASSES.index(xray_type)] = math.log(
            others * type_probability / (1.0 - type_probability)
        )
        second.bias.copy_(bias)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(networks.state_dict(), folder / WEIGHTS_FILE)
    card = ModelCard(
        pipeline="xray_triage",
        version=version,
        created=datetime(2026, 12, 8, 1, 0, tzinfo=UTC),
        architecture=architecture_json("densenet_tiny"),
        input_spec=TriageSpec(size=size).to_json(),
        weights_sha256=file_sha256(folder / WEIGHTS_FILE),
        training_data={"kind": "constant test model"},
        metrics={"accuracy_pct": None},
        calibration={
            "xray_threshold": xray_threshold,
            "disagreement_threshold": disagreement_threshold,
        },
    )
    write_model_card(folder, card)
    return card


_TRIAGE_SMOKE_MODEL: list[Any] = []


def smoke_triage_model(root: Path) -> Any:
    """An ``xray_triage`` model trained with the ``smoke`` preset (the tiny DenseNets on
    synthetic films of the 14 types and non-X-rays; seconds to a minute on 2 cores), trained
    once per test process into ``root`` (a session-wide folder, e.g.
    ``tmp_path_factory.getbasetemp() / "xray-triage-smoke"``); later calls return the same
    ``training.xray_triage.train.TrainedModel`` whatever their ``root``."""
    if not _TRIAGE_SMOKE_MODEL:
        from training.xray_triage.train import preset, train_triage

        config = preset("smoke", out_dir=root, progress=False, version="smoke-1")
        _TRIAGE_SMOKE_MODEL.append(train_triage(config))
    return _TRIAGE_SMOKE_MODEL[0]


# -- bone_age -----------------------------------------------------------------------------------


def write_seeded_bone_age_model(
    folder: Path,
    *,
    seed: int = 0,
    version: str = "seeded-1",
    architecture: str = "vgg_tiny",
    size: int = 64,
) -> ModelCard:
    """A ``bone_age`` model with seeded random weights (no training): a real network loaded
    from a real folder, whose answer depends on the pixels (and on which way the film
    lies), for testing the pipeline's paths rather than its accuracy. Its weights are
    scaled so that the answers are spread over months, not crowded at the mean."""
    from pipelines.bone_age.network import build_network as build_bone_age
    from pipelines.bone_age.preprocess import InputSpec as BoneAgeSpec

    torch.manual_seed(seed)
    network = build_bone_age(architecture, age_mean=120.0, age_std=40.0)
    with torch.no_grad():
        last = network.fc[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.mul_(4.0)
    network.eval()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / WEIGHTS_FILE)
    card = ModelCard(
        pipeline="bone_age",
        version=version,
        created=datetime(2026, 12, 8, 1, 0, tzinfo=UTC),
        architecture={"name": architecture},
        input_spec=BoneAgeSpec(size).to_json(),
        weights_sha256=file_sha256(folder / WEIGHTS_FILE),
        training_data={"kind": "seeded random test model"},
    )
    write_model_card(folder, card)
    return card


_BONE_AGE_SMOKE_MODELS: dict[str, Any] = {}


def smoke_bone_age_model(root: Path) -> Any:
    """A ``bone_age`` model trained with the ``smoke`` preset (vgg_tiny at 64 on synthetic
    paediatric hands, seconds on 2 cores), trained once per test process; returns the
    trainer's ``TrainedModel`` (``folder``, ``card``, ``report``)."""
    key = str(root)
    if key not in _BONE_AGE_SMOKE_MODELS:
        from training.bone_age.train import preset as bone_age_preset
        from training.bone_age.train import train_bone_age

        config = bone_age_preset("smoke", out_dir=root, version="smoke-1", progress=False)
        _BONE_AGE_SMOKE_MODELS[key] = train_bone_age(config)
    return _BONE_AGE_SMOKE_MODELS[key]
