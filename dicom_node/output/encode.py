"""Encode a pipeline's result as DICOM objects for the PACS.

``encode_result`` turns one ``PipelineResult`` and the headers of its source instances
into:

* one **Comprehensive SR** (when the result has measurements or findings): a TID 1500
  Measurement Report whose observer is this node (device observer context, TID 1004),
  with one measurement group (TID 1501) per source instance that has measurements and
  one per finding. Every group carries the algorithm's name and version (TID 4019), a
  tracking identifier and, where known, the source image; measurements carry UCUM
  units and, where the pipeline names one, the anatomy they are about (Finding Site);
  findings are qualitative evaluations with their probability. Every source
  instance is referenced as evidence and, up to ``IMAGE_LIBRARY_LIMIT`` of them, listed
  in the image library. ``log_measurements`` are never encoded: they belong to the
  results log only, and a result with nothing else to report has no SR.
* one **Secondary Capture image** per derived image: grayscale (MONOCHROME2, 8 or 16
  bits) or RGB, with the source images it was made from, Burned In Annotation and,
  where known, Pixel Spacing.
* one **Grayscale Softcopy Presentation State** (GSPS) per presentation transform: it
  references its one source image and tells a viewer to show it rotated (Image Rotation,
  clockwise) and/or flipped (Image Horizontal Flip), the source's pixels untouched. The
  source's grayscale display is carried over unchanged (see ``_Run.presentation_state``).

SR, SC images and presentation states go to three new series (SR, OT and PR). Patient
and study attributes are copied from the sources. All UIDs are derived from (source
series, pipeline, model version, output kind, index) under the site's UID root
(``dicom_node.output.uids``), so running the same model again gives the same objects and
a new model version new ones.

``write_output`` writes an encoded object as a Part 10 file, durably.

Nothing here logs patient names or IDs: only UIDs and counts. highdicom's own name
checks (which log or refuse some valid names) are kept away from the real names by
building from a copy of the source header whose patient and study values are empty and
copying the real values in afterwards.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, TypedDict

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DA, DS, TM

from dicom_node.errors import NodeError
from dicom_node.output import codes
from dicom_node.output.uids import (
    check_uid_root,
    derive_uid,
    output_instance_uid,
    output_series_uid,
)
from dicom_node.store import write_durably
from dicom_node.uids import validate_uid
from pipelines.contract import (
    DerivedImage,
    Finding,
    Measurement,
    PipelineResult,
    PresentationTransform,
)

logger = logging.getLogger(__name__)

OutputKind = Literal["sr", "sc", "gsps"]

MANUFACTURER = "dicom-node"
#: Up to this many source instances the SR lists them in its image library (TID 1600,
#: with their descriptors); above it the library is left out, because highdicom's
#: descriptors cost ~30 ms per instance. The evidence sequence always lists them all.
IMAGE_LIBRARY_LIMIT = 64
#: Content Label of the presentation states (CS: A-Z, 0-9, space and underscore, at most
#: 16 characters): what a viewer lists to choose between presentation states.
GSPS_CONTENT_LABEL = "ORIENTATION"

# Patient and study attributes highdicom reads from the reference dataset at build time;
# they are emptied in the copy handed to highdicom and copied from the source after.
_PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)
# Copied when highdicom does not know the source's IOD (a private SOP class, say).
_FALLBACK_COPY_KEYWORDS = (
    *_PATIENT_STUDY_KEYWORDS,
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "OtherPatientIDsSequence",
    "PatientBirthTime",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
    "ProcedureCodeSequence",
    "PhysiciansOfRecord",
    "ReferringPhysicianIdentificationSequence",
)
_PIXEL_TAGS = {Tag("PixelData"), Tag("FloatPixelData"), Tag("DoubleFloatPixelData")}
# The source's grayscale display: copied into a presentation state as they are, and kept
# away from highdicom (whose own extraction handles only some of their forms).
_MODALITY_LUT_KEYWORDS = ("RescaleIntercept", "RescaleSlope", "RescaleType", "ModalityLUTSequence")
_VOI_LUT_KEYWORDS = (
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
)
_CHARSET_UTF8 = "ISO_IR 192"


class _CommonAttributes(TypedDict, total=False):
    """Keyword arguments every output's highdicom constructor gets."""

    series_description: str
    manufacturer_model_name: str
    software_versions: str
    content_date: DA
    content_time: TM
    series_date: DA
    series_time: TM
    institution_name: str


