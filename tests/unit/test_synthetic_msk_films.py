"""Synthetic musculoskeletal studies (MURA-like): rendering, ground truth, files, layout.

The studies stand in for MURA in the ``mura_abnormality`` tests and demo, so besides the
API this checks that the task they pose is the right one: the abnormality is local (the
same seed rendered normal differs only inside ``lesion_box``) and the global intensity
statistics of a film do not tell normal from abnormal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation

from tests.peers import dciodvfy, require_tool
from training.synthetic.hand_films import SYNTHETIC_UID_ROOT
from training.synthetic.msk_films import (
    ABNORMALITIES,
    BODY_PART_EXAMINED,
    REGIONS,
    VIEWS,
    MskStudy,
    make_msk_studies,
    make_msk_study,
    write_msk_study,
    write_mura_layout,
)

SIZE = 96  # pixels on the longer side: enough for every abnormality to show

# -- rendering ---------------------------------------------------------------------------------


def test_same_seed_same_study_other_seed_other_study() -> None:
    a = make_msk_study(11, size=SIZE)
    b = make_msk_study(11, size=SIZE)
    assert (a.region, a.abnormal, a.laterality, len(a.views)) == (
        b.region,
        b.abnormal,
        b.laterality,
        len(b.views),
    )
    for va, vb in zip(a.views, b.views, strict=True):
        assert np.array_equal(va.image, vb.image)
        assert (va.view, va.abnormal, va.abnormality, va.lesion_box) == (
            vb.view,
            vb.abnormal,
            vb.abnormality,
            vb.lesion_box,
        )
    c = make_msk_study(12, region=a.region, size=SIZE, views=len(a.views))
    assert not np.array_equal(a.views[0].image, c.views[0].image)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
def test_views_have_the_documented_shapes_ranges_and_labels(seed: int) -> None:
    study = make_msk_study(seed, size=SIZE)
    assert study.seed == seed
    assert study.region in REGIONS
    assert study.laterality in ("L", "R")
    assert 1 <= len(study.views) <= 4
    assert study.views[0].view == "AP"
    for view in study.views:
        assert view.region == study.region
        assert view.view in VIEWS
        assert view.image.dtype == np.float32
        assert view.image.ndim == 2
        assert max(view.image.shape) == SIZE
        assert 0.0 <= float(view.image.min()) and float(view.image.max()) <= 1.0
        assert float(view.image.std()) > 0.05  # a picture, not a flat field
        assert view.pixel_spacing_mm > 0
        if view.abnormal:
            assert study.abnormal
            assert view.abnormality in ABNORMALITIES
            assert view.lesion_box is not None
        else:
            assert view.abnormality is None and view.lesion_box is None
    assert study.abnormal == any(v.abnormal for v in study.views)


def test_arguments_fix_region_label_and_view_count() -> None:
    for count in (1, 2, 3, 4):
        study = make_msk_study(3, region="wrist", abnormal=False, views=count, size=64)
        assert len(study.views) == count
        assert study.region == "wrist" and not study.abnormal
    assert [v.view for v in make_msk_study(3, views=4, size=64).views] == ["AP", "OBL", "LAT", "AP"]
    forced = make_msk_study(3, abnormality="hardware", size=64)
    assert forced.abnormal
    assert {v.abnormality for v in forced.views if v.abnormal} == {"hardware"}
    # the physical field is the region's: a finger film has finer pixels than a humerus one
    finger = make_msk_study(3, region="finger", views=1, size=64).views[0]
    humerus = make_msk_study(3, region="humerus", views=1, size=64).views[0]
    assert finger.pixel_spacing_mm < humerus.pixel_spacing_mm / 3
    with pytest.raises(ValueError):
        make_msk_study(3, region="knee")
    with pytest.raises(ValueError):
        make_msk_study(3, views=5)
    with pytest.raises(ValueError):
        make_msk_study(3, abnormality="tumour")
    with pytest.raises(ValueError):
        make_msk_study(3, abnormality="lesion", abnormal=False)


@pytest.mark.parametrize("region", REGIONS)
def test_each_abnormality_is_local_to_its_box(region: str) -> None:
    """Same seed, normal vs abnormal: identical outside lesion_box, changed inside it."""
    for k, kind in enumerate(ABNORMALITIES):
        seed = 1000 + 10 * REGIONS.index(region) + k
        sick = make_msk_study(seed, region=region, abnormality=kind, views=2, size=SIZE)
        well = make_msk_study(seed, region=region, abnormal=False, views=2, size=SIZE)
        assert sick.abnormal and not well.abnormal
        assert any(v.abnormal for v in sick.views)
        for vs, vw in zip(sick.views, well.views, strict=True):
            assert vs.image.shape == vw.image.shape
            assert vs.pixel_spacing_mm == vw.pixel_spacing_mm
            assert not vw.abnormal and vw.lesion_box is None
            diff = vs.image.astype(np.float64) - vw.image
            if not vs.abnormal:
                assert not diff.any(), (region, kind, vs.view)
                continue
            assert vs.abnormality == kind
            assert vs.lesion_box is not None
            r0, c0, r1, c1 = vs.lesion_box
            rows, cols = vs.image.shape
            assert 0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols
            assert (r1 - r0) * (c1 - c0) < 0.5 * rows * cols  # a place, not the film
            energy = diff**2
            inside = float(energy[r0:r1, c0:c1].sum())
            assert inside > 0.9 * float(energy.sum()), (region, kind, vs.view)
            assert float(np.abs(diff[r0:r1, c0:c1]).max()) > 0.015, (region, kind, vs.view)


def test_neutral_bright_objects_appear_in_normal_films() -> None:
    """Side markers and jewellery are not the label: normal films carry bright metal too."""
    brightest = [
        float(np.percentile(v.image, 99.9))
        for seed in range(40)
        for v in make_msk_study(seed, abnormal=False, views=1, size=64).views
    ]
    assert sum(b > 0.85 for b in brightest) >= 10


# -- the task must not be solvable from global intensity statistics --------------------------


def _global_features(image: np.ndarray) -> np.ndarray:
    p1, p50, p99 = np.percentile(image, [1, 50, 99])
    hist = np.histogram(image, bins=8, range=(0.0, 1.0))[0] / image.size
    return np.concatenate([[image.mean(), image.std(), p1, p50, p99], hist])


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann–Whitney AUROC with tied scores sharing their mean rank."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    values = scores[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and values[stop + 1] == values[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop + 2) / 2
        start = stop + 1
    positive = labels.astype(bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method (intercept first)."""
    design = np.c_[np.ones(len(x)), x]
    weights = np.zeros(design.shape[1])
    penalty = l2 * np.diag(np.r_[0.0, np.ones(design.shape[1] - 1)])
    for _ in range(30):
        p = 1.0 / (1.0 + np.exp(-design @ weights))
        gradient = design.T @ (p - y) + penalty @ weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty
        weights -= np.linalg.solve(hessian + 1e-9 * np.eye(len(weights)), gradient)
    return weights


