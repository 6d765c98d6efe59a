"""Synthetic films for ``xray_triage``: every label renders, deterministically, as a
valid DICOM file, and the X-ray types are told apart by their anatomy, not by global
intensity statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    SecondaryCaptureImageStorage,
)

from pipelines.xray_triage.body_parts import NOT_XRAY, XRAY_TYPES, body_part_examined_of
from tests.peers import dciodvfy, require_tool
from training.synthetic.xray_types import (
    NOT_XRAY_KINDS,
    TRIAGE_LABELS,
    XRAY_TYPE_NAMES,
    TriageFilm,
    make_triage_films,
    render_triage_film,
    write_triage_film,
)

SIZE = 96
KINDS = (*XRAY_TYPE_NAMES, *NOT_XRAY_KINDS)


def test_vocabulary_follows_body_parts() -> None:
    assert XRAY_TYPE_NAMES == tuple(t.name for t in XRAY_TYPES)
    assert len(XRAY_TYPE_NAMES) == 14
    assert NOT_XRAY_KINDS == ("photo", "document", "screenshot")
    assert TRIAGE_LABELS == (*XRAY_TYPE_NAMES, NOT_XRAY)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_with_the_documented_shape_type_and_range(kind: str) -> None:
    film = render_triage_film(kind, 3, size=SIZE)
    again = render_triage_film(kind, 3, size=SIZE)
    other = render_triage_film(kind, 4, size=SIZE)
    image = film.image
    assert film.kind == kind
    assert max(image.shape[:2]) == SIZE
    assert min(image.shape[:2]) >= SIZE // 3
    if kind in XRAY_TYPE_NAMES:
        assert film.label == kind
        assert image.ndim == 2 and image.dtype == np.float32
        assert film.pixel_spacing_mm is not None and film.pixel_spacing_mm > 0
    else:
        assert film.label == NOT_XRAY
        assert film.pixel_spacing_mm is None
        assert (image.ndim == 2 and image.dtype == np.float32) or (
            image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        )
    if image.dtype == np.float32:
        assert np.isfinite(image).all()
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert float(np.asarray(image, dtype=np.float32).std()) > 0.02  # not a blank image
    assert np.array_equal(image, again.image)
    assert image.shape != other.image.shape or not np.array_equal(image, other.image)


def test_unknown_kind_and_small_size_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        render_triage_film("skull", 0)
    with pytest.raises(ValueError, match="unknown kind"):
        render_triage_film(NOT_XRAY, 0)
    with pytest.raises(ValueError, match="size"):
        render_triage_film("chest", 0, size=16)
    with pytest.raises(ValueError, match="unknown label"):
        make_triage_films(0, 1, labels=["skull"])


def test_non_xray_images_come_in_colour_and_grey() -> None:
    films = [render_triage_film(kind, s, size=64) for kind in NOT_XRAY_KINDS for s in range(12)]
    colour = sum(f.image.ndim == 3 for f in films)
    assert 0 < colour < len(films)


def test_make_triage_films_balances_labels_and_is_deterministic() -> None:
    labels = ["chest", "dental", NOT_XRAY]
    films = make_triage_films(5, 3, size=64, labels=labels)
    assert [f.label for f in films] == [label for label in labels for _ in range(3)]
    assert sorted(f.kind for f in films if f.label == NOT_XRAY) == sorted(NOT_XRAY_KINDS)
    again = make_triage_films(5, 3, size=64, labels=labels)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(films, again, strict=True))
    everything = make_triage_films(1, 1, size=64)
    assert [f.label for f in everything] == list(TRIAGE_LABELS)


# -- files -------------------------------------------------------------------------------


def _stored_display(ds: pydicom.Dataset) -> np.ndarray:
    pixels = ds.pixel_array.astype(np.float64)
    top = (1 << int(ds.BitsStored)) - 1
    if ds.PhotometricInterpretation == "MONOCHROME1":
        pixels = top - pixels
    return pixels / top


@pytest.mark.parametrize(
    ("kind", "modality", "photometric", "bits", "body_part", "sop_class"),
    [
        ("chest", "DX", "MONOCHROME2", 12, ..., DigitalXRayImageStorageForPresentation),
        ("dental", "DX", "MONOCHROME1", 16, "", DigitalXRayImageStorageForPresentation),
        ("knee", "CR", "MONOCHROME2", 8, "", ComputedRadiographyImageStorage),
        ("hand", "CR", "MONOCHROME1", 12, "CHEST", ComputedRadiographyImageStorage),
        ("spine", "DX", "MONOCHROME2", 10, None, DigitalXRayImageStorageForPresentation),
        ("hip", "DX", "MONOCHROME2", 12, "PELVIS", DigitalXRayImageStorageForPresentation),
        ("foot", "OT", "MONOCHROME2", 12, ..., SecondaryCaptureImageStorage),
    ],
)
def test_xray_files_round_trip_and_pass_dciodvfy(
    tmp_path: Path,
    kind: str,
    modality: str,
    photometric: str,
    bits: int,
    body_part: object,
    sop_class: str,
) -> None:
    film = render_triage_film(kind, 2, size=SIZE)
    path = write_triage_film(
        film,
        tmp_path / "sub" / f"{kind}.dcm",
        modality=modality,
        body_part_examined=body_part,  # type: ignore[arg-type]
        accession_number="ACC1",
        seed=9,
        photometric=photometric,
        bits_stored=bits,
    )
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == sop_class
    assert ds.Modality == modality
    assert ds.AccessionNumber == "ACC1"
    if body_part is ...:
        assert ds.BodyPartExamined == body_part_examined_of(kind)
    elif body_part is None:
        assert "BodyPartExamined" not in ds
    else:
        assert "BodyPartExamined" in ds and ds.BodyPartExamined == body_part
    assert (ds.Rows, ds.Columns) == film.image.shape
    if sop_class == SecondaryCaptureImageStorage:
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.BitsStored == 8
        shown = ds.pixel_array / 255.0
    else:
        assert ds.PhotometricInterpretation == photometric
        assert ds.BitsStored == bits
        shown = _stored_display(ds)
    step = 1.0 / 255 if sop_class == SecondaryCaptureImageStorage else 1.0 / ((1 << bits) - 1)
    assert np.abs(shown - film.image).max() <= step
    # the same call writes the same file; another seed another instance
    same = write_triage_film(
        film,
        tmp_path / "again.dcm",
        modality=modality,
        body_part_examined=body_part,  # type: ignore[arg-type]
        accession_number="ACC1",
        seed=9,
        photometric=photometric,
        bits_stored=bits,
    )
    assert pydicom.dcmread(same).SOPInstanceUID == ds.SOPInstanceUID
    other = write_triage_film(film, tmp_path / "other.dcm", modality=modality, seed=10)
    assert pydicom.dcmread(other).SOPInstanceUID != ds.SOPInstanceUID
    require_tool("dciodvfy")
    errors, _warnings = dciodvfy(path)
    assert errors == [], errors


@pytest.mark.parametrize(
    ("kind", "modality", "body_part"),
    [("photo", "DX", ...), ("document", "OT", "HAND"), ("screenshot", "CR", "")],
)
def test_non_xray_files_are_secondary_capture(
    tmp_path: Path, kind: str, modality: str, body_part: object
) -> None:
    for seed in range(6):  # colour and grey ones
        film = render_triage_film(kind, seed, size=64)
        path = write_triage_film(
            film,
            tmp_path / f"{kind}{seed}.dcm",
            modality=modality,
            body_part_examined=body_part,  # type: ignore[arg-type]
            study_instance_uid="1.2.3.4",
            series_instance_uid="1.2.3.4.5",
        )
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == SecondaryCaptureImageStorage
        assert ds.Modality == modality
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3.4", "1.2.3.4.5")
        if body_part is ...:
            assert "BodyPartExamined" not in ds  # a non-X-ray has no true body part
        else:
            assert ds.BodyPartExamined == body_part
        if film.image.ndim == 3:
            assert ds.PhotometricInterpretation == "RGB"
            assert np.array_equal(ds.pixel_array, film.image)
        else:
            assert ds.PhotometricInterpretation == "MONOCHROME2"
            assert np.abs(ds.pixel_array / 255.0 - film.image).max() <= 1 / 255
        if seed < 2:
            require_tool("dciodvfy")
            errors, _warnings = dciodvfy(path)
            assert errors == [], errors


def test_cr_without_body_part_is_written_as_asked(tmp_path: Path) -> None:
    """CR Series makes Body Part Examined Type 2, so a CR file without it is not valid;
    it is written anyway (such files reach the node), and reads back without it."""
    film = render_triage_film("wrist", 1, size=64)
    ds = pydicom.dcmread(
        write_triage_film(film, tmp_path / "a.dcm", modality="CR", body_part_examined=None)
    )
    assert ds.SOPClassUID == ComputedRadiographyImageStorage
    assert "BodyPartExamined" not in ds


def test_write_refuses_bad_arguments(tmp_path: Path) -> None:
    film = render_triage_film("chest", 0, size=64)
    with pytest.raises(ValueError, match="photometric"):
        write_triage_film(film, tmp_path / "a.dcm", photometric="RGB")
    with pytest.raises(ValueError, match="bits"):
        write_triage_film(film, tmp_path / "a.dcm", bits_stored=7)
    with pytest.raises(ValueError, match="modality"):
        write_triage_film(film, tmp_path / "a.dcm", modality="D X")
    fake = TriageFilm("chest", "chest", np.zeros((8, 8, 3), np.uint8), 0.5)
    assert pydicom.dcmread(write_triage_film(fake, tmp_path / "b.dcm")).SOPClassUID == (
        SecondaryCaptureImageStorage
    )


# -- what a classifier can learn ---------------------------------------------------------------


def _thumbnail(image: np.ndarray, side: int = 16) -> np.ndarray:
    pil = Image.fromarray(np.rint(image * 255).astype(np.uint8))
    return np.asarray(pil.resize((side, side), Image.Resampling.BILINEAR), np.float32).ravel()


def _one_nn_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out accuracy of the nearest neighbour (features standardised)."""
    x = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-9)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(axis=1)] == labels).mean())


def test_global_statistics_do_not_name_the_type_but_the_anatomy_does() -> None:
    """Mean and standard deviation name the type of few films (chance is 1 in 14); a crude
    template (16 × 16 thumbnails, nearest neighbour) names many more, so the label is in
    the picture's layout — and films of one type differ from each other."""
    films = make_triage_films(7, 8, size=64, labels=XRAY_TYPE_NAMES)
    labels = np.array([XRAY_TYPE_NAMES.index(f.label) for f in films])
    stats = np.array([[f.image.mean(), f.image.std()] for f in films])
    by_stats = _one_nn_accuracy(stats, labels)
    thumbs = np.array([_thumbnail(f.image) for f in films])
    by_layout = _one_nn_accuracy(thumbs, labels)
    assert by_stats < 0.35, by_stats
    assert by_layout > by_stats + 0.15, (by_layout, by_stats)
    for name in XRAY_TYPE_NAMES:  # one type's films are not copies of one picture
        group = thumbs[labels == XRAY_TYPE_NAMES.index(name)] / 255.0
        spread = np.abs(group[:, None, :] - group[None, :, :]).mean(axis=-1)
        assert spread[np.triu_indices(len(group), 1)].min() > 0.02, name