class EncodeError(NodeError, ValueError):
    """A result that cannot be encoded with the sources given (a pipeline or caller bug)."""


@dataclass(frozen=True)
class DeviceIdentity:
    """The node as the creator of the objects (General Equipment, SR device observer).

    ``model_name`` defaults to the pipeline's name; ``device_uid`` (the SR device
    observer UID) defaults to a UID derived from the UID root and the AE title.
    """

    ae_title: str
    software_version: str
    manufacturer: str = MANUFACTURER
    model_name: str | None = None
    institution_name: str | None = None
    device_uid: str | None = None


@dataclass(frozen=True, eq=False)
class EncodedOutput:
    """One DICOM object made from a result, ready to be written and sent."""

    kind: OutputKind
    dataset: Dataset
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    description: str


# -- public API ----------------------------------------------------------------------------


def read_source_headers(paths: Iterable[str | os.PathLike[str]]) -> list[Dataset]:
    """The stored source files' headers (no pixel data), in the order given."""
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]


def source_headers_for(
    result: PipelineResult, paths: Sequence[str | os.PathLike[str]]
) -> list[Dataset]:
    """The headers of the series' files ``paths`` to encode ``result`` from: the ones the
    pipeline parsed (``result.source_headers``) when it gave one per file, else read."""
    if result.source_headers and len(result.source_headers) == len(paths):
        return list(result.source_headers)
    return read_source_headers(paths)


def encode_result(
    result: PipelineResult,
    sources: Sequence[Dataset],
    *,
    device: DeviceIdentity,
    uid_root: str,
    created_at: datetime | None = None,
) -> list[EncodedOutput]:
    """The DICOM objects for ``result``: an SR (if anything to report), SC images, GSPS.

    ``sources`` are the source instances (headers are enough), in the order the
    pipeline saw them (``SeriesInput.files``), so ``Measurement.slice_index`` indexes
    them. ``created_at`` (local time) stamps content, series and creation dates and times;
    by default the current time. Raises ``EncodeError`` when the result refers to an
    instance that is not among ``sources`` or the sources are unusable.
    """
    check_uid_root(uid_root)
    headers = _unique_sources(sources)
    when = created_at or datetime.now()
    run = _Run(result, headers, device, uid_root, when)
    outputs: list[EncodedOutput] = []
    if result.measurements or result.findings:
        outputs.append(run.structured_report())
    for index, image in enumerate(result.derived_images):
        outputs.append(run.secondary_capture(index, image))
    for index, transform in enumerate(result.presentation_transforms):
        outputs.append(run.presentation_state(index, transform))
    logger.info(
        "encoded %d output(s) of %s %s for series %s: %s",
        len(outputs),
        result.pipeline,
        result.model_version,
        run.source_series_key,
        ", ".join(f"{o.kind} {o.sop_instance_uid}" for o in outputs) or "nothing to send",
    )
    return outputs


def write_output(output: EncodedOutput, folder: Path) -> Path:
    """Write ``output`` as ``<folder>/<SOPInstanceUID>.dcm`` (Part 10), durably.

    The file is written under a temporary name in ``folder``, fsynced, renamed into
    place and the folder fsynced; an existing file of the same name (a rerun) is
    replaced. ``OSError`` becomes ``OutOfResources``.
    """
    name = validate_uid(output.sop_instance_uid, "SOPInstanceUID") + ".dcm"
    target = folder / name
    write_durably(target, lambda handle: output.dataset.save_as(handle, enforce_file_format=True))
    return target


def series_description(pipeline: str, model_version: str, what: str) -> str:
    """``"dicom-node <pipeline> v<version> - <what>"``, cut to the 64 characters of LO."""
    version = model_version if model_version[:1] in ("v", "V") else f"v{model_version}"
    return f"{MANUFACTURER} {pipeline} {version} - {what}"[:64]


