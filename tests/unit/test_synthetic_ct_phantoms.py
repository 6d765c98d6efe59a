"""Synthetic CT phantoms: subjects, zones, anatomy along z, scans and the CT series.

The ``ct_body_part`` pipeline learns a body-position score from slice order alone, so the
phantoms must change smoothly and recognisably with z (lungs in the chest, liver below
the dome, iliac wings in the pelvis), differ between subjects, and be written as valid CT
series whose geometry is exact — or deliberately contradicted by the pixel data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from tests.peers import dciodvfy
from training.synthetic.ct_phantoms import (
    BODY_PARTS,
    HEIGHT_SCALE_RANGE,
    REGIONS,
    SPACINGS_MM,
    ZONES,
    Phantom,
    Scan,
    body_mask,
    make_phantom,
    random_scan,
    render_slice,
    render_volume,
    write_ct_phantom_series,
    write_ct_series,
    write_ct_study,
)

SIZE, SPACING = 128, 3.6  # a 460 mm field of view, coarse and fast
SEEDS = (0, 1, 2, 3, 4, 5)


def mid(phantom: Phantom, zone: str, fraction: float = 0.5) -> float:
    """z at ``fraction`` of the way down ``zone``."""
    top, bottom = phantom.zones[zone]
    return top - fraction * (top - bottom)


def clean(phantom: Phantom, z: float) -> np.ndarray:
    return render_slice(phantom, z, size=SIZE, pixel_spacing=SPACING, noise=False)


def mask(phantom: Phantom, z: float) -> np.ndarray:
    return body_mask(phantom, z, size=SIZE, pixel_spacing=SPACING)


def lung_fraction(phantom: Phantom, z: float) -> float:
    """Share of the body's pixels below −500 HU (lung, and some bowel gas)."""
    inside = mask(phantom, z)
    return float(((clean(phantom, z) < -500.0) & inside).sum() / inside.sum())


def liver_fraction(phantom: Phantom, z: float) -> float:
    inside = mask(phantom, z)
    liver = np.abs(clean(phantom, z) - phantom.hu["liver"]) <= 3.0
    return float((liver & inside).sum() / inside.sum())


def lateral_bone_cm2(phantom: Phantom, z: float) -> float:
    """Area (cm²) of bone (> 300 HU) more than 5 cm left or right of the body's centre."""
    inside = mask(phantom, z)
    centre = np.nonzero(inside)[1].mean()
    columns = np.arange(SIZE)[None, :]
    lateral = inside & (np.abs(columns - centre) * SPACING > 50.0)
    return float(((clean(phantom, z) > 300.0) & lateral).sum() * SPACING**2 / 100.0)


# -- subjects and zones ------------------------------------------------------------------------


def test_same_seed_same_subject_other_seed_other_subject() -> None:
    first, again, other = make_phantom(11), make_phantom(11), make_phantom(12)
    assert first == again
    assert first.zones != other.zones
    z = mid(first, "chest")
    np.testing.assert_array_equal(
        render_slice(first, z, size=SIZE, pixel_spacing=SPACING),
        render_slice(again, z, size=SIZE, pixel_spacing=SPACING),
    )
    a = render_slice(first, z, size=SIZE, pixel_spacing=SPACING, noise=False)
    b = render_slice(other, z, size=SIZE, pixel_spacing=SPACING, noise=False)
    assert np.mean(np.abs(a - b)) > 50.0


