"""The ``bone_age`` pipeline: bone age in months on each film hand_orientation turned upright."""

from __future__ import annotations

import logging
import time
from datetime import date, datetime
from typing import Literal

import numpy as np

from pipelines.bone_age.model import PIPELINE_NAME, BoneAgeModel, ModelCache
from pipelines.bone_age.network import SEX_FEMALE, SEX_MALE, SEX_UNKNOWN, SEX_VALUES, sex_index
from pipelines.bone_age.overlay import attention_picture
from pipelines.bone_age.preprocess import (
    UPSTREAM,
    UprightFilm,
    film_input,
    upright_films,
    upstream_note,
)
from pipelines.contract import (
    Code,
    DerivedImage,
    Finding,
    Measurement,
    ModelIdentity,
    PipelineResult,
    SeriesInput,
)
from pipelines.errors import PipelineInputError

logger = logging.getLogger(__name__)

UnknownSex = Literal["unknown", "average"]
UNKNOWN_SEX_PATHS: tuple[str, ...] = ("unknown", "average")

# No LOINC or SNOMED CT concept for "bone age" is used here with certainty; these
# concepts use the node's private scheme, as hand_orientation's angle does.
BONE_AGE_CONCEPT = Code("BA-BONEAGE", "99DCMNODE", "Bone age")
CHRONOLOGICAL_AGE_CONCEPT = Code("BA-CHRONAGE", "99DCMNODE", "Chronological age")
DIFFERENCE_CONCEPT = Code("BA-DIFFERENCE", "99DCMNODE", "Bone age minus chronological age")
INPUT_FILM_CONCEPT = Code("BA-INPUT", "99DCMNODE", "Film bone age was estimated on")
INPUT_FILM_VALUES = {
    "upright": Code("BA-UPRIGHT", "99DCMNODE", "Upright film from hand orientation"),
    "turned": Code("BA-TURNED", "99DCMNODE", "Film turned by hand orientation's rotation"),
    "as_received": Code("BA-AS-RECEIVED", "99DCMNODE", "Film as received"),
}
SEX_INPUT_CONCEPT = Code("BA-SEX-INPUT", "99DCMNODE", "Sex input to the bone age model")
SEX_INPUT_VALUES = {
    "male": Code("248153007", "SCT", "Male"),
    "female": Code("248152002", "SCT", "Female"),
    "unknown": Code("261665006", "SCT", "Unknown"),
    "average": Code("BA-SEX-AVERAGED", "99DCMNODE", "Unknown: mean of male and female"),
}
MONTHS_PER_DAY = 12.0 / 365.25

HOW_TO_GET_A_MODEL = (
    "train one with `dicom-node train bone_age --preset cpu --synthetic N` (or --rsna DIR, "
    "or --data DIR --labels CSV) or import one with `dicom-node models import FOLDER`, then "
    "`dicom-node models activate bone_age VERSION` and `dicom-node jobs retry ID`"
)


def chronological_age_months(header: object) -> float | None:
    """Months from PatientBirthDate to StudyDate, when both are valid dates in order."""
    born, studied = (_date(getattr(header, key, None)) for key in ("PatientBirthDate", "StudyDate"))
    if born is None or studied is None or studied < born:
        return None
    return round((studied - born).days * MONTHS_PER_DAY, 1)


def _date(value: object) -> date | None:
    text = str(value or "").strip()
    try:
        return datetime.strptime(text, "%Y%m%d").date() if len(text) == 8 else None
    except ValueError:
        return None


