"""The ``ct_body_part`` pipeline: a body part score per CT slice, zones, coverage, anomalies."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from pipelines.contract import (
    Code,
    DerivedImage,
    Finding,
    Measurement,
    PipelineResult,
    SeriesInput,
)
from pipelines.ct_body_part.model import DEFAULT_BATCH_SIZE, PIPELINE_NAME, ModelCache, UbrModel
from pipelines.ct_body_part.plot import render_score_plot
from pipelines.ct_body_part.preprocess import slices_to_inputs
from pipelines.ct_body_part.volume import CtStack, read_ct_geometry
from pipelines.ct_body_part.zones import (
    MIN_LINEARITY_R,
    Anomalies,
    ZoneExtent,
    check_anomalies,
    zone_extents,
)
from pipelines.errors import PipelineInputError

logger = logging.getLogger(__name__)

#: SNOMED CT anatomy of each zone (PS3.16 CID 4031 "Common Anatomic Regions").
ZONE_ANATOMY: dict[str, Code] = {
    "head_neck": Code("774007", "SCT", "Head and Neck"),
    "chest": Code("816094009", "SCT", "Chest"),
    "abdomen": Code("818981001", "SCT", "Abdomen"),
    "pelvis": Code("816092008", "SCT", "Pelvis"),
}
TARGET_REGION = Code("123014", "DCM", "Target Region")
PRESENT = Code("52101004", "SCT", "Present")
ABSENT = Code("272519000", "SCT", "Absent")

# No standard codes name UBR's quantities; these use the node's private scheme.
SCORE_CONCEPT = Code("UBR-SCORE", "99DCMNODE", "Body part regression score")
SCORE_MIN_CONCEPT = Code("UBR-SCORE-MIN", "99DCMNODE", "Lowest body part score")
SCORE_MAX_CONCEPT = Code("UBR-SCORE-MAX", "99DCMNODE", "Highest body part score")
LINEARITY_CONCEPT = Code("UBR-R", "99DCMNODE", "Correlation of slice index and score")
ZONE_TOP_CONCEPT = Code("UBR-ZONE-TOP", "99DCMNODE", "Zone superior extent (patient z)")
ZONE_BOTTOM_CONCEPT = Code("UBR-ZONE-BOTTOM", "99DCMNODE", "Zone inferior extent (patient z)")
ZONE_LENGTH_CONCEPT = Code("UBR-ZONE-LENGTH", "99DCMNODE", "Zone length along the body")
ZONE_SLICES_CONCEPT = Code("UBR-ZONE-SLICES", "99DCMNODE", "Slices in zone")
NONLINEAR_CONCEPT = Code("UBR-NONLINEAR", "99DCMNODE", "Body part score curve not linear")
DIRECTION_CONCEPT = Code("UBR-DIRECTION", "99DCMNODE", "Scan direction not monotonic")

HOW_TO_GET_A_MODEL = (
    "train one with `dicom-node train ct_body_part --data DIR --calibration FILE` (unlabelled "
    "CT series, plus two volumes with labelled zones) or import one with `dicom-node models "
    "import FOLDER`, then `dicom-node models activate ct_body_part VERSION` and "
    "`dicom-node jobs retry ID`"
)


@dataclass(frozen=True)
class SeriesScores:
    """The scores of one stack, superior → inferior."""

    stack: CtStack
    scores: np.ndarray  # one per slice of the stack (interpolated where not scored)
    scored: np.ndarray  # indices (into the stack) of the slices the network scored
    seconds: dict[str, float]


def _every_header(stack: CtStack) -> tuple[Dataset, ...]:
    """The series' headers as the geometry read parsed them, for the node to encode from;
    none when a file could not be read (the node then reads them itself)."""
    headers = tuple(h for h in stack.headers if h is not None)
    return headers if len(headers) == len(stack.headers) else ()


def scored_indices(count: int, limit: int | None) -> np.ndarray:
    """Which of ``count`` slices to score: all, or ``limit`` evenly spaced incl. both ends."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.unique(np.rint(np.linspace(0, count - 1, max(2, limit))).astype(int))


