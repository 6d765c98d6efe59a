"""A trained triage model: its folder read, both modules built, ready to classify.

One model version is one folder (``pipelines.model_store``) holding both modules in one
state dict (``network.TriageNetworks``: ``xray_or_not.*`` and ``xray_type.*``). The card
(``model.json``) carries:

* ``architecture``: ``{"name": "densenet121" | "densenet_tiny", "modules": {"xray_or_not":
  {"classes": ["not_xray", "xray"]}, "xray_type": {"classes": [14 type names]}}}``;
* ``input_spec``: ``preprocess.InputSpec`` (size, channels, 8-bit grey, [−1, 1]);
* ``calibration``: ``xray_threshold`` (module I: the mean P(X-ray) at and above which a
  series is an X-ray) and ``disagreement_threshold`` (module II: the type probability at
  and above which a header naming another type is reported as disagreeing), both
  overridable in the node's ``pipeline_options``.

Inference is eager torch (channels-last, ``torch.inference_mode``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.model_store import ModelCard, ModelStoreError, load_weights, read_pipeline_card
from pipelines.xray_triage.concepts import PIPELINE_NAME
from pipelines.xray_triage.network import (
    MODULE_1_CLASSES,
    MODULE_2_CLASSES,
    PAPER_ARCHITECTURE,
    TriageNetworks,
)
from pipelines.xray_triage.preprocess import InputSpec

#: Module I's threshold of a card without one.
DEFAULT_XRAY_THRESHOLD = 0.5
#: The disagreement threshold of a card without one.
DEFAULT_DISAGREEMENT_THRESHOLD = 0.9
#: Images per forward pass.
DEFAULT_BATCH_SIZE = 8


def architecture_json(architecture: str) -> dict[str, Any]:
    """The card's ``architecture`` for a model of ``architecture``."""
    return {
        "name": architecture,
        "modules": {
            "xray_or_not": {"classes": list(MODULE_1_CLASSES), "paper": "module I"},
            "xray_type": {"classes": list(MODULE_2_CLASSES), "paper": "module II"},
        },
    }


def _probability(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} {value!r} is not a number")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{what} {value!r} is not a probability")
    return number


def card_thresholds(card: ModelCard) -> tuple[float, float]:
    """(module I's X-ray threshold, the disagreement threshold) from the card."""
    calibration = card.calibration
    return (
        _probability(calibration.get("xray_threshold", DEFAULT_XRAY_THRESHOLD), "xray_threshold"),
        _probability(
            calibration.get("disagreement_threshold", DEFAULT_DISAGREEMENT_THRESHOLD),
            "disagreement_threshold",
        ),
    )


def _check_classes(card: ModelCard) -> None:
    modules = card.architecture.get("modules") or {}
    for key, expected in (("xray_or_not", MODULE_1_CLASSES), ("xray_type", MODULE_2_CLASSES)):
        classes = tuple((modules.get(key) or {}).get("classes") or ())
        if classes != expected:
            raise ValueError(f"module {key} has classes {list(classes)}, not {list(expected)}")


@dataclass(frozen=True, eq=False)
class TriageModel:
    """A loaded model: both modules, how to feed them and the card's thresholds."""

    card: ModelCard
    networks: TriageNetworks
    spec: InputSpec
    xray_threshold: float
    disagreement_threshold: float

    @property
    def architecture(self) -> str:
        return str(self.card.architecture.get("name", PAPER_ARCHITECTURE))

    @property
    def type_classes(self) -> tuple[str, ...]:
        return MODULE_2_CLASSES

    @torch.inference_mode()
    def _softmax(self, module: torch.nn.Module, batch: torch.Tensor, batch_size: int) -> np.ndarray:
        out = []
        for start in range(0, len(batch), max(1, batch_size)):
            part = batch[start : start + batch_size].contiguous(memory_format=torch.channels_last)
            out.append(torch.softmax(module(part).float(), dim=1))
        return torch.cat(out).double().numpy() if out else np.zeros((0, 2))

    def xray_probabilities(
        self, batch: torch.Tensor, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> np.ndarray:
        """Module I: P(X-ray) of each (channels, size, size) input of ``batch``."""
        return self._softmax(self.networks.xray_or_not, batch, batch_size)[:, 1]

    def type_probabilities(
        self, batch: torch.Tensor, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> np.ndarray:
        """Module II: (N, 14) softmax over the X-ray types of each input."""
        return self._softmax(self.networks.xray_type, batch, batch_size)


def network_from_card(card: ModelCard) -> TriageNetworks:
    """Both modules ``card`` describes, with fresh weights."""
    spec = InputSpec.from_json(card.input_spec)
    return TriageNetworks(
        str(card.architecture.get("name", PAPER_ARCHITECTURE)), channels=spec.channels
    )


def load_model(folder: Path) -> TriageModel:
    """Read, verify and build the model in ``folder``; ``ModelStoreError`` when it is unfit."""
    card = read_pipeline_card(Path(folder), PIPELINE_NAME)
    try:
        spec = InputSpec.from_json(card.input_spec)
        _check_classes(card)
        networks = network_from_card(card)
        xray_threshold, disagreement_threshold = card_thresholds(card)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelStoreError(f"{folder}: architecture, input spec or thresholds: {exc}") from exc
    load_weights(networks, Path(folder), card)
    networks = networks.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return TriageModel(card, networks, spec, xray_threshold, disagreement_threshold)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DISAGREEMENT_THRESHOLD",
    "DEFAULT_XRAY_THRESHOLD",
    "TriageModel",
    "architecture_json",
    "card_thresholds",
    "load_model",
    "network_from_card",
]
