"""A trained bone-age model: its folder read (``pipelines.model_store``), its network
built as the card says and ready to predict; ``ModelCache`` keeps the active version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.bone_age.network import ARCHITECTURES, BoneAgeNetwork, build_network
from pipelines.bone_age.preprocess import InputSpec, network_input
from pipelines.model_store import (
    ModelCard,
    ModelFolderCache,
    ModelStoreError,
    load_weights,
    read_pipeline_card,
)

PIPELINE_NAME = "bone_age"


def network_options(architecture: dict[str, Any]) -> dict[str, Any]:
    """The ``BoneAgeNetwork`` keyword arguments a card's ``architecture`` gives."""
    options: dict[str, Any] = {}
    if "attention_channels" in architecture:
        options["attention_channels"] = tuple(int(c) for c in architecture["attention_channels"])
    if "hidden" in architecture:
        options["hidden"] = int(architecture["hidden"])
    if "dropout" in architecture:
        options["dropout"] = float(architecture["dropout"])
    return options


@dataclass(frozen=True, eq=False)
class BoneAgeModel:
    card: ModelCard
    network: BoneAgeNetwork
    spec: InputSpec

    @property
    def architecture(self) -> str:
        return self.network.architecture

    @torch.inference_mode()
    def predict(self, images: np.ndarray, sexes: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(months (N,), attention maps (N, h, w) in [0, 1]) for (N, S, S) uint8 images."""
        batch = network_input(images)
        months, maps = self.network.attend(batch, torch.tensor(sexes, dtype=torch.long))
        return months.float().numpy(), maps[:, 0].float().numpy()


def load_model(folder: Path) -> BoneAgeModel:
    """Read, verify and build the model in ``folder``; ``ModelStoreError`` when unfit."""
    card = read_pipeline_card(folder, PIPELINE_NAME)
    try:
        spec = InputSpec.from_json(card.input_spec)
        name = str(card.architecture.get("name", ""))
        if name not in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is not one of {', '.join(ARCHITECTURES)}")
        network = build_network(name, **network_options(card.architecture))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelStoreError(f"{folder}: architecture or input spec is unusable: {exc}") from exc
    load_weights(network, folder, card)
    return BoneAgeModel(card=card, network=network, spec=spec)


class ModelCache(ModelFolderCache[BoneAgeModel]):
    """The last loaded model, reloaded when the folder or its checksum changes."""

    def __init__(self) -> None:
        super().__init__(load_model)


__all__ = ["PIPELINE_NAME", "BoneAgeModel", "ModelCache", "load_model", "network_options"]