class BoneAge:
    """Paper 002 (Castillo et al.), model 2, on the film hand_orientation turned upright.

    Options (``[pipeline_options.bone_age]``):

    ``unknown_sex``: what a film whose PatientSex is missing or neither M nor F gets —
    ``"unknown"`` (default: the network's third sex value, which training shows it) or
    ``"average"`` (the mean of the male and the female estimate); the SR says which.
    ``overlay``: send the attention map over the hand as a Secondary Capture (default
    true). ``max_overlay_side``: the longest side of that picture (256..4096, default 1024).
    """

    name = PIPELINE_NAME
    runs_after = UPSTREAM

    def __init__(
        self,
        *,
        unknown_sex: UnknownSex = "unknown",
        overlay: bool = True,
        max_overlay_side: int = 1024,
    ) -> None:
        if unknown_sex not in UNKNOWN_SEX_PATHS:
            raise ValueError(f"unknown_sex must be one of {', '.join(UNKNOWN_SEX_PATHS)}")
        if not isinstance(overlay, bool):
            raise ValueError("overlay must be true or false")
        if isinstance(max_overlay_side, bool) or not isinstance(max_overlay_side, int):
            raise ValueError("max_overlay_side must be a whole number of pixels")
        if not 256 <= max_overlay_side <= 4096:
            raise ValueError("max_overlay_side must be 256..4096 pixels")
        self.unknown_sex: UnknownSex = unknown_sex
        self.overlay = overlay
        self.max_overlay_side = max_overlay_side
        self._models = ModelCache()

    def model(self, series: SeriesInput) -> BoneAgeModel:
        return self._models.get_active(
            series.model_dir,
            series.model_version,
            pipeline=PIPELINE_NAME,
            how_to_get=HOW_TO_GET_A_MODEL,
        )

    def estimate(
        self, model: BoneAgeModel, image: np.ndarray, patient_sex: object
    ) -> tuple[float, np.ndarray, str]:
        """(months, attention map (h, w), the sex path) for one network-sized image."""
        index = sex_index(patient_sex)
        if index == SEX_UNKNOWN and self.unknown_sex == "average":
            months, maps = model.predict(np.stack([image, image]), [SEX_MALE, SEX_FEMALE])
            return float(months.mean()), maps.mean(axis=0), "average"
        months, maps = model.predict(image[None], [index])
        return float(months[0]), maps[0], SEX_VALUES[index]

    def run(self, series: SeriesInput) -> PipelineResult:
        films, skipped = upright_films(series)
        if not films:
            reasons = "; ".join(skipped[:3]) or "the series has no files"
            raise PipelineInputError(f"no film in the series could be read: {reasons}")
        model = self.model(series)
        measurements: list[Measurement] = []
        findings: list[Finding] = []
        images: list[DerivedImage] = []
        entries: list[dict[str, object]] = []
        for upright in films:
            started = time.perf_counter()
            image, crop = film_input(upright.pixels, model.spec)
            months, attention, sex_path = self.estimate(
                model, image, upright.film.header.get("PatientSex")
            )
            months = max(0.0, months)
            uid = upright.sop_instance_uid
            measurements.append(
                Measurement("Bone age", round(months, 1), "mo", BONE_AGE_CONCEPT, uid)
            )
            entry: dict[str, object] = {
                "sop_instance_uid": uid,
                "bone_age_months": round(months, 1),
                "film": upright.source,
                "film_note": upright.note,
                "sex_input": sex_path,
                "hand_masked": crop.masked,
                "mask_coverage": round(crop.coverage, 3),
            }
            if upright.rotation_deg is not None:
                entry["rotation_deg"] = upright.rotation_deg
            chronological = chronological_age_months(upright.film.header)
            if chronological is not None:
                difference = round(months - chronological, 1)
                measurements.append(
                    Measurement(
                        "Chronological age", chronological, "mo", CHRONOLOGICAL_AGE_CONCEPT, uid
                    )
                )
                measurements.append(
                    Measurement(
                        "Bone age minus chronological age",
                        difference,
                        "mo",
                        DIFFERENCE_CONCEPT,
                        uid,
                    )
                )
                entry["chronological_age_months"] = chronological
                entry["difference_months"] = difference
            findings.append(
                Finding(INPUT_FILM_CONCEPT, INPUT_FILM_VALUES[upright.source], None, uid)
            )
            findings.append(Finding(SEX_INPUT_CONCEPT, SEX_INPUT_VALUES[sex_path], None, uid))
            if self.overlay:
                images.append(self._overlay(upright, crop.pixels, attention, months, sex_path))
            entry["seconds"] = round(time.perf_counter() - started, 3)
            entries.append(entry)
        summary: dict[str, object] = {
            "films": entries,
            "upstream": upstream_note(series.after),
            "unknown_sex": self.unknown_sex,
            "architecture": model.architecture,
            "input_size": model.spec.size,
        }
        if skipped:
            summary["skipped"] = skipped
        return PipelineResult.for_model(
            ModelIdentity(PIPELINE_NAME, model.card.version, model.card.weights_sha256),
            summary=summary,
            measurements=tuple(measurements),
            findings=tuple(findings),
            derived_images=tuple(images),
        )

    def _overlay(
        self,
        upright: UprightFilm,
        hand: np.ndarray,
        attention: np.ndarray,
        months: float,
        sex_path: str,
    ) -> DerivedImage:
        years, rest = divmod(round(months), 12)
        lines = [
            f"Bone age {months:.0f} months ({years} y {rest} m)",
            f"Film: {upright.source.replace('_', ' ')}; sex input: {sex_path}",
        ]
        pixels = attention_picture(hand, attention, lines, max_side=self.max_overlay_side)
        return DerivedImage(
            pixels=pixels,
            kind="rgb_overlay",
            description="Bone age attention map over the hand",
            source_sop_instance_uid=upright.sop_instance_uid,
            burned_in_text=True,
        )
