"""Key Object Selection documents (PS3.3 A.35.4, TID 2010) of a result, written and read back.

Sources: the encoder's source sets (``tests.support.datasets``) and DX films of one study
in two series (``tests.support.study``), since a study-scoped result selects views of
several series. Every document is checked by dicom3tools' ``dciodvfy`` (0 errors).
"""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom import Dataset
from pydicom.sr.codedict import codes as sr_codes
from pydicom.uid import KeyObjectSelectionDocumentStorage

from dicom_node.output import codes
from dicom_node.output.encode import EncodedOutput, EncodeError, encode_result
from dicom_node.uids import validate_uid
from pipelines import Code, KeyObjectSelection, Measurement, PipelineResult
from tests.peers import dciodvfy
from tests.support.datasets import DX_ROOT, PATIENT_ID, PATIENT_NAME, SOURCE_SETS, dx_sources
from tests.support.output import DEVICE, PATIENT_STUDY_KEYWORDS, UID_ROOT, encode_and_write
from tests.support.study import STUDY_UID, series_uid, study_sources

OF_INTEREST = Code("113000", "DCM", "Of Interest")


def _result(*selections: KeyObjectSelection, **kwargs: object) -> PipelineResult:
    return PipelineResult("mura_abnormality", "2", key_objects=selections, **kwargs)  # type: ignore[arg-type]


def _kos(written: list[tuple[EncodedOutput, Path]]) -> list[tuple[EncodedOutput, Path]]:
    return [(o, p) for o, p in written if o.kind == "kos"]


def _uids(sources: list[Dataset], *positions: int) -> tuple[str, ...]:
    return tuple(str(sources[i].SOPInstanceUID) for i in positions)


def test_kos_round_trip_across_two_series(tmp_path: Path) -> None:
    sources = study_sources(2)
    chosen = _uids(sources, 3, 0, 2)  # series 2, series 1, series 2: the order to show
    selection = KeyObjectSelection(OF_INTEREST, chosen, "Views with the most abnormal score")
    ((output, path),) = encode_and_write(_result(selection), sources, tmp_path)

    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == KeyObjectSelectionDocumentStorage == output.sop_class_uid
    assert ds.SOPInstanceUID == output.sop_instance_uid == validate_uid(output.sop_instance_uid)
    assert ds.SeriesInstanceUID == output.series_instance_uid
    assert output.series_instance_uid not in (series_uid(1), series_uid(2))
    assert ds.Modality == "KO"
    assert ds.StudyInstanceUID == STUDY_UID  # in the source study
    for keyword in PATIENT_STUDY_KEYWORDS:
        assert ds.get(keyword) == sources[3].get(keyword), keyword
    assert ds.PatientName == PATIENT_NAME and ds.PatientID == PATIENT_ID
    assert ds.SeriesDescription == "dicom-node mura_abnormality v2 - key images"
    assert (ds.Manufacturer, ds.ManufacturerModelName) == ("dicom-node", "mura_abnormality")
    assert (ds.ContentDate, ds.ContentTime) == ("20260301", "093015")
    assert ds.InstanceNumber == 1
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "2010"

    # The evidence: the study, one item per series, each with its selected instances.
    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == STUDY_UID
    evidence = {
        str(item.SeriesInstanceUID): sorted(
            str(ref.ReferencedSOPInstanceUID) for ref in item.ReferencedSOPSequence
        )
        for item in study.ReferencedSeriesSequence
    }
    assert evidence == {
        series_uid(1): [chosen[1]],
        series_uid(2): sorted([chosen[0], chosen[2]]),
    }

    kos = hd.ko.KeyObjectSelectionDocument.from_dataset(ds)
    content = kos.content
    assert content[0].name == sr_codes.DCM.OfInterest
    references = content.get_references()
    assert [r.referenced_sop_instance_uid for r in references] == list(chosen)
    assert {r.referenced_sop_class_uid for r in references} == {str(sources[0].SOPClassUID)}
    assert kos.resolve_reference(chosen[0]) == (STUDY_UID, series_uid(2), chosen[0])
    texts = {
        item.name.meaning: item.value
        for item in content[0].ContentSequence
        if item.ValueType == "TEXT"
    }
    assert texts["Key Object Description"] == "Views with the most abnormal score"
    (observer,) = content.get_observer_contexts()
    attributes = {item.name.meaning: item.value for item in observer}
    assert attributes["Observer Type"] == sr_codes.DCM.Device
    assert attributes["Device Observer Name"] == "DICOM_NODE"
    assert attributes["Device Observer Manufacturer"] == "dicom-node"
    assert attributes["Device Observer Model Name"] == "mura_abnormality"