# -- the work ------------------------------------------------------------------------------


class _Run:
    """Everything one ``encode_result`` call shares between its outputs."""

    def __init__(
        self,
        result: PipelineResult,
        sources: list[Dataset],
        device: DeviceIdentity,
        uid_root: str,
        when: datetime,
    ) -> None:
        self.result = result
        self.sources = sources
        self.by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
        self.device = device
        self.uid_root = uid_root
        self.date = DA(when.date())
        self.time = TM(when.time())
        series = sorted({str(ds.SeriesInstanceUID) for ds in sources})
        self.source_series_key = "+".join(series)
        self.model_name = device.model_name or result.pipeline

    # -- UIDs and numbers

    def _series_uid(self, kind: OutputKind) -> str:
        r = self.result
        return output_series_uid(
            self.uid_root, self.source_series_key, r.pipeline, r.model_version, kind
        )

    def _instance_uid(self, kind: OutputKind, index: int) -> str:
        r = self.result
        return output_instance_uid(
            self.uid_root, self.source_series_key, r.pipeline, r.model_version, kind, index
        )

    def _tracking_uid(self, *parts: str) -> str:
        r = self.result
        return derive_uid(
            self.uid_root, "tracking", self.source_series_key, r.pipeline, r.model_version, *parts
        )

    @staticmethod
    def _series_number(series_uid: str) -> int:
        # Deterministic and out of the way of the usual 1..999 of modalities.
        return 1000 + int(derive_uid("2.25", "series-number", series_uid)[5:]) % 9000

    def _common_kwargs(self, what: str, texts: list[str]) -> _CommonAttributes:
        kwargs = _CommonAttributes(
            series_description=series_description(
                self.result.pipeline, self.result.model_version, what
            ),
            manufacturer_model_name=self.model_name[:64],
            software_versions=self.device.software_version[:64],
            content_date=self.date,
            content_time=self.time,
            series_date=self.date,
            series_time=self.time,
        )
        if self.device.institution_name:
            kwargs["institution_name"] = self.device.institution_name[:64]
        texts.extend(v for v in kwargs.values() if isinstance(v, str))
        return kwargs

    def _source_for(
        self, sop_uid: str | None, slice_index: int | None, what: str
    ) -> Dataset | None:
        if sop_uid is not None:
            try:
                return self.by_uid[sop_uid]
            except KeyError:
                raise EncodeError(
                    f"{what} refers to instance {sop_uid}, which is not among the "
                    f"{len(self.sources)} source instance(s)"
                ) from None
        if slice_index is not None:
            if slice_index >= len(self.sources):
                raise EncodeError(
                    f"{what} refers to slice {slice_index}, but there are only "
                    f"{len(self.sources)} source instance(s)"
                )
            return self.sources[slice_index]
        return None

    # -- SR

    def structured_report(self) -> EncodedOutput:
        r = self.result
        texts: list[str] = [self.device.ae_title, self.device.manufacturer]
        algorithm = hd.sr.AlgorithmIdentification(
            name=r.pipeline,
            version=r.model_version,
            parameters=[f"weights sha256 {r.weights_sha256}"] if r.weights_sha256 else None,
        )
        groups: list[hd.sr.MeasurementsAndQualitativeEvaluations] = []
        private = False

        # Measurements: one group per source instance (None: the whole series).
        by_source: dict[str | None, list[Measurement]] = {}
        for m in r.measurements:
            source = self._source_for(m.tracking_uid, m.slice_index, f"measurement {m.name!r}")
            key = None if source is None else str(source.SOPInstanceUID)
            by_source.setdefault(key, []).append(m)
        for key, measurements in by_source.items():
            items = []
            for m in measurements:
                concept = m.concept or codes.uncoded_measurement(m.name)
                used = [concept] if m.finding_site is None else [concept, m.finding_site]
                private = private or any(codes.is_private(c) for c in used)
                texts.extend((*(c.meaning for c in used), m.name))
                items.append(
                    hd.sr.Measurement(
                        name=codes.concept(concept),
                        value=float(m.value),
                        unit=codes.unit(m.unit),
                        finding_sites=_finding_sites(m),
                        referenced_images=self._measurement_images(key, m.frame_number),
                    )
                )
            where = "the series" if key is None else f"instance {self._position(key)}"
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(
                        uid=self._tracking_uid("measurements", key or "series"),
                        identifier=f"{r.pipeline} measurements of {where}",
                    ),
                    algorithm_id=algorithm,
                    measurements=items,
                    source_images=self._group_images(key),
                )
            )

        # Findings: one group each, so a probability belongs to exactly one finding.
        for number, finding in enumerate(r.findings, start=1):
            source = self._source_for(finding.tracking_uid, None, f"finding {finding.concept}")
            key = None if source is None else str(source.SOPInstanceUID)
            private = private or any(codes.is_private(c) for c in (finding.concept, finding.value))
            texts.extend((finding.concept.meaning, finding.value.meaning))
            groups.append(self._finding_group(number, finding, key, algorithm))

        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(
                observer_device_context=hd.sr.ObserverContext(
                    observer_type=codes.coded(codes.OBSERVER_TYPE_DEVICE),
                    observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                        uid=self.device.device_uid
                        or derive_uid(self.uid_root, "device", self.device.ae_title),
                        name=self.device.ae_title,
                        manufacturer_name=self.device.manufacturer,
                        model_name=self.model_name,
                    ),
                )
            ),
            procedure_reported=codes.procedure_reported(self.sources[0].get("Modality")),
            imaging_measurements=groups,
            title=codes.coded(codes.REPORT_TITLE),
        )
        _insert_image_library(report, self._image_library())
        series_uid = self._series_uid("sr")
        sop_uid = self._instance_uid("sr", 0)
        kwargs = self._common_kwargs("report", texts)
        reference = self.sources[0]
        sr = hd.sr.ComprehensiveSR(
            evidence=[_blank_copy(reference), *self.sources[1:]],
            content=report,
            series_instance_uid=series_uid,
            series_number=self._series_number(series_uid),
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=self.device.manufacturer,
            is_complete=True,
            coding_schemes=[codes.coding_scheme()] if private else None,
            **kwargs,
        )
        self._finish(sr, reference, texts)
        return EncodedOutput(
            "sr", sr, str(sr.SOPClassUID), sop_uid, series_uid, kwargs["series_description"]
        )

    def _image_library(self) -> hd.sr.ImageLibrary | None:
        """The image library (TID 1600) of the sources, or None to leave it out.

        It is left out for long series (highdicom's entry descriptors take ~7 ms per
        instance, and the SR's construction copies and searches every entry again) and
        when a source lacks what its descriptors need (e.g. a CT slice without Pixel
        Spacing); the evidence sequence still references every source. TID 1500 allows
        a report without one. Built here once, rather than by ``MeasurementReport``
        after a check of every source's descriptors, which built them all twice.
        """
        if len(self.sources) > IMAGE_LIBRARY_LIMIT:
            return None
        try:
            return hd.sr.ImageLibrary(self.sources)
        except (AttributeError, ValueError, TypeError, KeyError) as exc:
            logger.info("image library left out: a source lacks %s", exc)
            return None

    def _finding_group(
        self,
        number: int,
        finding: Finding,
        key: str | None,
        algorithm: hd.sr.AlgorithmIdentification,
    ) -> hd.sr.MeasurementsAndQualitativeEvaluations:
        measurements = None
        if finding.probability is not None:
            measurements = [
                hd.sr.Measurement(
                    name=codes.coded(codes.PROBABILITY),
                    value=float(finding.probability),
                    unit=codes.coded(codes.PROBABILITY_UNIT),
                    referenced_images=self._measurement_images(key),
                )
            ]
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=self._tracking_uid("finding", str(number), key or "series"),
                identifier=f"{self.result.pipeline} finding {number}",
            ),
            algorithm_id=algorithm,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(
                    name=codes.concept(finding.concept), value=codes.concept(finding.value)
                )
            ],
            measurements=measurements,
            source_images=self._group_images(key),
        )

    def _position(self, sop_uid: str) -> int:
        return next(i for i, ds in enumerate(self.sources) if ds.SOPInstanceUID == sop_uid) + 1

    def _group_images(self, key: str | None) -> list[hd.sr.SourceImageForMeasurementGroup] | None:
        if key is None:
            return None
        ds = self.by_uid[key]
        return [hd.sr.SourceImageForMeasurementGroup(str(ds.SOPClassUID), key)]

    def _measurement_images(
        self, key: str | None, frame_number: int | None = None
    ) -> list[hd.sr.SourceImageForMeasurement] | None:
        if key is None:
            return None
        ds = self.by_uid[key]
        if frame_number is None:
            return [hd.sr.SourceImageForMeasurement(str(ds.SOPClassUID), key)]
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if not 1 <= frame_number <= frames:
            raise EncodeError(
                f"a measurement refers to frame {frame_number} of instance "
                f"{self._position(key)}, which has {frames} frame(s)"
            )
        return [
            hd.sr.SourceImageForMeasurement(
                str(ds.SOPClassUID), key, referenced_frame_numbers=[frame_number]
            )
        ]

    # -- SC

    def secondary_capture(self, index: int, image: DerivedImage) -> EncodedOutput:
        source = self._source_for(
            image.source_sop_instance_uid, None, f"derived image {index + 1} ({image.kind})"
        )
        referenced = [source] if source is not None else list(self.sources)
        reference = source if source is not None else self.sources[0]
        pixels = np.ascontiguousarray(image.pixels)
        color = image.is_color
        bits = 8 if pixels.dtype == np.uint8 else 16
        texts: list[str] = [image.description, self.device.manufacturer]
        kwargs = self._common_kwargs("images", texts)
        series_uid = self._series_uid("sc")
        sop_uid = self._instance_uid("sc", index)
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=_blank_copy(reference),
            pixel_array=pixels,
            photometric_interpretation="RGB" if color else "MONOCHROME2",
            bits_allocated=bits,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=self._series_number(series_uid),
            sop_instance_uid=sop_uid,
            instance_number=index + 1,
            manufacturer=self.device.manufacturer,
            # highdicom insists on an orientation; an unknown one is emptied below.
            patient_orientation=image.patient_orientation or ("L", "F"),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            **kwargs,
        )
        if image.patient_orientation is None:
            sc.PatientOrientation = []  # Type 2: empty, unknown
        _copy_laterality_and_body_part(sc, reference)
        sc.DateOfSecondaryCapture = self.date
        sc.TimeOfSecondaryCapture = self.time
        sc.BurnedInAnnotation = "YES" if image.burned_in_text else "NO"
        sc.DerivationDescription = image.description[:1024]
        if image.pixel_spacing is not None:
            sc.PixelSpacing = [DS(s, auto_format=True) for s in image.pixel_spacing]
        if not color and bits == 16:
            low, high = int(pixels.min()), int(pixels.max())
            sc.WindowCenter = DS((low + high + 1) / 2, auto_format=True)
            sc.WindowWidth = DS(max(high - low + 1, 1), auto_format=True)
        sc.SourceImageSequence = [_source_image_item(ds) for ds in referenced]
        self._finish(sc, reference, texts)
        return EncodedOutput("sc", sc, str(sc.SOPClassUID), sop_uid, series_uid, image.description)

    # -- GSPS

    def presentation_state(self, index: int, transform: PresentationTransform) -> EncodedOutput:
        """A GSPS that shows one source image rotated and/or flipped.

        The display of the source is kept as it is apart from the spatial transformation:
        the source's rescale (or Modality LUT Sequence) becomes the Modality LUT module;
        its window centre/width values (with explanation and VOI LUT Function) and/or VOI
        LUT Sequence become the one Softcopy VOI LUT item, which applies to the one image
        referenced; the Presentation LUT Shape is the source's (IDENTITY or INVERSE) or,
        where the source has none, INVERSE for MONOCHROME1 and IDENTITY for MONOCHROME2,
        since a presentation state's Presentation LUT replaces the inversion that
        MONOCHROME1 implies. A source without a window has no Softcopy VOI LUT module
        (the identity VOI transformation).

        The Displayed Area is the whole image (scale to fit), in the image's own pixel
        coordinates; as PS3.3 C.10.4 defines them, its top left and bottom right hand
        corners are the pixels that end up top left and bottom right *after* the spatial
        transformation, so for a rotation or flip they are other corners of the image.
        """
        what = f"presentation transform {index + 1}"
        source = self._source_for(transform.source_sop_instance_uid, None, what)
        assert source is not None  # a transform always names its source
        _check_grayscale(source, what)
        texts: list[str] = [transform.description, self.device.manufacturer]
        kwargs = self._common_kwargs("presentation", texts)
        # The GSPS IOD has no General Image module: no Content Date and Time.
        kwargs.pop("content_date", None)
        kwargs.pop("content_time", None)
        series_uid = self._series_uid("gsps")
        sop_uid = self._instance_uid("gsps", index)
        reference = _blank_copy(source)
        for keyword in (*_MODALITY_LUT_KEYWORDS, *_VOI_LUT_KEYWORDS):
            if keyword in reference:
                del reference[keyword]
        gsps = hd.pr.GrayscaleSoftcopyPresentationState(
            referenced_images=[reference],
            series_instance_uid=series_uid,
            series_number=self._series_number(series_uid),
            sop_instance_uid=sop_uid,
            instance_number=index + 1,
            manufacturer=self.device.manufacturer,
            device_serial_number=None,  # type: ignore[arg-type]  # Type 3: not sent
            content_label=GSPS_CONTENT_LABEL,
            content_description=transform.description,
            presentation_lut_transformation=hd.PresentationLUTTransformation(
                presentation_lut_shape=_presentation_lut_shape(source)
            ),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            **kwargs,
        )
        # Set here, not through highdicom: its person-name check refuses a PN without a
        # caret, and an AE title has none.
        gsps.ContentCreatorName = f"{self.device.ae_title}^"
        gsps.PresentationCreationDate = self.date
        gsps.PresentationCreationTime = self.time
        # Spatial Transformation module (PS3.3 C.10.6): rotation first, then the flip.
        gsps.ImageRotation = transform.rotation_deg
        gsps.ImageHorizontalFlip = "Y" if transform.horizontal_flip else "N"
        gsps.DisplayedAreaSelectionSequence = [_displayed_area(source, transform)]
        _copy_laterality_and_body_part(gsps, source)
        _copy_display(gsps, source)
        self._finish(gsps, source, texts)
        return EncodedOutput(
            "gsps", gsps, str(gsps.SOPClassUID), sop_uid, series_uid, transform.description
        )

    # -- all

    def _finish(self, ds: hd.SOPClass, reference: Dataset, texts: list[str]) -> None:
        _copy_patient_and_study(ds, reference)
        ds.InstanceCreationDate = self.date
        ds.InstanceCreationTime = self.time
        if any(not t.isascii() for t in texts) and ds.get("SpecificCharacterSet") != _CHARSET_UTF8:
            ds.SpecificCharacterSet = _CHARSET_UTF8


