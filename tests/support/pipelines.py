"""Pipelines used only by the tests (never shipped): they exercise the worker and queue."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pydicom

from dicom_node.errors import Retry
from pipelines import (
    Code,
    DerivedImage,
    Finding,
    Measurement,
    ModelIdentity,
    PipelineResult,
    SeriesInput,
    StudyInput,
)

# Coded concepts of the demo result (standard codes: DCM, SCT, NCIt).
ANGLE = Code("110859", "DCM", "Angle")
SCORE = Code("246262008", "SCT", "Score")
ABNORMALITY = Code("C9440", "NCIt", "Abnormality")
PRESENT = Code("52101004", "SCT", "Present")


class SeriesStats:
    """Counts the instances and reads each file's header: a cheap, real pipeline."""

    name = "series_stats"

    def run(self, series: SeriesInput) -> PipelineResult:
        rows = [
            int(pydicom.dcmread(p, stop_before_pixels=True).get("Rows", 0)) for p in series.files
        ]
        return PipelineResult(
            pipeline=self.name,
            model_version=series.model_version,
            summary={"instances": len(series.files), "modality": series.modality},
            measurements=(
                Measurement("instance count", float(len(series.files)), "{instances}"),
                Measurement("max rows", float(max(rows, default=0)), "{pixels}"),
            ),
        )


class StudyStats:
    """A study-scoped pipeline: one result over every routed series of a study, with a
    measurement per view (referencing it) and a finding for the study."""

    name = "study_stats"
    scope = "study"

    def run(self, study: StudyInput) -> PipelineResult:
        uids = [
            str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in study.files
        ]
        return PipelineResult(
            pipeline=self.name,
            model_version=study.model_version,
            summary={
                "series": [s.series_instance_uid for s in study.series],
                "instances": len(study.files),
            },
            measurements=(
                Measurement("instance count", float(len(study.files)), "{instances}"),
                *(
                    Measurement("view index", float(index), "1", tracking_uid=uid)
                    for index, uid in enumerate(uids)
                ),
            ),
            findings=(Finding(ABNORMALITY, PRESENT, probability=0.75),),
        )


class TurnUpright:
    """Stands in for a pipeline whose corrected film another takes (``runs_after``): it
    writes the first film turned by 90° as an SC, or fails for good when the series
    description says ``fail``."""

    name = "turn_upright"

    def run(self, series: SeriesInput) -> PipelineResult:
        from pipelines.errors import PipelineInputError

        ds = pydicom.dcmread(series.files[0])
        if "fail" in str(ds.get("SeriesDescription", "")):
            raise PipelineInputError("no hand found on the film")
        turned = np.rot90(ds.pixel_array).astype(np.uint16)
        return PipelineResult(
            pipeline=self.name,
            model_version=series.model_version,
            summary={"rotation_deg": 90},
            derived_images=(
                DerivedImage(turned, "grayscale", "corrected film", str(ds.SOPInstanceUID)),
            ),
        )


class AfterUpright:
    """Runs after ``turn_upright`` and says what it was given: the corrected film's shape
    (read from the SC file it received), or why it ran on the film as received."""

    name = "after_upright"
    runs_after = "turn_upright"

    def run(self, series: SeriesInput) -> PipelineResult:
        after = series.after
        summary: dict[str, object] = {"upstream": None if after is None else after.state}
        if after is not None and after.state == "done":
            film = pydicom.dcmread(after.derived_files[0]).pixel_array
            summary["film_shape"] = list(film.shape)
            summary["upstream_summary"] = dict(after.summary)
        else:
            summary["film_shape"] = list(pydicom.dcmread(series.files[0]).pixel_array.shape)
            summary["upstream_error"] = None if after is None else after.error
        return PipelineResult(
            pipeline=self.name, model_version=series.model_version, summary=summary
        )


class Ouroboros:
    """Runs after itself: a configuration the node must refuse."""

    name = "ouroboros"
    runs_after = "ouroboros"

    def run(self, series: SeriesInput) -> PipelineResult:  # never run
        raise AssertionError("a cycle must be refused before any job")