@pytest.mark.peers
@pytest.mark.parametrize("source_set", ["two_series", *sorted(SOURCE_SETS)])
def test_kos_passes_dciodvfy(source_set: str, tmp_path: Path) -> None:
    sources = study_sources(2) if source_set == "two_series" else SOURCE_SETS[source_set]()
    selection = KeyObjectSelection(OF_INTEREST, _uids(sources, *range(len(sources))), "Look")
    ((output, path),) = encode_and_write(_result(selection), sources, tmp_path)
    assert output.kind == "kos"
    errors, warnings = dciodvfy(path)
    print(f"\ndciodvfy kos of {source_set}: {len(errors)} error(s), {len(warnings)} warning(s)")
    for line in warnings:
        print(f"  {line}")
    assert errors == [], "\n".join(errors)


def test_each_selection_is_a_document_of_one_series(tmp_path: Path) -> None:
    sources = study_sources(2)
    result = _result(
        KeyObjectSelection(OF_INTEREST, _uids(sources, 0), "First"),
        KeyObjectSelection(Code("113013", "DCM", "Best In Set"), _uids(sources, 2, 3), "Second"),
        measurements=(Measurement("abnormality", 0.5, "1"),),
    )
    written = encode_and_write(result, sources, tmp_path)
    assert [o.kind for o, _ in written] == ["sr", "kos", "kos"]
    (_, first), (_, second) = _kos(written)
    a, b = pydicom.dcmread(first), pydicom.dcmread(second)
    assert a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.SeriesNumber == b.SeriesNumber
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert (a.InstanceNumber, b.InstanceNumber) == (1, 2)
    assert b.ConceptNameCodeSequence[0].CodeMeaning == "Best In Set"
    # A rerun gives the same documents.
    again = encode_result(result, sources, device=DEVICE, uid_root=UID_ROOT)
    assert [o.sop_instance_uid for o in again] == [o.sop_instance_uid for o, _ in written]


def test_a_title_is_written_with_its_standard_meaning(tmp_path: Path) -> None:
    sources = dx_sources()
    title = Code("113000", "DCM", "of interest (as the pipeline spells it)")
    ((_, path),) = encode_and_write(
        _result(KeyObjectSelection(title, _uids(sources, 0), "x")), sources, tmp_path
    )
    assert pydicom.dcmread(path).ConceptNameCodeSequence[0].CodeMeaning == "Of Interest"


def test_text_outside_ascii_gets_utf8_and_no_name_reaches_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sources = dx_sources()  # the second film's patient name has no caret
    selection = KeyObjectSelection(OF_INTEREST, _uids(sources, 1, 0), "Röntgen: größte Abweichung")
    with caplog.at_level(logging.DEBUG):
        ((_, path),) = encode_and_write(_result(selection), sources, tmp_path)
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    (text,) = [
        item
        for item in ds.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == codes.KEY_OBJECT_DESCRIPTION.value
    ]
    assert text.ValueType == "TEXT" and text.TextValue == "Röntgen: größte Abweichung"
    assert ds.PatientName == sources[1].PatientName
    assert caplog.records, "expected log records to check"
    for record in caplog.records:
        text = record.getMessage() + " ".join(map(str, record.args or ()))
        for secret in ("Testperson", "Dora", PATIENT_ID, "Referrer"):
            assert secret not in text, (record.name, text)


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (
            KeyObjectSelection(OF_INTEREST, ("1.2.3",), "x"),
            "key object selection 1 refers to instance 1.2.3, which is not among the 2 source",
        ),
        (
            KeyObjectSelection(OF_INTEREST, (f"{DX_ROOT}.3.1", "1.2.3"), "x"),
            "instance 1.2.3",
        ),
        (
            KeyObjectSelection(
                Code("113001", "DCM", "Rejected for Quality Reasons"), ("1.2",), "x"
            ),
            "rejection note or manifest",
        ),
        (
            KeyObjectSelection(Code("113030", "DCM", "Manifest"), ("1.2",), "x"),
            "rejection note or manifest",
        ),
        (
            KeyObjectSelection(Code("52101004", "SCT", "Present"), ("1.2",), "x"),
            "not a Key Object Selection Document Title of CID 7010",
        ),
    ],
)
def test_what_cannot_be_a_key_object_selection_is_refused(
    selection: KeyObjectSelection, message: str
) -> None:
    sources = dx_sources()
    if selection.sop_instance_uids == ("1.2",):  # a title check: name a real instance
        selection = KeyObjectSelection(selection.title, _uids(sources, 0), "x")
    with pytest.raises(EncodeError, match=message):
        encode_result(_result(selection), sources, device=DEVICE, uid_root=UID_ROOT)


def test_codes_know_cid_7010() -> None:
    assert codes.key_object_title(OF_INTEREST) == codes.KEY_OBJECT_OF_INTEREST
    assert ("DCM", "113000") in codes.KEY_OBJECT_TITLES
    assert codes.KEY_OBJECT_REFUSED_TITLES < set(codes.KEY_OBJECT_TITLES.values())
    assert codes.KEY_OBJECT_OF_INTEREST not in codes.KEY_OBJECT_REFUSED_TITLES