def test_zones_are_contiguous_ordered_and_vary_within_their_ranges() -> None:
    tops: dict[str, list[float]] = {zone: [] for zone in ZONES}
    bottoms = []
    for seed in range(60):
        phantom = make_phantom(seed)
        assert tuple(phantom.zones) == ZONES
        for zone in ZONES:
            top, bottom = phantom.zones[zone]
            assert top > bottom + 100.0
            tops[zone].append(top)
        for upper, lower in zip(ZONES, ZONES[1:], strict=False):
            assert phantom.zones[upper][1] == phantom.zones[lower][0]
        assert phantom.z_top == phantom.zones["head_neck"][0]
        assert phantom.z_bottom == phantom.zones["pelvis"][1]
        assert HEIGHT_SCALE_RANGE[0] <= phantom.height_scale <= HEIGHT_SCALE_RANGE[1]
        bottoms.append(phantom.z_bottom)
    ranges = {
        "head_neck": (-5.0, 5.0),
        "chest": (-310.0, -195.0),
        "abdomen": (-580.0, -385.0),
        "pelvis": (-835.0, -570.0),
    }
    for zone, (low, high) in ranges.items():
        values = np.array(tops[zone])
        assert values.min() >= low and values.max() <= high, zone
    assert min(bottoms) >= -1060.0 and max(bottoms) <= -745.0
    # The landmarks really vary between subjects (tens of mm below the head).
    assert np.std(tops["abdomen"]) > 20.0
    assert np.std(tops["pelvis"]) > 25.0
    assert np.std(bottoms) > 30.0


def test_zone_at() -> None:
    phantom = make_phantom(3)
    for zone in ZONES:
        assert phantom.zone_at(mid(phantom, zone)) == zone
    assert phantom.zone_at(phantom.z_top + 1.0) is None
    assert phantom.zone_at(phantom.z_bottom - 1.0) is None
    assert phantom.zone_at(phantom.z_bottom) == "pelvis"
    # A boundary belongs to the zone above it.
    assert phantom.zone_at(phantom.zones["chest"][0]) == "head_neck"
    assert phantom.zone_at(phantom.zones["chest"][0] - 0.01) == "chest"


# -- anatomy along z ---------------------------------------------------------------------------


def test_render_shape_dtype_and_range() -> None:
    phantom = make_phantom(2)
    image = render_slice(phantom, mid(phantom, "abdomen"), size=96, pixel_spacing=4.0)
    assert image.shape == (96, 96) and image.dtype == np.float32
    assert image.min() >= -1024.0 and image.max() <= 3071.0
    zs = [mid(phantom, zone) for zone in ZONES]
    volume = render_volume(phantom, zs, size=SIZE, pixel_spacing=SPACING)
    assert volume.shape == (4, SIZE, SIZE) and volume.dtype == np.float32
    np.testing.assert_array_equal(
        volume[2], render_slice(phantom, zs[2], size=SIZE, pixel_spacing=SPACING)
    )
    # Noise: about the subject's level, outside the body too.
    noisy = render_slice(phantom, zs[1], size=SIZE, pixel_spacing=SPACING)
    residual = (noisy - clean(phantom, zs[1]))[~mask(phantom, zs[1])]
    assert 0.5 * phantom.noise_hu < residual.std() < 1.5 * phantom.noise_hu
    # Each slice has its own noise.
    other = render_slice(phantom, zs[1] - 1.0, size=SIZE, pixel_spacing=SPACING)
    other_residual = (other - clean(phantom, zs[1] - 1.0))[~mask(phantom, zs[1])]
    assert abs(np.corrcoef(residual, other_residual)[0, 1]) < 0.2


@pytest.mark.parametrize("seed", SEEDS)
def test_lungs_fill_the_chest_only(seed: int) -> None:
    phantom = make_phantom(seed)
    assert lung_fraction(phantom, mid(phantom, "chest")) > 0.25
    assert lung_fraction(phantom, mid(phantom, "chest", 0.3)) > 0.15
    assert lung_fraction(phantom, mid(phantom, "abdomen")) < 0.05  # a little bowel gas
    assert lung_fraction(phantom, mid(phantom, "abdomen", 0.8)) < 0.05
    assert lung_fraction(phantom, mid(phantom, "pelvis")) < 0.03


