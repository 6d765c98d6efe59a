"""The bone-age preprocessing: the hand mask (Sobel gradient + watershed, largest
component) on synthetic paediatric films whose hand and markers are known, and on
pydicom-data's real CR films."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.bone_age.mask import HandMask, hand_mask, masked_hand
from pipelines.film_io import read_film
from training.synthetic.paediatric_hands import make_paediatric_hands, render_paediatric_hand

# pydicom-data's files, found where the package installs them (never through
# pydicom.data.get_testdata_files, which may go to the network).
try:
    import data_store as _data_store
except ImportError:  # pragma: no cover - pydicom-data is a dev dependency
    _DATA = None
else:
    _DATA = Path(next(iter(_data_store.__path__))) / "data"

REAL_FILMS = ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG3_UNCR.dcm", "RG3_J2KI.dcm")
#: Set to a folder to keep each real film beside its mask as a PNG, for a person to look at.
FIGURES = os.environ.get("BONE_AGE_MASK_FIGURES", "")


def _check_hand(hand_image: np.ndarray, tissue: np.ndarray, boxes: tuple) -> HandMask:
    mask = hand_mask(hand_image)
    assert mask.mask.shape == hand_image.shape and mask.mask.dtype == np.bool_
    covered = np.count_nonzero(mask.mask & tissue) / np.count_nonzero(tissue)
    assert covered >= 0.95, covered
    # Not much more than the hand either: the soft tissue's edge, a pixel or two.
    extra = np.count_nonzero(mask.mask & ~tissue) / np.count_nonzero(tissue)
    assert extra < 0.15, extra
    for r0, c0, r1, c1 in boxes:
        assert not mask.mask[r0:r1, c0:c1].any(), (r0, c0, r1, c1)
    return mask


@pytest.mark.parametrize("size", [256, 512])
def test_mask_covers_the_hand_and_leaves_out_markers(size: int) -> None:
    hands = make_paediatric_hands(3, 10, size=size, age_range_months=(0.0, 228.0), angle_deg=None)
    for hand in hands:
        assert len(hand.marker_boxes) == 2
        mask = _check_hand(hand.image, hand.tissue_mask, hand.marker_boxes)
        r0, c0, r1, c1 = mask.box
        h0, g0, h1, g1 = hand.hand_box
        assert abs(r0 - h0) <= 3 * size // 256 and abs(c0 - g0) <= 3 * size // 256
        assert abs(c1 - g1) <= 3 * size // 256 and 0.02 < mask.coverage < 0.5


def test_mask_on_turned_films_and_all_ages() -> None:
    for index, age in enumerate((0.0, 20.0, 70.0, 140.0, 228.0)):
        for angle in (60.0, 90.0, 130.0):
            hand = render_paediatric_hand(age, "MF"[index % 2], 40 + index, angle_deg=angle)
            _check_hand(hand.image, hand.tissue_mask, hand.marker_boxes)


def _turned(image: np.ndarray, degrees: float) -> np.ndarray:
    """Turned counter-clockwise onto a larger canvas filled with 0, as hand_orientation
    leaves its upright film."""
    turned = Image.fromarray(image.astype(np.float32)).rotate(
        degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0
    )
    return np.asarray(turned, dtype=np.float32)


@pytest.mark.parametrize("degrees", [25.0, 150.0, 270.0])
def test_mask_on_a_film_turned_onto_a_larger_canvas(degrees: float) -> None:
    """The shutter then runs along the turned film's edge, not the image's."""
    hand = render_paediatric_hand(110.0, "F", 17)
    markers = np.zeros(hand.image.shape, dtype=np.float32)
    for r0, c0, r1, c1 in hand.marker_boxes:
        markers[r0:r1, c0:c1] = 1.0
    image = _turned(hand.image, degrees)
    tissue = _turned(hand.tissue_mask.astype(np.float32), degrees) > 0.5
    mask = _check_hand(image, tissue, ())
    assert not (mask.mask & (_turned(markers, degrees) > 0.0)).any()


def test_masked_hand_crops_to_the_box() -> None:
    hand = render_paediatric_hand(100.0, "M", 8)
    mask = hand_mask(hand.image)
    crop = masked_hand(hand.image, mask, margin=4)
    r0, c0, r1, c1 = mask.box
    rows, columns = hand.image.shape
    assert crop.dtype == np.float32
    assert crop.shape == (min(r1 + 4, rows) - max(r0 - 4, 0), min(c1 + 4, columns) - max(c0 - 4, 0))
    inside = hand.image[max(r0 - 4, 0) : r1 + 4, max(c0 - 4, 0) : c1 + 4]
    sub = mask.mask[max(r0 - 4, 0) : r1 + 4, max(c0 - 4, 0) : c1 + 4]
    assert np.array_equal(crop[sub], inside[sub]) and not crop[~sub].any()
    assert masked_hand(hand.image, mask, margin=0).shape == (r1 - r0, c1 - c0)
    with pytest.raises(ValueError):
        masked_hand(hand.image[:-1], mask)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((256, 256), np.float32),
        np.full((300, 200), 0.6, np.float32),
        np.ones((64, 64), np.float32),
    ],
    ids=["black", "grey", "white"],
)
def test_uniform_image_raises(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="no hand-like region"):
        hand_mask(image)


def test_not_an_image_raises() -> None:
    with pytest.raises(ValueError):
        hand_mask(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        hand_mask(np.zeros((3, 32, 32), np.float32))


def test_fast_enough_for_a_worker() -> None:
    hand = render_paediatric_hand(120.0, "F", 1, size=512)
    hand_mask(hand.image)
    best = min(_timed(hand.image) for _ in range(5))
    assert best < 0.2, best  # well under 200 ms on one core for a 512 px film


def _timed(image: np.ndarray) -> float:
    start = time.perf_counter()
    hand_mask(image)
    return time.perf_counter() - start


@pytest.mark.skipif(_DATA is None, reason="pydicom-data is not installed")
@pytest.mark.parametrize("name", REAL_FILMS)
def test_real_cr_films_give_a_plausible_mask(name: str) -> None:
    assert _DATA is not None
    path = _DATA / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this pydicom-data")
    film = read_film(path)
    image = film.display.astype(np.float32) / 65535.0
    mask = hand_mask(image)
    assert 0.05 < mask.coverage < 0.95, mask.coverage
    crop = masked_hand(image, mask)
    assert crop.size and float(crop.max()) > 0.0
    if not FIGURES:
        return
    folder = Path(FIGURES)
    folder.mkdir(parents=True, exist_ok=True)
    scale = max(1, max(image.shape) // 512)
    small = image[::scale, ::scale]
    shown = np.hstack([small, mask.mask[::scale, ::scale].astype(np.float32)])
    Image.fromarray(np.rint(shown * 255.0).astype(np.uint8)).save(
        folder / f"{Path(name).stem}_mask.png"
    )
