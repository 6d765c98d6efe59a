"""Synthetic hand films: rendering, the measured angle, and the DX / CR files.

The phantom's ground truth is its angle θ (wrist → middle fingertip, counter-clockwise
from +x as displayed); ``hand_axis_angle`` must read it back from the pixels alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
)

from tests.peers import dciodvfy
from training.synthetic.hand_films import (
    DETECTOR_PIXEL_SPACING_MM,
    DETECTOR_SIZES,
    SYNTHETIC_UID_ROOT,
    RenderedHand,
    hand_axis_angle,
    render_hand,
    render_hand_film,
    write_hand_film,
    write_hand_studies,
    write_hand_study,
)

SMALL = (256, 202)  # rows, columns: a 3000 × 2372 detector at about a twelfth


def angle_error(measured: float, truth: float) -> float:
    """Signed difference on the circle, in (−180, 180]."""
    return (measured - truth + 180.0) % 360.0 - 180.0


def block_mean(pixels: np.ndarray, factor: int) -> np.ndarray:
    rows, cols = pixels.shape[0] // factor, pixels.shape[1] // factor
    cut = pixels[: rows * factor, : cols * factor].astype(np.float64)
    return cut.reshape(rows, factor, cols, factor).mean(axis=(1, 3))


def rotate_ccw(pixels: np.ndarray, degrees: float) -> np.ndarray:
    """The film turned counter-clockwise as displayed, canvas expanded, corners 0."""
    image = Image.fromarray(pixels.astype(np.float32))
    turned = image.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    return np.rint(np.asarray(turned)).astype(np.uint16)


# -- rendering ---------------------------------------------------------------------------------


def test_same_seed_same_film_other_seed_other_film() -> None:
    first = render_hand(*SMALL, angle_deg=33.0, rng=np.random.default_rng(7))
    again = render_hand(*SMALL, angle_deg=33.0, rng=np.random.default_rng(7))
    other = render_hand(*SMALL, angle_deg=33.0, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert np.mean(first != other) > 0.5


@pytest.mark.parametrize("bits_stored", [12, 14, 16])
def test_pixels_are_uint16_within_bits_stored(bits_stored: int) -> None:
    pixels = render_hand(
        300, 240, angle_deg=200.0, rng=np.random.default_rng(1), bits_stored=bits_stored
    )
    assert pixels.dtype == np.uint16
    assert pixels.shape == (300, 240)
    top = 2**bits_stored - 1
    assert int(pixels.max()) <= top
    assert int(pixels.max()) > 0.85 * top  # the shutter uses the top of the range
    assert int(pixels.min()) > 0.03 * top  # direct exposure is dark, not clipped to 0


def test_shutter_brightest_then_bone_then_tissue_then_background() -> None:
    film = render_hand_film(
        600, 474, angle_deg=90.0, rng=np.random.default_rng(3), laterality="R", noise=0.0
    )
    pixels = film.pixels.astype(np.float64)
    top, bottom, left, right = film.field
    inner = pixels[int(top) + 3 : int(bottom) - 3, int(left) + 3 : int(right) - 3]
    shutter = np.concatenate([pixels[: int(top) - 2].ravel(), pixels[int(bottom) + 2 :].ravel()])
    assert shutter.min() > inner.max()  # unexposed border: brighter than any bone
    background = np.median(inner)  # most of the exposed field is direct exposure
    wrist_row, wrist_col = film.wrist_rc
    tip_row, tip_col = film.fingertip_rc
    # Along the middle finger: soft tissue at its edge, bone on its axis, above background.
    mid_row = int(round(tip_row + 0.25 * (wrist_row - tip_row)))
    profile = pixels[mid_row, int(tip_col) - 40 : int(tip_col) + 41]
    assert profile.max() > np.median(profile[profile > background + 200]) > background + 200
    # Forearm with radius and ulna: bone brighter than the soft tissue beside it.
    fore_row = int(round(wrist_row + 60))
    forearm = pixels[fore_row, int(wrist_col) - 60 : int(wrist_col) + 61]
    tissue = forearm[forearm > background + 200]
    assert tissue.max() > np.percentile(tissue, 10) + 300


def test_ground_truth_points_give_the_angle() -> None:
    for angle in (0.0, 90.0, 123.4, 271.0):
        film = render_hand_film(*SMALL, angle_deg=angle, rng=np.random.default_rng(11))
        (wr, wc), (tr, tc) = film.wrist_rc, film.fingertip_rc
        direction = math.degrees(math.atan2(-(tr - wr), tc - wc)) % 360.0  # y up = −row
        assert abs(angle_error(direction, angle)) < 1e-6
        assert 0.0 <= wr <= SMALL[0] and 0.0 <= tc <= SMALL[1]


def _thumb_reach(film: RenderedHand) -> tuple[float, float]:
    """How far tissue reaches left and right of the main axis (pixels), middle of the hand.

    The band between 30 % and 70 % of the way from the wrist to the fingertip holds the
    thumb; only the little finger's side of the palm faces it.
    """
    pixels = film.pixels.astype(np.float64)
    (wr, wc), (tr, _) = film.wrist_rc, film.fingertip_rc
    top, bottom, left, right = film.field
    band = pixels[
        int(wr + 0.7 * (tr - wr)) : int(wr + 0.3 * (tr - wr)), int(left) + 3 : int(right) - 3
    ]
    cols = np.arange(int(left) + 3, int(right) - 3) + 0.5
    tissue = band > np.median(band) + 200
    offsets = np.broadcast_to(cols - wc, tissue.shape)[tissue]
    return float(-offsets.min()), float(offsets.max())


def test_upright_fingers_at_top_and_thumb_side_follows_laterality() -> None:
    right = render_hand_film(
        400, 400, angle_deg=90.0, rng=np.random.default_rng(5), laterality="R", noise=0.0
    )
    left = render_hand_film(
        400, 400, angle_deg=90.0, rng=np.random.default_rng(5), laterality="L", noise=0.0
    )
    assert right.fingertip_rc[0] < right.wrist_rc[0]  # fingers above the wrist
    # Seen from the tube, a right hand's thumb is on the left, a left hand's on the right.
    to_left, to_right = _thumb_reach(right)
    assert to_left > to_right + 10
    to_left, to_right = _thumb_reach(left)
    assert to_right > to_left + 10


def test_resolution_independent_geometry() -> None:
    big = render_hand_film(
        3000, 2372, angle_deg=57.0, rng=np.random.default_rng(21), pixel_spacing_mm=0.143
    )
    small = render_hand_film(
        300, 237, angle_deg=57.0, rng=np.random.default_rng(21), pixel_spacing_mm=1.43
    )
    coarse = block_mean(big.pixels, 10)
    fine = small.pixels[: coarse.shape[0], : coarse.shape[1]].astype(np.float64)
    correlation = np.corrcoef(coarse.ravel(), fine.ravel())[0, 1]
    assert correlation > 0.98
    assert np.median(np.abs(coarse - fine)) < 0.02 * 4095
    # The same hand at the same place (mm from the detector centre; 237 columns of 1.43 mm
    # are 0.3 mm narrower than 2372 of 0.143 mm).
    for a, b in ((big.fingertip_rc, small.fingertip_rc), (big.wrist_rc, small.wrist_rc)):
        assert (a[0] - 1500) * 0.143 == pytest.approx((b[0] - 150) * 1.43, abs=0.02)
        assert (a[1] - 1186) * 0.143 == pytest.approx((b[1] - 118.5) * 1.43, abs=0.02)


@pytest.mark.parametrize("detector", DETECTOR_SIZES)
def test_only_the_forearm_reaches_the_shutter(detector: tuple[int, int]) -> None:
    """At every angle the hand (fingertips to wrist) stays inside the exposed field."""
    rows, columns = (round(n / 10) for n in detector)
    spacing = DETECTOR_PIXEL_SPACING_MM[detector] * detector[0] / rows
    for index, angle in enumerate(range(0, 360, 10)):
        film = render_hand_film(
            rows,
            columns,
            angle_deg=angle,
            rng=np.random.default_rng(200 + index % 5),
            pixel_spacing_mm=spacing,
            noise=0.0,
        )
        top, bottom, left, right = (int(round(e)) for e in film.field)
        field = film.pixels[top + 2 : bottom - 2, left + 2 : right - 2].astype(np.float64)
        tissue = field > np.median(field) + 150
        border = np.zeros_like(tissue)
        border[:2], border[-2:], border[:, :2], border[:, -2:] = True, True, True, True
        r, c = np.nonzero(tissue & border)
        assert r.size > 0  # the forearm runs out of the field
        (wr, wc), (tr, tc) = film.wrist_rc, film.fingertip_rc
        axis = np.array([tc - wc, tr - wr]) / math.hypot(tc - wc, tr - wr)
        along = (c + left + 2.5 - wc) * axis[0] + (r + top + 2.5 - wr) * axis[1]
        assert along.max() < 0, f"tissue at the field edge beyond the wrist at {angle}°"


def test_film_too_small_for_a_hand_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        render_hand(256, 256, angle_deg=0.0, rng=np.random.default_rng(0), pixel_spacing_mm=0.5)


# -- the measured angle --------------------------------------------------------------------------


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_hand_axis_angle_recovers_every_angle(photometric: str) -> None:
    errors = []
    for index, angle in enumerate(range(0, 360, 15)):
        film = render_hand_film(
            *SMALL,
            angle_deg=angle + 0.3,
            rng=np.random.default_rng(100 + index % 4),
            laterality="L" if index % 2 else "R",
        )
        pixels = film.pixels
        if photometric == "MONOCHROME1":
            pixels = (4095 - pixels).astype(np.uint16)
        measured = hand_axis_angle(pixels, photometric)  # type: ignore[arg-type]
        assert 0.0 <= measured < 360.0
        errors.append(angle_error(measured, film.angle_deg))
    assert max(abs(e) for e in errors) < 1.0, errors


@pytest.mark.parametrize("detector", DETECTOR_SIZES)
def test_hand_axis_angle_on_medium_films(detector: tuple[int, int]) -> None:
    rows, columns = (round(n / 4) for n in detector)
    spacing = DETECTOR_PIXEL_SPACING_MM[detector] * detector[0] / rows
    for seed, angle, side in ((1, 17.0, "R"), (2, 143.0, "L"), (3, 301.5, "R")):
        film = render_hand_film(
            rows,
            columns,
            angle_deg=angle,
            rng=np.random.default_rng(seed),
            pixel_spacing_mm=spacing,
            laterality=side,  # type: ignore[arg-type]
        )
        assert abs(angle_error(hand_axis_angle(film.pixels), angle)) < 1.0


def test_turned_upright_film_measures_upright() -> None:
    """A film at θ turned by 90° − θ (as the pipeline's correction does) reads 90°."""
    for seed, angle in ((4, 20.0), (5, 161.0), (6, 255.0), (7, 333.0)):
        film = render_hand_film(*SMALL, angle_deg=angle, rng=np.random.default_rng(seed))
        turned = rotate_ccw(film.pixels, 90.0 - angle)
        assert abs(angle_error(hand_axis_angle(turned), 90.0)) < 1.0
        inverted = rotate_ccw((4095 - film.pixels).astype(np.uint16), 90.0 - angle)
        assert abs(angle_error(hand_axis_angle(inverted, "MONOCHROME1"), 90.0)) < 1.0


def test_film_cropped_to_its_field_measures_the_same() -> None:
    """Without a shutter the image's border is where the forearm leaves the field."""
    for seed, angle in ((12, 48.0), (13, 199.0), (14, 300.0)):
        film = render_hand_film(*SMALL, angle_deg=angle, rng=np.random.default_rng(seed))
        top, bottom, left, right = (int(round(e)) for e in film.field)
        cropped = film.pixels[top + 2 : bottom - 2, left + 2 : right - 2]
        assert abs(angle_error(hand_axis_angle(cropped), angle)) < 1.0


def test_hand_axis_angle_turns_with_the_film() -> None:
    film = render_hand_film(*SMALL, angle_deg=70.0, rng=np.random.default_rng(9))
    base = hand_axis_angle(film.pixels)
    for quarter in (1, 2, 3):
        turned = np.rot90(film.pixels, k=quarter)  # counter-clockwise as displayed
        assert angle_error(hand_axis_angle(turned), base + 90.0 * quarter) == pytest.approx(
            0.0, abs=0.2
        )


def test_hand_axis_angle_refuses_a_blank_image() -> None:
    with pytest.raises(ValueError):
        hand_axis_angle(np.zeros((64, 64), dtype=np.uint16))
    with pytest.raises(ValueError):
        hand_axis_angle(np.zeros((64,), dtype=np.uint16))


# -- DICOM files ---------------------------------------------------------------------------------


def _write(tmp_path: Path, modality: str, photometric: str, angle: float | None = 90.0) -> Path:
    film = render_hand_film(
        *SMALL,
        angle_deg=90.0 if angle is None else angle,
        rng=np.random.default_rng(2),
        laterality="L",
        pixel_spacing_mm=1.6,
    )
    return write_hand_film(
        tmp_path / f"{modality}-{photometric}.dcm",
        film.pixels,
        study_instance_uid=f"{SYNTHETIC_UID_ROOT}.9.1",
        series_instance_uid=f"{SYNTHETIC_UID_ROOT}.9.2",
        sop_instance_uid=f"{SYNTHETIC_UID_ROOT}.9.3",
        modality=modality,  # type: ignore[arg-type]
        photometric=photometric,  # type: ignore[arg-type]
        patient_name="Phantom^Hand",
        patient_id="PHANTOM-9",
        patient_sex="F",
        pixel_spacing_mm=1.6,
        laterality=film.laterality,
        angle_deg=angle,
        accession_number="SYN9",
    )


@pytest.mark.parametrize(
    ("modality", "photometric"), [("DX", "MONOCHROME2"), ("CR", "MONOCHROME1")]
)
def test_write_hand_film_round_trip(tmp_path: Path, modality: str, photometric: str) -> None:
    film = render_hand_film(
        *SMALL,
        angle_deg=90.0,
        rng=np.random.default_rng(2),
        laterality="L",
        pixel_spacing_mm=1.6,
    )
    path = _write(tmp_path, modality, photometric)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.preamble is not None  # a Part 10 file
    expected_class = (
        DigitalXRayImageStorageForPresentation
        if modality == "DX"
        else ComputedRadiographyImageStorage
    )
    assert ds.SOPClassUID == expected_class == ds.file_meta.MediaStorageSOPClassUID
    assert ds.Modality == modality
    assert ds.PhotometricInterpretation == photometric
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert (ds.Rows, ds.Columns) == SMALL
    assert ds.BodyPartExamined == "HAND"
    assert ds.ViewPosition == "PA"
    assert [float(v) for v in ds.ImagerPixelSpacing] == [1.6, 1.6]
    assert list(ds.PatientOrientation) == ["L", "H"]
    assert ds.RescaleType == "US" and float(ds.RescaleSlope) == 1.0
    assert str(ds.PatientName) == "Phantom^Hand" and ds.PatientSex == "F"
    if modality == "DX":
        assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert ds.ImageLaterality == "L"
        assert ds.AnatomicRegionSequence[0].CodeValue == "85562004"
        assert ds.PresentationLUTShape == "IDENTITY"
    else:
        assert ds.Laterality == "L"
    stored = ds.pixel_array
    if photometric == "MONOCHROME1":
        np.testing.assert_array_equal(stored, 4095 - film.pixels.astype(np.int32))
    else:
        np.testing.assert_array_equal(stored, film.pixels)
    assert hand_axis_angle(stored, photometric) == pytest.approx(90.0, abs=1.0)  # type: ignore[arg-type]


def test_write_hand_film_refuses_values_beyond_bits_stored(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0..4095"):
        write_hand_film(
            tmp_path / "x.dcm",
            np.full((16, 16), 5000, dtype=np.uint16),
            study_instance_uid="1.2.3",
            series_instance_uid="1.2.4",
            sop_instance_uid="1.2.5",
        )
    assert not (tmp_path / "x.dcm").exists()


def test_write_hand_study_is_deterministic(tmp_path: Path) -> None:
    first = write_hand_study(tmp_path / "a", angle_deg=212.0, seed=42, scale=0.08)
    again = write_hand_study(tmp_path / "b", angle_deg=212.0, seed=42, scale=0.08)
    other = write_hand_study(tmp_path / "c", angle_deg=212.0, seed=43, scale=0.08)
    assert first.path.read_bytes() == again.path.read_bytes()
    assert (first.study_instance_uid, first.sop_instance_uid) == (
        again.study_instance_uid,
        again.sop_instance_uid,
    )
    uids = {first.study_instance_uid, first.series_instance_uid, first.sop_instance_uid}
    assert len(uids) == 3
    assert all(u.startswith(SYNTHETIC_UID_ROOT + ".") and len(u) <= 64 for u in uids)
    assert not uids & {other.study_instance_uid, other.sop_instance_uid}
    ds = pydicom.dcmread(first.path)
    assert ds.SOPInstanceUID == first.sop_instance_uid
    assert ds.StudyInstanceUID == first.study_instance_uid
    assert (ds.Rows, ds.Columns) == (first.rows, first.columns)
    assert ds.Modality == first.modality == "DX"
    # The pixels are render_hand with the same seed.
    expected = render_hand(
        first.rows,
        first.columns,
        angle_deg=212.0,
        rng=np.random.default_rng(42),
        pixel_spacing_mm=first.pixel_spacing_mm,
    )
    np.testing.assert_array_equal(ds.pixel_array, expected)
    assert abs(angle_error(hand_axis_angle(ds.pixel_array), first.angle_deg)) < 1.0


def test_write_hand_studies_for_the_demo(tmp_path: Path) -> None:
    films = write_hand_studies(tmp_path, 4, seed=3, scale=0.06)
    assert len(films) == 4
    assert len({f.study_instance_uid for f in films}) == 4
    presets = {(round(r * 0.06), round(c * 0.06)) for r, c in DETECTOR_SIZES}
    for film in films:
        assert film.path.parent == tmp_path and film.path.is_file()
        assert 0.0 <= film.angle_deg < 360.0
        assert (film.rows, film.columns) in presets
        ds = pydicom.dcmread(film.path)
        assert ds.PhotometricInterpretation == film.photometric
        assert ds.Modality == film.modality
        measured = hand_axis_angle(ds.pixel_array, film.photometric)
        assert abs(angle_error(measured, film.angle_deg)) < 1.5
    assert [
        f.sop_instance_uid for f in write_hand_studies(tmp_path / "again", 4, seed=3, scale=0.06)
    ] == [f.sop_instance_uid for f in films]


@pytest.mark.peers
@pytest.mark.parametrize(
    ("modality", "photometric", "angle"),
    [
        ("DX", "MONOCHROME2", 37.5),
        ("DX", "MONOCHROME1", 250.0),
        ("DX", "MONOCHROME2", None),
        ("CR", "MONOCHROME2", 37.5),
        ("CR", "MONOCHROME1", None),
    ],
)
def test_dciodvfy_finds_no_errors(
    tmp_path: Path, modality: str, photometric: str, angle: float | None
) -> None:
    """dicom3tools' dciodvfy accepts the files (warnings allowed); skips without it."""
    path = _write(tmp_path, modality, photometric, angle=angle)
    errors, _warnings = dciodvfy(path)
    assert errors == [], errors


def test_patient_orientation_follows_the_angle(tmp_path: Path) -> None:
    expected = {90.0: ["L", "H"], 0.0: ["F", "L"], 180.0: ["H", "R"], 270.0: ["R", "F"]}
    for angle, orientation in expected.items():
        ds = pydicom.dcmread(_write(tmp_path, "DX", "MONOCHROME2", angle=angle))
        assert list(ds.PatientOrientation) == orientation, angle
        assert f"{angle:.3f} deg" in ds.ImageComments
