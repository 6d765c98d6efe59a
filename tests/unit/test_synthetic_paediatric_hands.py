"""Synthetic paediatric hand films: the age drives what a radiologist reads.

The truth is the bone age (and sex); the tests check that the drawn maturity moves the
right way with it, in the numbers that drive the renderer and in the rendered anatomy,
that girls are ahead of boys, and that the DICOM and RSNA-layout files read back.
"""

from __future__ import annotations

import csv
import dataclasses
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from tests.peers import dciodvfy
from training.synthetic.hand_films import SkeletalMaturity, render_hand_film
from training.synthetic.paediatric_hands import (
    AGE_RANGE_MONTHS,
    PaediatricHand,
    carpal_count,
    field_mm,
    make_paediatric_hands,
    render_paediatric_hand,
    skeletal_maturity,
    write_paediatric_hand_film,
    write_rsna_layout,
)

AGES = np.arange(0.0, AGE_RANGE_MONTHS[1] + 0.1, 3.0)
GROUPS = ("distal", "middle", "proximal", "metacarpal", "radius", "ulna")


# -- the film ------------------------------------------------------------------------------


def test_film_shape_range_and_truth() -> None:
    hand = render_paediatric_hand(100.0, "F", 7)
    assert isinstance(hand, PaediatricHand)
    assert hand.image.dtype == np.float32 and hand.image.shape == (256, 256)
    assert 0.0 <= float(hand.image.min()) and float(hand.image.max()) <= 1.0
    assert hand.bone_age_months == 100.0 and hand.sex == "F"
    assert hand.angle_deg == 90.0 and hand.pixel_spacing_mm > 0
    assert hand.hand_scale == 1.0  # drawn at its true size, never shrunk to fit
    r0, c0, r1, c1 = hand.hand_box
    assert 0 <= r0 < r1 <= 256 and 0 <= c0 < c1 <= 256
    assert hand.tissue_mask.shape == (256, 256) and hand.tissue_mask[r0:r1, c0:c1].any()
    # Fingers up: the hand's top is well inside the film, the forearm leaves at the bottom.
    assert r0 > 10 and r1 >= 240
    # Soft tissue is brighter than the direct exposure beside it, bone brighter still.
    background = np.median(hand.image[r0 : r0 + 20, 5:30])
    assert float(np.median(hand.image[hand.tissue_mask])) > background + 0.05


def test_same_seed_same_film_other_seed_other_film() -> None:
    a = render_paediatric_hand(60.0, "M", 3)
    b = render_paediatric_hand(60.0, "M", 3)
    c = render_paediatric_hand(60.0, "M", 4)
    assert np.array_equal(a.image, b.image)
    assert a.chronological_age_months == b.chronological_age_months
    assert a.marker_boxes == b.marker_boxes
    assert not np.array_equal(a.image, c.image)


def test_size_angle_and_no_markers() -> None:
    hand = render_paediatric_hand(150.0, "M", 2, size=128, angle_deg=80.0, markers=False)
    assert hand.image.shape == (128, 128) and hand.angle_deg == 80.0
    assert hand.marker_boxes == ()


def test_markers_are_drawn_away_from_the_hand() -> None:
    for seed in range(6):
        hand = render_paediatric_hand(30.0 * seed + 10.0, "MF"[seed % 2], seed)
        assert len(hand.marker_boxes) == 2  # the lead "L" and a text label
        for r0, c0, r1, c1 in hand.marker_boxes:
            assert not hand.tissue_mask[r0:r1, c0:c1].any()
            patch = hand.image[r0:r1, c0:c1]
            assert float(patch.max()) > 0.85  # lead and burned-in text are bright


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="sex"):
        render_paediatric_hand(100.0, "X", 1)
    with pytest.raises(ValueError, match="bone age"):
        render_paediatric_hand(240.0, "M", 1)
    with pytest.raises(ValueError):
        make_paediatric_hands(1, 2, age_range_months=(100.0, 300.0))


def test_chronological_age_differs_from_bone_age_by_months() -> None:
    hands = [render_paediatric_hand(120.0, "M", seed, markers=False) for seed in range(12)]
    offsets = np.array([h.chronological_age_months - 120.0 for h in hands])
    assert np.all(np.abs(offsets) < 60.0)
    assert float(np.std(offsets)) > 3.0  # real children: about 10 months at this age
    assert len({round(h.chronological_age_months, 3) for h in hands}) == len(hands)


