"""What a scanner adds to the synthetic CT phantoms (``training.synthetic.ct_reconstruction``):
the reconstruction's field of view and its padding outside the circle, the couch,
textures, the kernel, noise with a CT noise power spectrum, streaks near dense bone and
metal, drawn per scan and written to DICOM as a scanner would."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.ct_body_part.preprocess import InputSpec
from pipelines.ct_body_part.volume import AIR_HU, read_hu
from training.ct_body_part.data import render_phantom_volume
from training.synthetic.ct_phantoms import (
    CANONICAL_LANDMARKS,
    REGIONS,
    Phantom,
    body_mask,
    make_phantom,
    random_scan,
    render_slice,
    write_ct_series,
)
from training.synthetic.ct_reconstruction import (
    KERNELS,
    PADDING_VALUES_HU,
    SCAN_FIELD_MM,
    Kernel,
    Metal,
    Reconstruction,
    Table,
)

FLAT_TABLE = Table(
    shape="flat",
    width_mm=440.0,
    curvature_per_mm=0.0,
    shell_mm=3.0,
    shell_hu=300.0,
    core_mm=30.0,
    core_hu=-850.0,
    pad_mm=40.0,
    pad_hu=-800.0,
)


def mid(phantom: Phantom, zone: str) -> float:
    top, bottom = phantom.zones[zone]
    return (top + bottom) / 2.0


def at_canonical(phantom: Phantom, c: float) -> float:
    """The subject's z whose canonical z is ``c``."""
    zs = np.arange(phantom.z_top, phantom.z_bottom, -0.25)
    return float(next(z for z in zs if phantom.canonical_z(float(z)) <= c))


def pixel_centres(size: int, recon: Reconstruction) -> tuple[np.ndarray, np.ndarray]:
    """Patient x (columns) and y (rows) of the pixel centres, in mm."""
    spacing = recon.fov_mm / size
    offsets = (np.arange(size) - (size - 1) / 2.0) * spacing
    return recon.centre_mm[0] + offsets, recon.centre_mm[1] + offsets


def outside_circle(size: int, recon: Reconstruction) -> np.ndarray:
    x, y = pixel_centres(size, recon)
    cx, cy = recon.centre_mm
    from_centre = np.hypot(*np.meshgrid(x - cx, y - cy))
    from_isocentre = np.hypot(*np.meshgrid(x, y))
    return (from_centre > recon.fov_mm / 2.0) | (from_isocentre > SCAN_FIELD_MM / 2.0)


def noise_of(phantom: Phantom, z: float, size: int, recon: Reconstruction) -> np.ndarray:
    """The noise alone: the same slice with and without it."""
    noisy = render_slice(phantom, z, size=size, reconstruction=recon)
    clean = render_slice(phantom, z, size=size, reconstruction=recon, noise=False)
    return (noisy - clean).astype(np.float64)


