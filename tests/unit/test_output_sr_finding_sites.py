"""Measurements with a finding site, results-log-only measurements, and long CT series.

The sources are a synthetic axial CT series built here (CT Image Storage with complete
patient, study, series, frame of reference, equipment and image plane modules), as a
``ct_body_part`` result would come for it: series-level score range, correlation and zone
extents whose anatomy is coded (SNOMED CT chest / abdomen / pelvis), findings, and one
score per slice kept for the results log only.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom import Dataset
from pydicom.sr.codedict import codes as sr_codes
from pydicom.uid import CTImageStorage

from dicom_node.output import codes
from dicom_node.output.encode import DeviceIdentity, encode_result, write_output
from dicom_node.output.sr import IMAGE_LIBRARY_LIMIT
from pipelines import Code, Finding, Measurement, PipelineResult
from tests.peers import dciodvfy
from tests.support.datasets import PATIENT_ID, PATIENT_NAME, new_instance

UID_ROOT = "1.2.826.0.1.3680043.8.498.99"
CT_ROOT = "1.2.826.0.1.3680043.8.498.78"
DEVICE = DeviceIdentity(ae_title="DICOM_NODE", software_version="0.1.0")
WHEN = datetime(2026, 3, 1, 9, 30, 15)

CHEST = Code("816094009", "SCT", "Chest")
ABDOMEN = Code("818981001", "SCT", "Abdomen")
PELVIS = Code("816092008", "SCT", "Pelvis")
ZONES = {"chest": CHEST, "abdomen": ABDOMEN, "pelvis": PELVIS}
TARGET_REGION = Code("123014", "DCM", "Target Region")
ABSENT = Code("272519000", "SCT", "Absent")
PRESENT = Code("52101004", "SCT", "Present")
SCORE = Code("UBR-SCORE", codes.PRIVATE_SCHEME, "Body part regression score")
LENGTH = Code("410668003", "SCT", "Length")
ZONE_TOP = Code("UBR-ZONE-TOP", codes.PRIVATE_SCHEME, "Zone superior extent")


def ct_slice(index: int, *, slices: int = 300, spacing_mm: float = 2.5) -> Dataset:
    """Header of axial slice ``index`` (1-based, head first) of a synthetic CT series."""
    ds = new_instance(
        CTImageStorage,
        f"{CT_ROOT}.3.{index}",
        study_uid=f"{CT_ROOT}.1",
        series_uid=f"{CT_ROOT}.2",
        modality="CT",
    )
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20260301"
    ds.StudyTime = "081000"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StudyID = "S7"
    ds.AccessionNumber = "ACC-1"
    ds.StudyDescription = "CT chest abdomen pelvis"
    ds.SeriesNumber = 2
    ds.SeriesDescription = "Axial 2.5 mm"
    ds.BodyPartExamined = "CHESTABDPELVIS"
    ds.PatientPosition = "FFS"
    ds.FrameOfReferenceUID = f"{CT_ROOT}.4"
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "Synthetic Imaging"
    ds.InstanceNumber = index
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ContentDate = "20260301"
    ds.ContentTime = "081200"
    ds.AcquisitionNumber = 1
    ds.KVP = "120"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-250, -250, round(-spacing_mm * (index - 1), 3)]
    ds.SliceThickness = spacing_mm
    ds.PixelSpacing = [0.9765625, 0.9765625]
    ds.Rows = 512
    ds.Columns = 512
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    return ds


def ct_series(slices: int) -> list[Dataset]:
    return [ct_slice(i, slices=slices) for i in range(1, slices + 1)]


def body_part_result(slices: int) -> PipelineResult:
    """What ``ct_body_part`` returns for a series of ``slices`` slices: 15 series-level
    measurements (12 with a finding site), 6 findings and one log-only score per slice."""
    measurements = [
        Measurement("Lowest score", -7.5, "{score}", SCORE),
        Measurement("Highest score", 6.25, "{score}", SCORE),
        Measurement("Correlation r", 0.995, "1"),  # uncoded: a private concept
    ]
    for number, (zone, site) in enumerate(ZONES.items()):
        top = -250.0 * number
        measurements += [
            Measurement(f"{zone} top", top, "mm", ZONE_TOP, finding_site=site),
            Measurement(f"{zone} bottom", top - 240, "mm", finding_site=site),
            Measurement(f"{zone} length", 240.0, "mm", LENGTH, finding_site=site),
            Measurement(f"{zone} slices", 96, "{slices}", finding_site=site),
        ]
    findings = [Finding(TARGET_REGION, site) for site in ZONES.values()]
    findings += [
        Finding(Code("UBR-NONLINEAR", codes.PRIVATE_SCHEME, "Score curve not linear"), ABSENT),
        Finding(Code("UBR-DIRECTION", codes.PRIVATE_SCHEME, "Scan direction reversed"), ABSENT),
        Finding(Code("UBR-GAP", codes.PRIVATE_SCHEME, "Gap in the series"), PRESENT, 0.25),
    ]
    log = [
        Measurement(
            "Body part score",
            -7.5 + 13.75 * i / max(slices - 1, 1),
            "{score}",
            SCORE,
            tracking_uid=f"{CT_ROOT}.3.{i + 1}",
            slice_index=i,
        )
        for i in range(slices)
    ]
    return PipelineResult(
        "ct_body_part",
        "20261122.1",
        measurements=tuple(measurements),
        findings=tuple(findings),
        log_measurements=tuple(log),
    )


def encode_one_sr(result: PipelineResult, sources: list[Dataset], folder: Path) -> Path:
    outputs = encode_result(result, sources, device=DEVICE, uid_root=UID_ROOT, created_at=WHEN)
    assert [o.kind for o in outputs] == ["sr"]
    return write_output(outputs[0], folder)


def _report(path: Path) -> hd.sr.MeasurementReport:
    report = hd.sr.srread(path).content
    assert isinstance(report, hd.sr.MeasurementReport)
    return report


def _sites(measurement: hd.sr.Measurement) -> list[tuple[str, str, str]]:
    return [
        (str(s.value.value), str(s.value.scheme_designator), str(s.value.meaning))
        for s in measurement.finding_sites
    ]


# -- finding sites ---------------------------------------------------------------------------


def test_finding_sites_read_back_under_their_measurements(tmp_path: Path) -> None:
    sources = ct_series(3)
    result = body_part_result(3)
    path = encode_one_sr(result, sources, tmp_path)

    groups = _report(path).get_image_measurement_groups()
    series_groups = [g for g in groups if not g.source_images and g.get_measurements()]
    (group,) = [g for g in series_groups if not g.get_qualitative_evaluations()]
    # Several measurements share a concept (one per zone): compare them as lists, in order.
    expected: dict[str, list[tuple[float, list[tuple[str, str, str]]]]] = {}
    for m in result.measurements:
        concept = m.concept or codes.uncoded_measurement(m.name)
        site = m.finding_site
        sites = [] if site is None else [(site.value, site.scheme, site.meaning)]
        expected.setdefault(concept.meaning, []).append((float(m.value), sites))
    by_meaning: dict[str, list[tuple[float, list[tuple[str, str, str]]]]] = {}
    for item in group.get_measurements():
        by_meaning.setdefault(item.name.meaning, []).append((item.value, _sites(item)))
    assert by_meaning == expected
    # The chest's extent is about the chest, the pelvis' about the pelvis.
    tops = by_meaning[ZONE_TOP.meaning]
    assert [site for _, site in tops] == [
        [("816094009", "SCT", "Chest")],
        [("818981001", "SCT", "Abdomen")],
        [("816092008", "SCT", "Pelvis")],
    ]


def test_finding_site_is_a_concept_modifier_in_the_dataset(tmp_path: Path) -> None:
    measurement = Measurement("chest length", 240.0, "mm", LENGTH, finding_site=CHEST)
    path = encode_one_sr(
        PipelineResult("p", "1", measurements=(measurement,)), ct_series(1), tmp_path
    )
    ds = pydicom.dcmread(path)
    found = []

    def walk(items: pydicom.Sequence) -> None:
        for item in items:
            name = item.ConceptNameCodeSequence[0]
            if item.ValueType == "NUM" and name.CodeValue == LENGTH.value:
                for child in item.get("ContentSequence", []):
                    child_name = child.ConceptNameCodeSequence[0]
                    value = child.ConceptCodeSequence[0]
                    found.append(
                        (
                            child.RelationshipType,
                            child.ValueType,
                            (child_name.CodeValue, child_name.CodingSchemeDesignator),
                            (value.CodeValue, value.CodingSchemeDesignator, value.CodeMeaning),
                        )
                    )
            walk(item.get("ContentSequence", []))

    walk(ds.ContentSequence)
    assert found == [
        ("HAS CONCEPT MOD", "CODE", ("363698007", "SCT"), ("816094009", "SCT", "Chest"))
    ]
    assert sr_codes.SCT.FindingSite.value == "363698007"


def test_private_finding_site_names_the_private_scheme(tmp_path: Path) -> None:
    local_site = Code("ZONE-HN", codes.PRIVATE_SCHEME, "Head and neck zone")
    standard = PipelineResult(
        "p", "1", measurements=(Measurement("x", 1.0, "mm", LENGTH, finding_site=CHEST),)
    )
    private = PipelineResult(
        "p", "1", measurements=(Measurement("x", 1.0, "mm", LENGTH, finding_site=local_site),)
    )
    plain = pydicom.dcmread(encode_one_sr(standard, ct_series(1), tmp_path / "a"))
    coded = pydicom.dcmread(encode_one_sr(private, ct_series(1), tmp_path / "b"))
    assert "CodingSchemeIdentificationSequence" not in plain
    assert [s.CodingSchemeDesignator for s in coded.CodingSchemeIdentificationSequence] == [
        codes.PRIVATE_SCHEME
    ]


def test_finding_site_must_be_a_code() -> None:
    with pytest.raises(TypeError, match="finding_site must be a Code"):
        Measurement("x", 1.0, "mm", finding_site="SCT:816094009")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="log_measurements"):
        PipelineResult("p", "1", log_measurements=("score",))  # type: ignore[arg-type]


def test_contract_keeps_positional_forms_and_freezes_log_measurements() -> None:
    m = Measurement("angle", 1.5, "deg", LENGTH, "1.2.3", 4)
    assert (m.finding_site, m.slice_index) == (None, 4)
    log = [Measurement("score", 1.0, "{score}", slice_index=0)]
    result = PipelineResult("p", "1", {}, (), (), (), None, (), log)  # type: ignore[arg-type]
    assert result.log_measurements == tuple(log)
    assert PipelineResult("p", "1").log_measurements == ()


# -- results-log-only measurements -----------------------------------------------------------


def test_log_measurements_stay_out_of_the_sr(tmp_path: Path) -> None:
    sources = ct_series(5)
    result = body_part_result(5)
    path = encode_one_sr(result, sources, tmp_path)
    groups = _report(path).get_image_measurement_groups()
    names = [m.name.meaning for g in groups for m in g.get_measurements()]
    assert SCORE.meaning in names  # the series' lowest and highest score
    values = [
        m.value for g in groups for m in g.get_measurements() if m.name.meaning == SCORE.meaning
    ]
    assert sorted(values) == [-7.5, 6.25]  # and no per-slice score
    # No group per slice: one for the series' measurements, one per finding.
    assert len(groups) == 1 + len(result.findings)
    assert all(not g.source_images for g in groups)


def test_a_result_with_only_log_measurements_has_no_sr() -> None:
    result = PipelineResult("p", "1", log_measurements=body_part_result(3).log_measurements)
    assert encode_result(result, ct_series(3), device=DEVICE, uid_root=UID_ROOT) == []


def test_log_measurements_are_not_checked_against_the_sources() -> None:
    """They go to the results log only; the encoder does not look at them."""
    stray = Measurement("score", 1.0, "{score}", slice_index=99)
    result = PipelineResult(
        "p", "1", findings=(Finding(TARGET_REGION, CHEST),), log_measurements=(stray,)
    )
    (output,) = encode_result(result, ct_series(2), device=DEVICE, uid_root=UID_ROOT)
    assert output.kind == "sr"


# -- a long CT series ------------------------------------------------------------------------


def test_a_300_slice_series_encodes_quickly_and_references_every_slice(tmp_path: Path) -> None:
    sources = ct_series(300)
    result = body_part_result(300)
    encode_result(result, sources[:1], device=DEVICE, uid_root=UID_ROOT)  # imports warmed up
    started = time.perf_counter()
    (output,) = encode_result(result, sources, device=DEVICE, uid_root=UID_ROOT, created_at=WHEN)
    seconds = time.perf_counter() - started
    assert seconds < 2.0, f"encoding took {seconds:.2f} s"  # about 0.06 s on a workstation
    path = write_output(output, tmp_path)
    sr = hd.sr.srread(path)
    assert {e[2] for e in sr.get_evidence()} == {s.SOPInstanceUID for s in sources}
    titles = [item.ConceptNameCodeSequence[0].CodeMeaning for item in sr.ContentSequence]
    assert len(sources) > IMAGE_LIBRARY_LIMIT and "Image Library" not in titles


def test_a_short_series_lists_its_slices_in_the_image_library(tmp_path: Path) -> None:
    sources = ct_series(4)
    path = encode_one_sr(body_part_result(4), sources, tmp_path)
    sr = hd.sr.srread(path)
    titles = [item.ConceptNameCodeSequence[0].CodeMeaning for item in sr.ContentSequence]
    # The library sits where TID 1500 has it: after the procedure, before the measurements.
    assert titles.index("Image Library") == titles.index("Imaging Measurements") - 1
    (library,) = [
        i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeMeaning == "Image Library"
    ]
    listed = [
        entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for group in library.ContentSequence
        for entry in group.ContentSequence
        if entry.ValueType == "IMAGE"
    ]
    assert listed == [s.SOPInstanceUID for s in sources]


def test_a_source_without_pixel_spacing_leaves_the_library_out(tmp_path: Path) -> None:
    sources = ct_series(2)
    del sources[1].PixelSpacing
    path = encode_one_sr(body_part_result(2), sources, tmp_path)
    titles = [
        i.ConceptNameCodeSequence[0].CodeMeaning for i in pydicom.dcmread(path).ContentSequence
    ]
    assert "Image Library" not in titles and "Imaging Measurements" in titles


# -- validation with dicom3tools -------------------------------------------------------------


@pytest.mark.peers
@pytest.mark.parametrize("slices", [3, 300])
def test_dciodvfy_finds_no_errors_in_a_body_part_report(slices: int, tmp_path: Path) -> None:
    path = encode_one_sr(body_part_result(slices), ct_series(slices), tmp_path)
    errors, warnings = dciodvfy(path)
    print(f"\ndciodvfy {slices} slices: {len(errors)} error(s), {len(warnings)} warning(s)")
    for line in warnings:
        print(f"  {line}")
    assert errors == [], "\n".join(errors)
