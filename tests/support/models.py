"""Model folders for tests: real networks whose prediction is known in advance.

``write_constant_orientation_model`` zeroes the fc weights of a small network and puts
(cos φ, sin φ) in its bias, so the model predicts exactly φ for every film: the pipeline's
decisions (turn, right angle, GSPS) can then be checked without training anything.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

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
