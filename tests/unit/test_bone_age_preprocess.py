"""bone_age's preprocessing: which film it reads (series.after), the hand crop, the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.bone_age.preprocess import (
    CAFFE_MEAN_BGR,
    InputSpec,
    film_input,
    hand_crop,
    network_input,
    upright_films,
)
from pipelines.contract import UpstreamResult
from pipelines.film_io import read_film
from tests.support.bone_age import orientation_upstream, series_of, write_film
from training.synthetic.paediatric_hands import render_paediatric_hand


def upright_hand() -> np.ndarray:
    """An upright hand film, taller than wide (160 x 136), so a quarter turn shows."""
    return render_paediatric_hand(120.0, "F", 5, size=160, markers=False).image[:, 12:148]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def turned_film(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An upright hand turned a quarter counter-clockwise (fingers to the left), written."""
    upright = upright_hand()
    turned = np.ascontiguousarray(np.rot90(upright, k=1))
    path = tmp_path / "turned.dcm"
    ds = write_film(path, turned)
    reference = tmp_path / "reference.dcm"
    write_film(reference, upright)
    return ds, path, read_film(reference).display


def test_as_received_when_hand_orientation_was_not_routed(tmp_path: Path) -> None:
    ds, path, _ = turned_film(tmp_path)
    films, skipped = upright_films(series_of([ds], [path], None))
    assert skipped == []
    (film,) = films
    assert film.source == "as_received"
    assert "not routed" in film.note
    assert np.array_equal(film.pixels, read_film(path).display)


def test_as_received_when_hand_orientation_failed(tmp_path: Path) -> None:
    ds, path, _ = turned_film(tmp_path)
    after = UpstreamResult("hand_orientation", "failed", "v1", error="model missing")
    (film,), _ = upright_films(series_of([ds], [path], None, after=after))
    assert film.source == "as_received"
    assert "failed (model missing)" in film.note


def test_the_upright_sc_hand_orientation_wrote_is_read(tmp_path: Path) -> None:
    ds, path, upright = turned_film(tmp_path)
    # the model finds the fingers pointing left (180°): hand_orientation turns −90°
    after = orientation_upstream(tmp_path, [ds], [path], 180.0)
    assert len(after.derived_files) == 1
    (film,), _ = upright_films(series_of([ds], [path], None, after=after))
    assert film.source == "upright"
    assert film.rotation_deg == -90.0
    assert film.sop_instance_uid == str(ds.SOPInstanceUID)  # the original's header
    # the SC's pixels are the film turned back upright (its own display scaling)
    assert film.pixels.shape == upright.shape == (160, 136)
    assert correlation(film.pixels, upright) > 0.999
    assert read_film(path).display.shape == (136, 160)


def test_the_rotation_is_applied_when_only_a_gsps_was_written(tmp_path: Path) -> None:
    ds, path, upright = turned_film(tmp_path)
    after = orientation_upstream(tmp_path, [ds], [path], 180.0, gsps="instead")
    assert after.derived_files == ()  # a GSPS instead of the SC
    (film,), _ = upright_films(series_of([ds], [path], None, after=after))
    assert film.source == "turned"
    assert film.rotation_deg == -90.0
    assert np.array_equal(film.pixels, upright)


def test_a_film_hand_orientation_said_nothing_of_is_used_as_received(tmp_path: Path) -> None:
    ds, path, _ = turned_film(tmp_path)
    after = UpstreamResult("hand_orientation", "done", "v1", summary={"films": []})
    (film,), _ = upright_films(series_of([ds], [path], None, after=after))
    assert film.source == "as_received"
    assert "no result for this film" in film.note


def test_unreadable_files_are_skipped_with_the_reason(tmp_path: Path) -> None:
    ds, path, _ = turned_film(tmp_path)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")
    films, skipped = upright_films(series_of([ds], [junk, path], None))
    assert [f.sop_instance_uid for f in films] == [str(ds.SOPInstanceUID)]
    assert len(skipped) == 1 and "junk.dcm" in skipped[0]


def test_the_hand_is_masked_cropped_and_squared() -> None:
    hand = render_paediatric_hand(150.0, "M", 2, size=200, markers=True)
    crop = hand_crop(hand.image)
    assert crop.masked
    assert 0.02 < crop.coverage < 0.9
    side = crop.pixels.shape[0]
    assert crop.pixels.shape == (side, side) and crop.pixels.dtype == np.uint16
    r0, c0, r1, c1 = hand.hand_box
    assert side <= max(r1 - r0, c1 - c0) + 16  # cropped to about the hand, not the film
    assert side < 200


def test_a_film_without_a_hand_is_used_whole() -> None:
    blank = np.zeros((64, 48), dtype=np.uint16)
    crop = hand_crop(blank)
    assert not crop.masked
    assert crop.pixels.shape == (64, 64)


def test_the_network_input_is_caffe_normalised() -> None:
    image, crop = film_input(upright_hand(), InputSpec(96))
    assert image.shape == (96, 96) and image.dtype == np.uint8
    batch = network_input(np.stack([image, np.zeros_like(image)]))
    assert batch.shape == (2, 3, 96, 96)
    assert torch.allclose(batch[1, :, 0, 0], -torch.tensor(CAFFE_MEAN_BGR))
    assert torch.allclose(batch[0, 2], torch.from_numpy(image).float() - CAFFE_MEAN_BGR[2])


def test_input_spec_round_trip_and_limits() -> None:
    spec = InputSpec(500)
    assert InputSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="input size"):
        InputSpec(8)
