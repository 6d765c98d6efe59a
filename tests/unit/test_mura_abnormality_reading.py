"""The reading side of ``mura_abnormality``, made faster without changing a value.

``MuraAbnormality.predict_while_reading``: the network runs on the views read so far while
a thread reads the next ones. The views keep the files' order, unreadable and repeated
files are skipped with their reasons as ``read_views`` gives them, no forward pass takes
more than ``batch_size`` views, and the probabilities are those of one batch of them all;
``read_ahead=False`` reads every view first.

``preprocess``: the rounding to 8 bits (NumPy) and the scaling to [−1, 1] (a table) give
exactly what MONAI's ``Resize`` + ``torch.round`` and ``ScaleIntensityRange`` give."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Resize, ScaleIntensityRange

from pipelines import SeriesInput, StudyInput
from pipelines.mura_abnormality import MuraAbnormality
from pipelines.mura_abnormality.model import MuraModel
from pipelines.mura_abnormality.preprocess import InputSpec, from_8bit, resized_8bit
from tests.support.mura import smoke_mura_model
from training.mura_abnormality.train import TrainedModel
from training.synthetic.msk_films import make_msk_study, write_msk_study

VERSION = "smoke-1"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return smoke_mura_model(tmp_path_factory.getbasetemp() / "mura-smoke")


class CountingModel:
    """The model, with the size of each forward pass it is asked for."""

    def __init__(self, model: MuraModel) -> None:
        self.model = model
        self.spec = model.spec
        self.passes: list[int] = []

    def probabilities(self, batch: torch.Tensor, *, batch_size: int = 8) -> np.ndarray:
        self.passes.append(len(batch))
        return self.model.probabilities(batch, batch_size=batch_size)


def test_views_are_predicted_in_order_in_passes_of_at_most_batch_size(
    trained: TrainedModel, tmp_path: Path
) -> None:
    study = make_msk_study(53, region="wrist", views=4, size=160)
    written = write_msk_study(tmp_path / "a", study)
    more = write_msk_study(tmp_path / "b", make_msk_study(54, region="wrist", views=3, size=160))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not DICOM")
    repeated = tmp_path / "again.dcm"
    shutil.copy(written.files[0], repeated)
    files = (*written.files[:2], broken, *written.files[2:], repeated, *more.files)
    series = SeriesInput(
        study_instance_uid=written.study_instance_uid,
        series_instance_uid=written.series_instance_uids[0],
        modality="DX",
        files=files,
        model_version=VERSION,
        model_dir=trained.folder,
    )
    inputs = StudyInput(written.study_instance_uid, (series,), VERSION, trained.folder)
    pipeline = MuraAbnormality(runtime="torch", batch_size=2)
    model = pipeline.model(inputs)
    counting = CountingModel(model)

    views, skipped, batch, probabilities, seconds = pipeline.predict_while_reading(
        inputs,
        counting,  # type: ignore[arg-type]
    )

    expected_order = [*written.sop_instance_uids, *more.sop_instance_uids]
    assert [v.sop_instance_uid for v in views] == expected_order
    assert skipped == pipeline.read_views(inputs)[1]
    assert len(skipped) == 2 and "broken.dcm" in skipped[0] and "seen already" in skipped[1]
    assert sum(counting.passes) == len(expected_order) == len(batch) == len(probabilities)
    assert max(counting.passes) <= 2
    whole = model.probabilities(batch, batch_size=len(batch))
    assert np.allclose(probabilities, whole, atol=1e-6)
    assert seconds["read_preprocess"] > 0.0 and seconds["network"] > 0.0

    serial = MuraAbnormality(runtime="torch", batch_size=2, read_ahead=False)
    counting.passes.clear()
    again = serial.predict_while_reading(inputs, counting)  # type: ignore[arg-type]
    assert [v.sop_instance_uid for v in again[0]] == expected_order and again[1] == skipped
    assert counting.passes == [2, 2, 2, 1]  # every view read first, then full batches
    assert np.allclose(again[3], probabilities, atol=1e-6)
    with pytest.raises(ValueError, match="read_ahead"):
        MuraAbnormality(read_ahead="yes")  # type: ignore[arg-type]


def monai_resized_8bit(display: np.ndarray, size: int) -> np.ndarray:
    """Steps 1–2 all in torch, as MONAI's transforms and ``torch.round`` give them."""
    scale = {np.dtype(np.uint16): 255.0 / 65535.0, np.dtype(np.uint8): 1.0}.get(
        display.dtype, 255.0
    )
    image = torch.from_numpy(np.ascontiguousarray(display, dtype=np.float32))[None]
    resized = torch.as_tensor(Resize(spatial_size=(size, size), mode="area")(image))[0]
    return torch.round(resized * scale).clamp_(0.0, 255.0).to(torch.uint8).numpy()


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.float32])
def test_the_8_bit_images_are_exactly_monais(dtype: type) -> None:
    rng = np.random.default_rng(7)
    for _ in range(12):
        rows, columns = (int(n) for n in rng.integers(40, 700, 2))
        if dtype is np.float32:
            display = rng.random((rows, columns), dtype=np.float32)
        else:
            top = np.iinfo(dtype).max  # type: ignore[type-var]
            display = rng.integers(0, top + 1, (rows, columns)).astype(dtype)
        size = int(rng.integers(32, 300))
        assert np.array_equal(resized_8bit(display, size), monai_resized_8bit(display, size))


def test_every_level_scales_exactly_as_monai_does() -> None:
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    images = np.stack([np.tile(levels, (2, 2)), np.tile(levels.T, (2, 2))])
    spec = InputSpec(size=32)
    transform = ScaleIntensityRange(a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0, dtype=np.float32)
    expected = torch.as_tensor(transform(torch.from_numpy(images).float()))
    expected = expected[:, None].expand(-1, 3, -1, -1)
    for given in (images, torch.from_numpy(images), torch.from_numpy(images).float()):
        scaled = from_8bit(given, spec)
        assert scaled.dtype == torch.float32 and scaled.is_contiguous()
        assert torch.equal(scaled, expected.as_subclass(torch.Tensor))
