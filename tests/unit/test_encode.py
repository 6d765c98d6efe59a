"""Encoding results as DICOM: the SR (TID 1500) and SC images, written and read back.

Sources are real: pydicom's CT and MR test slices, and a synthetic 16-bit DX hand film
(two instances) built with complete patient, study, series and equipment modules —
pydicom's own test files have no CR/DX radiograph. They are built in
``tests/support/datasets.py``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.sr.codedict import codes as sr_codes
from pydicom.uid import (
    ComprehensiveSRStorage,
    DigitalXRayImageStorageForPresentation,
    SecondaryCaptureImageStorage,
)

from dicom_node.errors import InvalidUID
from dicom_node.output import codes, encode
from dicom_node.output.encode import (
    DeviceIdentity,
    EncodedOutput,
    EncodeError,
    encode_result,
    read_source_headers,
    series_description,
    source_headers_for,
    write_output,
)
from dicom_node.output.uids import check_uid_root, derive_uid
from dicom_node.uids import validate_uid
from pipelines import (
    Code,
    DerivedImage,
    Finding,
    Measurement,
    ModelIdentity,
    PipelineResult,
)
from tests.support.datasets import (
    DX_ROOT,
    PATIENT_ID,
    SOURCE_SETS,
    ct_sources,
    dx_sources,
    synthetic_dx,
)
from tests.support.pipelines import ABNORMALITY, ANGLE, PRESENT, SC_KINDS, SCORE, demo_result

UID_ROOT = "1.2.826.0.1.3680043.8.498.99"  # below pydicom's example root
DEVICE = DeviceIdentity(ae_title="DICOM_NODE", software_version="0.1.0")
WHEN = datetime(2026, 3, 1, 9, 30, 15)

PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)


# -- sources -------------------------------------------------------------------------------


@pytest.fixture(params=sorted(SOURCE_SETS))
def sources(request: pytest.FixtureRequest) -> list[Dataset]:
    return SOURCE_SETS[request.param]()


def encode_and_write(
    result: PipelineResult, sources: list[Dataset], folder: Path, **kwargs: object
) -> list[tuple[EncodedOutput, Path]]:
    options: dict[str, object] = {"device": DEVICE, "uid_root": UID_ROOT, "created_at": WHEN}
    options.update(kwargs)
    outputs = encode_result(result, sources, **options)  # type: ignore[arg-type]
    return [(output, write_output(output, folder)) for output in outputs]


def _code_of(item: Dataset) -> tuple[str, str]:
    return (str(item.value), str(item.scheme_designator))


def _text_items(group: hd.sr.MeasurementsAndQualitativeEvaluations, name: object) -> list[str]:
    """TEXT values named ``name`` directly below the group's container."""
    (container,) = group
    return [str(item.value) for item in container.ContentSequence if item.name == name]


# -- SR ------------------------------------------------------------------------------------