class ScriptedTriage:
    """Stands in for ``xray_triage`` where the routing is under test: it "sees" what the
    film's SeriesDescription says after ``sees:`` (a Body Part Examined value, or
    ``not_xray``; ``fail`` makes the film unreadable), and answers with the real
    pipeline's summary keys, comparing with the header as the real one does."""

    name = "xray_triage"

    def run(self, series: SeriesInput) -> PipelineResult:
        from pipelines.errors import PipelineInputError
        from pipelines.xray_triage.body_parts import SUMMARY, type_named_by_header

        ds = pydicom.dcmread(series.files[0], stop_before_pixels=True)
        seen = str(ds.get("SeriesDescription", "")).partition("sees:")[2].strip()
        if seen == "fail":
            raise PipelineInputError("no film of this series could be decoded")
        header = ds.get("BodyPartExamined")
        header_type = type_named_by_header(header)
        is_xray = seen != "not_xray"
        seen_type = type_named_by_header(seen) if is_xray else None
        summary = {
            SUMMARY.is_xray: is_xray,
            SUMMARY.xray_probability: 0.99 if is_xray else 0.02,
            SUMMARY.xray_type: seen_type,
            SUMMARY.body_part_examined: seen if is_xray else None,
            SUMMARY.type_probability: 0.97 if is_xray else 0.0,
            SUMMARY.header_body_part: None if header is None else str(header),
            SUMMARY.header_type: header_type,
            SUMMARY.header_disagrees: bool(
                is_xray and header_type is not None and header_type != seen_type
            ),
        }
        return PipelineResult(
            pipeline=self.name, model_version=series.model_version, summary=summary
        )


def demo_result(
    headers: list[pydicom.Dataset], model_version: str, *, pipeline: str = "reporting_demo"
) -> PipelineResult:
    """A result with every kind of content the node encodes, for ``headers`` (seeded).

    Measurements: an angle on the first instance (on its frame 2 when it has several
    frames), a score per instance (by slice index) and an uncoded series-level count; one
    finding with a probability; derived images of every kind (8- and 16-bit grayscale, RGB
    overlay, plot).
    """
    rng = np.random.default_rng(1500)
    first = str(headers[0].SOPInstanceUID)
    frame = 2 if int(headers[0].get("NumberOfFrames", 1) or 1) > 1 else None
    gray16 = rng.integers(0, 4096, size=(64, 48), dtype=np.uint16)
    gray8 = (gray16 >> 4).astype(np.uint8)
    overlay = np.stack([gray8, gray8 // 2, np.full_like(gray8, 200)], axis=-1)
    plot = np.full((40, 60, 3), 255, dtype=np.uint8)
    plot[np.arange(40), np.linspace(0, 59, 40).astype(int)] = (0, 0, 0)
    return PipelineResult.for_model(
        ModelIdentity(pipeline, model_version, "0" * 64),
        summary={"instances": len(headers)},
        measurements=(
            Measurement("angle", 93.25, "deg", ANGLE, tracking_uid=first, frame_number=frame),
            *(
                Measurement(f"score {i}", float(i) - 0.5, "{score}", SCORE, slice_index=i)
                for i in range(len(headers))
            ),
            Measurement("instance count", float(len(headers)), "{instances}"),
        ),
        findings=(Finding(ABNORMALITY, PRESENT, 0.875, tracking_uid=first),),
        derived_images=(
            DerivedImage(gray8, "grayscale", "corrected film, 8 bit", first, False, (0.3, 0.3)),
            DerivedImage(gray16, "grayscale", "corrected film, 16 bit", first, False, (0.3, 0.3)),
            DerivedImage(overlay, "rgb_overlay", "attention map over the film", first, True),
            DerivedImage(plot, "plot", "score against slice", None, True),
        ),
    )


#: The derived images of ``demo_result``, by position.
SC_KINDS = {0: "gray8", 1: "gray16", 2: "rgb_overlay", 3: "plot"}


class ReportingDemo:
    """Reads the headers and returns ``demo_result``: exercises encoding and delivery."""

    name = "reporting_demo"

    def run(self, series: SeriesInput) -> PipelineResult:
        headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in series.files]
        return demo_result(headers, series.model_version, pipeline=self.name)


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
        return PipelineResult(
            pipeline=self.name, model_version=series.model_version, summary={"slept": True}
        )


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
