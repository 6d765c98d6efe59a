"""The fast paths of the orientation pipeline give what the plain ones give.

``resized_8bit``'s integer area averaging against MONAI's ``Resize(mode="area")``; the
banded, footprint-limited free rotation against one Pillow transform of the whole canvas;
the film reader's zero-copy decode (unused high bits corrected in the look-up table)
against pydicom's corrected pixel array.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import Resize
from PIL import Image

from pipelines.film_io import FilmUnreadable, _display_table, film_from_dataset, read_film
from pipelines.hand_orientation.correct import rotate_film
from pipelines.hand_orientation.preprocess import (
    InputSpec,
    finishing_transform,
    network_input,
    resized_8bit,
)
from tests.support.datasets import synthetic_dx


def monai_resized_8bit(display: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """Steps 1–2 as MONAI computes them (the reference the fast path must match)."""
    image = torch.from_numpy(display.astype(np.float32))[None]
    resized = torch.as_tensor(Resize(spatial_size=(spec.resize, spec.resize), mode="area")(image))
    scale = 255.0 / 65535.0 if display.dtype == np.uint16 else 1.0
    return torch.round(resized * scale).clamp_(0.0, 255.0)


@pytest.mark.parametrize(
    "shape", [(3000, 2372), (300, 200), (256, 256), (100, 300), (17, 1000), (1, 1)]
)
@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_integer_area_resize_matches_monai(shape: tuple[int, int], dtype: type) -> None:
    rng = np.random.default_rng(sum(shape))
    high = 65536 if dtype == np.uint16 else 256
    display: np.ndarray = rng.integers(0, high, shape).astype(dtype)
    display[: shape[0] // 3] //= 4  # structure as well as noise
    spec = InputSpec()
    fast = resized_8bit(display, spec)
    reference = monai_resized_8bit(display, spec)
    assert fast.shape == reference.shape == (1, 256, 256) and fast.dtype == torch.float32
    difference = (fast - reference).abs()
    assert float(difference.max()) <= 1.0  # a float32 rounding tie at most
    assert int(torch.count_nonzero(difference)) <= 2


def test_other_dtypes_still_go_through_monai() -> None:
    display = np.linspace(0, 1000, 200 * 300, dtype=np.float32).reshape(200, 300)
    spec = InputSpec(resize=64, crop=56)
    assert torch.equal(resized_8bit(display, spec), monai_resized_8bit(display, spec))


def whole_canvas_rotation(pixels: np.ndarray, ccw_deg: float) -> np.ndarray:
    """One Pillow transform over the whole expanded canvas (the reference)."""
    rows, columns = pixels.shape
    cos, sin = math.cos(math.radians(ccw_deg)), math.sin(math.radians(ccw_deg))
    width = int(math.ceil(abs(columns * cos) + abs(rows * sin) - 1e-6))
    height = int(math.ceil(abs(columns * sin) + abs(rows * cos) - 1e-6))
    image = Image.fromarray(pixels.astype(np.float32))
    data = (
        cos,
        -sin,
        columns / 2 - cos * width / 2 + sin * height / 2,
        sin,
        cos,
        rows / 2 - sin * width / 2 - cos * height / 2,
    )
    out = image.transform(
        (width, height), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR, fillcolor=0
    )
    return np.rint(np.asarray(out)).astype(pixels.dtype)


@pytest.mark.parametrize("angle", [37.0, -123.3, 0.4, 179.9, 45.0, -89.5, 200.0])
@pytest.mark.parametrize("shape", [(300, 237), (129, 130), (40, 700), (3, 2)])
def test_banded_rotation_matches_the_whole_canvas(angle: float, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(1, 65536, shape).astype(np.uint16)  # no zeros inside the film
    turned = rotate_film(pixels, angle)
    reference = whole_canvas_rotation(pixels, angle)
    assert turned.shape == reference.shape and turned.dtype == np.uint16
    difference = np.abs(turned.astype(np.int64) - reference)
    # Identical but for the last bit of a coordinate: nothing left out of a band.
    assert int(difference.max()) <= 1
    assert np.count_nonzero(difference) <= max(2, turned.size // 1000)
    assert np.count_nonzero(turned) == pytest.approx(np.count_nonzero(reference), abs=4)


@pytest.mark.parametrize("bits_stored", [10, 12, 16])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("windowed", [False, True])
def test_zero_copy_decode_corrects_unused_bits_like_pydicom(
    bits_stored: int, signed: bool, windowed: bool
) -> None:
    rng = np.random.default_rng(bits_stored)
    ds = synthetic_dx(1, rows=40, columns=30)
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = rng.integers(0, 65536, (40, 30), dtype=np.uint16).tobytes()  # garbage bits
    if windowed:
        ds.WindowCenter, ds.WindowWidth = "100", "900"
    else:
        del ds.WindowCenter, ds.WindowWidth
    film = film_from_dataset(ds)
    table, index = _display_table(ds, ds.pixel_array)  # pydicom's corrected values
    assert np.array_equal(film.display, table[index])
    assert film.display.flags.writeable and film.display.dtype == np.uint16


@pytest.mark.parametrize(
    "spec", [InputSpec(), InputSpec(resize=64, crop=56), InputSpec(resize=65, crop=56)]
)
def test_network_input_equals_the_monai_finishing_transform(spec: InputSpec) -> None:
    rng = np.random.default_rng(spec.resize)
    display = rng.integers(0, 65536, (700, 523), dtype=np.uint16)
    resized = resized_8bit(display, spec)
    reference = torch.as_tensor(finishing_transform(spec)(resized)).as_subclass(torch.Tensor)
    found = network_input(display, spec)
    assert type(found) is torch.Tensor and found.dtype == torch.float32
    assert found.shape == (3, spec.crop, spec.crop)
    assert torch.equal(found, reference)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_a_large_film_is_read_from_the_file_as_pydicom_decodes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signed: bool, photometric: str
) -> None:
    rng = np.random.default_rng(int(signed))
    ds = synthetic_dx(1, rows=1024, columns=700)  # 1.4 MB of pixel data: read deferred
    ds.PixelRepresentation = int(signed)
    ds.PhotometricInterpretation = photometric
    ds.PixelData = rng.integers(0, 65536, (1024, 700), dtype=np.uint16).tobytes()
    path = tmp_path / "film.dcm"
    ds.save_as(path, enforce_file_format=True)
    reads: list[int] = []
    original = np.fromfile

    def counting_fromfile(*args: Any, **kwargs: Any) -> np.ndarray:
        reads.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(np, "fromfile", counting_fromfile)
    film = read_film(path)
    assert reads == [1]  # the pixels came straight from the file
    expected = film_from_dataset(pydicom.dcmread(path))
    table, index = _display_table(ds, pydicom.dcmread(path).pixel_array)
    assert np.array_equal(film.display, expected.display)
    assert np.array_equal(film.display, table[index])
    assert "PixelData" not in film.header and film.header.SOPInstanceUID == ds.SOPInstanceUID


def test_a_truncated_large_film_is_refused(tmp_path: Path) -> None:
    ds = synthetic_dx(1, rows=1024, columns=700)
    ds.PixelData = np.zeros((1024, 700), dtype=np.uint16).tobytes()
    path = tmp_path / "film.dcm"
    ds.save_as(path, enforce_file_format=True)
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(FilmUnreadable):
        read_film(path)
