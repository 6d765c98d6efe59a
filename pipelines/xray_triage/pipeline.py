"""The ``xray_triage`` pipeline: is this series an X-ray, of what, and does its header agree?

Series-scoped. Every file is read as a grey image (``preprocess.read_image``: films
through ``pipelines.film_io``, colour and other images converted to grey; a file that
cannot be decoded is skipped and its reason kept in the summary) and fed as the paper
does (8-bit grey, 224 × 224). Module I gives each image P(X-ray); the series is an X-ray
when their mean reaches the model card's ``xray_threshold``. If it is, module II gives
each image a softmax over the fourteen types; the series' type is the largest entry of
their mean, with its probability. The header's Body Part Examined (the most common
non-empty value among the files) names a type or not (``body_parts.type_named_by_header``);
the header disagrees when it names a type, that type is not the image's, and the type
probability reaches the card's ``disagreement_threshold``.

The result: ``summary`` with the ``body_parts.SUMMARY`` keys (which the node's routing
reads) and the details per image; findings (module I's answer, the type as a SNOMED CT
body region, a disagreement naming both types); the probabilities as measurements.

Torch is imported when the model is loaded, not when the node loads this class.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.contract import Finding, Measurement, PipelineResult, SeriesInput
from pipelines.errors import PipelineInputError
from pipelines.film_io import FilmUnreadable
from pipelines.model_store import ModelFolderCache
from pipelines.xray_triage.body_parts import SUMMARY, body_part_examined_of, type_named_by_header
from pipelines.xray_triage.concepts import (
    DISAGREEMENT_THRESHOLD,
    HEADER_DISAGREES,
    HEADER_TYPE,
    IS_XRAY,
    NO,
    PIPELINE_NAME,
    TYPE_CODES,
    TYPE_PROBABILITY,
    XRAY_PROBABILITY,
    XRAY_THRESHOLD,
    XRAY_TYPE,
    YES,
    disagreement_value,
)

if TYPE_CHECKING:
    from pipelines.xray_triage.model import TriageModel
    from pipelines.xray_triage.preprocess import TriageImage

logger = logging.getLogger(__name__)
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")

HOW_TO_GET_A_MODEL = (
    "train one with `dicom-node train xray_triage --data DIR --labels CSV` (images and their "
    "X-ray types), `--data DIR --weak-labels` (DICOM films labelled by their own Body Part "
    "Examined) or `--synthetic N`, or import one with `dicom-node models import FOLDER`; "
    "then `dicom-node models activate xray_triage VERSION` and `dicom-node jobs retry ID`"
)


@dataclass(frozen=True)
class Decision:
    """What the series is, by the image and by the header."""

    xray_probability: float
    xray_threshold: float
    xray_type: str | None
    type_probability: float | None
    header_body_part: str | None
    header_type: str | None
    disagreement_threshold: float

    @property
    def is_xray(self) -> bool:
        return self.xray_probability >= self.xray_threshold

    @property
    def header_disagrees(self) -> bool:
        return (
            self.xray_type is not None
            and self.header_type is not None
            and self.header_type != self.xray_type
            and self.type_probability is not None
            and self.type_probability >= self.disagreement_threshold
        )

    def summary(self) -> dict[str, object]:
        """The ``body_parts.SUMMARY`` keys and their values."""
        return {
            SUMMARY.is_xray: self.is_xray,
            SUMMARY.xray_probability: round(self.xray_probability, 4),
            SUMMARY.xray_type: self.xray_type,
            SUMMARY.body_part_examined: None
            if self.xray_type is None
            else body_part_examined_of(self.xray_type),
            SUMMARY.type_probability: None
            if self.type_probability is None
            else round(self.type_probability, 4),
            SUMMARY.header_body_part: self.header_body_part,
            SUMMARY.header_type: self.header_type,
            SUMMARY.header_disagrees: self.header_disagrees,
        }


def header_body_part(values: list[str | None]) -> str | None:
    """The series' Body Part Examined from its files' values (None: absent, "": empty):
    the most common non-empty value (the first of a tie), else "" when any file has the
    element, else None."""
    given = [v for v in values if v]
    if given:
        counts = Counter(given)
        top = max(counts.values())
        return next(v for v in given if counts[v] == top)
    return "" if any(v is not None for v in values) else None


def _probability_option(value: object, name: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.0 <= float(value) <= 1.0
    ):
        raise ValueError(f"{name} must be a probability in [0, 1], not {value!r}")
    return float(value)


class XrayTriage:
    """Paper 004 (Urinbayev et al.), modules I ("X-ray or not") and II (X-ray type).

    Options (``[pipeline_options.xray_triage]`` in the node's config):

    ``xray_threshold`` — the mean P(X-ray) at and above which a series is an X-ray
    (default: the model card's). ``disagreement_threshold`` — the type probability at and
    above which a header naming another type is reported as disagreeing (default: the
    model card's). ``batch_size`` — the most images per forward pass (8).
    """

    name = PIPELINE_NAME

    def __init__(
        self,
        *,
        xray_threshold: float | None = None,
        disagreement_threshold: float | None = None,
        batch_size: int = 8,
    ) -> None:
        self.xray_threshold = _probability_option(xray_threshold, "xray_threshold")
        self.disagreement_threshold = _probability_option(
            disagreement_threshold, "disagreement_threshold"
        )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of at least 1, not {batch_size!r}")
        self.batch_size = batch_size
        self._models: ModelFolderCache[TriageModel] = ModelFolderCache(self._load)

    @staticmethod
    def _load(folder: Path) -> TriageModel:
        from pipelines.xray_triage.model import load_model  # torch, on first use

        return load_model(folder)

    def model(self, series: SeriesInput) -> TriageModel:
        """The series' model (its active version), loaded once and kept while it is active."""
        return self._models.get_active(
            series.model_dir,
            series.model_version,
            pipeline=PIPELINE_NAME,
            how_to_get=HOW_TO_GET_A_MODEL,
        )

    @staticmethod
    def read_images(files: tuple[Path, ...], size: int) -> tuple[list[TriageImage], list[str]]:
        """The decodable images of ``files`` in order, each reduced at once to its 8-bit
        ``size`` × ``size`` grey input (a series of large films is never in memory at full
        size), and why any file was skipped (each reason names its file)."""
        from pipelines.xray_triage.preprocess import read_image, resized_8bit

        images: list[TriageImage] = []
        skipped: list[str] = []
        seen: set[str] = set()
        for path in files:
            try:
                image = read_image(path)
            except FilmUnreadable as exc:
                logger.warning("%s: %s", PIPELINE_NAME, exc)
                skipped.append(str(exc))
                continue
            uid = image.sop_instance_uid
            if uid is not None and uid in seen:
                skipped.append(f"{Path(path).name}: instance {uid} seen already")
                continue
            if uid is not None:
                seen.add(uid)
            images.append(replace(image, grey=resized_8bit(image.grey, size)))
        return images, skipped

    def run(self, series: SeriesInput) -> PipelineResult:
        from pipelines.xray_triage.preprocess import from_8bit

        model = self.model(series)
        started = time.perf_counter()
        images, skipped = self.read_images(series.files, model.spec.size)
        if not images:
            reasons = "; ".join(skipped[:3]) or "the series has no files"
            raise PipelineInputError(
                f"no file of the series could be decoded as an image: {reasons}"
            )
        batch = from_8bit(np.stack([image.grey for image in images]), model.spec)
        prepared = time.perf_counter()
        xray = model.xray_probabilities(batch, batch_size=self.batch_size)
        module_1 = time.perf_counter()
        xray_threshold = (
            model.xray_threshold if self.xray_threshold is None else self.xray_threshold
        )
        disagreement = (
            model.disagreement_threshold
            if self.disagreement_threshold is None
            else self.disagreement_threshold
        )
        header = header_body_part([image.body_part_examined for image in images])
        mean_xray = float(np.mean(xray))
        types: np.ndarray | None = None
        xray_type: str | None = None
        type_probability: float | None = None
        if mean_xray >= xray_threshold:
            types = model.type_probabilities(batch, batch_size=self.batch_size)
            mean_types = types.mean(axis=0)
            best = int(np.argmax(mean_types))
            xray_type, type_probability = model.type_classes[best], float(mean_types[best])
        module_2 = time.perf_counter()
        decision = Decision(
            xray_probability=mean_xray,
            xray_threshold=xray_threshold,
            xray_type=xray_type,
            type_probability=type_probability,
            header_body_part=header,
            header_type=type_named_by_header(header),
            disagreement_threshold=disagreement,
        )
        if decision.header_disagrees:
            logger.info(
                "%s: series %s: header names %s, the image shows %s (p=%.3f)",
                PIPELINE_NAME,
                series.series_instance_uid,
                decision.header_type,
                decision.xray_type,
                decision.type_probability,
            )
        summary: dict[str, object] = {
            **decision.summary(),
            "xray_threshold": round(xray_threshold, 4),
            "disagreement_threshold": round(disagreement, 4),
            "thresholds_from": {
                "xray_threshold": "model card"
                if self.xray_threshold is None
                else "pipeline_options",
                "disagreement_threshold": "model card"
                if self.disagreement_threshold is None
                else "pipeline_options",
            },
            "type_probabilities": None
            if types is None
            else {
                name: round(float(p), 4)
                for name, p in zip(model.type_classes, types.mean(axis=0), strict=True)
            },
            "films": self._films(images, xray, types, model.type_classes),
            "architecture": model.architecture,
            "seconds": {
                "read_preprocess": round(prepared - started, 3),
                "module_1": round(module_1 - prepared, 3),
                "module_2": round(module_2 - module_1, 3),
            },
        }
        if skipped:
            summary["skipped"] = skipped
        every_file_read = (
            not skipped
            and len(images) == len(series.files)
            and all(image.header is not None for image in images)
        )
        return PipelineResult(
            pipeline=PIPELINE_NAME,
            model_version=model.card.version,
            weights_sha256=model.card.weights_sha256,
            summary=summary,
            measurements=tuple(self._measurements(decision, images, xray, types, model)),
            findings=tuple(self._findings(decision)),
            source_headers=tuple(i.header for i in images if i.header is not None)
            if every_file_read
            else (),
        )

    @staticmethod
    def _films(
        images: list[TriageImage],
        xray: np.ndarray,
        types: np.ndarray | None,
        classes: tuple[str, ...],
    ) -> list[dict[str, Any]]:
        films = []
        for index, image in enumerate(images):
            film: dict[str, Any] = {
                "sop_instance_uid": image.sop_instance_uid,
                "decoded_as": image.how,
                "xray_probability": round(float(xray[index]), 4),
                "header_body_part": image.body_part_examined,
            }
            if types is not None:
                best = int(np.argmax(types[index]))
                film["xray_type"] = classes[best]
                film["type_probability"] = round(float(types[index][best]), 4)
            films.append(film)
        return films

    @staticmethod
    def _findings(decision: Decision) -> list[Finding]:
        p = decision.xray_probability
        found = [
            Finding(
                IS_XRAY,
                YES if decision.is_xray else NO,
                round(p if decision.is_xray else 1.0 - p, 6),
            )
        ]
        if decision.xray_type is not None and decision.type_probability is not None:
            found.append(
                Finding(
                    XRAY_TYPE, TYPE_CODES[decision.xray_type], round(decision.type_probability, 6)
                )
            )
        if decision.header_disagrees:
            assert decision.header_type is not None and decision.xray_type is not None
            found.append(
                Finding(
                    HEADER_DISAGREES,
                    disagreement_value(decision.header_type, decision.xray_type),
                    round(float(decision.type_probability or 0.0), 6),
                )
            )
            found.append(Finding(HEADER_TYPE, TYPE_CODES[decision.header_type]))
        return found

    @staticmethod
    def _measurements(
        decision: Decision,
        images: list[TriageImage],
        xray: np.ndarray,
        types: np.ndarray | None,
        model: TriageModel,
    ) -> list[Measurement]:
        site = None if decision.xray_type is None else TYPE_CODES[decision.xray_type]
        out = [
            Measurement(
                "Probability that the series is an X-ray",
                round(decision.xray_probability, 4),
                "1",
                XRAY_PROBABILITY,
            ),
            Measurement("X-ray threshold", round(decision.xray_threshold, 4), "1", XRAY_THRESHOLD),
        ]
        if decision.type_probability is not None:
            out.append(
                Measurement(
                    "Probability of the X-ray type",
                    round(decision.type_probability, 4),
                    "1",
                    TYPE_PROBABILITY,
                    finding_site=site,
                )
            )
            out.append(
                Measurement(
                    "Header disagreement threshold",
                    round(decision.disagreement_threshold, 4),
                    "1",
                    DISAGREEMENT_THRESHOLD,
                )
            )
        if len(images) < 2:
            return out
        best = None if decision.xray_type is None else model.type_classes.index(decision.xray_type)
        for index, image in enumerate(images):
            uid = image.sop_instance_uid
            if uid is None or len(uid) > 64 or not _UID.fullmatch(uid):
                continue
            out.append(
                Measurement(
                    "Probability that the image is an X-ray",
                    round(float(xray[index]), 4),
                    "1",
                    XRAY_PROBABILITY,
                    tracking_uid=uid,
                )
            )
            if types is not None and best is not None:
                out.append(
                    Measurement(
                        "Probability of the X-ray type",
                        round(float(types[index][best]), 4),
                        "1",
                        TYPE_PROBABILITY,
                        tracking_uid=uid,
                        finding_site=site,
                    )
                )
        return out


__all__ = ["HOW_TO_GET_A_MODEL", "Decision", "XrayTriage", "header_body_part"]