def radial_power(image: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """|FFT|² of ``image`` (mean removed) and the radial frequency (cycles/mm) of each bin."""
    spectrum = np.abs(np.fft.fft2(image - image.mean())) ** 2
    fy = np.fft.fftfreq(image.shape[0], spacing)
    fx = np.fft.fftfreq(image.shape[1], spacing)
    return spectrum, np.hypot(*np.meshgrid(fy, fx, indexing="ij"))


# -- field of view and padding -----------------------------------------------------------------


@pytest.mark.parametrize("padding", PADDING_VALUES_HU)
def test_outside_the_reconstruction_circle_is_padding_and_inside_is_not(padding: float) -> None:
    phantom = make_phantom(3)
    recon = Reconstruction(fov_mm=320.0, centre_mm=(25.0, -10.0), padding_hu=padding, seed=2)
    image = render_slice(phantom, mid(phantom, "chest"), size=96, reconstruction=recon)
    outside = outside_circle(96, recon)
    assert 0.1 < outside.mean() < 0.4  # the corners of the square
    assert np.all(image[outside] == np.float32(padding))
    assert np.all(image[~outside] != np.float32(padding))
    assert image[~outside].min() >= -1024.0 and image.max() <= 3071.0


def test_the_scan_field_cuts_an_off_centre_reconstruction_and_no_padding_no_circle() -> None:
    phantom = make_phantom(4)
    z = mid(phantom, "abdomen")
    # 500 mm wide but 60 mm off the isocentre: part of the inscribed circle lies
    # outside the scanner's 500 mm scan field.
    recon = Reconstruction(fov_mm=500.0, centre_mm=(60.0, 0.0), padding_hu=-2000.0)
    image = render_slice(phantom, z, size=64, reconstruction=recon)
    x, y = pixel_centres(64, recon)
    beyond = np.hypot(*np.meshgrid(x, y)) > SCAN_FIELD_MM / 2.0
    in_circle = np.hypot(*np.meshgrid(x - 60.0, y)) <= 250.0
    assert np.any(beyond & in_circle)
    assert np.all(image[beyond] == -2000.0)
    plain = render_slice(phantom, z, size=64, reconstruction=replace(recon, padding_hu=None))
    assert plain.min() >= -1024.0
    assert not np.any(np.isin(plain, PADDING_VALUES_HU))


def test_the_field_of_view_sets_the_pixel_spacing_and_where_the_body_lies() -> None:
    phantom = make_phantom(5)
    z = mid(phantom, "abdomen")
    wide = Reconstruction(fov_mm=500.0)
    narrow = Reconstruction(fov_mm=250.0)
    wide_mask = body_mask(phantom, z, size=128, reconstruction=wide)
    narrow_mask = body_mask(phantom, z, size=128, reconstruction=narrow)
    # Half the field: the body covers more of the image (cut at the edges).
    assert narrow_mask.mean() > 2.0 * wide_mask.mean()
    # Moving the centre right moves the body left in the image by as many pixels.
    moved = body_mask(phantom, z, size=128, reconstruction=replace(wide, centre_mm=(39.0, 0.0)))
    shift = np.nonzero(wide_mask.any(axis=0))[0].mean() - np.nonzero(moved.any(axis=0))[0].mean()
    assert shift == pytest.approx(39.0 / (500.0 / 128), abs=0.6)
    with pytest.raises(ValueError, match="field of view"):
        render_slice(phantom, z, size=128, pixel_spacing=0.9, reconstruction=wide)


# -- DICOM -------------------------------------------------------------------------------------


def test_written_series_carry_pixel_padding_value_and_read_back_as_air(tmp_path: Path) -> None:
    phantom = make_phantom(6)
    scan = random_scan(phantom, np.random.default_rng(6), region="chest_abdomen", max_slices=3)
    assert scan.reconstruction is not None
    recon = replace(scan.reconstruction, fov_mm=340.0, centre_mm=(12.0, -8.0), padding_hu=-3024.0)
    series = write_ct_series(tmp_path, phantom, scan, size=64, reconstruction=recon)
    outside = outside_circle(64, recon)
    for path, z in zip(series.files, series.anatomy_z, strict=True):
        ds = pydicom.dcmread(path)
        element = ds[0x00280120]
        assert element.VR == "SS" and element.value == -3024
        assert int(ds.PixelRepresentation) == 1 and float(ds.RescaleIntercept) == 0.0
        assert float(ds.ReconstructionDiameter) == pytest.approx(340.0)
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([340.0 / 64] * 2)
        origin = [float(v) for v in ds.ImagePositionPatient][:2]
        assert origin == pytest.approx([12.0 - 31.5 * 340.0 / 64, -8.0 - 31.5 * 340.0 / 64])
        assert ds.ConvolutionKernel and int(ds.KVP) == recon.kvp
        stored = ds.pixel_array
        assert np.all(stored[outside] == -3024) and np.all(stored[~outside] > -3024)
        hu = read_hu(path)
        assert np.all(hu[outside] == AIR_HU)
        expected = render_slice(phantom, float(z), size=64, reconstruction=recon)
        assert np.max(np.abs(hu[~outside] - expected[~outside])) <= 0.5
    # Without a padding value, no Pixel Padding Value.
    plain = write_ct_series(
        tmp_path / "plain", phantom, scan, size=32, reconstruction=replace(recon, padding_hu=None)
    )
    assert "PixelPaddingValue" not in pydicom.dcmread(plain.files[0])


def test_written_series_without_a_reconstruction_are_unchanged(tmp_path: Path) -> None:
    phantom = make_phantom(7)
    scan = random_scan(phantom, np.random.default_rng(7), region="chest", max_slices=2)
    series = write_ct_series(tmp_path, phantom, scan, size=32, pixel_spacing=14.4)
    ds = pydicom.dcmread(series.files[0])
    assert "PixelPaddingValue" not in ds and ds.ConvolutionKernel == "STANDARD"
    expected = render_slice(phantom, float(series.anatomy_z[0]), size=32, pixel_spacing=14.4)
    assert np.max(np.abs(ds.pixel_array - expected)) <= 0.5


# -- noise and kernels -------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["soft", "standard"])
def test_noise_is_spatially_correlated_and_of_the_drawn_level(kernel: Kernel) -> None:
    phantom = make_phantom(8)
    z = mid(phantom, "abdomen")
    recon = Reconstruction(fov_mm=380.0, kernel=kernel, noise_hu=18.0, seed=4)
    noise = noise_of(phantom, z, 512, recon)[156:356, 156:356]
    neighbours = np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]
    assert neighbours > 0.2
    assert 0.8 * recon.noise_hu < noise.std() < 1.4 * recon.noise_hu
    # A CT spectrum: little power at the lowest frequencies, a peak in the middle.
    power, f = radial_power(noise, 380.0 / 512)
    low = power[(f > 0.005) & (f < 0.05)].mean()
    middle = power[(f > 0.15) & (f < 0.3)].mean()
    assert low < 0.4 * middle
    # White noise has none of this (the check can fail).
    white = np.random.default_rng(0).standard_normal(noise.shape)
    assert abs(np.corrcoef(white[:, :-1].ravel(), white[:, 1:].ravel())[0, 1]) < 0.05
    power, f = radial_power(white, 380.0 / 512)
    assert power[(f > 0.005) & (f < 0.05)].mean() > 0.6 * power[(f > 0.15) & (f < 0.3)].mean()