# -- helpers -------------------------------------------------------------------------------


def _unique_sources(sources: Sequence[Dataset]) -> list[Dataset]:
    if not sources:
        raise EncodeError("no source instances to encode against")
    unique: dict[str, Dataset] = {}
    studies: set[str] = set()
    for ds in sources:
        for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            if not ds.get(keyword):
                raise EncodeError(f"a source instance has no {keyword}")
        unique.setdefault(str(ds.SOPInstanceUID), ds)
        studies.add(str(ds.StudyInstanceUID))
    if len(studies) > 1:
        raise EncodeError(f"source instances come from {len(studies)} studies; one expected")
    return list(unique.values())


def _blank_copy(source: Dataset) -> Dataset:
    """The source header without pixel data, patient and study values emptied.

    Elements are new objects (sequence values are shared, never changed), so nothing
    done to the copy reaches the caller's dataset.
    """
    copy = Dataset()
    blank = set(_PATIENT_STUDY_KEYWORDS)
    for element in source:
        if element.tag in _PIXEL_TAGS or element.keyword in blank:
            continue
        copy.add(pydicom.DataElement(element.tag, element.VR, element.value))
    for keyword in _PATIENT_STUDY_KEYWORDS:
        setattr(copy, keyword, None)
    return copy


def _copy_patient_and_study(target: hd.SOPClass, source: Dataset) -> None:
    """Patient and study modules of ``source`` into ``target``, values unchanged."""
    try:
        target.copy_patient_and_study_information(source)
    except KeyError:  # highdicom does not know the source's IOD
        for keyword in _FALLBACK_COPY_KEYWORDS:
            if keyword in source:
                element = source[keyword]
                target.add(pydicom.DataElement(element.tag, element.VR, element.value))
    for keyword in _PATIENT_STUDY_KEYWORDS:  # Type 2: present, empty if unknown
        if keyword not in target:
            setattr(target, keyword, None)