def test_global_intensity_statistics_do_not_tell_abnormal_films_apart() -> None:
    """A classifier on mean, std, percentiles and an 8-bin histogram stays near chance.

    ~250 views of 90 studies; five folds split by study (views of one study stay
    together); the held-out scores of all folds pooled into one AUROC.
    """
    studies = make_msk_studies(90, seed=2024, size=128)
    views = [(i, v) for i, s in enumerate(studies) for v in s.views]
    assert len(views) >= 200
    x = np.array([_global_features(v.image) for _, v in views])
    y = np.array([v.abnormal for _, v in views], dtype=np.float64)
    assert 0.3 < y.mean() < 0.6
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    fold = np.array([i % 5 for i, _ in views])
    held_out = np.zeros(len(y))
    for f in range(5):
        train, test = fold != f, fold == f
        weights = _logistic_fit(x[train], y[train])
        held_out[test] = np.c_[np.ones(int(test.sum())), x[test]] @ weights
    assert _auroc(held_out, y) < 0.65
    for column in range(x.shape[1]):  # nor any one statistic on its own, either way round
        auc = _auroc(x[:, column], y)
        assert max(auc, 1 - auc) < 0.65, column


def test_make_msk_studies_balances_regions_and_labels() -> None:
    studies = make_msk_studies(14, seed=5, size=48, abnormal_fraction=0.5)
    assert len(studies) == 14
    assert sorted(s.region for s in studies) == sorted(REGIONS * 2)
    assert sum(s.abnormal for s in studies) == 7
    again = make_msk_studies(14, seed=5, size=48, abnormal_fraction=0.5)
    assert [(s.seed, s.region, s.abnormal) for s in again] == [
        (s.seed, s.region, s.abnormal) for s in studies
    ]
    assert {s.region for s in make_msk_studies(4, size=48, regions=("hand",))} == {"hand"}
    assert not any(s.abnormal for s in make_msk_studies(3, size=48, abnormal_fraction=0.0))
    with pytest.raises(ValueError):
        make_msk_studies(2, regions=("knee",))


# -- DICOM files --------------------------------------------------------------------------------


def _study(region: str = "elbow", views: int = 3, abnormal: bool = True) -> MskStudy:
    return make_msk_study(21, region=region, abnormal=abnormal, views=views, size=64)


