"""A trained orientation model: its folder read, its network built and ready to predict.

The network runs in one of two runtimes, chosen when the model is loaded:

``"torch"`` (default)
    the network itself (a MONAI ResNet or the VGG16 of ``network``, as ``model.json``'s
    architecture says), eager, channels-last, under ``torch.inference_mode``.
``"onnxruntime"``
    the same network exported to ONNX in memory when the model is loaded (torch's
    TorchScript-based exporter; a few seconds for ResNet-50) and run by ONNX Runtime's
    CPU provider with as many threads as torch uses. Nothing is written, the model
    folder least of all. Before it is used, its outputs are compared with torch's on
    ``AGREEMENT_SAMPLES`` fixed inputs: a difference above ``AGREEMENT_TOLERANCE``
    (relative to the outputs' size) or an angle more than ``ANGLE_TOLERANCE_DEG`` apart
    keeps the model on torch, with a warning, as does onnxruntime not being installed
    or the export failing.
``"auto"``
    ONNX Runtime where it agrees with torch and is faster on this machine: both are
    timed on one film-sized input (``AUTO_TIMING_RUNS`` runs each, median) at load.

On the benchmark machine (2 CPU cores, ``benchmarks/orientation.py``) ResNet-50 took
about 50 ms per film eager, 48 ms ``torch.compile``d and 29 ms under ONNX Runtime, within
the whole path; the outputs agreed to 2e-5 (angles to 3e-5°).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from pipelines.hand_orientation.angles import angular_error, output_to_degrees
from pipelines.hand_orientation.network import build_network
from pipelines.hand_orientation.preprocess import InputSpec, network_input
from pipelines.model_store import (
    ModelCard,
    ModelFolderCache,
    ModelStoreError,
    load_weights,
    read_pipeline_card,
)
from pipelines.onnx_runtime import OnnxNetwork
from pipelines.onnx_runtime import export_onnx as export_network

logger = logging.getLogger(__name__)

PIPELINE_NAME = "hand_orientation"

Runtime = Literal["torch", "onnxruntime", "auto"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
#: Fixed inputs both runtimes are fed at load to check that they agree.
AGREEMENT_SAMPLES = 4
#: Largest accepted |torch − ONNX Runtime| of the outputs, relative to max(1, |output|).
AGREEMENT_TOLERANCE = 1e-3
#: Largest accepted difference of the angles read from the two runtimes' outputs.
ANGLE_TOLERANCE_DEG = 0.01
#: Timed runs per runtime when ``runtime="auto"`` chooses (after one warm-up run).
AUTO_TIMING_RUNS = 5


@dataclass(frozen=True)
class RuntimeAgreement:
    """How far ONNX Runtime's outputs are from torch's on the same inputs."""

    max_abs_output: float  # max |Δ| over both outputs (cos, sin) of every sample
    output_scale: float  # max |output| of torch, the scale the tolerance is relative to
    max_angle_deg: float  # max |Δθ| of the angles read from the outputs

    @property
    def agrees(self) -> bool:
        relative = self.max_abs_output / max(1.0, self.output_scale)
        return relative <= AGREEMENT_TOLERANCE and self.max_angle_deg <= ANGLE_TOLERANCE_DEG


@dataclass(frozen=True, eq=False)
class OrientationModel:
    """A loaded model. ``onnx`` is set when the network runs under ONNX Runtime."""

    card: ModelCard
    network: torch.nn.Module
    spec: InputSpec
    onnx: OnnxNetwork | None = None

    @property
    def architecture(self) -> str:
        return str(self.card.architecture.get("name", "resnet50"))

    @property
    def runtime(self) -> str:
        """The runtime that predicts: ``"torch"`` or ``"onnxruntime"``."""
        return "torch" if self.onnx is None else "onnxruntime"

    @torch.inference_mode()
    def predict_degrees(self, displays: list[np.ndarray]) -> list[float]:
        """θ in [0°, 360°) for each display image (``pipelines.film_io``)."""
        if not displays:
            return []
        batch = torch.stack([network_input(display, self.spec) for display in displays])
        return self.predict_batch(batch)

    @torch.inference_mode()
    def predict_batch(self, batch: torch.Tensor) -> list[float]:
        """θ for an already preprocessed (N, 3, crop, crop) batch."""
        return [float(v) for v in output_to_degrees(self.outputs(batch).float())]

    @torch.inference_mode()
    def outputs(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's raw (N, 2) output, (cos θ, sin θ) up to scale, in this runtime."""
        if self.onnx is not None:
            return self.onnx(batch)
        return self.network(batch.contiguous(memory_format=torch.channels_last))


