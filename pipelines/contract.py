"""The pipeline contract: what a pipeline is given and what it must return.

A pipeline is any object with a ``name`` and a ``run(series) -> PipelineResult``
method; ``isinstance(obj, Pipeline)`` checks it at load time. A pipeline decides per
series (the default) or per study: a **study-scoped** pipeline has ``scope = "study"``
and its ``run`` is given a ``StudyInput``, every routed series of the study at once (MURA
decides over all the views of a study, which often come in several series). Encoding results as
DICOM belongs to ``dicom_node``, not to the pipelines: a result says *what* was found
(values with UCUM units and coded concepts, qualitative findings, derived pictures, how to
show a source image) and the node turns it into a Structured Report, Secondary Capture
images and presentation states.

The value types validate themselves when they are made, so a pipeline that returns
something the node cannot encode fails at once, in the pipeline, with a clear message.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from pydicom.dataset import Dataset

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


def _check_uid(value: str | None, what: str) -> None:
    if value is not None and (len(value) > 64 or not _UID.fullmatch(value)):
        raise ValueError(f"{what} {value!r} is not a valid DICOM UID")


@dataclass(frozen=True)
class UpstreamResult:
    """What the pipeline a pipeline runs after (``runs_after``) made of the same series.

    ``state`` is ``"done"`` (``summary`` and ``derived_files``, the Secondary Capture files
    it wrote, e.g. the corrected film) or ``"failed"`` (``error`` says why): a pipeline
    whose predecessor failed runs on the series as received and says so in its result.
    """

    pipeline: str
    state: Literal["done", "failed"]
    model_version: str
    summary: Mapping[str, object] = field(default_factory=dict)
    derived_files: tuple[Path, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class SeriesInput:
    """One series, as stored by the node, ready for a pipeline."""

    study_instance_uid: str
    series_instance_uid: str
    modality: str | None
    files: tuple[Path, ...]  # Part 10 files, in InstanceNumber order (geometry is the pipeline's)
    model_version: str
    model_dir: Path | None = None  # the active model's folder, when the pipeline has one
    #: For a pipeline that runs after another (``runs_after``): that one's result on this
    #: series; None when it was not routed here (the pipeline then runs on ``files``).
    after: UpstreamResult | None = None


#: What a pipeline decides on: one series, or every routed series of a study.
PipelineScope = Literal["series", "study"]
SCOPES: tuple[PipelineScope, ...] = ("series", "study")


@dataclass(frozen=True)
class StudyInput:
    """Every series of one study routed to a study-scoped pipeline, ready for it.

    ``series`` are in the order they were first received; each carries its own files
    (in InstanceNumber order). ``files`` is all of them, series after series: the order
    ``Measurement.slice_index`` and the source headers follow for a study.
    """

    study_instance_uid: str
    series: tuple[SeriesInput, ...]
    model_version: str
    model_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.series:
            raise ValueError("a study input needs at least one series")
        if any(s.study_instance_uid != self.study_instance_uid for s in self.series):
            raise ValueError("every series of a study input belongs to its study")

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(path for series in self.series for path in series.files)


@dataclass(frozen=True)
class Code:
    """A coded concept: ``Code("363679005", "SCT", "Imaging procedure")``.

    ``scheme`` is a DICOM coding scheme designator (``SCT``, ``DCM``, ``LN``, ``UCUM``,
    or a private ``99...`` scheme); ``meaning`` is the human-readable Code Meaning.
    ``str(code)`` is the short form ``"SCHEME:VALUE"`` the results log stores.
    """

    value: str
    scheme: str
    meaning: str

    def __post_init__(self) -> None:
        for what, text in (("value", self.value), ("scheme", self.scheme)):
            if not text or text != text.strip() or "\\" in text:
                raise ValueError(f"code {what} {text!r} must be non-empty text without padding")
        if not self.meaning.strip():
            raise ValueError(f"code {self.scheme}:{self.value} needs a meaning")
        if len(self.meaning) > 64:
            raise ValueError(f"code meaning {self.meaning!r} is longer than 64 characters")

    def __str__(self) -> str:
        return f"{self.scheme}:{self.value}"


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a result: pipeline name, model version and weights checksum."""

    pipeline: str
    version: str
    weights_sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.pipeline or not self.version:
            raise ValueError("a model identity needs a pipeline name and a version")
        if self.weights_sha256 is not None and not _SHA256.fullmatch(self.weights_sha256):
            raise ValueError("weights_sha256 must be 64 lower-case hexadecimal digits")


