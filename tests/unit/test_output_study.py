"""Outputs of a study-scoped result: sources in several series of one study.

A study-scoped pipeline (MURA: all the views of a study) gives one result over every
routed series. Its SR references each source instance under its own series, its SC and
KOS go into the source study, and with ``source_key="study:<uid>"`` its output UIDs
depend on the study, the pipeline and the model version only: a late series that
re-opens the study and runs the job again replaces the same objects in the PACS.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from dicom_node.output.encode import EncodeError, encode_result
from dicom_node.output.uids import output_instance_uid, output_series_uid
from pipelines import (
    Code,
    DerivedImage,
    Finding,
    KeyObjectSelection,
    Measurement,
    PipelineResult,
)
from tests.peers import dciodvfy
from tests.support.output import DEVICE, PATIENT_STUDY_KEYWORDS, UID_ROOT, WHEN, encode_and_write
from tests.support.pipelines import ABNORMALITY, PRESENT
from tests.support.study import STUDY_UID, series_uid, study_sources

STUDY_KEY = f"study:{STUDY_UID}"


def _study_result(sources: list[Dataset]) -> PipelineResult:
    """What MURA gives: a probability per view, the study's finding, a heat map of the
    most abnormal view (in series 2) and the key views."""
    views = [str(ds.SOPInstanceUID) for ds in sources]
    return PipelineResult(
        "mura_abnormality",
        "2",
        measurements=tuple(
            Measurement("abnormality probability", 0.25 * i, "1", tracking_uid=uid)
            for i, uid in enumerate(views[:4])
        ),
        findings=(Finding(ABNORMALITY, PRESENT, probability=0.75),),
        derived_images=(
            DerivedImage(
                np.arange(48 * 40 * 3, dtype=np.uint32).reshape(48, 40, 3).astype(np.uint8),
                "rgb_overlay",
                "Grad-CAM heat map",
                source_sop_instance_uid=views[3],
            ),
            DerivedImage(np.full((16, 16), 128, np.uint8), "plot", "Probability per view"),
        ),
        key_objects=(
            KeyObjectSelection(
                Code("113000", "DCM", "Of Interest"), (views[3], views[0]), "Most abnormal views"
            ),
        ),
    )


def _uids(
    sources: list[Dataset], source_key: str | None = None, created_at: datetime | None = None
) -> list[tuple[str, str, str]]:
    outputs = encode_result(
        _study_result(sources),
        sources,
        device=DEVICE,
        uid_root=UID_ROOT,
        created_at=created_at,
        source_key=source_key,
    )
    return [(o.kind, o.series_instance_uid, o.sop_instance_uid) for o in outputs]


# -- output UIDs -----------------------------------------------------------------------------


def test_a_late_series_keeps_the_uids_of_a_study_keyed_result() -> None:
    two, three = study_sources(2), study_sources(3)
    assert {str(ds.SeriesInstanceUID) for ds in three} - {
        str(ds.SeriesInstanceUID) for ds in two
    } == {series_uid(3)}

    keyed_two = _uids(two, source_key=STUDY_KEY, created_at=WHEN)
    keyed_three = _uids(three, source_key=STUDY_KEY)
    assert [k for k, _, _ in keyed_two] == ["sr", "sc", "sc", "kos"]
    assert keyed_three == keyed_two  # SR, SC and KOS: the same objects again

    plain_two, plain_three = _uids(two), _uids(three)
    assert [k for k, _, _ in plain_three] == [k for k, _, _ in plain_two]
    assert not {u for _, s, i in plain_two for u in (s, i)} & {
        u for _, s, i in plain_three for u in (s, i)
    }
    assert not {i for _, _, i in plain_two} & {i for _, _, i in keyed_two}


def test_the_source_key_replaces_the_source_series_in_every_uid() -> None:
    sources = study_sources(2)
    default_key = "+".join(sorted({series_uid(1), series_uid(2)}))
    for key, given in ((default_key, None), (STUDY_KEY, STUDY_KEY)):
        uids = _uids(sources, given)
        for kind, series, _ in uids:
            assert series == output_series_uid(UID_ROOT, key, "mura_abnormality", "2", kind)
        indices = {"sr": [0], "sc": [0, 1], "kos": [0]}
        expected = [
            output_instance_uid(UID_ROOT, key, "mura_abnormality", "2", kind, index)
            for kind in ("sr", "sc", "kos")
            for index in indices[kind]
        ]
        assert [i for _, _, i in uids] == expected


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_source_key_is_refused(key: str) -> None:
    with pytest.raises(EncodeError, match="source_key"):
        _uids(study_sources(2), source_key=key)


# -- the objects ---------------------------------------------------------------------------


def test_sr_sc_and_kos_of_a_study_round_trip(tmp_path: Path) -> None:
    sources = study_sources(2)
    written = encode_and_write(_study_result(sources), sources, tmp_path, source_key=STUDY_KEY)
    by_kind: dict[str, list[Path]] = {}
    for output, path in written:
        by_kind.setdefault(output.kind, []).append(path)
    assert sorted(by_kind) == ["kos", "sc", "sr"] and len(by_kind["sc"]) == 2
    for path in (p for paths in by_kind.values() for p in paths):
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == STUDY_UID
        assert ds.SeriesInstanceUID not in (series_uid(1), series_uid(2))
        for keyword in PATIENT_STUDY_KEYWORDS:
            assert ds.get(keyword) == sources[0].get(keyword), (path.name, keyword)

    # SR: every source instance is evidence, under its own series.
    (sr_path,) = by_kind["sr"]
    ds = pydicom.dcmread(sr_path)
    assert ds.SOPClassUID == ComprehensiveSRStorage
    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == STUDY_UID
    evidence = {
        str(item.SeriesInstanceUID): sorted(
            str(ref.ReferencedSOPInstanceUID) for ref in item.ReferencedSOPSequence
        )
        for item in study.ReferencedSeriesSequence
    }
    assert evidence == {
        series_uid(n): sorted(str(ds.SOPInstanceUID) for ds in sources[2 * n - 2 : 2 * n])
        for n in (1, 2)
    }
    sr = hd.sr.srread(sr_path)
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = report.get_image_measurement_groups()
    assert len(groups) == 4 + 1  # one per view with a probability, one for the finding
    referenced = []
    for group in groups[:4]:
        (image,) = group.source_images
        (measurement,) = group.get_measurements()
        referenced.append((image.referenced_sop_instance_uid, measurement.value))
    assert referenced == [(str(ds.SOPInstanceUID), 0.25 * i) for i, ds in enumerate(sources)]
    series_of = {uid: series for series, uids in evidence.items() for uid in uids}
    for uid, _ in referenced:  # each is evidence under the series it is in
        source = next(ds for ds in sources if ds.SOPInstanceUID == uid)
        assert series_of[uid] == source.SeriesInstanceUID
    (finding,) = groups[4].get_qualitative_evaluations()
    assert finding[0].ConceptCodeSequence[0].CodeValue == PRESENT.value

    # SC: the heat map names its view (series 2); the plot all views of the study.
    heat, plot = (pydicom.dcmread(p) for p in by_kind["sc"])
    assert heat.SOPClassUID == plot.SOPClassUID == SecondaryCaptureImageStorage
    assert [str(i.ReferencedSOPInstanceUID) for i in heat.SourceImageSequence] == [
        str(sources[3].SOPInstanceUID)
    ]
    assert [str(i.ReferencedSOPInstanceUID) for i in plot.SourceImageSequence] == [
        str(ds.SOPInstanceUID) for ds in sources
    ]
    assert heat.SeriesInstanceUID == plot.SeriesInstanceUID
    assert np.array_equal(heat.pixel_array, _study_result(sources).derived_images[0].pixels)

    # KOS: the two views, under their two series.
    (kos_path,) = by_kind["kos"]
    kos = hd.ko.KeyObjectSelectionDocument.from_dataset(pydicom.dcmread(kos_path))
    assert [r.referenced_sop_instance_uid for r in kos.content.get_references()] == [
        str(sources[3].SOPInstanceUID),
        str(sources[0].SOPInstanceUID),
    ]
    assert kos.resolve_reference(str(sources[3].SOPInstanceUID))[1] == series_uid(2)
    assert kos.resolve_reference(str(sources[0].SOPInstanceUID))[1] == series_uid(1)


@pytest.mark.peers
def test_the_objects_of_a_study_pass_dciodvfy(tmp_path: Path) -> None:
    sources = study_sources(3)
    written = encode_and_write(_study_result(sources), sources, tmp_path, source_key=STUDY_KEY)
    for output, path in written:
        errors, warnings = dciodvfy(path)
        print(f"\ndciodvfy study {output.kind}: {len(errors)} error(s), {len(warnings)} warning(s)")
        for line in warnings:
            print(f"  {line}")
        assert errors == [], "\n".join(errors)