def test_coarse_renders_keep_the_noise_area_averaging_leaves() -> None:
    phantom = make_phantom(8)
    z = mid(phantom, "abdomen")
    recon = Reconstruction(fov_mm=460.0, kernel="standard", noise_hu=20.0, seed=4)
    native = noise_of(phantom, z, 512, recon)[156:356, 156:356].std()
    coarse = noise_of(phantom, z, 128, recon)[39:89, 39:89].std()
    # Averaging 4 × 4 pixels of a ramp spectrum removes more than white noise's 3/4.
    assert coarse < 0.35 * native


def test_sharp_kernel_has_more_high_frequency_energy_than_soft() -> None:
    phantom = make_phantom(9)
    z = mid(phantom, "chest")
    base = Reconstruction(fov_mm=400.0, noise_hu=15.0, seed=5)
    spacing = 400.0 / 256
    energy = {}
    noise_share = {}
    for kernel in KERNELS:
        recon = replace(base, kernel=kernel)
        clean = render_slice(phantom, z, size=256, reconstruction=recon, noise=False)
        power, f = radial_power(clean.astype(np.float64), spacing)
        energy[kernel] = power[f > 0.2].sum()
        power, f = radial_power(noise_of(phantom, z, 256, recon), spacing)
        noise_share[kernel] = power[f > 0.25].sum() / power.sum()
    assert energy["sharp"] > 1.2 * energy["standard"] > 1.2 * energy["soft"]
    assert noise_share["sharp"] > noise_share["standard"] > noise_share["soft"]


def test_reconstructed_slices_are_deterministic_and_depend_on_the_reconstruction() -> None:
    phantom = make_phantom(10)
    z = mid(phantom, "chest")
    recon = Reconstruction(fov_mm=350.0, padding_hu=-1024.0, table=FLAT_TABLE, seed=11)
    first = render_slice(phantom, z, size=96, reconstruction=recon)
    np.testing.assert_array_equal(first, render_slice(phantom, z, size=96, reconstruction=recon))
    other_seed = render_slice(phantom, z, size=96, reconstruction=replace(recon, seed=12))
    assert np.abs(first - other_seed).mean() > 1.0
    other_z = render_slice(phantom, z - 0.5, size=96, reconstruction=recon)
    inside = ~outside_circle(96, recon)
    residual = first - render_slice(phantom, z, size=96, reconstruction=recon, noise=False)
    other = other_z - render_slice(phantom, z - 0.5, size=96, reconstruction=recon, noise=False)
    assert abs(np.corrcoef(residual[inside], other[inside])[0, 1]) < 0.3


# -- couch, textures, streaks ------------------------------------------------------------------


def _rows_below_body(
    phantom: Phantom, z: float, size: int, recon: Reconstruction, depth_mm: float
) -> tuple[slice, slice]:
    """Rows from just under the body's lowest point down ``depth_mm``, columns under it."""
    inside = body_mask(phantom, z, size=size, reconstruction=recon)
    spacing = recon.fov_mm / size
    bottom = int(np.nonzero(inside.any(axis=1))[0].max())
    cols = np.nonzero(inside.any(axis=0))[0]
    centre = int(cols.mean())
    return (
        slice(bottom + 2, bottom + 2 + int(depth_mm / spacing)),
        slice(centre - 5, centre + 6),
    )