@pytest.mark.parametrize("seed", SEEDS)
def test_liver_below_the_dome_on_the_patients_right(seed: int) -> None:
    phantom = make_phantom(seed)
    dome = phantom.zones["abdomen"][0]
    assert liver_fraction(phantom, mid(phantom, "chest")) < 0.01
    assert liver_fraction(phantom, dome + 15.0) < 0.01
    z = dome - 50.0
    assert liver_fraction(phantom, z) > 0.1
    # Patient right is −x: the liver lies left of the body's centre in the image.
    liver = np.abs(clean(phantom, z) - phantom.hu["liver"]) <= 3.0
    inside = mask(phantom, z)
    assert np.nonzero(liver & inside)[1].mean() < np.nonzero(inside)[1].mean() - 5.0
    # The liver grows below the dome, then shrinks away before the iliac crest.
    fractions = [liver_fraction(phantom, dome - d) for d in (3.0, 12.0, 30.0)]
    assert fractions[0] < fractions[1] < fractions[2]
    assert liver_fraction(phantom, phantom.zones["pelvis"][0]) < 0.01


@pytest.mark.parametrize("seed", SEEDS)
def test_iliac_wings_and_hips_put_bone_laterally_in_the_pelvis(seed: int) -> None:
    phantom = dataclasses.replace(make_phantom(seed), arms_down=False)
    for fraction in (0.15, 0.3, 0.5, 0.7):
        assert lateral_bone_cm2(phantom, mid(phantom, "pelvis", fraction)) > 3.0, fraction
    for fraction in (0.5, 0.7, 0.9):
        assert lateral_bone_cm2(phantom, mid(phantom, "abdomen", fraction)) < 0.5, fraction
    # Just above the crest no ilium yet, just below it the wings.
    crest = phantom.zones["pelvis"][0]
    assert lateral_bone_cm2(phantom, crest + 10.0) < 0.5
    assert lateral_bone_cm2(phantom, crest - 30.0) > 2.0


def test_orientation_posterior_down_left_right() -> None:
    phantom = dataclasses.replace(make_phantom(4), rotation_deg=0.0, table=False)
    z = mid(phantom, "abdomen", 0.6)
    image, inside = clean(phantom, z), mask(phantom, z)
    rows, columns = np.nonzero(inside)
    spine = (image > 300.0) & inside
    assert np.nonzero(spine)[0].mean() > rows.mean() + 10  # the spine is posterior (down)
    # The field of view is centred on the isocentre; the body sits at its offset.
    centre_x = (columns.mean() - (SIZE - 1) / 2.0) * SPACING
    assert abs(centre_x - phantom.offset_mm[0]) < 8.0
    back_y = (rows.max() - (SIZE - 1) / 2.0) * SPACING
    assert abs(back_y - (phantom.offset_mm[1] + phantom.back_y_mm)) < 8.0


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_neighbouring_slices_are_similar_distant_ones_are_not(seed: int) -> None:
    phantom = make_phantom(seed)
    for z in np.linspace(phantom.z_top - 60.0, phantom.z_bottom + 200.0, 9):
        here = clean(phantom, float(z))
        near = np.mean(np.abs(here - clean(phantom, float(z) - 2.0)))
        far = np.mean(np.abs(here - clean(phantom, float(z) - 200.0)))
        assert near < 0.25 * far, (z, near, far)


def test_lung_profile_is_smooth_and_rises_then_falls() -> None:
    phantom = make_phantom(6)
    apex, dome = phantom.zones["chest"]
    zs = np.arange(apex + 20.0, dome - 120.0, -4.0)
    profile = np.array([lung_fraction(phantom, float(z)) for z in zs])
    assert np.max(np.abs(np.diff(profile))) < 0.07  # no jumps between slices 4 mm apart
    peak = int(np.argmax(profile))
    assert 0.2 * len(zs) < peak < 0.8 * len(zs)
    assert profile[0] < 0.12 and profile[-1] < 0.05 and profile[peak] > 0.3


