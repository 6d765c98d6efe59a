"""The orientation network under ONNX Runtime: exported at load, checked against torch.

The models are real folders holding a ResNet-10 with seeded random weights (a random
network's outputs vary from film to film, so agreement is tested on real numbers, not on
a constant), fed films of the small test input spec.
"""

from __future__ import annotations

import logging
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import SeriesInput
from pipelines.hand_orientation import HandOrientation
from pipelines.hand_orientation.angles import angular_error
from pipelines.hand_orientation.model import (
    ANGLE_TOLERANCE_DEG,
    OnnxNetwork,
    load_model,
    runtime_agreement,
)
from pipelines.hand_orientation.network import build_network
from pipelines.hand_orientation.preprocess import network_input
from pipelines.model_store import WEIGHTS_FILE, ModelCard, file_sha256, write_model_card
from tests.support.datasets import synthetic_dx
from tests.support.models import SMALL_SPEC, write_constant_orientation_model

pytest.importorskip("onnxruntime")


def random_model(folder: Path, seed: int = 7) -> Path:
    """A ResNet-10 model folder with seeded random weights (outputs differ per film)."""
    torch.manual_seed(seed)
    network = build_network("resnet10")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / WEIGHTS_FILE)
    write_model_card(
        folder,
        ModelCard(
            pipeline="hand_orientation",
            version="random-1",
            created=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
            architecture={"name": "resnet10"},
            input_spec=SMALL_SPEC.to_json(),
            weights_sha256=file_sha256(folder / WEIGHTS_FILE),
        ),
    )
    return folder


def films(count: int, seed: int = 3) -> list[np.ndarray]:
    """Display images with structure (a bright bar at a random angle on noise)."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:180, 0:150]
    images = []
    for _ in range(count):
        angle = rng.uniform(0, 2 * math.pi)
        distance = (columns - 75) * math.sin(angle) - (rows - 90) * math.cos(angle)
        image = rng.normal(12000, 3000, (180, 150)) + 40000 * (np.abs(distance) < 12)
        images.append(np.clip(image, 0, 65535).astype(np.uint16))
    return images


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_onnx_runtime_agrees_with_torch_film_by_film(tmp_path: Path) -> None:
    folder = random_model(tmp_path / "model")
    before = folder_state(folder)
    eager = load_model(folder)
    onnx = load_model(folder, runtime="onnxruntime")
    assert eager.runtime == "torch" and onnx.runtime == "onnxruntime"
    displays = films(6)
    expected = eager.predict_degrees(displays)
    found = onnx.predict_degrees(displays)  # one batch of six: the batch size is free
    assert len(set(round(v) for v in expected)) > 1  # a real, film-dependent output
    errors = angular_error(torch.tensor(found), torch.tensor(expected)).abs()
    assert float(errors.max()) <= ANGLE_TOLERANCE_DEG
    # One film at a time gives the same angles as the batch.
    assert onnx.predict_degrees(displays[:1]) == pytest.approx(found[:1], abs=1e-3)
    # The raw outputs agree closely, not just the angles.
    inputs = torch.stack([network_input(d, eager.spec) for d in displays])
    difference = (onnx.outputs(inputs) - eager.outputs(inputs)).abs().max()
    assert float(difference) <= 1e-3 * max(1.0, float(eager.outputs(inputs).abs().max()))
    # The model folder is left exactly as it was: nothing cached inside it.
    assert folder_state(folder) == before


def test_the_agreement_check_reports_the_differences(tmp_path: Path) -> None:
    model = load_model(random_model(tmp_path / "model"), runtime="onnxruntime")
    assert model.onnx is not None
    agreement = runtime_agreement(model.network, model.onnx, model.spec)
    assert agreement.agrees
    assert agreement.max_abs_output < 1e-3 * max(1.0, agreement.output_scale)
    assert agreement.max_angle_deg < ANGLE_TOLERANCE_DEG


def test_a_disagreeing_export_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = OnnxNetwork.__call__

    def off_by_a_bit(self: OnnxNetwork, batch: torch.Tensor) -> torch.Tensor:
        output = original(self, batch)
        return output + 0.05 * output.abs().max()

    monkeypatch.setattr(OnnxNetwork, "__call__", off_by_a_bit)
    with caplog.at_level(logging.WARNING, logger="pipelines.hand_orientation.model"):
        model = load_model(random_model(tmp_path / "model"), runtime="onnxruntime")
    assert model.runtime == "torch" and model.onnx is None
    assert "disagrees with torch" in caplog.text


def test_without_onnxruntime_the_model_runs_on_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with caplog.at_level(logging.WARNING, logger="pipelines.hand_orientation.model"):
        model = load_model(random_model(tmp_path / "model"), runtime="auto")
    assert model.runtime == "torch"
    assert "not available" in caplog.text
    assert len(model.predict_degrees(films(1))) == 1


def test_auto_picks_one_runtime_and_predicts_the_same(tmp_path: Path) -> None:
    folder = random_model(tmp_path / "model")
    auto = load_model(folder, runtime="auto")
    assert auto.runtime in ("torch", "onnxruntime")
    displays = films(3, seed=11)
    expected = load_model(folder).predict_degrees(displays)
    errors = angular_error(torch.tensor(auto.predict_degrees(displays)), torch.tensor(expected))
    assert float(errors.abs().max()) <= ANGLE_TOLERANCE_DEG


def test_unknown_runtimes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runtime"):
        HandOrientation(runtime="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="runtime"):
        load_model(random_model(tmp_path / "model"), runtime="tensorrt")  # type: ignore[arg-type]


@pytest.mark.parametrize("angle", [0.0, 50.0])
def test_the_pipeline_gives_the_same_result_on_either_runtime(tmp_path: Path, angle: float) -> None:
    folder = tmp_path / "models" / "const-1"
    write_constant_orientation_model(folder, angle)
    ds = synthetic_dx(1)
    path = tmp_path / "film1.dcm"
    ds.save_as(path, enforce_file_format=True)
    series = SeriesInput(
        study_instance_uid=str(ds.StudyInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        modality="DX",
        files=(path,),
        model_version="const-1",
        model_dir=folder,
    )
    on_torch = HandOrientation().run(series)
    pipeline = HandOrientation(runtime="onnxruntime")
    on_onnx = pipeline.run(series)
    assert pipeline.model(series).runtime == "onnxruntime"
    assert [m.value for m in on_onnx.measurements] == [m.value for m in on_torch.measurements]
    assert len(on_onnx.derived_images) == len(on_torch.derived_images)
    for ours, theirs in zip(on_onnx.derived_images, on_torch.derived_images, strict=True):
        assert np.array_equal(ours.pixels, theirs.pixels)