#: Body Part Examined terms of paired structures, whose series need Laterality (Type 2C).
PAIRED_BODY_PARTS = frozenset(
    {
        "ANKLE", "ARM", "BREAST", "CLAVICLE", "EAR", "ELBOW", "EXTREMITY", "EYE", "FEMUR",
        "FIBULA", "FINGER", "FOOT", "FOREARM", "HAND", "HEEL", "HIP", "HUMERUS", "KIDNEY",
        "KNEE", "LEG", "LOWERLIMB", "LUNG", "ORBIT", "PATELLA", "RADIUS", "SCAPULA",
        "SHOULDER", "THIGH", "THUMB", "TIBIA", "TOE", "ULNA", "UPPERLIMB", "WRIST",
    }
)  # fmt: skip


def _copy_laterality_and_body_part(target: Dataset, source: Dataset) -> None:
    """General Series Laterality and Body Part Examined from the source.

    Laterality is Type 2C (required for paired body parts): the source's R or L; empty
    when the part is paired or not named; left out for an unpaired part (a chest CT),
    where dciodvfy counts an empty one as present without its condition. For a part not
    named, dciodvfy calls a missing Laterality an error and an empty one a warning ("only
    permitted to be empty when actually unknown"), which it is: the warning stays."""
    laterality = str(source.get("Laterality") or source.get("ImageLaterality") or "")
    part = str(source.get("BodyPartExamined") or "").strip().upper()
    if laterality in ("R", "L"):
        target.Laterality = laterality
    elif not part or part in PAIRED_BODY_PARTS:
        target.Laterality = ""
    if part:
        target.BodyPartExamined = source.BodyPartExamined