def test_head_has_skull_and_brain() -> None:
    phantom = make_phantom(8)
    z = phantom.z_top - 45.0
    image, inside = clean(phantom, z), mask(phantom, z)
    brain = (np.abs(image - phantom.hu["brain"]) < 10.0) & inside
    bone = (image > 500.0) & inside
    assert brain.sum() > 0.4 * inside.sum()
    assert bone.sum() > 0.08 * inside.sum()
    assert lung_fraction(phantom, z) < 0.01
    assert inside.sum() * SPACING**2 < 300.0 * 100.0  # a head, not a trunk (< 300 cm²)


def test_subjects_differ_in_size_and_position() -> None:
    areas, centres = [], []
    for seed in range(8):
        phantom = make_phantom(seed)
        z = mid(phantom, "abdomen")
        inside = mask(phantom, z)
        areas.append(inside.sum() * SPACING**2)
        centres.append(np.nonzero(inside)[1].mean())
    assert np.std(areas) / np.mean(areas) > 0.08
    assert np.std(centres) * SPACING > 5.0


def test_fat_distribution_and_trunk_shape_act_on_their_own_region() -> None:
    """Where a subject carries fat (chest, waist, hips) and how its trunk is proportioned
    vary independently, so neither orders the slices the same way in every subject."""
    subjects = [make_phantom(seed) for seed in range(40)]
    waist_over_chest = [p.fat_distribution[1] / p.fat_distribution[0] for p in subjects]
    hips_over_waist = [p.trunk_shape[2] / p.trunk_shape[1] for p in subjects]
    assert min(waist_over_chest) < 0.9 and max(waist_over_chest) > 1.1
    assert min(hips_over_waist) < 1.0 < max(hips_over_waist)

    phantom = make_phantom(3)
    even = dataclasses.replace(phantom, fat_distribution=(1.0, 1.0, 1.0), trunk_shape=(1, 1, 1))
    central = dataclasses.replace(even, fat_distribution=(1.0, 1.6, 1.0))
    broad_hips = dataclasses.replace(even, trunk_shape=(1.0, 1.0, 1.2))

    def area(subject: Phantom, z: float) -> float:
        return float(mask(subject, z).sum())

    chest, waist = mid(phantom, "chest", 0.3), mid(phantom, "abdomen", 0.45)
    hips = mid(phantom, "pelvis", 0.3)
    assert area(central, chest) == pytest.approx(area(even, chest), rel=0.01)
    assert area(central, waist) > 1.05 * area(even, waist)
    assert area(broad_hips, waist) == pytest.approx(area(even, waist), rel=0.02)
    assert area(broad_hips, hips) > 1.08 * area(even, hips)


# -- scans -------------------------------------------------------------------------------------


def test_random_scan() -> None:
    phantom = make_phantom(9)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        scan = random_scan(phantom, rng)
        seen.add(scan.region)
        zs = scan.z_positions
        assert scan.region in REGIONS and scan.spacing_mm in SPACINGS_MM
        assert zs.max() <= phantom.z_top + 1e-6 and zs.min() >= phantom.z_bottom - 1e-6
        steps = np.diff(zs)
        expected = -scan.spacing_mm if scan.head_first else scan.spacing_mm
        np.testing.assert_allclose(steps, expected, atol=2e-3)
    assert len(seen) >= 6
    chest = random_scan(phantom, rng, region="chest", spacing_mm=2.0, head_first=True)
    apex, dome = phantom.zones["chest"]
    assert chest.z_positions[0] > apex and chest.z_positions[-1] < dome
    capped = random_scan(phantom, rng, region="whole_body", spacing_mm=1.0, max_slices=50)
    assert len(capped.z_positions) <= 50 and capped.spacing_mm > 10.0
    with pytest.raises(ValueError):
        random_scan(phantom, rng, region="elbow")


# -- the CT series ---------------------------------------------------------------------------


def small_scan(phantom: Phantom, head_first: bool = True) -> Scan:
    """Chest to abdomen, 12 slices 25 mm apart."""
    top = phantom.zones["chest"][0] - 20.0
    zs = np.round(top - 25.0 * np.arange(12), 3)
    return Scan(
        z_positions=zs if head_first else zs[::-1].copy(),
        spacing_mm=25.0,
        region="chest_abdomen",
        head_first=head_first,
    )


