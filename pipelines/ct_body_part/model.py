"""A trained body part regressor: its folder read, its network built, ready to score slices.

The card (``model.json``) gives the architecture (``{"name": "vgg16" | "alexnet"}``), the
input spec (``pipelines.ct_body_part.preprocess.InputSpec``) and, once calibrated on two
labelled volumes, the zone thresholds (``calibration``, see
``pipelines.ct_body_part.zones``). Scores run in batches, channels-last, under
``torch.inference_mode``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipelines.ct_body_part.network import build_network
from pipelines.ct_body_part.preprocess import InputSpec, network_batch
from pipelines.ct_body_part.zones import Calibration, CalibrationError
from pipelines.model_store import (
    ModelCard,
    ModelFolderCache,
    ModelStoreError,
    load_weights,
    read_pipeline_card,
)

logger = logging.getLogger(__name__)

PIPELINE_NAME = "ct_body_part"
#: Slices per forward pass.
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True, eq=False)
class UbrModel:
    card: ModelCard
    network: torch.nn.Module
    spec: InputSpec
    calibration: Calibration | None

    @property
    def architecture(self) -> str:
        return str(self.card.architecture.get("name", "vgg16"))

    def scores(self, images: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """One score per (size × size, uint8) image, as float64."""
        return network_scores(self.network, images, self.spec, batch_size=batch_size)


@torch.inference_mode()
def network_scores(
    network: torch.nn.Module,
    images: np.ndarray,
    spec: InputSpec,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """One score per (size × size, uint8) image from ``network`` in eval mode, as float64:
    a model's scores, and those of a network still in training."""
    network.eval()
    if len(images) == 0:
        return np.zeros(0)
    out = []
    for start in range(0, len(images), max(1, batch_size)):
        batch = network_batch(images[start : start + batch_size], spec)
        out.append(network(batch).float().reshape(-1))
    return torch.cat(out).double().numpy()


def load_model(folder: Path) -> UbrModel:
    """Read, verify and build the model in ``folder``; ``ModelStoreError`` when it is unfit."""
    card = read_pipeline_card(folder, PIPELINE_NAME)
    try:
        spec = InputSpec.from_json(card.input_spec)
        network = build_network(str(card.architecture.get("name", "vgg16")))
        calibration = Calibration.from_json(card.calibration) if card.calibration else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelStoreError(f"{folder}: architecture, input spec or calibration: {exc}") from exc
    load_weights(network, folder, card)
    network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return UbrModel(card=card, network=network, spec=spec, calibration=calibration)


class ModelCache(ModelFolderCache[UbrModel]):
    def __init__(self) -> None:
        super().__init__(load_model)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PIPELINE_NAME",
    "CalibrationError",
    "ModelCache",
    "UbrModel",
    "load_model",
    "network_scores",
]
