"""Pixel Padding Value: pixels outside the reconstruction's field of view read as air on
every CT decode path (uncompressed read in place, pydicom's decoders, multi-frame), before
anything is windowed, whatever stored value the scanner chose for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from pipelines.ct_body_part.preprocess import InputSpec, windowed
from pipelines.ct_body_part.volume import (
    AIR_HU,
    padding_range,
    read_ct_geometry,
    read_hu,
    read_slices_hu,
)
from training.synthetic.ct_phantoms import (
    WrittenSeries,
    make_phantom,
    random_scan,
    write_ct_series,
    write_multi_frame_ct,
)

SIZE = 64
#: A bright padding value, as some scanners write: read as it is, it would be dense bone.
BRIGHT_PADDING = 3000


def _series(folder: Path, seed: int = 5) -> WrittenSeries:
    phantom = make_phantom(seed)
    scan = random_scan(
        phantom, np.random.default_rng(seed), region="chest_abdomen_pelvis", max_slices=6
    )
    return write_ct_series(folder, phantom, scan, size=SIZE, pixel_spacing=7.0)


def _outside_fov() -> np.ndarray:
    y, x = np.mgrid[:SIZE, :SIZE]
    centre = (SIZE - 1) / 2.0
    return np.hypot(y - centre, x - centre) > SIZE * 0.45


def _pad(ds: Dataset, value: int, *, limit: int | None = None, written: int | None = None) -> None:
    """Write ``value`` outside the field of view and name it Pixel Padding Value (as
    ``written`` when given: the element's own value, e.g. its bits read unsigned)."""
    pixels = ds.pixel_array.copy()
    pixels[_outside_fov()] = value
    ds.PixelData = pixels.tobytes()
    vr = "SS" if written is None and int(ds.PixelRepresentation) == 1 else "US"
    ds.add_new(0x00280120, vr, value if written is None else written)  # Pixel Padding Value
    if limit is not None:
        ds.add_new(0x00280121, vr, limit)  # Pixel Padding Range Limit


def _hu(files: list[Path]) -> list[np.ndarray]:
    return list(read_slices_hu(read_ct_geometry(files).slices))


def test_padding_range_reads_the_value_and_its_limit_as_the_pixels_type() -> None:
    ds = Dataset()
    ds.BitsAllocated, ds.PixelRepresentation = 16, 1
    assert padding_range(ds) is None
    ds.PixelPaddingValue = -2000
    assert padding_range(ds) == (-2000, -2000)
    ds.PixelPaddingRangeLimit = -3000  # either order
    assert padding_range(ds) == (-3000, -2000)
    del ds.PixelPaddingRangeLimit
    ds.PixelPaddingValue = 63536  # -2000's bits, written as US for signed pixels
    assert padding_range(ds) == (-2000, -2000)
    ds.PixelRepresentation = 0
    ds.PixelPaddingValue = -1  # unsigned pixels: the same bits as 65535
    assert padding_range(ds) == (65535, 65535)


def test_a_padding_value_that_is_not_a_number_is_left_unmasked_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ds = Dataset()
    ds.PixelPaddingValue = "many"
    assert padding_range(ds) is None
    assert "Pixel Padding Value 'many' is not a number" in caplog.text


@pytest.mark.parametrize("compressed", [False, True], ids=["native", "rle"])
def test_padding_pixels_read_as_air_and_the_rest_as_before(
    tmp_path: Path, compressed: bool
) -> None:
    written = _series(tmp_path / "series")
    before = _hu(list(written.files))
    for path in written.files:
        ds = pydicom.dcmread(path)
        _pad(ds, BRIGHT_PADDING)
        if compressed:
            ds.compress(RLELossless)
        ds.save_as(path)
    stack = read_ct_geometry(list(written.files))
    assert all((s.native is not None) is not compressed for s in stack.slices)
    outside = _outside_fov()
    for old, new in zip(before, read_slices_hu(stack.slices), strict=True):
        assert np.all(new[outside] == AIR_HU)
        np.testing.assert_array_equal(new[~outside], old[~outside])
        # Windowed for the network, the padding is air (0), not bone (255).
        assert np.all(windowed(new, InputSpec())[outside] == 0.0)


def test_without_the_header_the_bright_padding_would_read_as_bone(tmp_path: Path) -> None:
    """The same files with Pixel Padding Value removed: what the masking prevents."""
    written = _series(tmp_path / "series")
    for path in written.files:
        ds = pydicom.dcmread(path)
        _pad(ds, BRIGHT_PADDING)
        del ds.PixelPaddingValue
        ds.save_as(path)
    for hu in _hu(list(written.files)):
        assert np.all(hu[_outside_fov()] >= 1000.0)


def test_a_padding_range_and_a_value_written_unsigned_for_signed_pixels(tmp_path: Path) -> None:
    written = _series(tmp_path / "series")
    for index, path in enumerate(written.files):
        ds = pydicom.dcmread(path)
        if index % 2:
            _pad(ds, -2000, written=63536)  # the element's bits read as US
        else:
            _pad(ds, 2990, limit=3010)  # a range: 2990..3010 is padding
            pixels = ds.pixel_array.copy()
            pixels[0, 0] = 3010
            ds.PixelData = pixels.tobytes()
        ds.save_as(path)
    for hu in _hu(list(written.files)):
        assert np.all(hu[_outside_fov()] == AIR_HU)


def test_padding_of_a_multi_frame_image_reads_as_air(tmp_path: Path) -> None:
    written = _series(tmp_path / "series")
    before = _hu(list(written.files))
    image = write_multi_frame_ct(written, tmp_path / "mf" / "image.dcm")
    ds = pydicom.dcmread(image)
    frames = ds.pixel_array.copy()
    frames[:, _outside_fov()] = BRIGHT_PADDING
    ds.PixelData = frames.tobytes()
    ds.add_new(0x00280120, "SS", BRIGHT_PADDING)  # Pixel Padding Value
    ds.save_as(image)
    outside = _outside_fov()
    after = _hu([image])
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert np.all(new[outside] == AIR_HU)
        np.testing.assert_array_equal(new[~outside], old[~outside])


def test_a_real_scanners_padding_value_as_it_wrote_it(tmp_path: Path) -> None:
    """pydicom's CT_small.dcm (a real GE slice) names Pixel Padding Value -2000 but has no
    padding pixels: outside its field of view set to that value, they read as air."""
    source = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    ds = pydicom.dcmread(source)
    assert padding_range(ds) == (-2000, -2000)
    rows, columns = ds.pixel_array.shape
    y, x = np.mgrid[:rows, :columns]
    outside = np.hypot(y - (rows - 1) / 2, x - (columns - 1) / 2) > rows * 0.45
    before = read_hu(source)
    pixels = ds.pixel_array.copy()
    pixels[outside] = -2000
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "padded.dcm")
    after = read_hu(tmp_path / "padded.dcm")  # one slice: read_hu, not a stack
    assert np.all(after[outside] == AIR_HU)
    np.testing.assert_array_equal(after[~outside], before[~outside])
