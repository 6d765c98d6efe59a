"""What the ``mura_abnormality`` tests share: a smoke-trained model and written studies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines import SeriesInput, StudyInput

if TYPE_CHECKING:
    from training.mura_abnormality.train import TrainedModel
    from training.synthetic.msk_films import WrittenMskStudy

_SMOKE_MODELS: dict[str, TrainedModel] = {}


def smoke_mura_model(root: Path) -> TrainedModel:
    """A ``mura_abnormality`` model trained with the ``smoke`` preset (the tiny DenseNet at
    64 pixels on matched pairs of synthetic studies with hardware; about 25 s on 2 cores),
    trained once per test process. ``root`` is a session-wide folder (``tmp_path_factory``).
    """
    key = str(root)
    if key not in _SMOKE_MODELS:
        from training.mura_abnormality.train import preset, train_mura

        config = preset("smoke", out_dir=root, progress=False, version="smoke-1")
        _SMOKE_MODELS[key] = train_mura(config)
    return _SMOKE_MODELS[key]


def study_input(written: WrittenMskStudy, model_dir: Path | None, version: str) -> StudyInput:
    """The node's view of a written synthetic study: its series in order, each with its files."""
    import pydicom

    by_series: dict[str, list[Path]] = {}
    for path in written.files:
        series = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
        by_series.setdefault(series, []).append(path)
    return StudyInput(
        study_instance_uid=written.study_instance_uid,
        series=tuple(
            SeriesInput(
                study_instance_uid=written.study_instance_uid,
                series_instance_uid=series,
                modality="DX",
                files=tuple(files),
                model_version=version,
                model_dir=model_dir,
            )
            for series, files in by_series.items()
        ),
        model_version=version,
        model_dir=model_dir,
    )
