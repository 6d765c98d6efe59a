"""DICOM radiograph → display pixels (``pipelines.film_io``).

Every expected display is computed here by hand from the formulas of PS3.3 C.11.2.1.2
(LINEAR, LINEAR_EXACT, SIGMOID windows) and the stored values, then scaled to 0..65535;
the module under test reaches it through pydicom's LUT functions and one look-up table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from pipelines.film_io import DISPLAY_MAX, Film, FilmUnreadable, film_from_dataset, read_film
from tests.support.datasets import new_instance, set_monochrome_pixels, synthetic_dx

SOP_UID = "1.2.826.0.1.3680043.8.498.4242"

# A 12-bit image with values below, inside and above the window used by most tests.
ROWS, COLUMNS = 24, 20


def image(
    pixels: npt.NDArray[np.integer] | None = None,
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    **attributes: Any,
) -> Dataset:
    """A small secondary-capture image with the given pixels (seeded random without)."""
    ds = new_instance(SecondaryCaptureImageStorage, SOP_UID, modality="OT")
    if pixels is None:
        rng = np.random.default_rng(7)
        pixels = rng.integers(0, 1 << bits_stored, size=(ROWS, COLUMNS), dtype=np.uint16)
    pixels = np.asarray(pixels)
    if pixels.ndim == 1:
        pixels = pixels.reshape(1, -1)
    set_monochrome_pixels(ds, *pixels.shape, bits_stored=bits_stored, pixels=pixels)
    ds.PhotometricInterpretation = photometric
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def through_file(ds: Dataset, tmp_path: Path, name: str = "film.dcm") -> Film:
    """Write ``ds`` as a Part 10 file and read it back with ``read_film``."""
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return read_film(path)


def scaled(fraction: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    return np.rint(np.clip(fraction, 0.0, 1.0) * DISPLAY_MAX).astype(np.int64)


def linear_window(x: npt.ArrayLike, center: float, width: float) -> npt.NDArray[np.int64]:
    """PS3.3 C.11.2.1.2.1, output range 0..1, then 0..65535."""
    x = np.asarray(x, dtype=np.float64)
    c, w = center - 0.5, width - 1.0
    fraction = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 1.0, (x - c) / w + 0.5))
    return scaled(fraction)


def linear_exact_window(x: npt.ArrayLike, center: float, width: float) -> npt.NDArray[np.int64]:
    """PS3.3 C.11.2.1.3.2."""
    x = np.asarray(x, dtype=np.float64)
    fraction = np.where(
        x <= center - width / 2,
        0.0,
        np.where(x > center + width / 2, 1.0, (x - center) / width + 0.5),
    )
    return scaled(fraction)


def sigmoid_window(x: npt.ArrayLike, center: float, width: float) -> npt.NDArray[np.int64]:
    """PS3.3 C.11.2.1.3.1."""
    x = np.asarray(x, dtype=np.float64)
    return scaled(1.0 / (1.0 + np.exp(-4.0 * (x - center) / width)))


def stretch(x: npt.ArrayLike) -> npt.NDArray[np.int64]:
    x = np.asarray(x, dtype=np.float64)
    return scaled((x - x.min()) / (x.max() - x.min()))


def assert_display(film: Film, expected: npt.ArrayLike) -> None:
    """Equal up to one grey level (the two computations round .5 differently)."""
    assert film.display.dtype == np.uint16
    expected = np.asarray(expected)
    assert film.display.shape == expected.shape
    difference = np.abs(film.display.astype(np.int64) - expected)
    assert int(difference.max()) <= 1, f"display differs by up to {difference.max()}"


# -- windows ---------------------------------------------------------------------------------


def test_monochrome2_window_is_the_linear_formula(tmp_path: Path) -> None:
    ds = image(WindowCenter="1500", WindowWidth="1000")
    stored = ds.pixel_array.copy()
    film = through_file(ds, tmp_path)
    assert_display(film, linear_window(stored, 1500, 1000))
    # The test image reaches both sides of the window, and the ends are exact.
    assert (stored <= 999).any() and (stored > 2000).any()
    assert set(film.display[stored <= 999].tolist()) == {0}
    assert set(film.display[stored > 2000].tolist()) == {DISPLAY_MAX}


def test_window_with_hand_picked_values() -> None:
    # c - 0.5 = 99.5, w - 1 = 199: the window maps x in 0..199 to x / 199 of full scale.
    values = np.array([0, 1, 99, 100, 150, 198, 199, 200, 4095], dtype=np.uint16)
    film = film_from_dataset(image(values, WindowCenter=100, WindowWidth=200))
    expected = [0, 329, 32603, 32932, 49398, 65206, 65535, 65535, 65535]
    assert film.display.tolist() == [expected]


def test_the_first_of_several_windows_is_used() -> None:
    ds = image(WindowCenter=["1500", "3000"], WindowWidth=["1000", "200"])
    stored = ds.pixel_array.copy()
    assert_display(film_from_dataset(ds), linear_window(stored, 1500, 1000))


def test_monochrome1_is_the_inverse_of_monochrome2(tmp_path: Path) -> None:
    m2 = through_file(image(WindowCenter="1500", WindowWidth="1000"), tmp_path, "m2.dcm")
    ds = image(photometric="MONOCHROME1", WindowCenter="1500", WindowWidth="1000")
    m1 = through_file(ds, tmp_path, "m1.dcm")
    assert_display(m1, DISPLAY_MAX - m2.display.astype(np.int64))
    # The highest stored value (most attenuation in MONOCHROME1) is the darkest.
    stored = ds.pixel_array
    assert m1.display[np.unravel_index(stored.argmax(), stored.shape)] == 0
    assert m1.display[np.unravel_index(stored.argmin(), stored.shape)] == DISPLAY_MAX


def test_monochrome1_without_window_is_the_inverted_stretch() -> None:
    values = np.array([100, 600, 1100], dtype=np.uint16)
    film = film_from_dataset(image(values, photometric="MONOCHROME1"))
    assert film.display.tolist() == [[DISPLAY_MAX, 32768, 0]]


def test_rescale_slope_and_intercept_come_before_the_window(tmp_path: Path) -> None:
    # The window is in modality units: value = 2 * stored - 1000.
    ds = image(RescaleSlope="2", RescaleIntercept="-1000", WindowCenter="2000", WindowWidth="3000")
    stored = ds.pixel_array.astype(np.float64)
    film = through_file(ds, tmp_path)
    assert_display(film, linear_window(2.0 * stored - 1000.0, 2000, 3000))
    # Without the rescale the same window would give another picture.
    assert np.abs(film.display.astype(np.int64) - linear_window(stored, 2000, 3000)).max() > 1000


def test_linear_exact_window() -> None:
    ds = image(WindowCenter="1500", WindowWidth="1000", VOILUTFunction="LINEAR_EXACT")
    stored = ds.pixel_array.copy()
    assert_display(film_from_dataset(ds), linear_exact_window(stored, 1500, 1000))


def test_sigmoid_window_is_monotonic_and_within_range(tmp_path: Path) -> None:
    values = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    ds = image(values, WindowCenter="2048", WindowWidth="1024", VOILUTFunction="SIGMOID")
    film = through_file(ds, tmp_path)
    assert_display(film, sigmoid_window(values, 2048, 1024))
    flat = film.display.ravel().astype(np.int64)
    assert (np.diff(flat) >= 0).all()
    assert flat[0] < 2000 and flat[-1] > DISPLAY_MAX - 2000  # nearly black .. nearly white
    assert 0 < flat.min() and flat.max() < DISPLAY_MAX  # a sigmoid never reaches its ends
    centre = film.display[values == 2048]
    assert abs(int(centre[0]) - 32768) <= 1
    # It is not the linear window of the same centre and width.
    linear = linear_window(values, 2048, 1024)
    assert np.abs(film.display.astype(np.int64) - linear).max() > 1000


def test_a_window_wider_than_the_data_stays_grey() -> None:
    """A soft window is shown soft, as a viewer shows it, not stretched to full contrast."""
    values = np.array([0, 100, 255], dtype=np.uint8)
    film = film_from_dataset(image(values, bits_stored=8, WindowCenter=100, WindowWidth=400))
    assert_display(film, linear_window(values, 100, 400).reshape(1, 3))
    assert film.display.min() > 16000 and film.display.max() < 59000


def test_empty_window_values_are_no_window() -> None:
    values = np.array([0, 2000, 4000], dtype=np.uint16)
    film = film_from_dataset(image(values, WindowCenter=None, WindowWidth=None))
    assert film.display.tolist() == [[0, 32768, DISPLAY_MAX]]


# -- no window ---------------------------------------------------------------------------------


def test_no_window_stretches_the_images_own_range(tmp_path: Path) -> None:
    ds = image()
    stored = ds.pixel_array.copy()
    film = through_file(ds, tmp_path)
    assert_display(film, stretch(stored))
    assert int(film.display.min()) == 0 and int(film.display.max()) == DISPLAY_MAX


def test_no_window_hand_picked_values() -> None:
    film = film_from_dataset(image(np.array([100, 600, 1100], dtype=np.uint16)))
    assert film.display.tolist() == [[0, 32768, DISPLAY_MAX]]


def test_no_window_with_a_negative_rescale_intercept() -> None:
    values = np.array([0, 1000, 3000], dtype=np.uint16)
    film = film_from_dataset(image(values, RescaleSlope="1", RescaleIntercept="-1024"))
    assert_display(film, stretch(values.astype(np.float64) - 1024).reshape(1, 3))


def test_a_blank_image_does_not_divide_by_zero() -> None:
    film = film_from_dataset(image(np.full((3, 3), 777, dtype=np.uint16)))
    assert film.display.shape == (3, 3)
    assert len(set(film.display.ravel().tolist())) == 1


# -- signed and 8-bit pixels -------------------------------------------------------------------


@pytest.mark.parametrize("bits_stored", [12, 16])
def test_signed_pixels_keep_their_order(tmp_path: Path, bits_stored: int) -> None:
    values = np.array([-2000, -1000, -1, 0, 1, 1000, 2000], dtype=np.int16)
    ds = image(values, bits_stored=bits_stored)
    assert ds.PixelRepresentation == 1
    film = through_file(ds, tmp_path)
    assert_display(film, stretch(values).reshape(1, -1))
    display = film.display.ravel().astype(np.int64)
    assert display[0] == 0 and display[-1] == DISPLAY_MAX
    assert (np.diff(display) > 0).all()  # negative values are darker, -1 below 0


def test_signed_pixels_with_a_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    values = rng.integers(-2048, 2048, size=(16, 16), dtype=np.int16)
    ds = image(values, WindowCenter="-200", WindowWidth="1500")
    film = through_file(ds, tmp_path)
    assert_display(film, linear_window(values, -200, 1500))
    assert (film.display[values <= -950] == 0).all()
    assert (film.display[values > 550] == DISPLAY_MAX).all()


def test_eight_bit_pixels(tmp_path: Path) -> None:
    values = np.array([[0, 10, 128], [200, 250, 255]], dtype=np.uint8)
    film = through_file(image(values, bits_stored=8), tmp_path, "plain.dcm")
    assert_display(film, stretch(values))
    windowed = through_file(
        image(values, bits_stored=8, WindowCenter="128", WindowWidth="128"), tmp_path, "w.dcm"
    )
    assert_display(windowed, linear_window(values, 128, 128))


def test_eight_bit_signed_pixels() -> None:
    values = np.array([-128, -5, 0, 5, 127], dtype=np.int8)
    film = film_from_dataset(image(values, bits_stored=8))
    assert film.display.ravel().tolist() == stretch(values).tolist()


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_bits_above_bits_stored_are_ignored(tmp_path: Path, signed: bool) -> None:
    """Garbage in the 4 unused high bits of 12-bit pixels changes nothing on display."""
    rng = np.random.default_rng(5)
    if signed:
        clean = rng.integers(-2048, 2048, size=(16, 16), dtype=np.int16)
    else:
        clean = rng.integers(0, 4096, size=(16, 16), dtype=np.uint16)
    bits = clean.view(np.uint16)
    noisy = (bits & 0x0FFF) | (rng.integers(0, 16, size=bits.shape, dtype=np.uint16) << 12)
    assert (noisy != bits).any()
    expected = through_file(image(clean, WindowCenter="100", WindowWidth="2000"), tmp_path, "a")
    ds = image(clean, WindowCenter="100", WindowWidth="2000")
    ds.PixelData = noisy.astype("<u2").tobytes()
    film = through_file(ds, tmp_path, "b")
    assert np.array_equal(film.display, expected.display)
    assert_display(film, linear_window(clean, 100, 2000))
    plain = through_file(image(clean), tmp_path, "c")
    ds = image(clean)
    ds.PixelData = noisy.astype("<u2").tobytes()
    assert np.array_equal(through_file(ds, tmp_path, "d").display, plain.display)


# -- VOI LUT Sequence --------------------------------------------------------------------------


def voi_lut_item(first_mapped: int, data: npt.NDArray[np.uint16], bits: int) -> Dataset:
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [len(data), first_mapped, bits])
    item.add_new("LUTData", "OW", data.astype("<u2").tobytes())
    item.LUTExplanation = "square root"
    return item


@pytest.mark.filterwarnings("ignore:Applying a VOI LUT on a float input array")
def test_voi_lut_sequence_is_applied_and_preferred_to_the_window(tmp_path: Path) -> None:
    first, entries = 500, 2048
    lut = np.rint(np.sqrt(np.arange(entries) / (entries - 1)) * 4095).astype(np.uint16)
    ds = image(WindowCenter="1500", WindowWidth="10")  # a window the LUT must win over
    ds.VOILUTSequence = Sequence([voi_lut_item(first, lut, 12)])
    stored = ds.pixel_array.astype(np.int64)
    film = through_file(ds, tmp_path)
    expected_lut = lut[np.clip(stored - first, 0, entries - 1)]
    assert_display(film, scaled(expected_lut / 4095.0))
    # Values below the first mapped one take the first entry; above the table, the last.
    assert (film.display[stored < first] == 0).all()
    assert (film.display[stored >= first + entries] == DISPLAY_MAX).all()


# -- compressed transfer syntaxes ----------------------------------------------------------------


def decodable(uid: str) -> bool:
    try:
        return bool(get_decoder(uid).is_available)
    except NotImplementedError:  # pydicom has no decoder for this syntax at all
        return False


#: The compressed syntaxes README.md says the installed decoders read.
DECODED_SYNTAXES = [
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
]


def test_every_compressed_syntax_the_readme_names_has_a_decoder() -> None:
    assert [uid.name for uid in DECODED_SYNTAXES if not decodable(uid)] == []
    # pylibjpeg-rle: pydicom prefers it to its own RLE decoder, which is about 3x slower
    assert "pylibjpeg" in get_decoder(RLELossless).available_plugins


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", JPEGLSLossless),
        ("MR_small_jp2klossless.dcm", JPEG2000Lossless),
        ("MR_small_RLE.dcm", RLELossless),
    ],
)
def test_pydicom_compressed_file_matches_its_uncompressed_twin(name: str, syntax: str) -> None:
    if not decodable(syntax):
        pytest.skip(f"no decoder for {syntax} installed")
    plain_path = get_testdata_file("MR_small.dcm", download=False)
    compressed_path = get_testdata_file(name, download=False)
    if not (isinstance(plain_path, str) and isinstance(compressed_path, str)):
        pytest.skip("pydicom's test files are not installed")
    compressed = read_film(compressed_path)
    assert compressed.header.file_meta.TransferSyntaxUID == syntax
    plain = read_film(plain_path)
    assert np.array_equal(compressed.display, plain.display)
    assert int(plain.display.max()) > 0
    assert compressed.pixel_spacing == plain.pixel_spacing == (0.3125, 0.3125)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless])
def test_compressed_dx_film_matches_the_uncompressed_one(tmp_path: Path, syntax: str) -> None:
    if not (decodable(syntax) and get_encoder(syntax).is_available):
        pytest.skip(f"no encoder/decoder for {syntax} installed")
    plain = through_file(synthetic_dx(), tmp_path, "plain.dcm")
    ds = synthetic_dx()
    ds.compress(syntax)
    compressed = through_file(ds, tmp_path, "compressed.dcm")
    assert pydicom.dcmread(tmp_path / "compressed.dcm").file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(compressed.display, plain.display)
    assert len(np.unique(plain.display)) > 100


# -- what is not a film --------------------------------------------------------------------------


def test_rgb_is_refused(tmp_path: Path) -> None:
    ds = new_instance(SecondaryCaptureImageStorage, SOP_UID, modality="OT")
    ds.Rows, ds.Columns = 2, 2
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(12))
    with pytest.raises(FilmUnreadable, match="photometric interpretation RGB is not grey"):
        through_file(ds, tmp_path)


def test_missing_photometric_interpretation_is_refused() -> None:
    ds = image()
    del ds.PhotometricInterpretation
    with pytest.raises(FilmUnreadable, match="photometric interpretation missing"):
        film_from_dataset(ds)


def test_multi_frame_is_refused(tmp_path: Path) -> None:
    frames = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4)
    ds = image(frames[0])
    ds.NumberOfFrames = 2
    ds.PixelData = frames.tobytes()
    with pytest.raises(FilmUnreadable, match="multi-frame images are not films"):
        through_file(ds, tmp_path)


def test_no_pixel_data_is_refused(tmp_path: Path) -> None:
    ds = image()
    del ds.PixelData
    with pytest.raises(FilmUnreadable, match="has no pixel data"):
        through_file(ds, tmp_path)


def test_32_bit_pixels_are_refused() -> None:
    ds = image(np.arange(4, dtype=np.uint32).reshape(2, 2), bits_stored=32)
    with pytest.raises(FilmUnreadable, match="32-bit pixels are not supported"):
        film_from_dataset(ds)


def test_truncated_pixel_data_is_refused() -> None:
    ds = image()
    ds.PixelData = ds.PixelData[:10]
    with pytest.raises(FilmUnreadable, match="pixel data cannot be decoded"):
        film_from_dataset(ds)


def test_a_syntax_without_a_decoder_is_refused(tmp_path: Path) -> None:
    ds = image()
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000MCLossless  # JPEG 2000 Part 2: none installed
    assert not decodable(JPEG2000MCLossless)
    with pytest.raises(FilmUnreadable, match="pixel data cannot be decoded"):
        through_file(ds, tmp_path)


def test_a_file_that_is_not_dicom(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a DICOM file\n" * 20, encoding="utf-8")
    with pytest.raises(FilmUnreadable, match=r"notes\.txt: not a readable DICOM file"):
        read_film(path)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FilmUnreadable, match=r"absent\.dcm: not a readable DICOM file"):
        read_film(tmp_path / "absent.dcm")


# -- pixel spacing and header --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"PixelSpacing": ["0.2", "0.1"], "ImagerPixelSpacing": ["0.5", "0.5"]}, (0.2, 0.1)),
        ({"ImagerPixelSpacing": ["0.143", "0.15"]}, (0.143, 0.15)),
        ({"PixelSpacing": ["0", "0"], "ImagerPixelSpacing": ["0.3", "0.4"]}, (0.3, 0.4)),
        ({"PixelSpacing": ["0.2"], "ImagerPixelSpacing": ["0.3", "0.4"]}, (0.3, 0.4)),
        ({"PixelSpacing": ["0.2", "0.2", "0.2"], "ImagerPixelSpacing": ["0.3", "0.4"]}, (0.3, 0.4)),
        ({"PixelSpacing": None, "ImagerPixelSpacing": ["0.3", "0.4"]}, (0.3, 0.4)),
        ({"PixelSpacing": ["0.2"]}, None),
        ({}, None),
    ],
    ids=[
        "pixel-spacing",
        "imager-only",
        "zero-falls-back",
        "one-value-falls-back",
        "three-values-fall-back",
        "empty-falls-back",
        "one-value-only",
        "none",
    ],
)
def test_pixel_spacing(
    tmp_path: Path, attributes: dict[str, Any], expected: tuple[float, float] | None
) -> None:
    film = through_file(image(**attributes), tmp_path)
    assert film.pixel_spacing == expected


def test_header_has_no_pixel_data_and_keeps_the_rest(tmp_path: Path) -> None:
    film = through_file(synthetic_dx(3), tmp_path)
    assert "PixelData" not in film.header
    assert film.header.BodyPartExamined == "HAND"
    assert film.header.Rows == 96 and film.header.Columns == 80
    assert film.sop_instance_uid == str(synthetic_dx(3).SOPInstanceUID)
    assert film.display.shape == (96, 80)
    assert film.pixel_spacing == (0.15, 0.15)
    assert film.header.file_meta.TransferSyntaxUID == synthetic_dx(3).file_meta.TransferSyntaxUID


def test_the_callers_dataset_keeps_its_pixel_data() -> None:
    ds = synthetic_dx()
    first = film_from_dataset(ds)
    assert "PixelData" in ds
    second = film_from_dataset(ds)  # and it can be read again
    assert np.array_equal(first.display, second.display)
