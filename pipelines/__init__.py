"""AI pipelines and the contract the node runs them through.

This package imports neither ``dicom_node`` nor ``training``.
"""

from pipelines.contract import (
    Code,
    DerivedImage,
    DerivedImageKind,
    Finding,
    KeyObjectSelection,
    Measurement,
    ModelIdentity,
    Pipeline,
    PipelineResult,
    PipelineScope,
    PresentationTransform,
    SeriesInput,
    StudyInput,
    StudyPipeline,
    UpstreamResult,
    pipeline_scope,
)
from pipelines.registry import PipelineRegistry, PipelineUnavailable

__all__ = [
    "Code",
    "DerivedImage",
    "DerivedImageKind",
    "Finding",
    "KeyObjectSelection",
    "Measurement",
    "ModelIdentity",
    "Pipeline",
    "PipelineRegistry",
    "PipelineResult",
    "PipelineScope",
    "PipelineUnavailable",
    "PresentationTransform",
    "SeriesInput",
    "StudyInput",
    "UpstreamResult",
    "StudyPipeline",
    "pipeline_scope",
]
