"""Encoding results as DICOM: every kind of output together, UIDs, writing, refusals.

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

import numpy as np
import pydicom
import pytest

from dicom_node.errors import InvalidUID
from dicom_node.output import codes
from dicom_node.output.encode import EncodeError, encode_result, series_description, write_output
from dicom_node.output.uids import check_uid_root, derive_uid
from dicom_node.uids import validate_uid
from pipelines import Code, DerivedImage, Finding, Measurement, ModelIdentity, PipelineResult
from tests.support.datasets import DX_ROOT, PATIENT_ID, ct_sources, dx_sources, synthetic_dx
from tests.support.output import DEVICE, UID_ROOT, WHEN, encode_and_write
from tests.support.pipelines import ABNORMALITY, ANGLE, PRESENT, demo_result

# -- all outputs ---------------------------------------------------------------------------


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


# -- refusals ------------------------------------------------------------------------------


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


# -- names and codes -----------------------------------------------------------------------


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


# -- the contract --------------------------------------------------------------------------


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