def read(files: tuple[Path, ...]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in files]


def hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_series_geometry_pixels_and_header(tmp_path: Path) -> None:
    phantom = make_phantom(21)
    scan = small_scan(phantom)
    series = write_ct_series(tmp_path, phantom, scan, size=64, pixel_spacing=7.2)
    assert len(series.files) == 12 and series.anatomy_order == "normal"
    assert series.zones == phantom.zones
    datasets = read(series.files)
    origin = -(64 - 1) / 2.0 * 7.2
    for k, ds in enumerate(datasets):
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == CTImageStorage and ds.Modality == "CT"
        assert int(ds.InstanceNumber) == k + 1
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        ipp = [float(v) for v in ds.ImagePositionPatient]
        assert ipp[:2] == pytest.approx([origin, origin], abs=1e-6)
        assert ipp[2] == pytest.approx(scan.z_positions[k], abs=1e-3)
        assert ipp[2] == pytest.approx(series.z_positions[k], abs=1e-3)
        assert float(ds.SliceLocation) == pytest.approx(ipp[2], abs=1e-3)
        assert [float(v) for v in ds.PixelSpacing] == [7.2, 7.2]
        assert float(ds.SliceThickness) == 25.0
        assert ds.Rows == ds.Columns == 64
        assert ds.PixelRepresentation == 1 and ds.BitsStored == 16
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert ds.PatientPosition == "HFS"
        assert ds.BodyPartExamined == BODY_PARTS["chest_abdomen"]
        assert ds.PatientID == "PHANTOM-21" and str(ds.PatientName) == "Phantom^21"
        expected = render_slice(phantom, ipp[2], size=64, pixel_spacing=7.2)
        assert np.max(np.abs(hu(ds) - expected)) <= 1.0
    assert len({ds.SOPInstanceUID for ds in datasets}) == 12
    assert {ds.SeriesInstanceUID for ds in datasets} == {series.series_instance_uid}
    assert {ds.StudyInstanceUID for ds in datasets} == {series.study_instance_uid}
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert all(ds.PositionReferenceIndicator == "" for ds in datasets)


def test_feet_first_series(tmp_path: Path) -> None:
    phantom = make_phantom(22)
    scan = small_scan(phantom, head_first=False)
    series = write_ct_series(tmp_path, phantom, scan, size=32, pixel_spacing=14.4)
    datasets = read(series.files)
    zs = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert zs == sorted(zs)  # instance 1 is the most inferior slice
    assert {ds.PatientPosition for ds in datasets} == {"FFS"}


def test_shuffled_instance_numbers_leave_the_geometry(tmp_path: Path) -> None:
    phantom = make_phantom(23)
    scan = small_scan(phantom)
    plain = write_ct_series(tmp_path / "a", phantom, scan, size=32, pixel_spacing=14.4)
    mixed = write_ct_series(
        tmp_path / "b", phantom, scan, size=32, pixel_spacing=14.4, shuffle_instance_numbers=True
    )
    datasets = read(mixed.files)
    numbers = [int(ds.InstanceNumber) for ds in datasets]
    assert numbers == list(range(1, 13))  # files come in Instance Number order
    assert list(mixed.instance_numbers) == numbers
    geometry_order = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert geometry_order != sorted(geometry_order, reverse=True)
    assert geometry_order != sorted(geometry_order)
    np.testing.assert_allclose(np.sort(mixed.z_positions), np.sort(plain.z_positions))
    for ds in datasets:  # every file still shows the anatomy at its position
        z = float(ds.ImagePositionPatient[2])
        np.testing.assert_allclose(
            hu(ds), render_slice(phantom, z, size=32, pixel_spacing=14.4), atol=1.0
        )