def load_model(folder: Path, *, runtime: Runtime = "torch") -> OrientationModel:
    """Read, verify and build the model in ``folder``; ``ModelStoreError`` when it is unfit.

    ``runtime`` is where the network runs (see the module's description); a runtime
    that cannot be used leaves the model on torch, with a logged warning.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    card = read_pipeline_card(folder, PIPELINE_NAME)
    try:
        spec = InputSpec.from_json(card.input_spec)
        network = build_network(str(card.architecture.get("name", "resnet50")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelStoreError(f"{folder}: architecture or input spec is unusable: {exc}") from exc
    load_weights(network, folder, card)
    # torch's stubs lack Module.to's memory_format keyword.
    network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model = OrientationModel(card=card, network=network, spec=spec)
    if runtime == "torch":
        return model
    return with_runtime(model, runtime)


def with_runtime(model: OrientationModel, runtime: Runtime) -> OrientationModel:
    """``model`` running under ``runtime``, or under torch where that cannot be used."""
    if runtime == "torch":
        return OrientationModel(card=model.card, network=model.network, spec=model.spec)
    label = f"{PIPELINE_NAME} model {model.card.version}"
    try:
        onnx = OnnxNetwork(export_onnx(model.network, model.spec), threads=torch.get_num_threads())
    except ImportError as exc:
        logger.warning("%s: ONNX Runtime is not available (%s); running on torch", label, exc)
        return with_runtime(model, "torch")
    except Exception as exc:  # noqa: BLE001  # exporter and ORT raise many types; logged
        logger.warning("%s: the ONNX export failed (%s); running on torch", label, exc)
        return with_runtime(model, "torch")
    candidate = OrientationModel(card=model.card, network=model.network, spec=model.spec, onnx=onnx)
    agreement = runtime_agreement(model.network, onnx, model.spec)
    if not agreement.agrees:
        logger.warning(
            "%s: ONNX Runtime disagrees with torch (max |Δ| %.3g of outputs up to %.3g, "
            "max Δθ %.3g°); running on torch",
            label,
            agreement.max_abs_output,
            agreement.output_scale,
            agreement.max_angle_deg,
        )
        return with_runtime(model, "torch")
    if runtime == "auto":
        torch_ms = time_runtime(model, runs=AUTO_TIMING_RUNS)
        onnx_ms = time_runtime(candidate, runs=AUTO_TIMING_RUNS)
        logger.info("%s: torch %.1f ms, ONNX Runtime %.1f ms per film", label, torch_ms, onnx_ms)
        if torch_ms <= onnx_ms:
            return with_runtime(model, "torch")
    logger.info(
        "%s runs on ONNX Runtime (max |Δ| to torch %.2g, max Δθ %.2g°)",
        label,
        agreement.max_abs_output,
        agreement.max_angle_deg,
    )
    return candidate


def export_onnx(network: torch.nn.Module, spec: InputSpec) -> bytes:
    """``network`` (in eval mode) as an ONNX model with a variable batch size, in memory."""
    return export_network(network, torch.zeros(1, 3, spec.crop, spec.crop))


def agreement_inputs(spec: InputSpec, samples: int = AGREEMENT_SAMPLES) -> torch.Tensor:
    """Fixed (samples, 3, crop, crop) inputs: seeded normal noise, as normalised films are."""
    generator = torch.Generator().manual_seed(20240000 + spec.crop)
    return torch.randn(samples, 3, spec.crop, spec.crop, generator=generator)


def runtime_agreement(
    network: torch.nn.Module, onnx: OnnxNetwork, spec: InputSpec, inputs: torch.Tensor | None = None
) -> RuntimeAgreement:
    """Compare torch's and ONNX Runtime's outputs on ``inputs`` (default: ``agreement_inputs``)."""
    batch = agreement_inputs(spec) if inputs is None else inputs
    with torch.inference_mode():
        reference = network(batch.contiguous(memory_format=torch.channels_last)).float()
    other = onnx(batch).float()
    difference = angular_error(output_to_degrees(other), output_to_degrees(reference))
    return RuntimeAgreement(
        max_abs_output=float((other - reference).abs().max()),
        output_scale=float(reference.abs().max()),
        max_angle_deg=float(difference.abs().max()),
    )


def time_runtime(model: OrientationModel, *, runs: int, batch_size: int = 1) -> float:
    """Median milliseconds of ``model.outputs`` on one batch, after one warm-up run."""
    batch = agreement_inputs(model.spec, batch_size)
    model.outputs(batch)
    times = []
    for _ in range(max(1, runs)):
        started = time.perf_counter()
        model.outputs(batch)
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


class ModelCache(ModelFolderCache[OrientationModel]):
    """The last loaded model, reloaded when the folder or its checksum changes."""

    def __init__(self, runtime: Runtime = "torch") -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.runtime: Runtime = runtime
        super().__init__(lambda folder: load_model(folder, runtime=self.runtime))


__all__ = [
    "AGREEMENT_TOLERANCE",
    "ANGLE_TOLERANCE_DEG",
    "RUNTIMES",
    "ModelCache",
    "OnnxNetwork",
    "OrientationModel",
    "Runtime",
    "RuntimeAgreement",
    "export_onnx",
    "load_model",
    "runtime_agreement",
    "time_runtime",
    "with_runtime",
]