def test_make_paediatric_hands_balanced_and_in_range() -> None:
    hands = make_paediatric_hands(5, 8, size=96, age_range_months=(24.0, 180.0), angle_deg=None)
    assert len(hands) == 8
    assert sorted(h.sex for h in hands).count("M") == 4
    assert all(24.0 <= h.bone_age_months <= 180.0 for h in hands)
    assert all(75.0 <= h.angle_deg <= 105.0 for h in hands)
    assert len({h.angle_deg for h in hands}) > 1
    again = make_paediatric_hands(5, 8, size=96, age_range_months=(24.0, 180.0), angle_deg=None)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(hands, again, strict=True))


# -- maturity: what drives the drawing -----------------------------------------------------


def _non_decreasing(values: list[float]) -> bool:
    return all(b >= a - 1e-12 for a, b in zip(values, values[1:], strict=False))


@pytest.mark.parametrize("sex", ["M", "F"])
def test_maturity_is_monotone_in_age(sex: str) -> None:
    ms = [skeletal_maturity(float(age), sex) for age in AGES]
    assert _non_decreasing([m.growth for m in ms])
    assert _non_decreasing([float(carpal_count(m)) for m in ms])
    for index in range(8):
        assert _non_decreasing([m.carpals[index] for m in ms])
    assert _non_decreasing([m.sesamoids for m in ms])
    for group in GROUPS:
        states = [getattr(m, group) for m in ms]
        assert _non_decreasing([s.size for s in states]), group
        assert _non_decreasing([s.fusion for s in states]), group
        # The growth plate's true width (the drawn gap times the hand's growth) narrows.
        widths = [s.gap_mm * m.growth for s, m in zip(states, ms, strict=True)]
        assert _non_decreasing([-w for w in widths]), group
        assert widths[0] > 2.0 and widths[-1] == 0.0
    # Smooth: no feature jumps by much between ages 3 months apart.
    sizes = np.array([[getattr(m, g).size for g in GROUPS] for m in ms])
    assert float(np.abs(np.diff(sizes, axis=0)).max()) < 0.2
    growth = np.array([m.growth for m in ms])
    assert float(np.abs(np.diff(growth)).max()) < 0.03


@pytest.mark.parametrize("sex", ["M", "F"])
def test_milestones(sex: str) -> None:
    newborn, adult = skeletal_maturity(0.0, sex), skeletal_maturity(228.0, sex)
    assert carpal_count(newborn) <= 1
    assert carpal_count(skeletal_maturity(144.0 if sex == "M" else 126.0, sex)) == 8
    assert carpal_count(skeletal_maturity(24.0, sex)) == 2  # capitate and hamate
    assert carpal_count(skeletal_maturity(120.0 if sex == "M" else 108.0, sex)) == 7
    assert all(getattr(adult, g).fusion == 1.0 for g in GROUPS)
    assert all(getattr(skeletal_maturity(120.0, sex), g).fusion == 0.0 for g in GROUPS)
    assert adult.growth > 2.5 * newborn.growth
    # Fusion order: distal phalanges first, the radius last.
    m = skeletal_maturity(185.0 if sex == "M" else 164.0, sex)
    assert m.distal.fusion > m.radius.fusion


def test_girls_mature_earlier() -> None:
    for age in (36.0, 72.0, 108.0, 144.0, 168.0):
        girl, boy = skeletal_maturity(age, "F"), skeletal_maturity(age, "M")
        assert carpal_count(girl) >= carpal_count(boy)
        assert sum(girl.carpals) > sum(boy.carpals)
        for group in GROUPS:
            g, b = getattr(girl, group), getattr(boy, group)
            assert g.size >= b.size and g.fusion >= b.fusion
            assert g.gap_mm * girl.growth <= b.gap_mm * boy.growth
    # 1.5-2 years ahead in adolescence: a girl of 13 is as far as a boy of 14.5-15.
    girl = skeletal_maturity(156.0, "F")
    assert skeletal_maturity(174.0, "M").proximal.size <= girl.proximal.size
    assert girl.proximal.size <= skeletal_maturity(186.0, "M").proximal.size + 1e-9
    # Fusion: at 15 years a girl's distal phalanges are fused, a boy's still open.
    assert skeletal_maturity(180.0, "F").distal.fusion == 1.0
    assert skeletal_maturity(180.0, "M").distal.fusion < 0.5