@dataclass(frozen=True)
class Measurement:
    """A numeric result.

    ``unit`` is a UCUM unit code (``"deg"``, ``"mo"``, ``"mm"``, ``"1"``, ``"{score}"``).
    ``concept`` names what was measured (a ``Code``); without one the node encodes the
    value under a private concept whose meaning is ``name``. ``tracking_uid`` is the
    SOP Instance UID of the source instance the value belongs to; ``slice_index`` is
    the position of that instance in ``SeriesInput.files`` (either may be given; none
    means the whole series). ``frame_number`` (from 1) names the frame of a multi-frame
    source instance the value belongs to (e.g. one slice of an Enhanced CT image); it
    needs ``tracking_uid`` or ``slice_index``; the SR references that frame. ``finding_site``
    is the anatomy the value is about, when it is about one (e.g. ``Code("816094009",
    "SCT", "Chest")`` for the chest's extent); the SR writes it as the measurement's
    Finding Site.
    """

    name: str
    value: float
    unit: str  # UCUM
    concept: Code | None = None
    tracking_uid: str | None = None  # SOP Instance UID of the source instance, if any
    slice_index: int | None = None
    finding_site: Code | None = None  # the anatomy the value is about, if any
    frame_number: int | None = None  # the frame (from 1) of a multi-frame source instance

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a measurement needs a name")
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real):
            raise TypeError(f"measurement {self.name!r}: value must be a number")
        if not math.isfinite(self.value):
            raise ValueError(f"measurement {self.name!r}: value {self.value!r} is not finite")
        if not self.unit or self.unit != self.unit.strip():
            raise ValueError(f"measurement {self.name!r}: unit must be a UCUM code")
        if self.concept is not None and not isinstance(self.concept, Code):
            raise TypeError(f"measurement {self.name!r}: concept must be a Code")
        if self.finding_site is not None and not isinstance(self.finding_site, Code):
            raise TypeError(f"measurement {self.name!r}: finding_site must be a Code")
        _check_uid(self.tracking_uid, f"measurement {self.name!r}: tracking_uid")
        if self.slice_index is not None and self.slice_index < 0:
            raise ValueError(f"measurement {self.name!r}: slice_index must not be negative")
        if self.frame_number is not None:
            if isinstance(self.frame_number, bool) or not isinstance(self.frame_number, int):
                raise TypeError(f"measurement {self.name!r}: frame_number must be an integer")
            if self.frame_number < 1:
                raise ValueError(f"measurement {self.name!r}: frame_number counts from 1")
            if self.tracking_uid is None and self.slice_index is None:
                raise ValueError(
                    f"measurement {self.name!r}: frame_number needs the instance it is a "
                    "frame of (tracking_uid or slice_index)"
                )

    @property
    def concept_code(self) -> str | None:
        """The concept as ``"SCHEME:VALUE"`` (what the results log stores), or None."""
        return None if self.concept is None else str(self.concept)


@dataclass(frozen=True)
class Finding:
    """A qualitative result: ``concept`` is ``value`` (e.g. "Abnormality" is "Present").

    ``probability`` is the model's probability for ``value`` in [0, 1], if it has one;
    ``tracking_uid`` is the SOP Instance UID of the source instance it belongs to
    (None: the whole series or study).
    """

    concept: Code
    value: Code
    probability: float | None = None
    tracking_uid: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.concept, Code) or not isinstance(self.value, Code):
            raise TypeError("a finding's concept and value must be Codes")
        if self.probability is not None and not (
            isinstance(self.probability, numbers.Real) and 0.0 <= self.probability <= 1.0
        ):
            raise ValueError(f"finding {self.concept}: probability must be in [0, 1]")
        _check_uid(self.tracking_uid, f"finding {self.concept}: tracking_uid")


DerivedImageKind = Literal["grayscale", "rgb_overlay", "plot"]