def test_sr_round_trip_reads_back_measurements_and_findings(
    sources: list[Dataset], tmp_path: Path
) -> None:
    result = demo_result(sources, "3")
    written = encode_and_write(result, sources, tmp_path)
    srs = [(o, p) for o, p in written if o.kind == "sr"]
    assert len(srs) == 1
    output, path = srs[0]

    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == ComprehensiveSRStorage == output.sop_class_uid
    assert ds.SOPInstanceUID == output.sop_instance_uid
    assert ds.SeriesInstanceUID == output.series_instance_uid
    assert ds.Modality == "SR"
    assert ds.SeriesDescription == "dicom-node reporting_demo v3 - report"
    assert ds.Manufacturer == "dicom-node"
    assert ds.ManufacturerModelName == "reporting_demo"
    assert ds.SoftwareVersions == "0.1.0"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "UNVERIFIED"
    assert (ds.ContentDate, ds.ContentTime) == ("20260301", "093015")

    sr = hd.sr.srread(path)
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    observers = report.get_observer_contexts()
    assert len(observers) == 1
    observer = {item.name.meaning: item for item in observers[0]}
    assert observer["Observer Type"].value == sr_codes.DCM.Device
    assert observer["Device Observer Name"].value == "DICOM_NODE"
    assert observer["Device Observer Manufacturer"].value == "dicom-node"
    assert observer["Device Observer Model Name"].value == "reporting_demo"

    groups = report.get_image_measurement_groups()
    # One group per source instance with measurements, one for the series, one per finding.
    assert len(groups) == len(sources) + 1 + 1
    found: dict[tuple[str, str, str | None], tuple[float, tuple[str, str]]] = {}
    frames_of: dict[tuple[str, str, str | None], list[object]] = {}
    evaluations = []
    for group in groups:
        assert _text_items(group, sr_codes.DCM.AlgorithmName) == ["reporting_demo"]
        assert _text_items(group, sr_codes.DCM.AlgorithmVersion) == ["3"]
        assert validate_uid(group.tracking_uid) == group.tracking_uid
        group_sources = [img.referenced_sop_instance_uid for img in group.source_images]
        for m in group.get_measurements():
            refs = [img.referenced_sop_instance_uid for img in m.referenced_images]
            assert refs == group_sources
            key = (m.name.value, m.name.scheme_designator, refs[0] if refs else None)
            assert key not in found
            found[key] = (m.value, _code_of(m.unit))
            frames_of[key] = [img.referenced_frame_numbers for img in m.referenced_images]
        for q in group.get_qualitative_evaluations():
            evaluations.append((_code_of(q.name), _code_of(q.value), group_sources))

    uids = [str(s.SOPInstanceUID) for s in sources]
    assert found[(ANGLE.value, "DCM", uids[0])] == (93.25, ("deg", "UCUM"))
    # The angle is on frame 2 of a multi-frame source, and on the whole of a single frame.
    multi_frame = int(sources[0].get("NumberOfFrames", 1) or 1) > 1
    assert frames_of[(ANGLE.value, "DCM", uids[0])] == [[2] if multi_frame else None]
    assert frames_of[(SCORE.value, "SCT", uids[0])] == [None]
    for i, uid in enumerate(uids):
        assert found[(SCORE.value, "SCT", uid)] == (float(i) - 0.5, ("{score}", "UCUM"))
    count = codes.uncoded_measurement("instance count")
    assert found[(count.value, codes.PRIVATE_SCHEME, None)] == (
        float(len(sources)),
        ("{instances}", "UCUM"),
    )
    assert found[("122157", "DCM", uids[0])] == (0.875, ("1", "UCUM"))  # the probability
    assert evaluations == [(("C9440", "NCIt"), ("52101004", "SCT"), [uids[0]])]
    assert len(found) == len(result.measurements) + 1


def test_sr_names_the_private_scheme_only_when_it_uses_it(tmp_path: Path) -> None:
    sources = ct_sources()
    coded = PipelineResult("p", "1", measurements=(Measurement("angle", 1.0, "deg", ANGLE),))
    uncoded = PipelineResult("p", "1", measurements=(Measurement("angle", 1.0, "deg"),))
    ((plain, _),) = encode_and_write(coded, sources, tmp_path / "a")
    ((private, _),) = encode_and_write(uncoded, sources, tmp_path / "b")
    assert "CodingSchemeIdentificationSequence" not in plain.dataset
    schemes = private.dataset.CodingSchemeIdentificationSequence
    assert [s.CodingSchemeDesignator for s in schemes] == [codes.PRIVATE_SCHEME]


def test_sr_records_the_weights_checksum_as_an_algorithm_parameter(tmp_path: Path) -> None:
    model = ModelIdentity("p", "7", "ab" * 32)
    result = PipelineResult.for_model(model, findings=(Finding(ABNORMALITY, PRESENT),))
    ((output, path),) = encode_and_write(result, ct_sources(), tmp_path)
    (group,) = hd.sr.srread(path).content.get_image_measurement_groups()
    assert _text_items(group, sr_codes.DCM.AlgorithmParameters) == [f"weights sha256 {'ab' * 32}"]
    assert group.get_measurements() == []  # no probability given, none written