# -- maturity: what the film shows ----------------------------------------------------------


def _signal(maturity: SkeletalMaturity, size: int = 320) -> np.ndarray:
    film = render_hand_film(
        size,
        size,
        angle_deg=90.0,
        rng=np.random.default_rng(11),
        pixel_spacing_mm=field_mm(maturity.growth) / size,
        laterality="L",
        noise=0.0,
        maturity=maturity,
        forearm_margin_mm=20.0 * maturity.growth,
        keep_signal=True,
    )
    assert film.signal is not None
    return film.signal


def _carpal_pixels(maturity: SkeletalMaturity) -> np.ndarray:
    """Where the carpal bones show: the film against the same film without them."""
    without = dataclasses.replace(maturity, carpals=(0.0,) * 8)
    return (_signal(maturity) - _signal(without)) > 0.03


def _epiphysis_pixels(maturity: SkeletalMaturity) -> np.ndarray:
    unossified = {g: dataclasses.replace(getattr(maturity, g), size=0.0) for g in GROUPS}
    return (_signal(maturity) - _signal(dataclasses.replace(maturity, **unossified))) > 0.03


def test_rendered_carpal_bones_grow_in_number_and_size() -> None:
    ages = (6.0, 30.0, 60.0, 96.0, 132.0, 168.0)
    areas = [int(_carpal_pixels(skeletal_maturity(age, "M")).sum()) for age in ages]
    assert areas[0] == 0  # a baby's wrist shows no carpal bone
    assert all(b > a for a, b in zip(areas, areas[1:], strict=False)), areas
    # Before they crowd together each carpal that shows is a blob of its own; later
    # neighbours touch and merge, never more blobs than bones.
    for age in (6.0, 12.0, 24.0, 48.0, 60.0, 84.0, 108.0):
        maturity = skeletal_maturity(age, "M")
        _, blobs = ndimage.label(_carpal_pixels(maturity))
        if age <= 48.0:
            assert blobs == carpal_count(maturity), age
        assert blobs <= carpal_count(maturity, visible=0.02), age


def test_rendered_epiphyses_appear_grow_and_fuse() -> None:
    ages = (6.0, 48.0, 96.0, 144.0)
    areas = [int(_epiphysis_pixels(skeletal_maturity(age, "M")).sum()) for age in ages]
    assert areas[0] == 0
    assert all(b > a for a, b in zip(areas, areas[1:], strict=False)), areas
    # Once fused the bone is drawn whole: nothing separate is left to take away.
    assert int(_epiphysis_pixels(skeletal_maturity(228.0, "M")).sum()) < areas[2] / 4


