"""AI pipelines and the contract the node runs them through.

This package imports neither ``dicom_node`` nor ``training``.
"""

from pipelines.contract import (
    Code,
    DerivedImage,
    DerivedImageKind,
    Finding,
    Measurement,
    ModelIdentity,
    Pipeline,
    PipelineResult,
    PresentationTransform,
    SeriesInput,
)
from pipelines.registry import PipelineRegistry, PipelineUnavailable

__all__ = [
    "Code",
    "DerivedImage",
    "DerivedImageKind",
    "Finding",
    "Measurement",
    "ModelIdentity",
    "Pipeline",
    "PipelineRegistry",
    "PipelineResult",
    "PipelineUnavailable",
    "PresentationTransform",
    "SeriesInput",
]
