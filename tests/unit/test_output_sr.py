"""The SR (TID 1500) of a result, written and read back.

Sources are real: pydicom's CT and MR test slices, and a synthetic 16-bit DX hand film
(two instances) built with complete patient, study, series and equipment modules —
pydicom's own test files have no CR/DX radiograph. They are built in
``tests/support/datasets.py``.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom import Dataset
from pydicom.sr.codedict import codes as sr_codes
from pydicom.uid import ComprehensiveSRStorage, DigitalXRayImageStorageForPresentation

from dicom_node.output import codes
from dicom_node.output.encode import EncodeError, encode_result
from dicom_node.uids import validate_uid
from pipelines import Finding, Measurement, ModelIdentity, PipelineResult
from tests.support.datasets import DX_ROOT, SOURCE_SETS, ct_sources, synthetic_dx
from tests.support.output import DEVICE, UID_ROOT, encode_and_write
from tests.support.pipelines import ABNORMALITY, ANGLE, PRESENT, SCORE, demo_result

# -- SR ------------------------------------------------------------------------------------


def _code_of(item: Dataset) -> tuple[str, str]:
    return (str(item.value), str(item.scheme_designator))


def _text_items(group: hd.sr.MeasurementsAndQualitativeEvaluations, name: object) -> list[str]:
    """TEXT values named ``name`` directly below the group's container."""
    (container,) = group
    return [str(item.value) for item in container.ContentSequence if item.name == name]


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
    monkeypatch.setattr("dicom_node.output.sr.IMAGE_LIBRARY_LIMIT", 2)
    sources = [synthetic_dx(i) for i in range(1, 4)]
    result = PipelineResult("p", "1", measurements=(Measurement("angle", 1.0, "deg", ANGLE),))
    ((output, path),) = encode_and_write(result, sources, tmp_path)
    sr = hd.sr.srread(path)
    assert {e[2] for e in sr.get_evidence()} == {s.SOPInstanceUID for s in sources}
    titles = [item.ConceptNameCodeSequence[0].CodeMeaning for item in sr.ContentSequence]
    assert "Image Library" not in titles and "Imaging Measurements" in titles


# -- refusals ------------------------------------------------------------------------------


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
