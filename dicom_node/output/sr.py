"""The Comprehensive SR of a result: a TID 1500 Measurement Report.

Made when the result has measurements or findings. Its observer is this node (device
observer context, TID 1004), with one measurement group (TID 1501) per source instance
that has measurements and one per finding. Every group carries the algorithm's name and
version (TID 4019), a tracking identifier and, where known, the source image;
measurements carry UCUM units and, where the pipeline names one, the anatomy they are
about (Finding Site); findings are qualitative evaluations with their probability. Every
source instance is referenced as evidence and, up to ``IMAGE_LIBRARY_LIMIT`` of them,
listed in the image library. ``log_measurements`` are never encoded: they belong to the
results log only, and a result with nothing else to report has no SR.
"""

from __future__ import annotations

import logging

import highdicom as hd

from dicom_node.output import codes
from dicom_node.output.base import EncodedOutput, Run
from dicom_node.output.sources import EncodeError, blank_copy
from pipelines.contract import Finding, Measurement

logger = logging.getLogger(__name__)

#: Up to this many source instances the SR lists them in its image library (TID 1600,
#: with their descriptors); above it the library is left out, because highdicom's
#: descriptors cost ~30 ms per instance. The evidence sequence always lists them all.
IMAGE_LIBRARY_LIMIT = 64


def structured_report(run: Run) -> EncodedOutput:
    r = run.result
    texts: list[str] = [run.device.ae_title, run.device.manufacturer]
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
        source = run.source_for(m.tracking_uid, m.slice_index, f"measurement {m.name!r}")
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
                    referenced_images=_measurement_images(run, key, m.frame_number),
                )
            )
        where = "the series" if key is None else f"instance {_position(run, key)}"
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=run.tracking_uid("measurements", key or "series"),
                    identifier=f"{r.pipeline} measurements of {where}",
                ),
                algorithm_id=algorithm,
                measurements=items,
                source_images=_group_images(run, key),
            )
        )

    # Findings: one group each, so a probability belongs to exactly one finding.
    for number, finding in enumerate(r.findings, start=1):
        source = run.source_for(finding.tracking_uid, None, f"finding {finding.concept}")
        key = None if source is None else str(source.SOPInstanceUID)
        private = private or any(codes.is_private(c) for c in (finding.concept, finding.value))
        texts.extend((finding.concept.meaning, finding.value.meaning))
        groups.append(_finding_group(run, number, finding, key, algorithm))

    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=run.device_observer()),
        procedure_reported=codes.procedure_reported(run.sources[0].get("Modality")),
        imaging_measurements=groups,
        title=codes.coded(codes.REPORT_TITLE),
    )
    _insert_image_library(report, _image_library(run))
    series_uid = run.series_uid("sr")
    sop_uid = run.instance_uid("sr", 0)
    kwargs = run.common_kwargs("report", texts)
    reference = run.sources[0]
    sr = hd.sr.ComprehensiveSR(
        evidence=[blank_copy(reference), *run.sources[1:]],
        content=report,
        series_instance_uid=series_uid,
        series_number=run.series_number(series_uid),
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=run.device.manufacturer,
        is_complete=True,
        coding_schemes=[codes.coding_scheme()] if private else None,
        **kwargs,
    )
    run.finish(sr, reference, texts)
    return EncodedOutput(
        "sr", sr, str(sr.SOPClassUID), sop_uid, series_uid, kwargs["series_description"]
    )


def _image_library(run: Run) -> hd.sr.ImageLibrary | None:
    """The image library (TID 1600) of the sources, or None to leave it out.

    It is left out for long series (highdicom's entry descriptors take ~7 ms per
    instance, and the SR's construction copies and searches every entry again) and
    when a source lacks what its descriptors need (e.g. a CT slice without Pixel
    Spacing); the evidence sequence still references every source. TID 1500 allows
    a report without one. Built here once, rather than by ``MeasurementReport``
    after a check of every source's descriptors, which built them all twice.
    """
    if len(run.sources) > IMAGE_LIBRARY_LIMIT:
        return None
    try:
        return hd.sr.ImageLibrary(run.sources)
    except (AttributeError, ValueError, TypeError, KeyError) as exc:
        logger.info("image library left out: a source lacks %s", exc)
        return None


def _finding_group(
    run: Run,
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
                referenced_images=_measurement_images(run, key),
            )
        ]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=run.tracking_uid("finding", str(number), key or "series"),
            identifier=f"{run.result.pipeline} finding {number}",
        ),
        algorithm_id=algorithm,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=codes.concept(finding.concept), value=codes.concept(finding.value)
            )
        ],
        measurements=measurements,
        source_images=_group_images(run, key),
    )


def _position(run: Run, sop_uid: str) -> int:
    return next(i for i, ds in enumerate(run.sources) if ds.SOPInstanceUID == sop_uid) + 1


def _group_images(run: Run, key: str | None) -> list[hd.sr.SourceImageForMeasurementGroup] | None:
    if key is None:
        return None
    ds = run.by_uid[key]
    return [hd.sr.SourceImageForMeasurementGroup(str(ds.SOPClassUID), key)]


def _measurement_images(
    run: Run, key: str | None, frame_number: int | None = None
) -> list[hd.sr.SourceImageForMeasurement] | None:
    if key is None:
        return None
    ds = run.by_uid[key]
    if frame_number is None:
        return [hd.sr.SourceImageForMeasurement(str(ds.SOPClassUID), key)]
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame_number <= frames:
        raise EncodeError(
            f"a measurement refers to frame {frame_number} of instance "
            f"{_position(run, key)}, which has {frames} frame(s)"
        )
    return [
        hd.sr.SourceImageForMeasurement(
            str(ds.SOPClassUID), key, referenced_frame_numbers=[frame_number]
        )
    ]


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


__all__ = ["IMAGE_LIBRARY_LIMIT", "structured_report"]
