"""Grayscale Softcopy Presentation States: a source film shown rotated / flipped.

Each GSPS is written and read back. The sources are the synthetic DX hand film of
``tests/support/datasets.py`` (MONOCHROME2, with rescale and a window), variants of it
(MONOCHROME1, a VOI LUT, non-square pixels) and pydicom's CT and MR slices.
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
from pydicom import Dataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    GrayscaleSoftcopyPresentationStateStorage,
)

from dicom_node.output.encode import EncodedOutput, EncodeError, encode_result, write_output
from dicom_node.output.gsps import GSPS_CONTENT_LABEL
from dicom_node.uids import validate_uid
from pipelines import DerivedImage, ModelIdentity, PipelineResult, PresentationTransform
from tests.support.datasets import (
    DX_ROOT,
    PATIENT_ID,
    PATIENT_NAME_WITHOUT_CARET,
    ct_sources,
    dx_sources,
    mr_sources,
    synthetic_dx,
)
from tests.support.output import DEVICE, PATIENT_STUDY_KEYWORDS, UID_ROOT, WHEN
from tests.support.pipelines import demo_result

ROWS, COLUMNS = 96, 80  # synthetic_dx's default size

#: (rotation, flip) -> the (column, row) corners shown top left and bottom right, for an
#: image of ROWS x COLUMNS (PS3.3 C.10.4: pixels before, positions after the transformation).
EXPECTED_CORNERS = {
    (0, False): ([1, 1], [COLUMNS, ROWS]),
    (0, True): ([COLUMNS, 1], [1, ROWS]),
    (90, False): ([1, ROWS], [COLUMNS, 1]),
    (90, True): ([1, 1], [COLUMNS, ROWS]),
    (180, False): ([COLUMNS, ROWS], [1, 1]),
    (180, True): ([1, ROWS], [COLUMNS, 1]),
    (270, False): ([COLUMNS, 1], [1, ROWS]),
    (270, True): ([COLUMNS, ROWS], [1, 1]),
}


def transform_result(
    sources: list[Dataset], *transforms: PresentationTransform, version: str = "3"
) -> PipelineResult:
    return PipelineResult.for_model(
        ModelIdentity("hand_orientation", version), presentation_transforms=transforms
    )


def encode_one(
    sources: list[Dataset], transform: PresentationTransform, folder: Path
) -> tuple[EncodedOutput, Dataset]:
    """Encode one transform, write it and read it back."""
    (output,) = encode_result(
        transform_result(sources, transform),
        sources,
        device=DEVICE,
        uid_root=UID_ROOT,
        created_at=WHEN,
    )
    return output, pydicom.dcmread(write_output(output, folder))


def monochrome1_dx(*, with_shape: bool = True) -> Dataset:
    film = synthetic_dx(1)
    film.PhotometricInterpretation = "MONOCHROME1"
    if with_shape:
        film.PresentationLUTShape = "INVERSE"  # what the DX IOD asks for MONOCHROME1
    else:
        del film.PresentationLUTShape
    return film


# -- the object ------------------------------------------------------------------------------


@pytest.mark.parametrize(("rotation", "flip"), sorted(EXPECTED_CORNERS))
def test_gsps_round_trip(rotation: int, flip: bool, tmp_path: Path) -> None:
    film = synthetic_dx(1)
    transform = PresentationTransform(film.SOPInstanceUID, rotation, flip, "Film shown upright")
    output, ds = encode_one([film], transform, tmp_path)

    assert output.kind == "gsps"
    assert ds.SOPClassUID == GrayscaleSoftcopyPresentationStateStorage == output.sop_class_uid
    assert ds.file_meta.MediaStorageSOPClassUID == GrayscaleSoftcopyPresentationStateStorage
    assert ds.SOPInstanceUID == output.sop_instance_uid
    assert ds.SeriesInstanceUID == output.series_instance_uid != film.SeriesInstanceUID
    assert ds.StudyInstanceUID == film.StudyInstanceUID
    assert ds.Modality == "PR"
    assert ds.InstanceNumber == 1 and 1000 <= ds.SeriesNumber < 10000
    assert ds.SeriesDescription == "dicom-node hand_orientation v3 - presentation"
    assert (ds.Manufacturer, ds.ManufacturerModelName) == ("dicom-node", "hand_orientation")
    assert ds.SoftwareVersions == "0.1.0"

    # Spatial Transformation and Displayed Area
    assert ds.ImageRotation == rotation
    assert ds.ImageHorizontalFlip == ("Y" if flip else "N")
    (area,) = ds.DisplayedAreaSelectionSequence
    top_left, bottom_right = EXPECTED_CORNERS[(rotation, flip)]
    assert list(area.DisplayedAreaTopLeftHandCorner) == top_left
    assert list(area.DisplayedAreaBottomRightHandCorner) == bottom_right
    assert area.PresentationSizeMode == "SCALE TO FIT"
    assert list(area.PresentationPixelAspectRatio) == [1, 1]  # square 0.15 mm pixels
    assert "ReferencedImageSequence" not in area  # applies to the one image referenced

    # Presentation State Identification
    assert ds.ContentLabel == GSPS_CONTENT_LABEL == "ORIENTATION"
    assert ds.ContentDescription == "Film shown upright" == output.description
    assert str(ds.ContentCreatorName) == "DICOM_NODE^"
    assert (ds.PresentationCreationDate, ds.PresentationCreationTime) == ("20260301", "093015")
    assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == ("20260301", "093015")
    assert "ContentDate" not in ds  # no General Image module in a presentation state

    # Presentation State Relationship: the one source image
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == film.SeriesInstanceUID
    (image,) = series.ReferencedImageSequence
    assert image.ReferencedSOPInstanceUID == film.SOPInstanceUID
    assert image.ReferencedSOPClassUID == DigitalXRayImageStorageForPresentation

    # Laterality and body part as the SC images carry them
    assert ds.Laterality == "L" and ds.BodyPartExamined == "HAND"


def test_display_of_a_monochrome2_film_is_carried_over(tmp_path: Path) -> None:
    film = synthetic_dx(1)
    film.WindowCenter = ["1000", "2048"]
    film.WindowWidth = ["800", "4096"]
    film.WindowCenterWidthExplanation = ["BONE", "FULL"]
    film.VOILUTFunction = "LINEAR"
    _, ds = encode_one([film], PresentationTransform(film.SOPInstanceUID, 90), tmp_path)
    assert (ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType) == (0, 1, "US")
    (voi,) = ds.SoftcopyVOILUTSequence
    assert list(voi.WindowCenter) == [1000, 2048] and list(voi.WindowWidth) == [800, 4096]
    assert list(voi.WindowCenterWidthExplanation) == ["BONE", "FULL"]
    assert voi.VOILUTFunction == "LINEAR"
    assert "VOILUTSequence" not in voi and "ReferencedImageSequence" not in voi
    assert ds.PresentationLUTShape == "IDENTITY"
    assert "PresentationLUTSequence" not in ds


@pytest.mark.parametrize("with_shape", [True, False], ids=["INVERSE shape", "no shape"])
def test_monochrome1_film_keeps_its_polarity(with_shape: bool, tmp_path: Path) -> None:
    film = monochrome1_dx(with_shape=with_shape)
    _, ds = encode_one([film], PresentationTransform(film.SOPInstanceUID, 270, True), tmp_path)
    # A presentation state ignores the image's photometric interpretation: the
    # inversion that MONOCHROME1 implies is its Presentation LUT's.
    assert ds.PresentationLUTShape == "INVERSE"
    assert ds.SoftcopyVOILUTSequence[0].WindowCenter == 2048
    assert (ds.ImageRotation, ds.ImageHorizontalFlip) == (270, "Y")


def test_a_voi_lut_is_copied_as_it_is(tmp_path: Path) -> None:
    film = synthetic_dx(1)
    del film.WindowCenter, film.WindowWidth
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.LUTExplanation = "film response"
    lut.add_new("LUTData", "US", list(range(0, 65536, 16)))
    film.VOILUTSequence = [lut]
    _, ds = encode_one([film], PresentationTransform(film.SOPInstanceUID, 180), tmp_path)
    (voi,) = ds.SoftcopyVOILUTSequence
    assert "WindowCenter" not in voi and "VOILUTFunction" not in voi
    (copied,) = voi.VOILUTSequence
    assert list(copied.LUTDescriptor) == [4096, 0, 16]
    assert copied.LUTExplanation == "film response"
    assert list(copied.LUTData) == list(range(0, 65536, 16))


def test_ct_and_mr_slices(tmp_path: Path) -> None:
    (ct,) = ct_sources()
    _, ds = encode_one([ct], PresentationTransform(ct.SOPInstanceUID, 90), tmp_path / "ct")
    assert ds.RescaleIntercept == ct.RescaleIntercept and ds.RescaleSlope == ct.RescaleSlope
    assert ds.RescaleType == "HU"  # the CT slice has none; Type 1 here
    assert "SoftcopyVOILUTSequence" not in ds  # the slice has no window: identity VOI
    (mr,) = mr_sources()
    _, ds = encode_one([mr], PresentationTransform(mr.SOPInstanceUID, 0, True), tmp_path / "mr")
    assert "RescaleIntercept" not in ds and "ModalityLUTSequence" not in ds
    rows, columns = int(mr.Rows), int(mr.Columns)
    area = ds.DisplayedAreaSelectionSequence[0]
    assert list(area.DisplayedAreaTopLeftHandCorner) == [columns, 1]
    assert list(area.DisplayedAreaBottomRightHandCorner) == [1, rows]
    assert ds.Laterality == ""  # Type 2C, not known


def test_pixel_shape_follows_the_source(tmp_path: Path) -> None:
    film = synthetic_dx(1)
    film.PixelSpacing = ["0.2", "0.1"]
    _, ds = encode_one([film], PresentationTransform(film.SOPInstanceUID, 90), tmp_path / "a")
    area = ds.DisplayedAreaSelectionSequence[0]
    assert [float(v) for v in area.PresentationPixelSpacing] == [0.2, 0.1]
    assert "PresentationPixelAspectRatio" not in area
    film.PixelAspectRatio = [2, 1]
    _, ds = encode_one([film], PresentationTransform(film.SOPInstanceUID, 90), tmp_path / "b")
    area = ds.DisplayedAreaSelectionSequence[0]
    assert list(area.PresentationPixelAspectRatio) == [2, 1]


def test_patient_and_study_attributes_equal_the_source(tmp_path: Path) -> None:
    sources = dx_sources()
    second = sources[1]  # its patient name has no caret: highdicom's check must not see it
    assert second.PatientName == PATIENT_NAME_WITHOUT_CARET
    _, ds = encode_one(sources, PresentationTransform(second.SOPInstanceUID, 90), tmp_path)
    for keyword in PATIENT_STUDY_KEYWORDS:
        assert ds.get(keyword) == second.get(keyword), keyword
    (series,) = ds.ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedImageSequence] == [
        second.SOPInstanceUID
    ]


def test_every_kind_together_in_order_and_in_its_own_series(tmp_path: Path) -> None:
    sources = dx_sources()
    demo = demo_result(sources, "3")
    transforms = (
        PresentationTransform(sources[0].SOPInstanceUID, 90),
        PresentationTransform(sources[1].SOPInstanceUID, 270, True, "Second film upright"),
    )
    result = PipelineResult.for_model(
        demo.model,
        measurements=demo.measurements,
        findings=demo.findings,
        derived_images=demo.derived_images,
        presentation_transforms=transforms,
    )
    outputs = encode_result(result, sources, device=DEVICE, uid_root=UID_ROOT, created_at=WHEN)
    kinds = [o.kind for o in outputs]
    assert kinds == ["sr", *["sc"] * len(demo.derived_images), "gsps", "gsps"]
    series = {kind: {o.series_instance_uid for o in outputs if o.kind == kind} for kind in kinds}
    assert all(len(uids) == 1 for uids in series.values())
    assert len(set().union(*series.values())) == 3  # one series per kind
    gsps = [o for o in outputs if o.kind == "gsps"]
    assert [o.dataset.InstanceNumber for o in gsps] == [1, 2]
    assert [o.description for o in gsps] == ["Film shown upright", "Second film upright"]
    referenced = [
        o.dataset.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID
        for o in gsps
    ]
    assert referenced == [s.SOPInstanceUID for s in sources]
    instances = [o.sop_instance_uid for o in outputs]
    assert len(set(instances)) == len(instances)


def test_uids_are_deterministic_and_change_with_the_model_version() -> None:
    sources = dx_sources()
    transform = PresentationTransform(sources[0].SOPInstanceUID, 90)

    def uids(version: str, when: datetime, rotation: int = 90) -> tuple[str, str]:
        changed = PresentationTransform(transform.source_sop_instance_uid, rotation)
        (output,) = encode_result(
            transform_result(sources, changed, version=version),
            sources,
            device=DEVICE,
            uid_root=UID_ROOT,
            created_at=when,
        )
        return output.series_instance_uid, output.sop_instance_uid

    first = uids("3", WHEN)
    assert uids("3", datetime(2027, 1, 1)) == first  # a rerun, later: the same object
    assert uids("3", WHEN, rotation=180) == first  # a corrected angle replaces it
    other = uids("4", WHEN)
    assert not set(first) & set(other)
    for uid in (*first, *other):
        assert validate_uid(uid) == uid and uid.startswith(UID_ROOT + ".")
    # The SC series of the same run is another series.
    image = DerivedImage(np.zeros((4, 4), np.uint8), "grayscale", "x", sources[0].SOPInstanceUID)
    (sc,) = encode_result(
        PipelineResult("hand_orientation", "3", derived_images=(image,)),
        sources,
        device=DEVICE,
        uid_root=UID_ROOT,
    )
    assert sc.series_instance_uid != first[0] and sc.sop_instance_uid != first[1]


# -- refusals --------------------------------------------------------------------------------


def test_a_transform_of_an_instance_outside_the_sources_is_refused() -> None:
    result = transform_result(dx_sources(), PresentationTransform("1.2.3", 90))
    with pytest.raises(EncodeError, match=r"presentation transform 1 .*instance 1\.2\.3"):
        encode_result(result, dx_sources(), device=DEVICE, uid_root=UID_ROOT)


def test_a_colour_source_is_refused() -> None:
    film = synthetic_dx(1)
    film.PhotometricInterpretation = "RGB"
    film.SamplesPerPixel = 3
    result = transform_result([film], PresentationTransform(film.SOPInstanceUID, 90))
    with pytest.raises(EncodeError, match="not a grayscale image"):
        encode_result(result, [film], device=DEVICE, uid_root=UID_ROOT)


# -- hygiene ---------------------------------------------------------------------------------


def test_no_patient_name_or_id_in_any_log_record(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    sources = dx_sources()
    encode_one(sources, PresentationTransform(sources[1].SOPInstanceUID, 90), tmp_path)
    assert caplog.records, "expected log records to check"
    for record in caplog.records:
        text = record.getMessage() + " ".join(map(str, record.args or ()))
        for secret in ("Testperson", "Dora", PATIENT_ID, "Referrer"):
            assert secret not in text, (record.name, text)


def test_sources_are_left_unchanged(tmp_path: Path) -> None:
    film = monochrome1_dx()
    lut = Dataset()
    lut.LUTDescriptor = [2, 0, 16]
    lut.LUTExplanation = "tiny"
    lut.add_new("LUTData", "US", [0, 65535])
    film.VOILUTSequence = [lut]  # beside the window: both are allowed
    sources = [film, synthetic_dx(2)]
    before = [copy.deepcopy(s) for s in sources]
    output, _ = encode_one(sources, PresentationTransform(film.SOPInstanceUID, 90), tmp_path)
    assert sources == before
    # Nothing is shared: changing the output leaves the source as it was.
    voi = output.dataset.SoftcopyVOILUTSequence[0]
    voi.VOILUTSequence[0].LUTExplanation = "changed"
    voi.WindowCenter = "1"
    assert sources == before


# -- the contract ----------------------------------------------------------------------------


def test_contract_accepts_and_freezes_transforms() -> None:
    uid = f"{DX_ROOT}.3.1"
    transform = PresentationTransform(uid, 90)
    assert (transform.rotation_deg, transform.horizontal_flip) == (90, False)
    assert transform.description == "Film shown upright"
    assert PresentationTransform(uid, np.int64(270)).rotation_deg == 270  # type: ignore[arg-type]
    result = PipelineResult("p", "1", presentation_transforms=[transform])  # type: ignore[arg-type]
    assert result.presentation_transforms == (transform,)
    assert PipelineResult("p", "1").presentation_transforms == ()
    model = ModelIdentity("p", "1")
    assert PipelineResult.for_model(
        model, presentation_transforms=(transform,)
    ).presentation_transforms == (transform,)
    with pytest.raises(AttributeError):
        transform.rotation_deg = 180  # type: ignore[misc]


@pytest.mark.parametrize(
    "make",
    [
        lambda: PresentationTransform("1.2.3", 45),
        lambda: PresentationTransform("1.2.3", -90),
        lambda: PresentationTransform("1.2.3", 360),
        lambda: PresentationTransform("1.2.3", 90.0),  # type: ignore[arg-type]
        lambda: PresentationTransform("1.2.3", True),
        lambda: PresentationTransform("1.2.3", "90"),  # type: ignore[arg-type]
        lambda: PresentationTransform("not a uid", 90),
        lambda: PresentationTransform("1.02.3", 90),
        lambda: PresentationTransform(None, 90),  # type: ignore[arg-type]
        lambda: PresentationTransform("1.2.3", 90, "Y"),  # type: ignore[arg-type]
        lambda: PresentationTransform("1.2.3", 90, False, " "),
        lambda: PresentationTransform("1.2.3", 90, False, "x" * 65),
        lambda: PresentationTransform("1.2.3", 90, False, "a\\b"),
        lambda: PresentationTransform("1.2.3", 90, False, "line\nbreak"),
        lambda: PipelineResult("p", "1", presentation_transforms=("1.2.3",)),  # type: ignore[arg-type]
    ],
)  # fmt: skip
def test_contract_refuses_bad_transforms(make: Callable[[], object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        make()
