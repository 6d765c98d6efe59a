"""A trained MURA model: its folder read, its network built, ready to give probabilities
and Grad-CAM heat maps.

The card (``model.json``) gives the architecture (``{"name": "densenet169" | "densenet121"
| "densenet_small", "head": [512, 128], "dropout": 0.2}``), the input spec
(``preprocess.InputSpec``) and, in ``calibration``, the decision ``threshold`` on the study
probability that training chose on validation studies.

The probabilities run in one of two runtimes, chosen when the model is loaded: ``"torch"``
(eager, channels-last, ``torch.inference_mode``), ``"onnxruntime"`` (the network exported
to ONNX in memory and run by ONNX Runtime's CPU provider; used only when its
probabilities agree with torch's within ``AGREEMENT_TOLERANCE`` on fixed inputs) or
``"auto"`` (ONNX Runtime where it agrees and measures faster at load). Grad-CAM needs
gradients, so heat maps always come from eager torch (``heatmap.GradCamMaps``).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.model_store import ModelCard, ModelStoreError, load_weights, read_pipeline_card
from pipelines.mura_abnormality.concepts import PIPELINE_NAME, RUNTIMES, Runtime
from pipelines.mura_abnormality.heatmap import GradCamMaps
from pipelines.mura_abnormality.network import (
    DEFAULT_HEAD,
    HEAD_DROPOUT,
    PAPER_ARCHITECTURE,
    build_network,
)
from pipelines.mura_abnormality.preprocess import InputSpec
from pipelines.onnx_runtime import OnnxNetwork, export_onnx

logger = logging.getLogger(__name__)

#: The threshold of a model whose card has none.
DEFAULT_THRESHOLD = 0.5
#: Views per forward pass.
DEFAULT_BATCH_SIZE = 8

#: Largest accepted |p_torch − p_onnxruntime| on the fixed agreement inputs.
AGREEMENT_TOLERANCE = 1e-4
AGREEMENT_SAMPLES = 4
AUTO_TIMING_RUNS = 3


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64))))


@dataclass(frozen=True, eq=False)
class MuraModel:
    """A loaded model. ``onnx`` is set when the probabilities run under ONNX Runtime."""

    card: ModelCard
    network: nn.Module
    spec: InputSpec
    threshold: float
    heat: GradCamMaps
    onnx: OnnxNetwork | None = None

    @property
    def architecture(self) -> str:
        return str(self.card.architecture.get("name", PAPER_ARCHITECTURE))

    @property
    def runtime(self) -> str:
        return "torch" if self.onnx is None else "onnxruntime"

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """The "abnormal" logit of each (channels, size, size) input of ``batch``."""
        out = []
        for start in range(0, len(batch), max(1, batch_size)):
            part = batch[start : start + batch_size]
            if self.onnx is not None:
                out.append(self.onnx(part).float().reshape(-1))
            else:
                part = part.contiguous(memory_format=torch.channels_last)
                out.append(self.network(part).float().reshape(-1))
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def probabilities(
        self, batch: torch.Tensor, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> np.ndarray:
        """P(abnormal) of each view of ``batch``."""
        return sigmoid(self.logits(batch, batch_size=batch_size))

    def heat_maps(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM maps (N, size, size) in [0, 1] and eager torch's probabilities."""
        maps, logits = self.heat(batch)
        return maps, sigmoid(logits)


def card_threshold(card: ModelCard) -> float:
    value = card.calibration.get("threshold", DEFAULT_THRESHOLD)
    threshold = float(value)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {value!r} is not a probability")
    return threshold


def network_from_card(card: ModelCard) -> nn.Module:
    """The network ``card`` describes, with fresh weights."""
    architecture = card.architecture
    spec = InputSpec.from_json(card.input_spec)
    return build_network(
        str(architecture.get("name", PAPER_ARCHITECTURE)),
        channels=spec.channels,
        head=tuple(int(h) for h in architecture.get("head", DEFAULT_HEAD)),
        dropout=float(architecture.get("dropout", HEAD_DROPOUT)),
    )


def load_model(folder: Path, *, runtime: Runtime = "torch") -> MuraModel:
    """Read, verify and build the model in ``folder``; ``ModelStoreError`` when it is unfit."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    card = read_pipeline_card(folder, PIPELINE_NAME)
    try:
        spec = InputSpec.from_json(card.input_spec)
        network = network_from_card(card)
        threshold = card_threshold(card)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelStoreError(f"{folder}: architecture, input spec or threshold: {exc}") from exc
    load_weights(network, folder, card)
    heat = GradCamMaps(network)
    network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model = MuraModel(card=card, network=network, spec=spec, threshold=threshold, heat=heat)
    return model if runtime == "torch" else with_runtime(model, runtime)


def agreement_inputs(spec: InputSpec, samples: int = AGREEMENT_SAMPLES) -> torch.Tensor:
    """Fixed inputs in [−1, 1] (seeded) on which both runtimes must agree."""
    generator = torch.Generator().manual_seed(20250000 + spec.size)
    return torch.rand(samples, spec.channels, spec.size, spec.size, generator=generator) * 2 - 1


def with_runtime(model: MuraModel, runtime: Runtime) -> MuraModel:
    """``model`` with its probabilities under ``runtime``, or under torch where that cannot
    be used (ONNX Runtime missing, the export failing, or the two disagreeing)."""
    if runtime == "torch":
        return replace(model, onnx=None)
    label = f"{PIPELINE_NAME} model {model.card.version}"
    spec = model.spec
    try:
        exported = export_onnx(model.network, torch.zeros(1, spec.channels, spec.size, spec.size))
        onnx = OnnxNetwork(exported, threads=torch.get_num_threads())
    except ImportError as exc:
        logger.warning("%s: ONNX Runtime is not available (%s); running on torch", label, exc)
        return replace(model, onnx=None)
    except Exception as exc:  # noqa: BLE001  # exporter and ORT raise many types; logged
        logger.warning("%s: the ONNX export failed (%s); running on torch", label, exc)
        return replace(model, onnx=None)
    candidate = replace(model, onnx=onnx)
    inputs = agreement_inputs(spec)
    difference = float(
        np.abs(
            candidate.probabilities(inputs) - replace(model, onnx=None).probabilities(inputs)
        ).max()
    )
    if difference > AGREEMENT_TOLERANCE:
        logger.warning(
            "%s: ONNX Runtime disagrees with torch (max |Δp| %.3g); running on torch",
            label,
            difference,
        )
        return replace(model, onnx=None)
    if runtime == "auto":
        torch_ms = time_runtime(replace(model, onnx=None))
        onnx_ms = time_runtime(candidate)
        logger.info("%s: torch %.1f ms, ONNX Runtime %.1f ms per view", label, torch_ms, onnx_ms)
        if torch_ms <= onnx_ms:
            return replace(model, onnx=None)
    logger.info("%s runs on ONNX Runtime (max |Δp| to torch %.2g)", label, difference)
    return candidate


def time_runtime(model: MuraModel, *, runs: int = AUTO_TIMING_RUNS) -> float:
    """Median milliseconds of one view's probability, after one warm-up run."""
    batch = agreement_inputs(model.spec, 1)
    model.logits(batch)
    times = []
    for _ in range(max(1, runs)):
        started = time.perf_counter()
        model.logits(batch)
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


__all__ = [
    "AGREEMENT_TOLERANCE",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_THRESHOLD",
    "PIPELINE_NAME",
    "RUNTIMES",
    "MuraModel",
    "Runtime",
    "card_threshold",
    "load_model",
    "network_from_card",
    "sigmoid",
    "time_runtime",
    "with_runtime",
]
