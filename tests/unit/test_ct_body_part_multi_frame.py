"""``ct_body_part`` on multi-frame CT: one Enhanced-family image holds the whole series.

The multi-frame images are the phantom series of the single-frame tests converted by
highdicom into Legacy Converted Enhanced CT (``write_multi_frame_ct``), then reshaped
the ways real ones come: frames in any order, rescale per frame, a localizer frame,
RLE-compressed pixel data. Each is checked against the same slices as single-frame
files: the same geometry, the same Hounsfield units, and (with the smoke model) the same
scores, with one logged score per frame.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from pipelines.contract import Measurement, SeriesInput
from pipelines.ct_body_part import CtBodyPart
from pipelines.ct_body_part.volume import CtStack, read_ct_geometry, read_hu, read_slices_hu
from pipelines.errors import PipelineInputError
from tests.support.models import smoke_ubr_model
from training.ct_body_part.calibration import CalibrationFileError, LabelledSeries, ZoneRange
from training.synthetic.ct_phantoms import (
    WrittenSeries,
    make_phantom,
    random_scan,
    write_ct_series,
    write_multi_frame_ct,
)

SIZE = 96

#: The pipeline test trains the smoke model if it is the first in the process to need it.
pytestmark = pytest.mark.timeout(900)


def _single_frame(
    folder: Path, seed: int, *, max_slices: int = 24, **kwargs: object
) -> WrittenSeries:
    phantom = make_phantom(seed)
    scan = random_scan(
        phantom,
        np.random.default_rng(seed),
        region="chest_abdomen_pelvis",
        max_slices=max_slices,
    )
    return write_ct_series(folder, phantom, scan, size=SIZE, pixel_spacing=4.8, **kwargs)  # type: ignore[arg-type]


def _frames(ds: Dataset) -> np.ndarray:
    return np.asarray(ds.pixel_array).reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))


def _set_frames(ds: Dataset, frames: np.ndarray, groups: list[Dataset]) -> None:
    ds.PixelData = np.ascontiguousarray(frames.astype(ds.pixel_array.dtype)).tobytes()
    ds.NumberOfFrames = len(frames)
    ds.PerFrameFunctionalGroupsSequence = groups


def _shuffle_frames(path: Path, seed: int) -> list[int]:
    """Put the frames (pixel data and their functional groups together) in a random order;
    returns the old frame number of each new frame."""
    ds = pydicom.dcmread(path)
    order = np.random.default_rng(seed).permutation(int(ds.NumberOfFrames))
    groups = list(ds.PerFrameFunctionalGroupsSequence)
    _set_frames(ds, _frames(ds)[order], [groups[i] for i in order])
    ds.save_as(path)
    return [int(i) + 1 for i in order]


def _geometry(stack: CtStack) -> list[tuple[float, float]]:
    return [(round(s.z_mm, 3), round(s.position_mm, 3)) for s in stack.slices]


def test_a_multi_frame_image_is_a_stack_ordered_by_geometry(tmp_path: Path) -> None:
    written = _single_frame(tmp_path / "single", 31, shuffle_instance_numbers=True)
    image = write_multi_frame_ct(written, tmp_path / "mf" / "image.dcm")
    original_frame = _shuffle_frames(image, 7)
    assert original_frame != sorted(original_frame)

    single = read_ct_geometry(list(written.files))
    multi = read_ct_geometry([image])
    assert len(multi) == len(single) == len(written.files)
    assert _geometry(multi) == _geometry(single)
    assert multi.spacing_mm == pytest.approx(single.spacing_mm)
    assert multi.skipped == ()
    uid = str(pydicom.dcmread(image, stop_before_pixels=True).SOPInstanceUID)
    assert {s.sop_instance_uid for s in multi.slices} == {uid}
    assert {s.file_index for s in multi.slices} == {0}
    assert sorted(s.frame for s in multi.slices) == list(range(1, len(written.files) + 1))  # type: ignore[type-var]
    # Uncompressed: every frame is read straight from where the header put it.
    assert all(s.native is not None for s in multi.slices)
    # Superior first, whatever order the frames are stored in.
    assert np.all(np.diff(multi.z_mm) < 0)

    # Each frame decodes to the Hounsfield units of the single-frame slice at its place.
    for a, b in zip(read_slices_hu(single.slices), read_slices_hu(multi.slices), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("compressed", [False, True], ids=["native", "rle"])
def test_rescale_per_frame_gives_the_same_hounsfield_units(
    tmp_path: Path, compressed: bool
) -> None:
    """Each frame carries its own Pixel Value Transformation (a different intercept, the
    stored values shifted to match); the pixel data as it is (read from where the header
    put each frame) or RLE-compressed (decoded by pydicom frame by frame)."""
    written = _single_frame(tmp_path / "single", 32, max_slices=12)
    image = write_multi_frame_ct(written, tmp_path / "mf" / "image.dcm")
    ds = pydicom.dcmread(image)
    shared = ds.SharedFunctionalGroupsSequence[0]
    (transform,) = shared.PixelValueTransformationSequence
    del shared.PixelValueTransformationSequence
    frames = _frames(ds).astype(np.int32)
    groups = list(ds.PerFrameFunctionalGroupsSequence)
    for number, group in enumerate(groups):
        shift = 100 * number - 500
        own = copy.deepcopy(transform)
        own.RescaleIntercept = float(transform.RescaleIntercept) + shift
        group.PixelValueTransformationSequence = [own]
        frames[number] -= shift
    assert frames.min() >= -32768 and frames.max() <= 32767
    _set_frames(ds, frames.astype(np.int16), groups)
    if compressed:
        ds.compress(RLELossless)
    ds.save_as(image)
    syntax = pydicom.dcmread(image, stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert (syntax == RLELossless) is compressed

    single = read_ct_geometry(list(written.files))
    multi = read_ct_geometry([image])
    assert _geometry(multi) == _geometry(single)
    assert all((s.native is None) is compressed for s in multi.slices)
    for a, b in zip(read_slices_hu(single.slices), read_slices_hu(multi.slices), strict=True):
        np.testing.assert_array_equal(a, b)
    # A subset is decoded frame by frame, in the order asked for.
    picked = [multi.slices[5], multi.slices[0]]
    decoded = list(read_slices_hu(picked))
    np.testing.assert_array_equal(decoded[0], read_hu(single.slices[5].path))
    np.testing.assert_array_equal(decoded[1], read_hu(single.slices[0].path))


def test_localizer_frames_and_frames_without_position_are_set_aside(tmp_path: Path) -> None:
    written = _single_frame(tmp_path / "single", 33, max_slices=12)
    image = write_multi_frame_ct(written, tmp_path / "mf" / "image.dcm")
    ds = pydicom.dcmread(image)
    groups = ds.PerFrameFunctionalGroupsSequence
    frame_type = copy.deepcopy(ds.SharedFunctionalGroupsSequence[0].CTImageFrameTypeSequence)
    frame_type[0].FrameType = ["ORIGINAL", "PRIMARY", "LOCALIZER", "NONE"]
    groups[0].CTImageFrameTypeSequence = frame_type
    del groups[1].PlanePositionSequence
    del groups[2].PlanePositionSequence
    ds.save_as(image)

    stack = read_ct_geometry([image])
    assert len(stack) == len(groups) - 3
    assert {s.frame for s in stack.slices} == set(range(4, len(groups) + 1))
    assert sorted(stack.skipped) == sorted(
        [
            f"image.dcm: 1 of {len(groups)} frames: a localizer",
            f"image.dcm: 2 of {len(groups)} frames: no Image Orientation/Position (Patient)",
        ]
    )


def test_a_multi_frame_image_without_per_frame_positions_is_refused_clearly(
    tmp_path: Path,
) -> None:
    written = _single_frame(tmp_path / "single", 34, max_slices=6)
    image = write_multi_frame_ct(written, tmp_path / "mf" / "image.dcm")
    ds = pydicom.dcmread(image)
    del ds.PerFrameFunctionalGroupsSequence
    ds.save_as(image)
    with pytest.raises(PipelineInputError, match="without a Per-frame Functional Groups"):
        read_ct_geometry([image])
    # Asked for as one slice, a multi-frame image is refused, not half read.
    with pytest.raises(PipelineInputError, match="multi-frame"):
        read_hu(image)


def test_single_frame_files_and_a_multi_frame_image_make_one_stack(tmp_path: Path) -> None:
    """A series whose upper half came as single-frame files and lower half as one image."""
    written = _single_frame(tmp_path / "single", 35, max_slices=16)
    single = read_ct_geometry(list(written.files))
    lower = [s.path for s in single.slices[8:]]
    half = replace(written, files=tuple(lower))  # the lower half only
    image = write_multi_frame_ct(half, tmp_path / "mf" / "lower.dcm")
    upper = [s.path for s in single.slices[:8]]
    mixed = read_ct_geometry([image, *upper])
    assert _geometry(mixed) == _geometry(single)
    assert [s.frame is None for s in mixed.slices] == [True] * 8 + [False] * len(lower)
    for a, b in zip(read_slices_hu(single.slices), read_slices_hu(mixed.slices), strict=True):
        np.testing.assert_array_equal(a, b)


def test_instance_ranges_cannot_label_a_multi_frame_calibration_volume(tmp_path: Path) -> None:
    written = _single_frame(tmp_path / "single", 36, max_slices=6)
    image = write_multi_frame_ct(written, tmp_path / "mf" / "image.dcm")
    stack = read_ct_geometry([image])
    by_instance = LabelledSeries(tmp_path / "mf", (ZoneRange("chest", 1, 3, "instance"),))
    with pytest.raises(CalibrationFileError, match="from_mm,to_mm"):
        by_instance.labels(stack)
    top = float(stack.z_mm[0])
    by_mm = LabelledSeries(tmp_path / "mf", (ZoneRange("chest", top - 1.0, top + 1.0, "mm"),))
    assert by_mm.labels(stack)[0] == "chest"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_ubr_model(tmp_path_factory.getbasetemp() / "ubr-models")


def test_the_pipeline_scores_a_multi_frame_image_as_its_single_frame_series(
    tmp_path: Path, model_dir: Path
) -> None:
    written = _single_frame(tmp_path / "single", 37, max_slices=40)
    image = write_multi_frame_ct(written, tmp_path / "mf" / "image.dcm")
    _shuffle_frames(image, 11)

    def run(files: tuple[Path, ...]) -> tuple[dict[str, object], tuple[Measurement, ...]]:
        result = CtBodyPart(plot=False).run(
            SeriesInput(
                study_instance_uid=written.study_instance_uid,
                series_instance_uid=written.series_instance_uid,
                modality="CT",
                files=files,
                model_version="smoke-1",
                model_dir=model_dir,
            )
        )
        return result.summary, result.log_measurements

    single_summary, single_scores = run(tuple(written.files))
    multi_summary, multi_scores = run((image,))
    for key in ("slices", "z_range_mm", "score_range", "r", "monotonic", "zones"):
        assert multi_summary[key] == single_summary[key], key
    # One logged score per frame, in body order, each naming its frame of the one image.
    assert [m.value for m in multi_scores] == [m.value for m in single_scores]
    uid = str(pydicom.dcmread(image, stop_before_pixels=True).SOPInstanceUID)
    assert {(m.tracking_uid, m.slice_index) for m in multi_scores} == {(uid, 0)}
    frames = [m.frame_number for m in multi_scores]
    assert sorted(frames) == list(range(1, len(written.files) + 1))  # type: ignore[type-var]
    assert all(m.frame_number is None for m in single_scores)
