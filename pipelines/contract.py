"""The pipeline contract: what a pipeline is given and what it must return.

A pipeline is any object with a ``name`` and a ``run(series) -> PipelineResult``
method; ``isinstance(obj, Pipeline)`` checks it at load time. Encoding results as
DICOM belongs to ``dicom_node``, not to the pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class SeriesInput:
    """One series, as stored by the node, ready for a pipeline."""

    study_instance_uid: str
    series_instance_uid: str
    modality: str | None
    files: tuple[Path, ...]  # Part 10 files, in InstanceNumber order (geometry is the pipeline's)
    model_version: str
    model_dir: Path | None = None  # the active model's folder, when the pipeline has one


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float
    unit: str  # UCUM
    concept_code: str | None = None  # "scheme:value", e.g. "SCT:123456"
    tracking_uid: str | None = None  # the source instance it belongs to, if any
    slice_index: int | None = None


@dataclass(frozen=True)
class PipelineResult:
    pipeline: str
    model_version: str
    summary: dict[str, object] = field(default_factory=dict)
    measurements: tuple[Measurement, ...] = ()


@runtime_checkable
class Pipeline(Protocol):
    name: str

    def run(self, series: SeriesInput) -> PipelineResult: ...