def test_sr_evidence_covers_every_source_instance(tmp_path: Path) -> None:
    sources = [synthetic_dx(i) for i in range(1, 6)]
    result = PipelineResult("p", "1", measurements=(Measurement("angle", 1.0, "deg", ANGLE),))
    ((output, path),) = encode_and_write(result, sources, tmp_path)
    sr = hd.sr.srread(path)
    evidence = sr.get_evidence()
    assert {e[2] for e in evidence} == {s.SOPInstanceUID for s in sources}
    assert {(e[0], e[1], e[3]) for e in evidence} == {
        (f"{DX_ROOT}.1", f"{DX_ROOT}.2", DigitalXRayImageStorageForPresentation)
    }
    (library,) = [
        item
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Image Library"
    ]
    listed = [
        entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for group in library.ContentSequence
        for entry in group.ContentSequence
    ]
    assert listed == [s.SOPInstanceUID for s in sources]


def test_large_series_leave_out_the_image_library_but_not_the_evidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encode, "IMAGE_LIBRARY_LIMIT", 2)
    sources = [synthetic_dx(i) for i in range(1, 4)]
    result = PipelineResult("p", "1", measurements=(Measurement("angle", 1.0, "deg", ANGLE),))
    ((output, path),) = encode_and_write(result, sources, tmp_path)
    sr = hd.sr.srread(path)
    assert {e[2] for e in sr.get_evidence()} == {s.SOPInstanceUID for s in sources}
    titles = [item.ConceptNameCodeSequence[0].CodeMeaning for item in sr.ContentSequence]
    assert "Image Library" not in titles and "Imaging Measurements" in titles


# -- SC ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", sorted(SC_KINDS), ids=SC_KINDS.values())
def test_sc_round_trip(sources: list[Dataset], index: int, tmp_path: Path) -> None:
    result = demo_result(sources, "3")
    image = result.derived_images[index]
    written = [(o, p) for o, p in encode_and_write(result, sources, tmp_path) if o.kind == "sc"]
    assert len(written) == len(result.derived_images)
    output, path = written[index]

    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == SecondaryCaptureImageStorage == output.sop_class_uid
    assert ds.SOPInstanceUID == output.sop_instance_uid
    assert ds.SeriesInstanceUID == output.series_instance_uid
    assert ds.Modality == "OT"
    assert ds.SeriesDescription == "dicom-node reporting_demo v3 - images"
    assert ds.InstanceNumber == index + 1
    assert ds.DerivationDescription == image.description == output.description
    np.testing.assert_array_equal(ds.pixel_array, image.pixels)
    if image.pixels.ndim == 3:
        assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated) == (
            "RGB",
            3,
            8,
        )
    else:
        bits = 8 if image.pixels.dtype == np.uint8 else 16
        assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("MONOCHROME2", 1)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (bits, bits, bits - 1)
    assert ds.BurnedInAnnotation == ("YES" if image.burned_in_text else "NO")
    if image.pixel_spacing is None:
        assert "PixelSpacing" not in ds
    else:
        assert [float(v) for v in ds.PixelSpacing] == list(image.pixel_spacing)
    assert ds.PatientOrientation in ("", None, [])  # not known for a derived picture
    referenced = [item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence]
    if image.source_sop_instance_uid is None:
        assert referenced == [s.SOPInstanceUID for s in sources]  # a plot: all of them
    else:
        assert referenced == [image.source_sop_instance_uid]
    for item in ds.SourceImageSequence:
        purpose = item.PurposeOfReferenceCodeSequence[0]
        assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("121322", "DCM")
    assert (ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture) == ("20260301", "093015")


def test_sc_copies_known_orientation_and_laterality(tmp_path: Path) -> None:
    film = synthetic_dx(1)
    image = DerivedImage(
        np.zeros((8, 8), np.uint8),
        "grayscale",
        "film",
        film.SOPInstanceUID,
        patient_orientation=("A", "F"),
    )
    ((output, path),) = encode_and_write(
        PipelineResult("p", "1", derived_images=(image,)), [film], tmp_path
    )
    ds = pydicom.dcmread(path)
    assert ds.PatientOrientation == ["A", "F"]
    assert ds.Laterality == "L"  # from the film's ImageLaterality
    assert ds.BodyPartExamined == "HAND"


def test_text_outside_ascii_switches_to_utf8(tmp_path: Path) -> None:
    sources = dx_sources()
    image = DerivedImage(np.zeros((8, 8), np.uint8), "grayscale", "Winkel 93° – korrigiert")
    ((output, path),) = encode_and_write(
        PipelineResult("p", "1", derived_images=(image,)), sources, tmp_path
    )
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.DerivationDescription == "Winkel 93° – korrigiert"
    assert ds.PatientName == sources[0].PatientName