def test_the_couch_lies_below_the_body() -> None:
    phantom = make_phantom(11)
    z = mid(phantom, "abdomen")
    with_table = Reconstruction(fov_mm=480.0, table=FLAT_TABLE)
    without = replace(with_table, table=None)
    rows, cols = _rows_below_body(phantom, z, 256, with_table, 80.0)
    image = render_slice(phantom, z, size=256, reconstruction=with_table, noise=False)
    empty = render_slice(phantom, z, size=256, reconstruction=without, noise=False)
    below, below_empty = image[rows, cols], empty[rows, cols]
    assert np.all(np.abs(below_empty - (-1000.0)) < 5.0)
    # Mattress (−800) under the body, then the board: a bright shell and its foam core.
    assert np.median(below[: int(30.0 / (480.0 / 256))]) == pytest.approx(-800.0, abs=40.0)
    assert below.max() > 0.0
    assert np.mean(below > -900.0) > 0.6
    # Above the body there is no couch.
    assert np.all(np.abs(image[:20] - empty[:20]) < 0.05)


def test_drawn_couches_vary_and_the_head_holder_is_narrow() -> None:
    rng = np.random.default_rng(0)
    body = [random_scan(make_phantom(s), rng, region="abdomen").reconstruction for s in range(80)]
    head = [random_scan(make_phantom(s), rng, region="head").reconstruction for s in range(40)]
    tables = [r.table for r in body if r is not None and r.table is not None]
    assert {t.shape for t in tables} == {"flat", "cradle"}
    assert any(t.pad_mm > 0.0 for t in tables) and any(t.pad_mm == 0.0 for t in tables)
    pads = [t.pad_hu for t in tables if t.pad_mm > 0.0]
    assert min(pads) >= -900.0 and max(pads) <= -700.0
    holders = [r.table for r in head if r is not None and r.table is not None]
    assert holders and max(t.width_mm for t in holders) < min(t.width_mm for t in tables)


def test_textures_vary_fat_and_muscle_and_put_vessels_in_the_lungs() -> None:
    phantom = make_phantom(12)
    recon = Reconstruction(fov_mm=400.0, noise_hu=10.0, seed=3)
    flat = replace(recon, textures=False)
    images = {}
    for zone in ("chest", "abdomen"):
        z = mid(phantom, zone)
        images[zone] = (
            render_slice(phantom, z, size=256, reconstruction=flat, noise=False),
            render_slice(phantom, z, size=256, reconstruction=recon, noise=False),
        )
    smooth, textured = images["abdomen"]
    fat = np.abs(smooth - phantom.hu["fat"]) < 5.0
    muscle = np.abs(smooth - phantom.hu["muscle"]) < 3.0
    assert fat.sum() > 500 and muscle.sum() > 500
    assert textured[fat].std() > 3.0 * max(smooth[fat].std(), 1.0)
    assert textured[muscle].std() > 2.0 * max(smooth[muscle].std(), 1.0)
    # Fine vessels: a few % of the lung well above the parenchyma.
    smooth, textured = images["chest"]
    lung = np.abs(smooth - phantom.hu["lung"]) < 5.0
    assert lung.sum() > 2000
    vessels = np.mean(textured[lung] > phantom.hu["lung"] + 200.0)
    assert 0.01 < vessels < 0.25
    assert np.mean(smooth[lung] > phantom.hu["lung"] + 200.0) == 0.0


def _with_metal(phantom: Phantom, recon: Reconstruction, size: int) -> tuple[float, np.ndarray]:
    """The slice (z, image) with the most metal of the implant in ``recon``."""
    if recon.metal == "dental":
        candidates = np.arange(-140.0, -182.0, -1.0)
    else:
        candidates = np.array([CANONICAL_LANDMARKS["femoral_head"]])
    best: tuple[int, float, np.ndarray] | None = None
    for c in candidates:
        z = at_canonical(phantom, float(c))
        image = render_slice(phantom, z, size=size, reconstruction=recon, noise=False)
        count = int((image >= 2800.0).sum())
        if best is None or count > best[0]:
            best = (count, z, image)
    assert best is not None and best[0] > 2
    return best[1], best[2]


