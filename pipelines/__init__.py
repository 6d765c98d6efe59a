"""AI pipelines and the contract the node runs them through.

This package imports neither ``dicom_node`` nor ``training``.
"""

from pipelines.contract import Measurement, Pipeline, PipelineResult, SeriesInput
from pipelines.registry import PipelineRegistry, PipelineUnavailable

__all__ = [
    "Measurement",
    "Pipeline",
    "PipelineRegistry",
    "PipelineResult",
    "PipelineUnavailable",
    "SeriesInput",
]