# -- both ----------------------------------------------------------------------------------


def test_patient_and_study_attributes_equal_the_sources(
    sources: list[Dataset], tmp_path: Path
) -> None:
    written = encode_and_write(demo_result(sources, "3"), sources, tmp_path)
    assert [o.kind for o, _ in written] == ["sr", "sc", "sc", "sc", "sc"]
    for output, path in written:
        ds = pydicom.dcmread(path)
        reference = sources[0]
        for keyword in PATIENT_STUDY_KEYWORDS:
            if keyword in reference:
                assert ds.get(keyword) == reference.get(keyword), (output.kind, keyword)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
            assert keyword in ds, keyword  # Type 2: present even when the source lacks it
        assert ds.StudyInstanceUID == reference.StudyInstanceUID
        assert ds.SeriesInstanceUID != reference.SeriesInstanceUID


def test_uids_are_deterministic_and_change_with_the_model_version(tmp_path: Path) -> None:
    sources = dx_sources()

    def uids(version: str, when: datetime, root: str = UID_ROOT) -> list[tuple[str, str, str]]:
        outputs = encode_result(
            demo_result(sources, version), sources, device=DEVICE, uid_root=root, created_at=when
        )
        return [(o.kind, o.series_instance_uid, o.sop_instance_uid) for o in outputs]

    first = uids("3", WHEN)
    assert uids("3", datetime(2027, 1, 1)) == first  # a rerun, later: same objects
    other = uids("4", WHEN)
    assert [k for k, _, _ in other] == [k for k, _, _ in first]
    assert not {u for _, s, i in first for u in (s, i)} & {u for _, s, i in other for u in (s, i)}

    series = {kind: {s for k, s, _ in first if k == kind} for kind in ("sr", "sc")}
    assert len(series["sr"]) == len(series["sc"]) == 1  # one series per kind
    assert series["sr"] != series["sc"]
    instances = [i for _, _, i in first]
    assert len(set(instances)) == len(instances)
    for _, s, i in first:
        assert validate_uid(s) == s and validate_uid(i) == i
        assert s.startswith(UID_ROOT + ".") and i.startswith(UID_ROOT + ".")

    uuid_style = uids("3", WHEN, root="2.25")
    assert uuid_style == uids("3", WHEN, root="2.25.")
    assert all(u.startswith("2.25.") for _, s, i in uuid_style for u in (s, i))
    assert [i for _, _, i in uuid_style] != instances

    # Another source series gets other UIDs too.
    moved = [copy.deepcopy(s) for s in sources]
    for s in moved:
        s.SeriesInstanceUID = f"{DX_ROOT}.20"
    outputs = encode_result(demo_result(moved, "3"), moved, device=DEVICE, uid_root=UID_ROOT)
    assert not {o.sop_instance_uid for o in outputs} & set(instances)


def test_derive_uid() -> None:
    uid = derive_uid(UID_ROOT, "a", "b")
    assert uid == derive_uid(UID_ROOT + ".", "a", "b")
    assert uid != derive_uid(UID_ROOT, "ab", "")  # parts are kept apart
    assert uid.startswith(UID_ROOT + ".") and len(uid) <= 64 and validate_uid(uid) == uid
    short = derive_uid("2.25", "a", "b")
    assert short == derive_uid("2.25", "a", "b") and validate_uid(short) == short
    long_root = "1." + ".".join(["12345"] * 7)  # 43 characters: still allowed
    assert validate_uid(derive_uid(long_root, "x")) == derive_uid(long_root, "x")
    for bad in ("", "1.2.x", "1.02", long_root + ".12", "1..2"):
        with pytest.raises(InvalidUID):
            check_uid_root(bad)