def best_match(phantom: Phantom, ds: pydicom.Dataset, candidates: np.ndarray) -> float:
    """The candidate z whose rendered slice the file's pixels match best."""
    pixels = hu(ds)
    errors = [
        np.mean(np.abs(pixels - render_slice(phantom, float(z), size=32, pixel_spacing=14.4)))
        for z in candidates
    ]
    assert min(errors) <= 0.5
    return float(candidates[int(np.argmin(errors))])


def test_reversed_anatomy(tmp_path: Path) -> None:
    phantom = make_phantom(24)
    scan = small_scan(phantom)
    series = write_ct_series(
        tmp_path, phantom, scan, size=32, pixel_spacing=14.4, anatomy_order="reversed"
    )
    assert series.anatomy_order == "reversed"
    datasets = read(series.files)
    zs = scan.z_positions
    for k, ds in enumerate(datasets):
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(zs[k], abs=1e-3)
        assert best_match(phantom, ds, zs) == pytest.approx(zs[len(zs) - 1 - k], abs=1e-3)
        assert series.anatomy_z[k] == pytest.approx(zs[len(zs) - 1 - k], abs=1e-3)
    # Sorted by geometry, head first, the anatomy runs from the abdomen up to the chest.
    by_z = sorted(datasets, key=lambda ds: -float(ds.ImagePositionPatient[2]))
    top, bottom = hu(by_z[0]), hu(by_z[-1])
    assert np.mean(top < -500) < np.mean(bottom < -500)


def test_mixed_anatomy_has_one_reversed_block(tmp_path: Path) -> None:
    phantom = make_phantom(25)
    scan = small_scan(phantom)
    series = write_ct_series(
        tmp_path, phantom, scan, size=32, pixel_spacing=14.4, anatomy_order="mixed"
    )
    datasets = read(series.files)
    zs = scan.z_positions
    shown = np.array([best_match(phantom, ds, zs) for ds in datasets])
    np.testing.assert_allclose(shown, series.anatomy_z, atol=1e-3)
    moved = np.nonzero(np.abs(shown - zs) > 1e-3)[0]
    # One contiguous block of about a third of the slices, reversed in place.
    block = slice(int(moved.min()), int(moved.max()) + 1)
    assert 3 <= block.stop - block.start <= 5
    np.testing.assert_allclose(shown[block], zs[block][::-1], atol=1e-3)
    assert np.sum(np.diff(shown) > 0) >= 1 and np.sum(np.diff(shown) < 0) >= 2
    assert sorted(shown.tolist()) == sorted(zs.tolist())


def test_write_ct_study_and_many_subjects(tmp_path: Path) -> None:
    one = write_ct_study(tmp_path / "one", 5, size=32, region="pelvis", max_slices=8)
    again = write_ct_study(tmp_path / "again", 5, size=32, region="pelvis", max_slices=8)
    assert one.series_instance_uid == again.series_instance_uid
    assert 2 <= len(one.files) <= 8
    assert [f.read_bytes() for f in one.files] == [f.read_bytes() for f in again.files]
    assert read(one.files)[0].BodyPartExamined == "PELVIS"
    many = write_ct_phantom_series(tmp_path / "many", 3, seed=1, size=32, max_slices=6)
    assert len(many) == 3
    assert len({s.phantom_seed for s in many}) == 3
    assert len({s.study_instance_uid for s in many}) == 3
    assert len({read(s.files)[0].PatientID for s in many}) == 3
    assert all(s.folder.parent == tmp_path / "many" for s in many)


@pytest.mark.peers
@pytest.mark.parametrize("seed", (31, 32))
def test_dciodvfy_finds_no_errors(tmp_path: Path, seed: int) -> None:
    """dicom3tools' dciodvfy accepts the files (warnings allowed); skips without it."""
    phantom = make_phantom(seed)
    scan = small_scan(phantom)
    series = write_ct_series(tmp_path, phantom, scan, size=64, pixel_spacing=7.2)
    for path in (series.files[0], series.files[-1]):
        errors, _warnings = dciodvfy(path)
        assert errors == [], errors
