"""Hand films and hand_orientation results for the bone_age tests.

``write_film`` writes a DX film (``tests.support.datasets.synthetic_dx``) with the given
pixels, sex and dates; ``orientation_upstream`` runs the real hand_orientation pipeline
with a constant model on a film and encodes its result as the node does, giving the
``UpstreamResult`` bone_age gets in ``series.after`` (its SC files written to disk).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from pydicom import Dataset

from pipelines import SeriesInput
from pipelines.contract import UpstreamResult
from pipelines.hand_orientation import HandOrientation
from tests.support.datasets import set_monochrome_pixels, synthetic_dx
from tests.support.models import write_constant_orientation_model
from tests.support.output import encode_and_write

UNSET = object()


def to_12_bit(image: np.ndarray) -> np.ndarray:
    """A float [0, 1] (or uint16) film as 12-bit stored values."""
    if image.dtype == np.uint16:
        return image
    return np.rint(np.clip(image, 0.0, 1.0) * 4095.0).astype(np.uint16)


def write_film(
    path: Path,
    pixels: np.ndarray,
    *,
    index: int = 1,
    sex: object = "F",
    birth_date: object = "20150704",
    study_date: object = "20260301",
) -> Dataset:
    """A DX film of ``pixels`` (12-bit values); ``None`` leaves an attribute out."""
    stored = np.ascontiguousarray(to_12_bit(pixels))
    ds = synthetic_dx(index, rows=stored.shape[0], columns=stored.shape[1])
    set_monochrome_pixels(ds, stored.shape[0], stored.shape[1], bits_stored=12, pixels=stored)
    for keyword, value in (
        ("PatientSex", sex),
        ("PatientBirthDate", birth_date),
        ("StudyDate", study_date),
    ):
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if "PatientAge" in ds:
        del ds.PatientAge
    ds.save_as(path, enforce_file_format=True)
    return ds


def series_of(
    datasets: list[Dataset],
    files: list[Path],
    model_dir: Path | None,
    version: str = "seeded-1",
    after: UpstreamResult | None = None,
) -> SeriesInput:
    return SeriesInput(
        study_instance_uid=str(datasets[0].StudyInstanceUID),
        series_instance_uid=str(datasets[0].SeriesInstanceUID),
        modality="DX",
        files=tuple(files),
        model_version=version,
        model_dir=model_dir,
        after=after,
    )


def orientation_upstream(
    tmp_path: Path,
    datasets: list[Dataset],
    files: list[Path],
    angle_deg: float,
    *,
    gsps: str = "beside",
) -> UpstreamResult:
    """hand_orientation's result on the films (a model that finds every film at
    ``angle_deg``), encoded and written as the node does: its SC files are the
    ``derived_files``."""
    folder = tmp_path / "hand_orientation_model"
    write_constant_orientation_model(folder, angle_deg)
    pipeline = HandOrientation(gsps=gsps)  # type: ignore[arg-type]
    series = replace(series_of(datasets, files, folder, "const-1"))
    result = pipeline.run(series)
    written = encode_and_write(result, datasets, tmp_path / "hand_orientation_out")
    derived = tuple(path for output, path in written if output.kind == "sc")
    return UpstreamResult(
        pipeline="hand_orientation",
        state="done",
        model_version="const-1",
        summary=result.summary,
        derived_files=derived,
    )
