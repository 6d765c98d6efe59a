"""The ``ct_body_part`` pipeline on synthetic CT phantoms written as DICOM series.

Geometry tests need no model. The others use a model trained with the ``smoke`` preset
once per test process (1–2 minutes), the same training a site runs, only shorter.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.contract import SeriesInput
from pipelines.ct_body_part import CtBodyPart
from pipelines.ct_body_part.model import load_model
from pipelines.ct_body_part.pipeline import ZONE_ANATOMY, scored_indices
from pipelines.ct_body_part.volume import read_ct_geometry, read_hu, read_slices_hu
from pipelines.errors import ModelMissing, PipelineInputError
from tests.support.models import smoke_ubr_model
from training.ct_body_part.calibration import cross_check_pct, score_labelled
from training.ct_body_part.evaluate import spearman
from training.ct_body_part.train import preset, synthetic_calibration_set
from training.synthetic.ct_phantoms import (
    make_phantom,
    random_scan,
    render_slice,
    write_ct_series,
)

SIZE = 128  # written slices; the pipeline resizes them to the model's input


def _series(
    folder: Path,
    seed: int,
    *,
    region: str = "chest_abdomen_pelvis",
    max_slices: int = 60,
    head_first: bool | None = None,
    **kwargs: object,
):
    phantom = make_phantom(seed)
    scan = random_scan(
        phantom,
        np.random.default_rng(seed),
        region=region,
        max_slices=max_slices,
        head_first=head_first,
    )
    return write_ct_series(folder, phantom, scan, size=SIZE, pixel_spacing=3.6, **kwargs)  # type: ignore[arg-type]


def _input(written, model_dir: Path | None, version: str = "smoke-1") -> SeriesInput:
    return SeriesInput(
        study_instance_uid=written.study_instance_uid,
        series_instance_uid=written.series_instance_uid,
        modality="CT",
        files=tuple(written.files),
        model_version=version,
        model_dir=model_dir,
    )


#: The first test that needs the model trains it (1–2 minutes on 2 idle cores).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_ubr_model(tmp_path_factory.getbasetemp() / "ubr-models")


# -- geometry -------------------------------------------------------------------------------


@pytest.mark.parametrize("head_first", [True, False])
def test_slices_are_ordered_by_geometry_not_instance_number(
    tmp_path: Path, head_first: bool
) -> None:
    written = _series(tmp_path, 3, head_first=head_first, shuffle_instance_numbers=True)
    numbers = [
        int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in written.files
    ]
    shuffled_files = list(reversed(written.files))
    stack = read_ct_geometry(shuffled_files)
    z = stack.z_mm
    assert np.all(np.diff(z) < 0), "superior first, strictly"
    assert sorted(z.tolist(), reverse=True) == sorted(written.z_positions.tolist(), reverse=True)
    assert stack.spacing_mm == pytest.approx(
        abs(np.diff(np.sort(written.z_positions))).mean(), rel=0.01
    )
    # The order does not follow Instance Number.
    by_number = [numbers[written.files.index(s.path)] for s in stack.slices]
    assert by_number != sorted(by_number) and by_number != sorted(by_number, reverse=True)
    # file_index points back into the files as given.
    for item in stack.slices:
        assert shuffled_files[item.file_index] == item.path


def test_a_flipped_normal_still_gives_superior_first(tmp_path: Path) -> None:
    written = _series(tmp_path, 4, max_slices=12)
    for path in written.files:
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1, 0, 0, 0, -1, 0]  # normal points to the feet
        ds.save_as(path)
    z = read_ct_geometry(list(written.files)).z_mm
    assert np.all(np.diff(z) < 0)


def test_localizers_and_strays_are_set_aside_and_non_axial_is_refused(tmp_path: Path) -> None:
    written = _series(tmp_path / "s", 5, max_slices=10)
    scout = pydicom.dcmread(written.files[0])
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.SOPInstanceUID = pydicom.uid.generate_uid()
    scout_path = tmp_path / "scout.dcm"
    scout.save_as(scout_path)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")
    stack = read_ct_geometry([*written.files, scout_path, junk])
    assert len(stack) == len(written.files)
    assert any("localizer" in s for s in stack.skipped) and any("junk" in s for s in stack.skipped)
    for path in written.files:
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
        ds.save_as(path)
    with pytest.raises(PipelineInputError, match="not axial"):
        read_ct_geometry(list(written.files))
    with pytest.raises(PipelineInputError, match="no CT slice"):
        read_ct_geometry([junk])


def test_repeated_positions_keep_one_slice_each(tmp_path: Path) -> None:
    """A series holding a second time point (new UIDs, later Instance Numbers, the same
    positions) and a slice sent again: one slice per position, the first time point's."""
    written = _series(tmp_path / "s", 6, max_slices=12)
    first = read_ct_geometry(list(written.files))
    repeats = []
    for index, path in enumerate(written.files):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = 1000 + index
        repeats.append(tmp_path / f"later-{index}.dcm")
        ds.save_as(repeats[-1])
    again = tmp_path / "again.dcm"
    ds = pydicom.dcmread(written.files[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(again)  # same Instance Number: the earlier file in the list is kept
    stack = read_ct_geometry([*reversed(repeats), *written.files, again])
    assert [s.path for s in stack.slices] == [s.path for s in first.slices]
    assert stack.spacing_mm == pytest.approx(first.spacing_mm)
    assert len(stack.skipped) == 1
    assert stack.skipped[0].startswith(f"{len(written.files) + 1} slice(s) at the position")


def test_hounsfield_units_are_read_as_written(tmp_path: Path) -> None:
    written = _series(tmp_path, 6, max_slices=5)
    phantom = make_phantom(6)
    hu = read_hu(written.files[0])
    expected = render_slice(phantom, float(written.anatomy_z[0]), size=SIZE, pixel_spacing=3.6)
    assert np.abs(hu - np.clip(np.rint(expected), -32768, 32767)).max() <= 1.0


# -- decoding -------------------------------------------------------------------------------


def test_uncompressed_slices_are_read_where_their_header_said(tmp_path: Path) -> None:
    """The header read locates each slice's pixel values; decoding reads them from there
    (explicit and implicit VR), to exactly what parsing the file again gives."""
    written = _series(tmp_path, 8, max_slices=8)
    implicit = pydicom.dcmread(written.files[0])
    implicit.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    implicit.save_as(written.files[0], implicit_vr=True, little_endian=True)
    stack = read_ct_geometry(list(written.files))
    assert all(item.native is not None for item in stack.slices)
    for item, hu in zip(stack.slices, read_slices_hu(stack.slices), strict=True):
        np.testing.assert_array_equal(hu, read_hu(item.path))


def test_bits_above_bits_stored_are_ignored_as_pydicom_does(tmp_path: Path) -> None:
    """12 bits stored in 16, signed, with junk in the 4 high bits: read from the located
    values, the slice equals pydicom's own decoding (sign-extended from bit 11)."""
    written = _series(tmp_path, 9, max_slices=4)
    path = written.files[0]
    ds = pydicom.dcmread(path)
    values = np.clip(ds.pixel_array.astype(np.int32), -2048, 2047)
    raw = values.astype(np.int16).view(np.uint16) & 0x0FFF | 0x5000  # junk high bits
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelData = raw.astype(np.uint16).tobytes()
    ds.save_as(path)
    stack = read_ct_geometry([path, *written.files[1:]])
    (item,) = [s for s in stack.slices if s.path == path]
    assert item.native is not None and item.native.bits_stored == 12
    (hu,) = read_slices_hu([item])
    expected = pydicom.dcmread(path).pixel_array.astype(np.float32) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(hu, expected)
    np.testing.assert_array_equal(hu, read_hu(path))
    assert hu.min() < 0  # the sign was extended


def test_a_file_replaced_after_its_header_was_read_is_parsed_again(tmp_path: Path) -> None:
    """A re-sent instance stored over the old file between the header read and decoding:
    its pixel data now starts elsewhere, and the new file's values are read."""
    written = _series(tmp_path, 10, max_slices=4)
    path = written.files[0]
    stack = read_ct_geometry(list(written.files))
    (item,) = [s for s in stack.slices if s.path == path]
    ds = pydicom.dcmread(path)
    ds.ImageComments = "x" * 999  # a longer header: the pixel data moves
    ds.PixelData = (ds.pixel_array + 7).astype(ds.pixel_array.dtype).tobytes()
    replacement = tmp_path / "replacement.dcm"
    ds.save_as(replacement)
    replacement.replace(path)  # as the store replaces a file: a rename
    (hu,) = read_slices_hu([item])
    np.testing.assert_array_equal(hu, read_hu(path))


def test_compressed_slices_are_decoded_by_pydicom(tmp_path: Path) -> None:
    written = _series(tmp_path, 11, max_slices=4)
    plain = [read_hu(p) for p in written.files]
    for path in written.files:
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(path)
    stack = read_ct_geometry(list(written.files))
    assert all(item.native is None for item in stack.slices)
    hu_slices = read_slices_hu(stack.slices)
    decoded = {item.path: hu for item, hu in zip(stack.slices, hu_slices, strict=True)}
    for path, expected in zip(written.files, plain, strict=True):
        np.testing.assert_array_equal(decoded[path], expected)


def test_scored_indices_cover_both_ends() -> None:
    assert scored_indices(10, None).tolist() == list(range(10))
    chosen = scored_indices(300, 50)
    assert chosen[0] == 0 and chosen[-1] == 299 and 45 <= len(chosen) <= 50


# -- with a model -----------------------------------------------------------------------------


def test_without_a_model_the_job_fails_with_instructions(tmp_path: Path) -> None:
    written = _series(tmp_path, 7, max_slices=5)
    with pytest.raises(ModelMissing, match="dicom-node train ct_body_part"):
        CtBodyPart().run(_input(written, None, "none"))


def test_scores_rise_from_head_to_feet_and_zones_are_reported(
    tmp_path: Path, model_dir: Path
) -> None:
    written = _series(tmp_path, 424242, max_slices=80, shuffle_instance_numbers=True)
    result = CtBodyPart().run(_input(written, model_dir))
    summary = result.summary
    assert summary["slices"] == len(written.files) and summary["calibrated"] is True
    # The smoke model is coarse: its curve rises steadily but may miss the paper's r ≥ 0.99
    # for well-trained models, so only the direction is required to be clean here.
    assert summary["monotonic"] is True and summary["reversed"] is False, summary["notes"]
    assert float(summary["r"]) > 0.95  # type: ignore[arg-type]
    # Per-slice scores go to the log, in geometric order, one per file.
    logged = result.log_measurements
    assert len(logged) == len(written.files)
    assert {m.slice_index for m in logged} == set(range(len(written.files)))
    z_of_file = {i: written.z_positions[i] for i in range(len(written.files))}
    z = np.array([z_of_file[m.slice_index] for m in logged])
    scores = np.array([m.value for m in logged])
    assert np.all(np.diff(z) < 0)
    assert spearman(np.arange(len(scores)), scores) >= 0.95
    # Zones: each runs from the first to the last slice its score puts in it, by the
    # model's own thresholds, with that slice's z.
    model = load_model(model_dir)
    assert model.calibration is not None
    classes = model.calibration.classify(scores)
    zones = {zone["zone"]: zone for zone in summary["zones"]}  # type: ignore[union-attr]
    for number, name in enumerate(model.calibration.zones):
        members = np.flatnonzero(classes == number)
        if members.size == 0:
            assert name not in zones
            continue
        first, last = int(members[0]), int(members[-1])
        assert (zones[name]["first_index"], zones[name]["last_index"]) == (first, last)
        assert zones[name]["slices"] == members.size
        assert zones[name]["z_top_mm"] == pytest.approx(z[first], abs=0.01)
        assert zones[name]["z_bottom_mm"] == pytest.approx(z[last], abs=0.01)
    # The scan covers chest, abdomen and pelvis, found head to feet, each overlapping its
    # true range (the smoke model is coarse: its boundaries may be a few cm off, so where
    # they lie is measured by the zone accuracy of its evaluation, not here).
    assert {"chest", "abdomen", "pelvis"} <= set(zones)
    firsts = [zones[name]["first_index"] for name in ("chest", "abdomen", "pelvis")]
    assert firsts == sorted(firsts)
    for name in ("chest", "abdomen", "pelvis"):
        top, bottom = written.zones[name]
        zone = zones[name]
        assert zone["z_bottom_mm"] <= top and zone["z_top_mm"] >= bottom, (name, zone, top, bottom)
    # The SR carries the zone extents with coded anatomy, and the findings name them.
    sites = {m.finding_site for m in result.measurements if m.finding_site is not None}
    assert {ZONE_ANATOMY["chest"], ZONE_ANATOMY["abdomen"], ZONE_ANATOMY["pelvis"]} <= sites
    values = {f.value.meaning for f in result.findings if f.concept.value == "123014"}
    assert {"Chest", "Abdomen", "Pelvis"} <= values
    flags = {f.concept.meaning: f.value.meaning for f in result.findings}
    assert flags["Scan direction not monotonic"] == "Absent"
    # The plot: an RGB picture with text burned in.
    (plot,) = result.derived_images
    assert plot.kind == "plot" and plot.pixels.ndim == 3 and plot.burned_in_text
    # The headers the geometry read parsed go to the node, one per file in file order.
    assert [h.SOPInstanceUID for h in result.source_headers] == [
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in written.files
    ]
    assert not any("PixelData" in h for h in result.source_headers)


def test_a_file_that_cannot_be_read_leaves_the_headers_to_the_node(
    tmp_path: Path, model_dir: Path
) -> None:
    written = _series(tmp_path / "s", 77, max_slices=12)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")
    series = replace(_input(written, model_dir), files=(*written.files, junk))
    result = CtBodyPart().run(series)
    assert result.summary["slices"] == len(written.files) and result.source_headers == ()


@pytest.mark.parametrize("order", ["reversed", "mixed"])
def test_reversed_or_mixed_anatomy_is_flagged(tmp_path: Path, model_dir: Path, order: str) -> None:
    written = _series(tmp_path, 515151, max_slices=80, anatomy_order=order)
    result = CtBodyPart().run(_input(written, model_dir))
    assert result.summary["anomaly"] is True
    assert result.summary["monotonic"] is False
    assert result.summary["reversed"] is (order == "reversed")
    flags = {f.concept.meaning: f.value.meaning for f in result.findings}
    assert flags["Scan direction not monotonic"] == "Present"


def test_scoring_a_subset_interpolates_close_to_the_full_scores(
    tmp_path: Path, model_dir: Path
) -> None:
    written = _series(tmp_path, 616161, max_slices=90)
    full = CtBodyPart(plot=False).run(_input(written, model_dir))
    part = CtBodyPart(plot=False, max_scored_slices=30).run(_input(written, model_dir))
    a = np.array([m.value for m in full.log_measurements])
    b = np.array([m.value for m in part.log_measurements])
    assert part.summary["scored_slices"] <= 30
    names = {m.name for m in part.log_measurements}
    assert names == {"Body part score", "Body part score (interpolated)"}
    span = a.max() - a.min()
    assert np.abs(a - b).max() < 0.1 * span
    assert part.summary["zones"] and [z["zone"] for z in part.summary["zones"]] == [  # type: ignore[index,union-attr]
        z["zone"]
        for z in full.summary["zones"]  # type: ignore[union-attr]
    ]


def test_the_trained_model_folder_is_complete(model_dir: Path) -> None:
    model = load_model(model_dir)
    assert model.calibration is not None and model.calibration.zones == (
        "chest",
        "abdomen",
        "pelvis",
    )
    metrics = model.card.metrics
    assert metrics["spearman_mean"] >= 0.95
    assert metrics["abnormal_flagged"] == metrics["abnormal_volumes"] > 0
    assert (model_dir / "evaluation.json").is_file()


def test_the_model_reports_how_its_calibration_volumes_agree(model_dir: Path) -> None:
    """The calibration cross-check on the card is the one its two calibration phantoms
    give when scored again, and the one tracked at the checkpoint that was kept."""
    model = load_model(model_dir)
    config = preset("smoke")
    scored = score_labelled(model.scores, synthetic_calibration_set(config, model.spec))
    expected = cross_check_pct(scored)
    assert expected is not None and 0.0 <= expected <= 100.0
    assert model.card.metrics["calibration_cross_check_pct"] == pytest.approx(expected, abs=0.01)
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    best = model.card.training_data["best_iteration"]
    [kept] = [h for h in evaluation["history"] if h["iteration"] == best]
    assert kept["calibration_cross_check_pct"] == pytest.approx(expected, abs=0.01)
