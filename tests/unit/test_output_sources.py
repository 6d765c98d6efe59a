"""The source instances: their headers, and the patient and study copied from them.

Sources are real: pydicom's CT and MR test slices, and a synthetic 16-bit DX hand film
(two instances) built with complete patient, study, series and equipment modules —
pydicom's own test files have no CR/DX radiograph. They are built in
``tests/support/datasets.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset

from dicom_node.errors import InvalidUID
from dicom_node.output.encode import encode_result
from dicom_node.output.sources import EncodeError, read_source_headers, source_headers_for
from pipelines import Finding, PipelineResult
from tests.support.datasets import DX_ROOT, PATIENT_ID, ct_sources, synthetic_dx
from tests.support.output import DEVICE, PATIENT_STUDY_KEYWORDS, UID_ROOT, encode_and_write
from tests.support.pipelines import ABNORMALITY, PRESENT, demo_result

# -- patient and study ---------------------------------------------------------------------


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


def test_sources_are_left_unchanged(sources: list[Dataset], tmp_path: Path) -> None:
    before = [copy.deepcopy(s) for s in sources]
    encode_and_write(demo_result(sources, "3"), sources, tmp_path)
    assert sources == before


# -- headers -------------------------------------------------------------------------------


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


# -- refusals ------------------------------------------------------------------------------


def test_unusable_sources_are_refused() -> None:
    result = PipelineResult("p", "1", findings=(Finding(ABNORMALITY, PRESENT),))
    with pytest.raises(EncodeError, match="no source"):
        encode_result(result, [], device=DEVICE, uid_root=UID_ROOT)
    other_study = synthetic_dx(2, study_uid=f"{DX_ROOT}.99")
    with pytest.raises(EncodeError, match="2 studies"):
        encode_result(result, [synthetic_dx(1), other_study], device=DEVICE, uid_root=UID_ROOT)
    with pytest.raises(InvalidUID):
        encode_result(result, ct_sources(), device=DEVICE, uid_root="org.example")