@pytest.mark.parametrize("metal", ["hip_left", "dental"])
def test_streaks_raise_the_variance_near_metal(metal: Metal) -> None:
    phantom = make_phantom(13)
    recon = Reconstruction(fov_mm=420.0, seed=9, metal=metal)
    size = 256
    spacing = 420.0 / size
    z, implant = _with_metal(phantom, recon, size)
    plain = render_slice(
        phantom, z, size=size, reconstruction=replace(recon, metal=None), noise=False
    )
    # Without streaks, the implant changes little around it (its edge rings a little).
    no_streaks = replace(recon, streak_scale=0.0)
    quiet = render_slice(phantom, z, size=size, reconstruction=no_streaks, noise=False)
    quiet_plain = render_slice(
        phantom, z, size=size, reconstruction=replace(no_streaks, metal=None), noise=False
    )
    ii, jj = np.nonzero(implant >= 2800.0)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - ii.mean(), xx - jj.mean()) * spacing
    near = (r > 30.0) & (r < 90.0) & (np.abs(plain) < 150.0) & (np.abs(quiet) < 150.0)
    assert near.sum() > 200
    assert np.abs(quiet - quiet_plain)[near].std() < 3.0
    # Lines of tens to hundreds of HU through the implant: far more variance around it.
    streaks = (implant - plain)[near]
    assert streaks.std() > 25.0
    assert implant[near].var() > plain[near].var() + streaks.var() / 2.0


def test_dense_bone_across_the_body_darkens_a_band_and_raises_the_noise() -> None:
    phantom = make_phantom(14)
    z = at_canonical(phantom, CANONICAL_LANDMARKS["femoral_head"])
    recon = Reconstruction(fov_mm=420.0, seed=2)
    strong = render_slice(
        phantom, z, size=256, reconstruction=replace(recon, streak_scale=1.5), noise=False
    )
    none = render_slice(
        phantom, z, size=256, reconstruction=replace(recon, streak_scale=0.0), noise=False
    )
    soft = np.abs(none) < 150.0
    darker = (strong - none)[soft]
    assert darker.min() < -20.0 and darker.mean() < 0.0
    # Noise: more at the hips than in the mid-abdomen for the same reconstruction.
    hips = noise_of(phantom, z, 512, recon)[200:312, 200:312].std()
    belly = noise_of(phantom, mid(phantom, "abdomen"), 512, recon)[200:312, 200:312].std()
    assert hips > 1.05 * belly


# -- drawn per scan ----------------------------------------------------------------------------


def test_random_scans_draw_consistent_varied_reconstructions() -> None:
    rng = np.random.default_rng(1)
    recons = []
    for seed in range(400):
        phantom = make_phantom(seed)
        region = list(REGIONS)[seed % len(REGIONS)]
        scan = random_scan(phantom, rng, region=region)
        assert scan.reconstruction is not None
        recons.append((region, scan.reconstruction))
        # The reconstruction is drawn after the rest: the same z with or without it.
        again = random_scan(
            phantom,
            np.random.default_rng(seed),
            region=region,
            reconstruction=Reconstruction(),
        )
        first = random_scan(phantom, np.random.default_rng(seed), region=region)
        np.testing.assert_array_equal(first.z_positions, again.z_positions)
    fovs = np.array([r.fov_mm for _, r in recons])
    body = np.array(
        [r.fov_mm for region, r in recons if region not in ("head", "head_neck", "neck")]
    )
    assert fovs.min() >= 150.0 and fovs.max() <= 500.0
    assert body.max() > 460.0 and np.percentile(body, 20) < 380.0
    targeted = np.mean(body < 250.0)
    assert 0.04 < targeted < 0.2
    assert {r.kernel for _, r in recons} == set(KERNELS)
    noise = np.array([r.noise_hu for _, r in recons])
    assert noise.min() >= 5.0 and noise.max() <= 40.0 and noise.std() > 3.0
    sharp = np.mean([r.noise_hu for _, r in recons if r.kernel == "sharp"])
    soft = np.mean([r.noise_hu for _, r in recons if r.kernel == "soft"])
    assert sharp > 1.5 * soft
    paddings = {r.padding_hu for _, r in recons}
    assert paddings == {None, *PADDING_VALUES_HU}
    metals = [r.metal for _, r in recons if r.metal is not None]
    assert 0 < len(metals) < 0.12 * len(recons)
    offsets = np.array([r.patient_shift_mm for _, r in recons])
    assert np.abs(offsets).max() > 15.0
    assert len({r.seed for _, r in recons}) == len(recons)


# -- training ----------------------------------------------------------------------------------


def test_training_volumes_go_through_the_scans_reconstruction() -> None:
    spec = InputSpec(size=32, hu_window=(-1000.0, 1000.0), scale=1.0)
    filled = []
    for seed in range(8):
        volume = render_phantom_volume(seed, spec, max_slices=12, region="abdomen")
        images = volume.images
        # Padding read as air: the window's bottom, never anything below it.
        assert images.min() == 0
        filled.append(float((images > 20).mean()))
    # Fields of view from about 250 to 500 mm: the body fills very different shares.
    assert max(filled) > 1.5 * min(filled)
