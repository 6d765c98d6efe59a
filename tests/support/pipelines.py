"""Pipelines used only by the tests (never shipped): they exercise the worker and queue."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pydicom

from dicom_node.errors import Retry
from pipelines import Measurement, PipelineResult, SeriesInput


class SeriesStats:
    """Counts the instances and reads each file's header: a cheap, real pipeline."""

    name = "series_stats"

    def run(self, series: SeriesInput) -> PipelineResult:
        rows = [int(pydicom.dcmread(p, stop_before_pixels=True).get("Rows", 0)) for p in series.files]
        return PipelineResult(
            pipeline=self.name,
            model_version=series.model_version,
            summary={"instances": len(series.files), "modality": series.modality},
            measurements=(
                Measurement("instance count", float(len(series.files)), "{instances}"),
                Measurement("max rows", float(max(rows, default=0)), "{pixels}"),
            ),
        )


class Sleepy:
    """Sleeps while holding its job; writes a marker file per attempt so tests can wait for it.

    A file ``SLEEPY_MARKER_DIR/fast`` makes later attempts return at once (a worker's
    environment is fixed when it starts, so this is how a test shortens a rerun).
    """

    name = "sleepy"

    def run(self, series: SeriesInput) -> PipelineResult:
        marker_dir = Path(os.environ["SLEEPY_MARKER_DIR"])
        marker_dir.mkdir(parents=True, exist_ok=True)
        (marker_dir / f"{series.series_instance_uid}.{os.getpid()}").write_text("started")
        if not (marker_dir / "fast").exists():
            time.sleep(float(os.environ.get("SLEEPY_SECONDS", "30")))
        return PipelineResult(pipeline=self.name, model_version=series.model_version, summary={"slept": True})


class AlwaysRetry:
    """Fails with a transient error every time."""

    name = "always_retry"

    def run(self, series: SeriesInput) -> PipelineResult:
        raise Retry("transient failure for the test", defer=0)


class Broken:
    """Raises an unexpected error."""

    name = "broken"

    def run(self, series: SeriesInput) -> PipelineResult:
        raise RuntimeError("pipeline bug for the test")