@dataclass(frozen=True, eq=False)
class DerivedImage:
    """A picture for people: a corrected film, a heat map over the film, a plot.

    ``pixels``: ``grayscale`` is 2-D ``uint8`` or ``uint16`` (MONOCHROME2, 0 = black);
    ``rgb_overlay`` is ``uint8`` of shape (rows, columns, 3); ``plot`` is either.
    ``burned_in_text``: True when text or markers are drawn into the pixels.
    ``pixel_spacing``: (row, column) spacing in mm when the picture keeps a known
    geometry. ``patient_orientation``: the (row, column) direction codes of the
    picture, e.g. ``("P", "F")``, when the pipeline knows them.
    """

    pixels: np.ndarray
    kind: DerivedImageKind
    description: str
    source_sop_instance_uid: str | None = None
    burned_in_text: bool = False
    pixel_spacing: tuple[float, float] | None = None
    patient_orientation: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        pixels = self.pixels
        if not isinstance(pixels, np.ndarray):
            raise TypeError("derived image pixels must be a numpy array")
        grey = pixels.ndim == 2 and pixels.dtype in (np.uint8, np.uint16)
        rgb = pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
        if self.kind == "grayscale" and not grey:
            raise ValueError("a grayscale image is a 2-D uint8 or uint16 array")
        if self.kind == "rgb_overlay" and not rgb:
            raise ValueError("an rgb_overlay image is a uint8 array of shape (rows, columns, 3)")
        if self.kind == "plot" and not (grey or rgb):
            raise ValueError("a plot is a 2-D uint8/uint16 or a (rows, columns, 3) uint8 array")
        if self.kind not in ("grayscale", "rgb_overlay", "plot"):
            raise ValueError(f"unknown derived image kind {self.kind!r}")
        if min(pixels.shape[:2]) < 1 or max(pixels.shape[:2]) > 65535:
            raise ValueError("derived image rows and columns must be 1..65535")
        if not self.description.strip():
            raise ValueError("a derived image needs a description")
        _check_uid(self.source_sop_instance_uid, "source_sop_instance_uid")
        if self.pixel_spacing is not None and (
            len(self.pixel_spacing) != 2
            or not all(math.isfinite(s) and s > 0 for s in self.pixel_spacing)
        ):
            raise ValueError("pixel_spacing must be two positive numbers (mm)")
        if self.patient_orientation is not None and (
            len(self.patient_orientation) != 2
            or not all(re.fullmatch(r"[APLRHF]{1,3}", o) for o in self.patient_orientation)
        ):
            raise ValueError("patient_orientation must be two direction codes such as ('P', 'F')")

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3


#: Clockwise rotations a presentation state can show (DICOM Image Rotation, PS3.3 C.10.6).
PRESENTATION_ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class PresentationTransform:
    """Show a source image rotated and/or flipped, its pixels untouched (written as a GSPS).

    ``rotation_deg`` is clockwise, as DICOM Image Rotation: 0, 90, 180 or 270.
    ``horizontal_flip`` mirrors left and right *after* the rotation (DICOM Image Horizontal
    Flip); a vertical flip is a 180 degree rotation with a horizontal flip.
    ``description`` becomes the presentation state's Content Description (LO: at most 64
    characters, no backslash or control characters). The node keeps the source's
    grayscale display (rescale, window, polarity) as it is.
    """

    source_sop_instance_uid: str
    rotation_deg: int
    horizontal_flip: bool = False
    description: str = "Film shown upright"

    def __post_init__(self) -> None:
        if not isinstance(self.source_sop_instance_uid, str):
            raise TypeError("a presentation transform needs a source SOP Instance UID")
        _check_uid(self.source_sop_instance_uid, "presentation transform source")
        if (
            isinstance(self.rotation_deg, bool)
            or not isinstance(self.rotation_deg, numbers.Integral)
            or self.rotation_deg not in PRESENTATION_ROTATIONS
        ):
            raise ValueError(
                f"rotation_deg must be one of {PRESENTATION_ROTATIONS}, not {self.rotation_deg!r}"
            )
        object.__setattr__(self, "rotation_deg", int(self.rotation_deg))
        if not isinstance(self.horizontal_flip, bool):
            raise TypeError("horizontal_flip must be True or False")
        text = self.description
        if not isinstance(text, str) or not text.strip():
            raise ValueError("a presentation transform needs a description")
        if len(text) > 64 or "\\" in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValueError(
                f"description {text!r} must be at most 64 characters, without backslash or "
                "control characters (DICOM LO)"
            )


@dataclass(frozen=True)
class KeyObjectSelection:
    """Source images a reader should look at first, written as a Key Object Selection
    document (PS3.3 A.35.4) in the source study, so a viewer can jump to them.

    ``title`` is the document title, a code of CID 7010 (e.g. ``Code("113000", "DCM",
    "Of Interest")``); ``sop_instance_uids`` are source instances, in the order to show
    them (at least one, no repeats); ``description`` is the Key Object Description (the
    text a viewer shows with the selection, at most 1024 characters).
    """

    title: Code
    sop_instance_uids: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        if not isinstance(self.title, Code):
            raise TypeError("a key object selection's title must be a Code")
        if not isinstance(self.sop_instance_uids, tuple):
            object.__setattr__(self, "sop_instance_uids", tuple(self.sop_instance_uids))
        if not self.sop_instance_uids:
            raise ValueError("a key object selection needs at least one image")
        if len(set(self.sop_instance_uids)) != len(self.sop_instance_uids):
            raise ValueError("a key object selection names each image once")
        for uid in self.sop_instance_uids:
            _check_uid(uid, "key object")
        text = self.description
        if not isinstance(text, str) or not text.strip() or len(text) > 1024:
            raise ValueError("a key object selection needs a description of 1..1024 characters")