class CtBodyPart:
    """Paper 003 (UBR): one score per axial slice, rising from head to feet.

    Options (``[pipeline_options.ct_body_part]`` in the node's config):

    ``max_scored_slices`` — score at most this many evenly spaced slices (always the first
    and last) and interpolate the rest along z (the scores are near-linear in z, which the
    paper's anomaly check relies on); ``0`` scores every slice (default).
    ``min_r`` — the linearity check's threshold (0.99, Section 3.2).
    ``batch_size`` — slices per forward pass. ``plot`` — send the score plot as an SC image.
    """

    name = PIPELINE_NAME

    def __init__(
        self,
        *,
        max_scored_slices: int = 0,
        min_r: float = MIN_LINEARITY_R,
        batch_size: int = DEFAULT_BATCH_SIZE,
        plot: bool = True,
    ) -> None:
        if max_scored_slices != 0 and max_scored_slices < 2:
            raise ValueError("max_scored_slices must be 0 (all) or at least 2")
        if not -1.0 <= min_r <= 1.0:
            raise ValueError("min_r must be a correlation in [-1, 1]")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.max_scored_slices = int(max_scored_slices)
        self.min_r = float(min_r)
        self.batch_size = int(batch_size)
        self.plot = bool(plot)
        self._models = ModelCache()

    def model(self, series: SeriesInput) -> UbrModel:
        return self._models.get_active(
            series.model_dir,
            series.model_version,
            pipeline=PIPELINE_NAME,
            how_to_get=HOW_TO_GET_A_MODEL,
        )

    def score_series(self, model: UbrModel, series: SeriesInput) -> SeriesScores:
        started = time.perf_counter()
        stack = read_ct_geometry(series.files)
        geometry_done = time.perf_counter()
        chosen = scored_indices(len(stack), self.max_scored_slices or None)
        images = slices_to_inputs([stack.slices[int(index)] for index in chosen], model.spec)
        decoded = time.perf_counter()
        values = model.scores(images, batch_size=self.batch_size)
        scored = time.perf_counter()
        z = stack.z_mm
        if len(chosen) == len(stack):
            scores = values
        else:
            # np.interp needs rising x; z falls from head to feet.
            scores = np.interp(-z, -z[chosen], values)
        return SeriesScores(
            stack=stack,
            scores=scores,
            scored=chosen,
            seconds={
                "geometry": round(geometry_done - started, 3),
                "decode_preprocess": round(decoded - geometry_done, 3),
                "network": round(scored - decoded, 3),
            },
        )

    def run(self, series: SeriesInput) -> PipelineResult:
        model = self.model(series)
        found = self.score_series(model, series)
        stack, scores = found.stack, found.scores
        z = stack.z_mm
        anomalies = check_anomalies(scores[found.scored], min_r=self.min_r, index=found.scored)
        zones = zone_extents(scores, z, model.calibration) if model.calibration is not None else []
        started = time.perf_counter()
        images: list[DerivedImage] = []
        if self.plot:
            images.append(self._plot(model, found, zones, anomalies))
        seconds = {**found.seconds, "plot": round(time.perf_counter() - started, 3)}
        summary: dict[str, object] = {
            "slices": len(stack),
            "scored_slices": len(found.scored),
            "spacing_mm": round(stack.spacing_mm, 3),
            "z_range_mm": [round(float(z[0]), 2), round(float(z[-1]), 2)],
            "score_range": [round(float(scores.min()), 4), round(float(scores.max()), 4)],
            "r": anomalies.r,
            "monotonic": anomalies.monotonic,
            "reversed": anomalies.reversed,
            "anomaly": anomalies.flagged,
            "notes": anomalies.notes(),
            "zones": [_zone_json(e) for e in zones],
            "calibrated": model.calibration is not None,
            "architecture": model.architecture,
            "seconds": seconds,
        }
        if model.calibration is not None:
            summary["thresholds"] = list(model.calibration.thresholds)
        if stack.skipped:
            summary["skipped"] = list(stack.skipped)
        return PipelineResult(
            pipeline=PIPELINE_NAME,
            model_version=model.card.version,
            weights_sha256=model.card.weights_sha256,
            summary=summary,
            measurements=tuple(self._measurements(scores, anomalies, zones)),
            findings=tuple(self._findings(anomalies, zones)),
            derived_images=tuple(images),
            log_measurements=tuple(self._slice_scores(found)),
            source_headers=_every_header(stack),
        )

    @staticmethod
    def _measurements(
        scores: np.ndarray, anomalies: Anomalies, zones: list[ZoneExtent]
    ) -> list[Measurement]:
        out = [
            Measurement(
                "Lowest score", round(float(scores.min()), 4), "{score}", SCORE_MIN_CONCEPT
            ),
            Measurement(
                "Highest score", round(float(scores.max()), 4), "{score}", SCORE_MAX_CONCEPT
            ),
            Measurement("Correlation r", float(anomalies.r), "1", LINEARITY_CONCEPT),
        ]
        for zone in zones:
            site = ZONE_ANATOMY[zone.zone]
            name = zone.zone.replace("_", " ")
            out += [
                Measurement(
                    f"{name} top",
                    round(zone.z_top_mm, 2),
                    "mm",
                    ZONE_TOP_CONCEPT,
                    finding_site=site,
                ),
                Measurement(
                    f"{name} bottom",
                    round(zone.z_bottom_mm, 2),
                    "mm",
                    ZONE_BOTTOM_CONCEPT,
                    finding_site=site,
                ),
                Measurement(
                    f"{name} length",
                    round(zone.length_mm, 2),
                    "mm",
                    ZONE_LENGTH_CONCEPT,
                    finding_site=site,
                ),
                Measurement(
                    f"{name} slices",
                    zone.slices,
                    "{slices}",
                    ZONE_SLICES_CONCEPT,
                    finding_site=site,
                ),
            ]
        return out

    @staticmethod
    def _findings(anomalies: Anomalies, zones: list[ZoneExtent]) -> list[Finding]:
        out = [Finding(TARGET_REGION, ZONE_ANATOMY[zone.zone]) for zone in zones]
        out.append(Finding(NONLINEAR_CONCEPT, PRESENT if anomalies.nonlinear else ABSENT))
        out.append(Finding(DIRECTION_CONCEPT, ABSENT if anomalies.monotonic else PRESENT))
        return out

    @staticmethod
    def _slice_scores(found: SeriesScores) -> list[Measurement]:
        scored = set(int(i) for i in found.scored)
        return [
            Measurement(
                "Body part score" if index in scored else "Body part score (interpolated)",
                round(float(score), 4),
                "{score}",
                SCORE_CONCEPT,
                tracking_uid=item.sop_instance_uid or None,
                slice_index=item.file_index,
                frame_number=item.frame,
            )
            for index, (item, score) in enumerate(
                zip(found.stack.slices, found.scores, strict=True)
            )
        ]

    @staticmethod
    def _plot(
        model: UbrModel, found: SeriesScores, zones: list[ZoneExtent], anomalies: Anomalies
    ) -> DerivedImage:
        notes = anomalies.notes()
        if model.calibration is None:
            notes.append("model not calibrated: no zones")
        pixels = render_score_plot(
            found.stack.z_mm,
            found.scores,
            [(e.zone.replace("_", "/"), e.z_top_mm, e.z_bottom_mm) for e in zones],
            title=f"Body part regression ({model.architecture}, model {model.card.version})",
            notes=notes,
            thresholds=model.calibration.thresholds if model.calibration is not None else (),
        )
        return DerivedImage(
            pixels=pixels,
            kind="plot",
            description="Body part score along the body",
            burned_in_text=True,
        )


def _zone_json(extent: ZoneExtent) -> dict[str, object]:
    return {
        "zone": extent.zone,
        "first_index": extent.first_index,
        "last_index": extent.last_index,
        "z_top_mm": round(extent.z_top_mm, 2),
        "z_bottom_mm": round(extent.z_bottom_mm, 2),
        "length_mm": round(extent.length_mm, 2),
        "slices": extent.slices,
    }


__all__ = ["ZONE_ANATOMY", "CtBodyPart", "PipelineInputError", "SeriesScores", "scored_indices"]