def _check_grayscale(source: Dataset, what: str) -> None:
    """Refuse a source a grayscale presentation state cannot show."""
    photometric = str(source.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or source.get("SamplesPerPixel") != 1:
        raise EncodeError(
            f"{what}: instance {source.SOPInstanceUID} is not a grayscale image "
            f"(Photometric Interpretation {photometric or 'absent'})"
        )
    if not source.get("Rows") or not source.get("Columns"):
        raise EncodeError(f"{what}: instance {source.SOPInstanceUID} has no Rows or Columns")


def _presentation_lut_shape(source: Dataset) -> str:
    """IDENTITY or INVERSE, so that the presentation state keeps the source's polarity."""
    shape = str(source.get("PresentationLUTShape", ""))
    if shape in ("IDENTITY", "INVERSE"):
        return shape
    return "INVERSE" if source.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"


def _displayed_area_corners(
    rows: int, columns: int, rotation: int, flip: bool
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Top left and bottom right hand corners, (column, row), of the whole image.

    They are pixels of the image before the spatial transformation (1\\1 is its first
    pixel) that are shown top left and bottom right after it: a clockwise rotation by k
    quarter turns shows at each corner of the screen the image corner k places
    counter-clockwise of it, and a flip after it swaps left and right.
    """
    clockwise = ((1, 1), (columns, 1), (columns, rows), (1, rows))  # TL, TR, BR, BL
    turns = rotation // 90
    top_left = clockwise[((1 if flip else 0) - turns) % 4]
    bottom_right = clockwise[((3 if flip else 2) - turns) % 4]
    return top_left, bottom_right


def _displayed_area(source: Dataset, transform: PresentationTransform) -> Dataset:
    """The one Displayed Area Selection item: the whole image, scaled to fit."""
    top_left, bottom_right = _displayed_area_corners(
        int(source.Rows), int(source.Columns), transform.rotation_deg, transform.horizontal_flip
    )
    item = Dataset()
    item.DisplayedAreaTopLeftHandCorner = list(top_left)
    item.DisplayedAreaBottomRightHandCorner = list(bottom_right)
    item.PresentationSizeMode = "SCALE TO FIT"
    # The shape of the source's pixels, before the spatial transformation.
    spacing = source.get("PixelSpacing")
    if source.get("PixelAspectRatio"):
        item.PresentationPixelAspectRatio = [int(v) for v in source.PixelAspectRatio]
    elif spacing and len(spacing) == 2 and float(spacing[0]) != float(spacing[1]):
        item.PresentationPixelSpacing = list(spacing)
    else:
        item.PresentationPixelAspectRatio = [1, 1]
    return item


def _copy_elements(target: Dataset, source: Dataset, keywords: Iterable[str]) -> None:
    """The elements of ``source`` named ``keywords`` that have a value, copied into ``target``."""
    for keyword in keywords:
        if source.get(keyword) not in (None, ""):
            element = source[keyword]
            target.add(pydicom.DataElement(element.tag, element.VR, copy.deepcopy(element.value)))


def _copy_display(target: Dataset, source: Dataset) -> None:
    """The source's Modality LUT and VOI LUT into the presentation state, values unchanged.

    A Modality LUT Sequence wins over rescale values (as pydicom applies them; an image
    should not have both). A rescale without Rescale Type (a CT image, say) gets the one
    the presentation state needs (Type 1): HU for CT, US (unspecified) otherwise.
    """
    if source.get("ModalityLUTSequence"):
        _copy_elements(target, source, ["ModalityLUTSequence"])
    elif source.get("RescaleIntercept") is not None and source.get("RescaleSlope") is not None:
        _copy_elements(target, source, ["RescaleIntercept", "RescaleSlope", "RescaleType"])
        if "RescaleType" not in target:
            target.RescaleType = "HU" if source.get("Modality") == "CT" else "US"
    voi = Dataset()
    _copy_elements(voi, source, _VOI_LUT_KEYWORDS)
    has_window = "WindowCenter" in voi and "WindowWidth" in voi
    if not has_window:  # half a window, or a function without one: nothing to apply
        for keyword in (
            "WindowCenter",
            "WindowWidth",
            "WindowCenterWidthExplanation",
            "VOILUTFunction",
        ):
            if keyword in voi:
                del voi[keyword]
    if has_window or "VOILUTSequence" in voi:
        target.SoftcopyVOILUTSequence = [voi]


def _insert_image_library(
    report: hd.sr.MeasurementReport, library: hd.sr.ImageLibrary | None
) -> None:
    """Put ``library`` where ``MeasurementReport`` would: before the measurement containers
    (TID 1500: after the procedure reported)."""
    if library is None:
        return
    content = report[0].ContentSequence
    at = next((i for i, item in enumerate(content) if item.ValueType == "CONTAINER"), len(content))
    for offset, item in enumerate(library):
        content.insert(at + offset, item)


def _finding_sites(measurement: Measurement) -> list[hd.sr.FindingSite] | None:
    """The measurement's Finding Site (TID 300), or None when it names none."""
    if measurement.finding_site is None:
        return None
    return [hd.sr.FindingSite(anatomic_location=codes.concept(measurement.finding_site))]


def _source_image_item(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [codes.coded(codes.SOURCE_IMAGE_PURPOSE)]
    return item


__all__ = [
    "DeviceIdentity",
    "EncodeError",
    "EncodedOutput",
    "GSPS_CONTENT_LABEL",
    "OutputKind",
    "encode_result",
    "read_source_headers",
    "series_description",
    "write_output",
]