def test_write_msk_study_round_trip(tmp_path: Path) -> None:
    study = _study()
    written = write_msk_study(tmp_path / "dx", study, accession="ACC42")
    assert written.study is study
    assert len(written.files) == len(written.sop_instance_uids) == len(study.views)
    assert len(set(written.series_instance_uids)) == 1
    assert written.study_instance_uid.startswith(SYNTHETIC_UID_ROOT + ".")
    for k, (path, view) in enumerate(zip(written.files, study.views, strict=True)):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == DigitalXRayImageStorageForPresentation
        assert ds.Modality == "DX"
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.BodyPartExamined == BODY_PART_EXAMINED["elbow"] == "ELBOW"
        assert ds.StudyDescription == "XR ELBOW"
        side = study.laterality
        assert ds.ViewPosition == {"AP": "AP", "LAT": f"{side}L", "OBL": f"{side}LO"}[view.view]
        assert ds.ImageLaterality == study.laterality
        assert ds.AnatomicRegionSequence[0].CodeValue == "16953009"
        assert ds.StudyInstanceUID == written.study_instance_uid
        assert ds.SeriesInstanceUID == written.series_instance_uids[k]
        assert ds.SOPInstanceUID == written.sop_instance_uids[k]
        assert ds.AccessionNumber == "ACC42"
        assert int(ds.InstanceNumber) == k + 1
        assert int(ds.BitsStored) == 12
        assert float(ds.ImagerPixelSpacing[0]) == pytest.approx(view.pixel_spacing_mm, rel=1e-5)
        expected = np.rint(view.image * 4095).astype(np.uint16)
        assert np.array_equal(ds.pixel_array, expected)
    again = write_msk_study(tmp_path / "again", study, accession="ACC42")
    assert again.sop_instance_uids == written.sop_instance_uids


def test_write_msk_study_cr_monochrome1_and_series_per_view(tmp_path: Path) -> None:
    study = _study(region="hand", views=3, abnormal=False)
    written = write_msk_study(
        tmp_path,
        study,
        modality="CR",
        photometric="MONOCHROME1",
        series_per_view=True,
        study_uid="1.2.3.4.5",
        bits_stored=16,
    )
    assert written.study_instance_uid == "1.2.3.4.5"
    assert len(set(written.series_instance_uids)) == 3
    for path, view in zip(written.files, study.views, strict=True):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == ComputedRadiographyImageStorage
        assert ds.Modality == "CR"
        assert ds.PhotometricInterpretation == "MONOCHROME1"
        assert ds.BodyPartExamined == "HAND"
        assert ds.StudyInstanceUID == "1.2.3.4.5"
        assert int(ds.BitsStored) == 16
        assert int(ds.InstanceNumber) == 1
        if view.view == "AP":
            assert ds.ViewPosition == "PA"  # hands are filmed postero-anterior
        inverted = 65535 - np.rint(view.image * 65535).astype(np.int64)
        assert np.array_equal(ds.pixel_array.astype(np.int64), inverted)
    with pytest.raises(ValueError):
        write_msk_study(tmp_path, study, modality="CT")
    with pytest.raises(ValueError):
        write_msk_study(tmp_path, study, photometric="RGB")


@pytest.mark.peers
@pytest.mark.parametrize(
    ("region", "modality", "photometric"),
    [
        ("elbow", "DX", "MONOCHROME2"),
        ("finger", "DX", "MONOCHROME1"),
        ("forearm", "CR", "MONOCHROME2"),
        ("hand", "CR", "MONOCHROME1"),
        ("humerus", "DX", "MONOCHROME2"),
        ("shoulder", "CR", "MONOCHROME2"),
        ("wrist", "DX", "MONOCHROME1"),
    ],
)
def test_dciodvfy_finds_no_errors(
    tmp_path: Path, region: str, modality: str, photometric: str
) -> None:
    """dicom3tools' dciodvfy accepts every view's file (warnings allowed); skips without it."""
    require_tool("dciodvfy")
    study = make_msk_study(7, region=region, views=3, size=48)
    written = write_msk_study(
        tmp_path, study, modality=modality, photometric=photometric, series_per_view=True
    )
    for path in written.files:
        errors, _warnings = dciodvfy(path)
        assert errors == [], errors


# -- MURA's layout ------------------------------------------------------------------------------


def test_write_mura_layout(tmp_path: Path) -> None:
    studies = [
        make_msk_study(1, region="shoulder", abnormal=True, views=2, size=48),
        make_msk_study(2, region="wrist", abnormal=False, views=1, size=48),
    ]
    root = tmp_path / "MURA-v1.1"
    folders = write_mura_layout(root, studies, split="valid", first_patient=11185)
    assert folders == [
        root / "valid/XR_SHOULDER/patient11185/study1_positive",
        root / "valid/XR_WRIST/patient11186/study1_negative",
    ]
    assert (root / "valid_image_paths.csv").read_text().splitlines() == [
        "MURA-v1.1/valid/XR_SHOULDER/patient11185/study1_positive/image1.png",
        "MURA-v1.1/valid/XR_SHOULDER/patient11185/study1_positive/image2.png",
        "MURA-v1.1/valid/XR_WRIST/patient11186/study1_negative/image1.png",
    ]
    assert (root / "valid_labeled_studies.csv").read_text().splitlines() == [
        "MURA-v1.1/valid/XR_SHOULDER/patient11185/study1_positive/,1",
        "MURA-v1.1/valid/XR_WRIST/patient11186/study1_negative/,0",
    ]
    for line in (root / "valid_image_paths.csv").read_text().splitlines():
        with Image.open(tmp_path / line) as png:
            assert png.mode == "L"
            pixels = np.asarray(png)
        study = studies[0] if "SHOULDER" in line else studies[1]
        view = study.views[int(line[-5]) - 1]
        assert pixels.shape == view.image.shape
        assert np.array_equal(pixels, np.rint(view.image * 255).astype(np.uint8))