def test_rendered_growth_plate_closes() -> None:
    """Along the middle finger's proximal phalanx: a dark plate between the base's
    epiphysis and the shaft in a child, none in an adult."""

    def dips(age: float) -> int:
        signal = _signal(skeletal_maturity(age, "M"), size=640)
        column = int(np.argmax(signal[: signal.shape[0] // 3].sum(axis=0)))  # middle finger
        profile = signal[:, column - 1 : column + 2].mean(axis=1)
        inside = profile > 0.5 * profile.max()
        rows = np.flatnonzero(inside)
        line = profile[rows[0] : rows[-1]]
        # Count local minima deeper than 0.02 below both neighbouring maxima.
        count = 0
        for i in range(3, len(line) - 3):
            if line[i] == line[i - 3 : i + 4].min():
                left, right = line[max(i - 12, 0) : i].max(), line[i : i + 12].max()
                if min(left, right) - line[i] > 0.02:
                    count += 1
        return count

    # The joints dip at every age; a child's finger adds one per growth plate (the
    # metacarpal's head and the three phalanges' bases).
    assert dips(96.0) >= dips(228.0) + 3


def test_the_hand_grows() -> None:
    """Its true size (width in pixels times the pixel spacing) grows with age, and it
    also looks bigger on the film, though less (the field narrows for a small child)."""
    mm, pixels = [], []
    for age in (12.0, 60.0, 120.0, 180.0):
        hand = render_paediatric_hand(age, "M", 9, markers=False)
        width = int(hand.tissue_mask.any(axis=0).sum())
        mm.append(width * hand.pixel_spacing_mm)
        pixels.append(width)
    assert all(b > a for a, b in zip(mm, mm[1:], strict=False)), mm
    assert all(b > a for a, b in zip(pixels, pixels[1:], strict=False)), pixels
    assert mm[-1] > 1.8 * mm[0]


# -- files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["DX", "CR"])
def test_written_film_reads_back_and_validates(tmp_path: Path, modality: str) -> None:
    hand = render_paediatric_hand(130.0, "F", 21)
    path = write_paediatric_hand_film(hand, tmp_path / f"{modality}.dcm", modality=modality)
    ds = pydicom.dcmread(path)
    assert ds.Modality == modality and ds.BodyPartExamined == "HAND"
    assert ds.PatientSex == "F"
    study = datetime.strptime(ds.StudyDate, "%Y%m%d")
    birth = datetime.strptime(ds.PatientBirthDate, "%Y%m%d")
    months = (study - birth).days / 30.4375
    assert abs(months - hand.chronological_age_months) < 0.1
    assert ds.PatientAge == f"{int(hand.chronological_age_months) // 12:03d}Y"
    assert float(ds.ImagerPixelSpacing[0]) == pytest.approx(hand.pixel_spacing_mm, rel=1e-5)
    stored = ds.pixel_array.astype(np.float32) / 4095.0
    assert np.abs(stored - hand.image).max() <= 0.5 / 4095.0 + 1e-6
    assert ds.BurnedInAnnotation == "YES"
    errors, _warnings = dciodvfy(path)
    assert errors == [], errors


def test_patient_sex_choices(tmp_path: Path) -> None:
    hand = render_paediatric_hand(50.0, "M", 4)
    default = pydicom.dcmread(write_paediatric_hand_film(hand, tmp_path / "a.dcm"))
    assert default.PatientSex == "M"
    assert default.PatientAge == f"{int(hand.chronological_age_months):03d}M"
    unknown = pydicom.dcmread(write_paediatric_hand_film(hand, tmp_path / "b.dcm", patient_sex=""))
    assert "PatientSex" in unknown and unknown.PatientSex == ""
    missing = pydicom.dcmread(
        write_paediatric_hand_film(hand, tmp_path / "c.dcm", patient_sex=None)
    )
    assert "PatientSex" not in missing
    errors, _ = dciodvfy(tmp_path / "b.dcm")
    assert errors == [], errors


def test_uids_follow_arguments_and_seed(tmp_path: Path) -> None:
    hand = render_paediatric_hand(50.0, "M", 4)
    a = pydicom.dcmread(write_paediatric_hand_film(hand, tmp_path / "a.dcm", seed=1))
    b = pydicom.dcmread(write_paediatric_hand_film(hand, tmp_path / "b.dcm", seed=1))
    c = pydicom.dcmread(
        write_paediatric_hand_film(
            hand, tmp_path / "c.dcm", study_instance_uid="1.2.3.4", series_instance_uid="1.2.3.5"
        )
    )
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.StudyDate == b.StudyDate
    assert c.StudyInstanceUID == "1.2.3.4" and c.SeriesInstanceUID == "1.2.3.5"
    assert c.SOPInstanceUID != a.SOPInstanceUID


def test_rsna_layout_reads_back(tmp_path: Path) -> None:
    hands = make_paediatric_hands(2, 4, size=96)
    csv_path = write_rsna_layout(tmp_path / "rsna", hands)
    assert csv_path == tmp_path / "rsna" / "labels.csv"
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [list(row) for row in rows][0] == ["id", "boneage", "male"]
    assert len(rows) == 4
    for row, hand in zip(rows, hands, strict=True):
        assert float(row["boneage"]) == pytest.approx(hand.bone_age_months, abs=0.01)
        assert row["male"] == ("True" if hand.sex == "M" else "False")
        image = np.asarray(Image.open(tmp_path / "rsna" / "images" / f"{row['id']}.png"))
        assert image.shape == hand.image.shape and image.dtype == np.uint8
        assert np.abs(image / 255.0 - hand.image).max() <= 0.5 / 255.0 + 1e-6