def test_no_patient_name_or_id_in_any_log_record(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    sources = [synthetic_dx(1, patient_name="Testperson"), synthetic_dx(2)]
    encode_and_write(demo_result(sources, "3"), sources, tmp_path)
    assert caplog.records, "expected log records to check"
    for record in caplog.records:
        text = record.getMessage() + " ".join(map(str, record.args or ()))
        for secret in ("Testperson", "Dora", PATIENT_ID, "Referrer"):
            assert secret not in text, (record.name, text)


def test_sources_are_left_unchanged(sources: list[Dataset], tmp_path: Path) -> None:
    before = [copy.deepcopy(s) for s in sources]
    encode_and_write(demo_result(sources, "3"), sources, tmp_path)
    assert sources == before


def test_nothing_to_report_gives_no_objects() -> None:
    assert (
        encode_result(PipelineResult("p", "1"), ct_sources(), device=DEVICE, uid_root="2.25") == []
    )


def test_write_output_replaces_atomically(tmp_path: Path) -> None:
    result = PipelineResult("p", "1", findings=(Finding(ABNORMALITY, PRESENT, 0.5),))
    ((output, path),) = encode_and_write(result, ct_sources(), tmp_path)
    again = write_output(output, tmp_path)
    assert again == path == tmp_path / f"{output.sop_instance_uid}.dcm"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    assert pydicom.dcmread(path).SOPInstanceUID == output.sop_instance_uid


def test_read_source_headers_skips_pixel_data(tmp_path: Path) -> None:
    path = tmp_path / "dx.dcm"
    synthetic_dx(1).save_as(path, enforce_file_format=True)
    (header,) = read_source_headers([path])
    assert "PixelData" not in header and header.PatientID == PATIENT_ID


def test_the_headers_a_pipeline_parsed_are_used_instead_of_the_files(tmp_path: Path) -> None:
    paths = [tmp_path / "dx1.dcm", tmp_path / "dx2.dcm"]
    for index, path in enumerate(paths, start=1):
        synthetic_dx(index).save_as(path, enforce_file_format=True)
    parsed = tuple(read_source_headers(paths))
    given = PipelineResult("p", "1", source_headers=parsed)
    for path in paths:
        path.unlink()  # the files are not read again
    assert source_headers_for(given, paths) == list(parsed)
    # One header per file or none: otherwise the files are read (here: gone, so it fails).
    partial = PipelineResult("p", "1", source_headers=parsed[:1])
    with pytest.raises(FileNotFoundError):
        source_headers_for(partial, paths)
    with pytest.raises(TypeError, match="source_headers"):
        PipelineResult("p", "1", source_headers=(str(paths[0]),))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            PipelineResult("p", "1", measurements=(Measurement("a", 1.0, "deg", tracking_uid="1.2.3"),)),
            "instance 1.2.3",
        ),
        (
            PipelineResult("p", "1", measurements=(Measurement("a", 1.0, "deg", slice_index=9),)),
            "slice 9",
        ),
        (
            PipelineResult("p", "1", findings=(Finding(ABNORMALITY, PRESENT, tracking_uid="1.2.3"),)),
            "instance 1.2.3",
        ),
        (
            PipelineResult(
                "p", "1",
                derived_images=(DerivedImage(np.zeros((2, 2), np.uint8), "plot", "x", "1.2.3"),),
            ),
            "instance 1.2.3",
        ),
    ],
)  # fmt: skip
def test_references_outside_the_sources_are_refused(result: PipelineResult, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        encode_result(result, ct_sources(), device=DEVICE, uid_root=UID_ROOT)


@pytest.mark.parametrize("source_set", ["enhanced_ct", "ct"])
def test_a_frame_beyond_the_source_image_is_refused(source_set: str) -> None:
    """The frame after the last of the multi-frame CT image, and frame 2 of a single slice."""
    sources = SOURCE_SETS[source_set]()
    frames = int(sources[0].get("NumberOfFrames", 1) or 1)
    assert (frames > 1) is (source_set == "enhanced_ct")
    uid = str(sources[0].SOPInstanceUID)
    late = Measurement("a", 1.0, "deg", tracking_uid=uid, frame_number=frames + 1)
    with pytest.raises(
        EncodeError, match=f"frame {frames + 1} of instance 1, which has {frames} frame"
    ):
        encode_result(
            PipelineResult("p", "1", measurements=(late,)),
            sources,
            device=DEVICE,
            uid_root=UID_ROOT,
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"tracking_uid": "1.2.3", "frame_number": 0}, ValueError, "counts from 1"),
        ({"slice_index": 0, "frame_number": True}, TypeError, "must be an integer"),
        ({"slice_index": 0, "frame_number": 1.0}, TypeError, "must be an integer"),
        ({"frame_number": 1}, ValueError, "needs the instance it is a frame of"),
    ],
)
def test_a_measurement_frame_number_is_checked(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Measurement("a", 1.0, "deg", **kwargs)  # type: ignore[arg-type]


def test_unusable_sources_are_refused() -> None:
    result = PipelineResult("p", "1", findings=(Finding(ABNORMALITY, PRESENT),))
    with pytest.raises(EncodeError, match="no source"):
        encode_result(result, [], device=DEVICE, uid_root=UID_ROOT)
    other_study = synthetic_dx(2, study_uid=f"{DX_ROOT}.99")
    with pytest.raises(EncodeError, match="2 studies"):
        encode_result(result, [synthetic_dx(1), other_study], device=DEVICE, uid_root=UID_ROOT)
    with pytest.raises(InvalidUID):
        encode_result(result, ct_sources(), device=DEVICE, uid_root="org.example")


def test_series_description() -> None:
    assert series_description("hand_orientation", "3", "report") == (
        "dicom-node hand_orientation v3 - report"
    )
    assert series_description("bone_age", "v2", "images") == "dicom-node bone_age v2 - images"
    assert len(series_description("x" * 80, "1", "report")) == 64


def test_codes_give_fresh_concepts_and_stable_private_codes() -> None:
    first, second = codes.coded(codes.REPORT_TITLE), codes.coded(codes.REPORT_TITLE)
    assert first is not second and first == second
    assert (first.value, first.scheme_designator) == ("126000", "DCM")
    private = codes.uncoded_measurement("instance count")
    assert private == codes.uncoded_measurement(" instance count ")
    assert private.scheme == "99DCMNODE" and len(private.value) <= 16
    assert private.meaning == "instance count"
    assert private != codes.uncoded_measurement("max rows")
    assert codes.procedure_reported("dx").value == "43468-8"
    assert codes.procedure_reported(None).value == "363679005"
    assert (codes.unit("deg").value, codes.unit("deg").meaning) == ("deg", "degree")
    assert codes.unit("{score}").meaning == "{score}"


# -- the contract ----------------------------------------------------------------------------


def test_contract_keeps_the_old_forms_working() -> None:
    result = PipelineResult("p", "1", {"a": 1}, [Measurement("n", 2, "{x}")])  # type: ignore[arg-type]
    assert result.measurements == (Measurement("n", 2, "{x}"),)
    assert result.model == ModelIdentity("p", "1")
    m = Measurement("angle", 1.5, "deg", ANGLE, "1.2.3", 4)
    assert (m.concept_code, m.tracking_uid, m.slice_index) == ("DCM:110859", "1.2.3", 4)
    assert Measurement("n", 1.0, "1").concept_code is None
    assert str(Code("17621005", "SCT", "Normal")) == "SCT:17621005"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Measurement("n", float("nan"), "1"),
        lambda: Measurement("n", 1.0, ""),
        lambda: Measurement("n", 1.0, "1", tracking_uid="not a uid"),
        lambda: Finding(ABNORMALITY, PRESENT, probability=1.5),
        lambda: Code("", "SCT", "x"),
        lambda: ModelIdentity("p", "1", "not-a-checksum"),
        lambda: DerivedImage(np.zeros((4, 4), np.float32), "grayscale", "x"),
        lambda: DerivedImage(np.zeros((4, 4, 3), np.uint16), "rgb_overlay", "x"),
        lambda: DerivedImage(np.zeros((4, 4), np.uint8), "rgb_overlay", "x"),
        lambda: DerivedImage(np.zeros((4, 4), np.uint8), "grayscale", " "),
        lambda: DerivedImage(np.zeros((4, 4), np.uint8), "grayscale", "x", pixel_spacing=(0, 1)),
        lambda: DerivedImage(np.zeros((4, 4), np.uint8), "grayscale", "x", patient_orientation=("Q", "F")),
    ],
)  # fmt: skip
def test_contract_refuses_what_cannot_be_encoded(make: Callable[[], object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        make()