@dataclass(frozen=True)
class PipelineResult:
    """What a pipeline returns for one series.

    ``pipeline`` and ``model_version`` (with ``weights_sha256``) identify the model;
    ``model`` gives them as one ``ModelIdentity``. ``summary`` is free-form JSON for the
    results log; ``measurements``, ``findings``, ``derived_images`` and
    ``presentation_transforms`` go back to the PACS as DICOM. ``log_measurements`` are
    measurements kept in the results log only, not sent as DICOM (too many or too
    fine-grained for a report, e.g. one score per CT slice); the log stores them like
    ``measurements``. ``source_headers``, when a pipeline parsed every file's header
    anyway, are those headers (no pixel data) in ``SeriesInput.files`` order: the node
    then encodes from them instead of parsing the files again. Empty: it reads them.
    """

    pipeline: str
    model_version: str
    summary: dict[str, object] = field(default_factory=dict)
    measurements: tuple[Measurement, ...] = ()
    findings: tuple[Finding, ...] = ()
    derived_images: tuple[DerivedImage, ...] = ()
    weights_sha256: str | None = None
    presentation_transforms: tuple[PresentationTransform, ...] = ()
    log_measurements: tuple[Measurement, ...] = ()
    source_headers: tuple[Dataset, ...] = ()
    key_objects: tuple[KeyObjectSelection, ...] = ()

    def __post_init__(self) -> None:
        # Lists are accepted for convenience and frozen into tuples.
        for name in (
            "measurements",
            "findings",
            "derived_images",
            "presentation_transforms",
            "log_measurements",
            "source_headers",
            "key_objects",
        ):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if not all(isinstance(m, Measurement) for m in self.log_measurements):
            raise TypeError("log_measurements must be Measurement values")
        if not all(isinstance(t, PresentationTransform) for t in self.presentation_transforms):
            raise TypeError("presentation_transforms must be PresentationTransform values")
        if not all(isinstance(h, Dataset) for h in self.source_headers):
            raise TypeError("source_headers must be pydicom Datasets")
        if not all(isinstance(k, KeyObjectSelection) for k in self.key_objects):
            raise TypeError("key_objects must be KeyObjectSelection values")
        _ = self.model  # validates pipeline, version and checksum

    @property
    def model(self) -> ModelIdentity:
        return ModelIdentity(self.pipeline, self.model_version, self.weights_sha256)

    @classmethod
    def for_model(
        cls,
        model: ModelIdentity,
        *,
        summary: dict[str, object] | None = None,
        measurements: tuple[Measurement, ...] = (),
        findings: tuple[Finding, ...] = (),
        derived_images: tuple[DerivedImage, ...] = (),
        presentation_transforms: tuple[PresentationTransform, ...] = (),
        log_measurements: tuple[Measurement, ...] = (),
        key_objects: tuple[KeyObjectSelection, ...] = (),
    ) -> PipelineResult:
        return cls(
            pipeline=model.pipeline,
            model_version=model.version,
            summary=dict(summary or {}),
            measurements=measurements,
            findings=findings,
            derived_images=derived_images,
            weights_sha256=model.weights_sha256,
            presentation_transforms=presentation_transforms,
            log_measurements=log_measurements,
            key_objects=key_objects,
        )


@runtime_checkable
class Pipeline(Protocol):
    """A series-scoped pipeline (a study-scoped one is a ``StudyPipeline``)."""

    name: str

    def run(self, series: SeriesInput) -> PipelineResult: ...


@runtime_checkable
class StudyPipeline(Protocol):
    """A study-scoped pipeline: ``scope = "study"``, run on every routed series at once."""

    name: str
    scope: PipelineScope

    def run(self, study: StudyInput) -> PipelineResult: ...


def pipeline_scope(pipeline: object) -> PipelineScope:
    """``"study"`` for a pipeline (or its class) that says so, else ``"series"``; a scope
    that is neither raises ``ValueError``."""
    scope = getattr(pipeline, "scope", "series")
    if scope not in SCOPES:
        raise ValueError(f"pipeline scope {scope!r} is not one of {', '.join(SCOPES)}")
    return "study" if scope == "study" else "series"
