"""Training the hand_orientation network: labels, augmentation, data sources, loop, report.

Angles are checked against the pixels by geometry, never only against the formulas under
test: an "arrow" film (a bright tip blob and a dim wrist blob about the centre) shows its
angle as the direction from the centre to the tip, and the synthetic hand films carry
their own angle.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Flip, RepeatChannel, Rotate90, SpatialCrop
from pydicom.uid import DigitalXRayImageStorageForPresentation

from pipelines.film_io import read_film
from pipelines.hand_orientation.correct import rotate_film
from pipelines.hand_orientation.model import load_model
from pipelines.hand_orientation.network import build_network
from pipelines.hand_orientation.preprocess import InputSpec, finishing_transform, normalizer
from pipelines.model_store import read_model_card
from tests.support.datasets import new_instance, set_monochrome_pixels
from training.hand_orientation import (
    LabelsError,
    OrientationSample,
    TrainConfig,
    TrainingDataError,
    augmented_angle,
    display_from_raw,
    evaluate_model,
    load_labelled_films,
    load_upright_films,
    preset,
    render_synthetic_films,
    report_from_predictions,
    rotate_within_frame,
    split_by_film,
    train_orientation,
    write_evaluation,
)
from training.hand_orientation.augment import (
    Augmentation,
    apply_geometry,
    evaluation_batch,
    normalize_batch,
)
from training.hand_orientation.evaluate import histogram_counts
from training.hand_orientation.train import initialise_from_file
from training.runs import TrainingDiverged

ROOT = "1.2.826.0.1.3680043.8.498.4242"


# -- helpers ----------------------------------------------------------------------------------


def arrow_film(size: int, theta_deg: float, *, columns: int | None = None) -> np.ndarray:
    """A film whose "hand" points at θ: a bright tip blob and a dim wrist blob."""
    rows, cols = size, columns or size
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    reach, radius = 0.3 * min(rows, cols), 0.07 * min(rows, cols)
    ux, uy = math.cos(math.radians(theta_deg)), -math.sin(math.radians(theta_deg))  # y down
    film = np.full((rows, cols), 2000.0)
    tip = (x - cx - reach * ux) ** 2 + (y - cy - reach * uy) ** 2 < radius**2
    wrist = (x - cx + reach * ux) ** 2 + (y - cy + reach * uy) ** 2 < (1.5 * radius) ** 2
    film[wrist] = 20000.0
    film[tip] = 60000.0
    return film.astype(np.uint16)


def measured_angle(image: np.ndarray | torch.Tensor) -> float:
    """θ of an arrow image: the direction from the image centre to the brightest blob."""
    pixels = np.asarray(image, dtype=np.float64).squeeze()
    rows, cols = pixels.shape
    bright = pixels >= 0.8 * pixels.max()
    y, x = np.nonzero(bright)
    weights = pixels[bright]
    ty, tx = float(np.average(y, weights=weights)), float(np.average(x, weights=weights))
    angle = math.degrees(math.atan2(-(ty - (rows - 1) / 2), tx - (cols - 1) / 2))
    return angle % 360.0


def plain(value: object) -> torch.Tensor:
    """A MONAI transform's output (a ``MetaTensor``) as a plain tensor."""
    return torch.as_tensor(value).as_subclass(torch.Tensor)


def circular_gap(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def write_film(path: Path, pixels: np.ndarray, uid: str) -> Path:
    """A minimal DX Part 10 film without a VOI LUT (read_film stretches min..max)."""
    ds = new_instance(
        DigitalXRayImageStorageForPresentation,
        uid,
        study_uid=f"{ROOT}.1",
        series_uid=f"{ROOT}.2",
        modality="DX",
    )
    set_monochrome_pixels(ds, *pixels.shape, bits_stored=16, pixels=pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def sample(theta: float, spec: InputSpec, name: str = "film") -> OrientationSample:
    from training.hand_orientation.data import to_sample_image

    return OrientationSample(to_sample_image(arrow_film(spec.resize * 2, theta), spec), theta, name)


# -- augmentation labels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("theta", "k", "flip", "expected"),
    [
        (90.0, 0, False, 90.0),
        (90.0, 1, False, 180.0),
        (30.0, 3, False, 300.0),
        (30.0, 0, True, 150.0),
        (90.0, 0, True, 90.0),  # an upright hand stays upright in a mirror
        (10.0, 3, True, 260.0),  # 10 + 270 = 280, mirrored: 180 − 280 = −100
    ],
)
def test_augmented_angle_values(theta: float, k: int, flip: bool, expected: float) -> None:
    assert augmented_angle(theta, k, flip) == pytest.approx(expected)


@pytest.mark.parametrize("theta", [0.0, 37.0, 90.0, 161.0, 250.0, 333.0])
def test_augmented_labels_follow_the_pixels(theta: float) -> None:
    """Every turn and flip: the label predicts where the arrow's tip is after MONAI's transform."""
    spec = InputSpec(resize=64, crop=64)
    image = sample(theta, spec).image.float()
    assert circular_gap(measured_angle(image), theta) < 2.0
    for k in range(4):
        for flip in (False, True):
            # MONAI's own transforms, as the reference for what the pixels undergo.
            reference = Rotate90(k=k, spatial_axes=(0, 1))(image) if k else image
            reference = Flip(spatial_axis=1)(reference) if flip else reference
            ours = apply_geometry(image, Augmentation(k, flip, 0, 0), spec.crop)
            torch.testing.assert_close(plain(ours), plain(reference))
            gap = circular_gap(measured_angle(ours), augmented_angle(theta, k, flip))
            assert gap < 2.0, f"k={k} flip={flip}: label off the pixels by {gap:.1f}°"


def test_augmented_labels_on_a_synthetic_hand() -> None:
    """The rendered hand's own axis, measured by image moments, moves as the label says."""
    from training.synthetic.hand_films import hand_axis_angle, render_hand

    theta = 58.0
    raw = render_hand(128, 128, angle_deg=theta, rng=np.random.default_rng(3))
    display = torch.from_numpy(display_from_raw(raw).astype(np.float32))[None]
    for k, flip in [(0, False), (1, False), (2, True), (3, True)]:
        turned = apply_geometry(display, Augmentation(k, flip, 0, 0), 128)[0].numpy()
        measured = hand_axis_angle(np.rint(turned).astype(np.uint16))
        gap = circular_gap(float(measured), augmented_angle(theta, k, flip))
        assert gap < 3.0, f"k={k} flip={flip}: measured {measured:.1f}°"


def test_batch_path_equals_the_monai_transforms_and_the_pipeline() -> None:
    spec = InputSpec(resize=40, crop=33)  # odd crop: the centre offset must match MONAI's
    samples = [sample(theta, spec, f"f{i}") for i, theta in enumerate((10.0, 100.0, 250.0))]
    batch, angles = evaluation_batch(samples, spec)
    for row, one in zip(batch, samples, strict=True):
        expected = plain(finishing_transform(spec)(one.image.float()))
        torch.testing.assert_close(row, expected, rtol=0, atol=1e-5)
    assert angles.tolist() == pytest.approx([10.0, 100.0, 250.0])
    # A random crop with the turn and flip, against MONAI's chain sample by sample.
    augmentation = Augmentation(quarter_turns=3, flip=True, top=2, left=5)
    image = samples[0].image.float()
    ours = normalize_batch(apply_geometry(image, augmentation, spec.crop)[None], spec)[0]
    reference = plain(Flip(spatial_axis=1)(Rotate90(k=3, spatial_axes=(0, 1))(image)))
    reference = plain(SpatialCrop(roi_start=(2, 5), roi_end=(2 + 33, 5 + 33))(reference))
    reference = plain(normalizer(spec)(RepeatChannel(repeats=3)(reference)))
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


# -- rotation of upright films ------------------------------------------------------------------


@pytest.mark.parametrize("turn", [0.0, 30.0, 90.0, 135.0, 200.0, 311.0])
def test_rotate_within_frame_agrees_with_rotate_film(turn: float) -> None:
    film = arrow_film(101, 90.0, columns=81)
    ours = rotate_within_frame(film, turn)
    theirs = rotate_film(film, turn)
    expected_shape = film.shape if round(turn / 90) % 2 == 0 else film.shape[::-1]
    assert ours.shape == expected_shape and ours.dtype == film.dtype
    assert circular_gap(measured_angle(ours), 90.0 + turn) < 2.0
    assert circular_gap(measured_angle(theirs), 90.0 + turn) < 2.0
    # No black corners: what the turn uncovers takes the film's border level.
    if turn % 90:
        assert ours.min() >= 1999 and ours[0, 0] == 2000


def test_display_from_raw_equals_read_film(tmp_path: Path) -> None:
    from training.synthetic.hand_films import render_hand

    raw = render_hand(90, 72, angle_deg=200.0, rng=np.random.default_rng(1))
    path = write_film(tmp_path / "raw.dcm", raw, f"{ROOT}.3.1")
    np.testing.assert_array_equal(display_from_raw(raw), read_film(path).display)


# -- labels CSV ---------------------------------------------------------------------------------


@pytest.fixture
def labelled_folder(tmp_path: Path) -> Path:
    """films/a.dcm (θ 20), films/sub/b.dcm (θ 135), films/c.dcm (θ 270)."""
    films = tmp_path / "films"
    write_film(films / "a.dcm", arrow_film(64, 20.0), f"{ROOT}.3.1")
    write_film(films / "sub" / "b.dcm", arrow_film(64, 135.0), f"{ROOT}.3.2")
    write_film(films / "c.dcm", arrow_film(64, 270.0), f"{ROOT}.3.3")
    return films


SPEC_32 = InputSpec(resize=32, crop=32)


def test_labels_by_file_relative_to_the_csv_or_the_data_folder(
    labelled_folder: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("file,angle_deg\nfilms/a.dcm,20\nsub/b.dcm,135.0\nfilms/c.dcm,-90\n")
    loaded = load_labelled_films(labelled_folder, labels, SPEC_32)
    assert loaded.report.films == 3 and loaded.report.skipped_count == 0
    by_name = {s.film: s for s in loaded.samples}
    assert sorted(by_name) == ["a.dcm", "c.dcm", "sub/b.dcm"]
    for name, theta in [("a.dcm", 20.0), ("sub/b.dcm", 135.0), ("c.dcm", 270.0)]:
        one = by_name[name]
        assert one.angle_deg == pytest.approx(theta)
        assert one.image.shape == (1, 32, 32) and one.image.dtype == torch.uint8
        assert circular_gap(measured_angle(one.image), theta) < 3.0


def test_labels_by_sop_instance_uid(labelled_folder: Path, tmp_path: Path) -> None:
    (labelled_folder / "notes.txt").write_text("not a film")
    (labelled_folder / "junk.bin").write_bytes(b"\0" * 300)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"SOP_Instance_UID,Angle_Deg\n{ROOT}.3.2,135\n{ROOT}.3.3,270\n")
    loaded = load_labelled_films(labelled_folder, labels, SPEC_32)
    assert {(s.film, s.angle_deg) for s in loaded.samples} == {
        ("sub/b.dcm", 135.0),
        ("c.dcm", 270.0),
    }


def test_synthetic_studies_labelled_by_uid_in_either_photometric(tmp_path: Path) -> None:
    """Real synthetic DX/CR files (MONOCHROME1 too) arrive as bone-bright samples at their θ."""
    from training.synthetic.hand_films import hand_axis_angle, write_hand_study

    archive = tmp_path / "archive"
    cases = [(35.0, "MONOCHROME1", "CR"), (230.0, "MONOCHROME2", "DX")]
    films = [
        write_hand_study(
            archive,
            angle_deg=angle,
            seed=i,
            detector=(3001, 3001),
            scale=0.04,
            photometric=photometric,
            modality=modality,
        )  # fmt: skip
        for i, (angle, photometric, modality) in enumerate(cases)
    ]
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "sop_instance_uid,angle_deg\n"
        + "".join(f"{film.sop_instance_uid},{film.angle_deg}\n" for film in films)
    )
    loaded = load_labelled_films(archive, labels, InputSpec(resize=96, crop=88))
    assert loaded.report.films == 2
    for film, one in zip(films, loaded.samples, strict=True):
        assert one.angle_deg == pytest.approx(film.angle_deg)
        measured = hand_axis_angle(one.image[0].numpy())
        assert circular_gap(measured, film.angle_deg) < 4.0, (film.photometric, measured)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,angle\na.dcm,20\n", "no angle_deg column"),
        ("name,angle_deg\na.dcm,20\n", "neither a file nor a sop_instance_uid column"),
        ("file,angle_deg\na.dcm,twenty\n", "line 2: angle_deg 'twenty' is not a number"),
        ("file,angle_deg\na.dcm,nan\n", "line 2: angle_deg 'nan' is not a finite number"),
        ("file,angle_deg\na.dcm,20\nmissing.dcm,30\n", "line 3: file 'missing.dcm' does not exist"),
        ("sop_instance_uid,angle_deg\n1.2.3.4,20\n", "no film under"),
        ("file,angle_deg\na.dcm,20\n./a.dcm,21\n", "line 3: the film of line 2 is labelled again"),
        ("file,angle_deg\n", "has no labelled films"),
    ],
)
def test_bad_labels_csv_is_refused_with_the_reason(
    labelled_folder: Path, tmp_path: Path, text: str, message: str
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(LabelsError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_labelled_films(labelled_folder, labels, SPEC_32)


def test_unreadable_labelled_film_is_skipped_and_counted(
    labelled_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (labelled_folder / "broken.dcm").write_bytes(b"DICM but not really" * 10)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,angle_deg\na.dcm,20\nbroken.dcm,40\n")
    with caplog.at_level(logging.WARNING, logger="training.hand_orientation.data"):
        loaded = load_labelled_films(labelled_folder, labels, SPEC_32)
    assert [s.film for s in loaded.samples] == ["a.dcm"]
    assert loaded.report.skipped_count == 1 and "broken.dcm" in loaded.report.skipped[0]
    assert "skipped 1 of 2" in caplog.text
    labels.write_text("file,angle_deg\nbroken.dcm,40\n")
    with pytest.raises(TrainingDataError, match="none of the 1 labelled films"):
        load_labelled_films(labelled_folder, labels, SPEC_32)


# -- self-supervised labels ---------------------------------------------------------------------


def test_upright_films_get_exact_labels_from_their_turns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "archive"
    write_film(folder / "one.dcm", arrow_film(120, 90.0), f"{ROOT}.3.1")
    write_film(folder / "two" / "two.dcm", arrow_film(90, 90.0), f"{ROOT}.3.2")
    (folder / "README").write_text("an unreadable file among the films")
    with caplog.at_level(logging.WARNING, logger="training.hand_orientation.data"):
        loaded = load_upright_films(folder, SPEC_32, rotations_per_film=4, seed=7)
    assert loaded.report.source == "upright"
    assert (loaded.report.films, loaded.report.samples, loaded.report.skipped_count) == (2, 8, 1)
    assert "skipped 1 of 3" in caplog.text
    turns = set()
    for one in loaded.samples:
        assert circular_gap(measured_angle(one.image), one.angle_deg) < 3.5, one.angle_deg
        turns.add(round(one.angle_deg, 3))
    assert len(turns) == 8  # random, distinct turns
    again = load_upright_films(folder, SPEC_32, rotations_per_film=4, seed=7)
    assert [s.angle_deg for s in again.samples] == [s.angle_deg for s in loaded.samples]


def test_split_keeps_each_films_samples_together() -> None:
    image = torch.zeros((1, 8, 8), dtype=torch.uint8)
    samples = [OrientationSample(image, 0.0, f"film{i // 3}") for i in range(30)]
    train, validation, test = split_by_film(samples, [0.3, 0.2], seed=1)
    names = [{s.film for s in part} for part in (train, validation, test)]
    assert [len(n) for n in names] == [5, 3, 2]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert len(train) + len(validation) + len(test) == 30
    with pytest.raises(TrainingDataError, match="too few"):
        split_by_film(samples[:3], [0.3], seed=1)


# -- evaluation -----------------------------------------------------------------------------------


def test_report_matches_a_hand_computation(tmp_path: Path) -> None:
    predicted = [95.0, 85.0, 300.0, 1.0, 44.0, 200.0]
    true = [90.0, 90.0, 90.0, 359.0, 48.0, 180.0]
    names = ["a", "a", "b", "c", "d", "e"]
    report = report_from_predictions(predicted, true, names)
    errors = [5.0, -5.0, -150.0, 2.0, -4.0, 20.0]  # by hand, on the circle
    assert list(report.errors_deg) == pytest.approx(errors)
    assert report.films == 5 and report.samples == 6
    assert report.mae_deg == pytest.approx(186.0 / 6)
    assert report.within_4deg_pct == pytest.approx(100 * 2 / 6)  # 2 and −4 (inclusive)
    # Quadrants: 95|90 → 0|0, 85|90 → 0|0, 300|90 → 2|0, 1|359 → 3|3, 44|48 → 3|0, 200|180 → 1|1.
    assert report.quadrant_accuracy_pct == pytest.approx(100 * 4 / 6)
    mean = -132.0 / 6
    assert report.error_mean_deg == pytest.approx(mean)
    assert report.error_std_deg == pytest.approx(
        math.sqrt(sum((e - mean) ** 2 for e in errors) / 6)
    )
    assert report.median_abs_error_deg == pytest.approx(5.0)
    assert report.max_abs_error_deg == pytest.approx(150.0)
    assert report.beyond_20deg_pct == pytest.approx(100 / 6)  # 20 itself is inside
    labels, counts = histogram_counts(report.errors_deg)
    assert len(labels) == len(counts) == 42
    assert counts[0] == 1 and counts[-1] == 0  # −150 below, nothing above 20
    expected = {"[-5, -4)": 1, "[-4, -3)": 1, "[2, 3)": 1, "[5, 6)": 1, "[19, 20]": 1}
    assert {lab: c for lab, c in zip(labels, counts, strict=True) if c and lab[0] == "["} == {
        **expected,
        "[-180, -20)": 1,
    }
    json_path, png_path = write_evaluation(report, tmp_path, extra={"note": "x"})
    saved = json.loads(json_path.read_text())
    assert saved["metrics"]["mae_deg"] == pytest.approx(31.0) and saved["note"] == "x"
    assert len(saved["samples"]) == 6 and png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- pretrained init and fine-tuning ----------------------------------------------------------------


def torchvision_style_state(architecture: str, seed: int) -> dict[str, torch.Tensor]:
    """A state dict named as torchvision names it, with a 1000-class ImageNet fc."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in build_network(architecture).state_dict().items():
        if value.is_floating_point():
            state[key] = torch.randn(value.shape, generator=generator)
        else:
            state[key] = torch.full_like(value, 7)
    width = state["fc.weight"].shape[1]
    state["fc.weight"] = torch.randn((1000, width), generator=generator)
    state["fc.bias"] = torch.randn((1000,), generator=generator)
    return state


def test_pretrained_init_from_a_torchvision_state_dict_file(tmp_path: Path) -> None:
    state = torchvision_style_state("resnet50", seed=5)
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight"} <= state.keys()
    assert "layer1.0.downsample.0.weight" in state and "layer4.2.bn3.weight" in state
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(state, path)
    network = build_network("resnet50")
    fc_before = network.state_dict()["fc.weight"].clone()
    init = initialise_from_file(network, path)
    assert isinstance(init, dict) and init["file"] == path.name and len(init["sha256"]) == 64
    loaded = network.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
    assert init["tensors"] == len(loaded) - 2
    assert loaded["fc.weight"].shape == (2, 2048)
    torch.testing.assert_close(loaded["fc.weight"], fc_before)  # the new fc is not ImageNet's
    torch.save(torchvision_style_state("resnet18", seed=5), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="r18.pth"):
        initialise_from_file(build_network("resnet50"), tmp_path / "r18.pth")


def test_conv5_fine_tuning_leaves_the_frozen_layers_and_their_batch_norm(tmp_path: Path) -> None:
    init = tmp_path / "resnet10.pth"
    state = torchvision_style_state("resnet10", seed=2)
    state = {k: (v.abs() + 0.5 if "running_var" in k else v) for k, v in state.items()}
    state = {
        k: (v * 0.05 if k.endswith("conv1.weight") or "conv" in k else v) for k, v in state.items()
    }
    torch.save(state, init)
    with pytest.raises(ValueError, match="needs init_weights"):
        preset("smoke", fine_tune="conv5", out_dir=tmp_path).validate()
    config = preset(
        "smoke",
        synthetic_films=24,
        synthetic_test_films=4,
        resize=32,
        crop=32,
        epochs=1,
        batch_size=8,
        init_weights=init,
        out_dir=tmp_path / "models",
        version="conv5",
        progress=False,
    )
    assert config.effective_fine_tune == "conv5"
    trained = train_orientation(config)
    weights = torch.load(trained.folder / "weights.pt", weights_only=True)
    for key in ("conv1.weight", "bn1.running_mean", "bn1.running_var", "layer1.0.bn1.running_mean",
                "layer3.0.conv2.weight", "layer3.0.bn2.running_var"):  # fmt: skip
        torch.testing.assert_close(weights[key], state[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(weights["layer4.0.conv1.weight"], state["layer4.0.conv1.weight"])
    assert not torch.equal(weights["layer4.0.bn1.running_mean"], state["layer4.0.bn1.running_mean"])
    assert trained.card.training_data["fine_tune"] == "conv5"
    assert trained.card.training_data["init"]["file"] == "resnet10.pth"


def test_training_runs_from_dicom_folders_upright_and_labelled(tmp_path: Path) -> None:
    """Both archive sources through the whole loop (one short epoch each)."""
    from training.synthetic.hand_films import write_hand_study

    archive = tmp_path / "archive"
    films = [
        write_hand_study(archive, angle_deg=90.0 if i < 10 else 90.0 + 25 * i, seed=i, scale=0.03)
        for i in range(14)
    ]
    (archive / "notes.txt").write_text("skipped without a warning")
    (archive / "broken.dcm").write_bytes(b"\0" * 64)
    small = {"architecture": "resnet10", "resize": 32, "crop": 32, "epochs": 1, "batch_size": 8}
    upright = train_orientation(
        preset(
            "smoke",
            **small,
            data_dir=archive,
            rotations_per_film=2,
            out_dir=tmp_path / "models",
            version="upright",
            progress=False,
        )  # fmt: skip
    )
    data = upright.card.training_data
    assert (data["source"], data["films"], data["samples"], data["skipped_films"]) == (
        "upright", 14, 28, 1,
    )  # fmt: skip
    assert data["rotations_per_film"] == 2 and "self-supervised" in data["label_mode"]
    assert data["evaluated_on"].startswith("validation split")
    assert upright.report.samples == data["validation_samples"] == 2 * upright.report.films
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "file,angle_deg\n"
        + "".join(f"{f.path.relative_to(tmp_path)},{f.angle_deg}\n" for f in films)
    )
    labelled = train_orientation(
        TrainConfig(
            **small,
            labels_csv=labels,
            data_dir=archive,
            val_fraction=0.3,
            test_fraction=0.2,
            out_dir=tmp_path / "models",
            version="labelled",
            progress=False,
        )  # fmt: skip
    )
    data = labelled.card.training_data
    assert (data["source"], data["films"], data["evaluation_samples"]) == ("labels_csv", 14, 3)
    assert data["evaluated_on"].startswith("test split")
    assert load_model(labelled.folder).architecture == "resnet10"


def test_time_limit_stops_training_and_anneals_the_rate(tmp_path: Path) -> None:
    config = preset(
        "smoke", synthetic_films=60, synthetic_test_films=4, resize=32, crop=32, epochs=500,
        batch_size=4, time_limit_s=2.0, out_dir=tmp_path, version="timed", progress=False,
    )  # fmt: skip
    started = time.perf_counter()
    trained = train_orientation(config)
    assert time.perf_counter() - started < 30.0
    data = trained.card.training_data
    assert data["stopped_by_time_limit"] is True and 1 <= data["epochs_run"] < 500
    assert data["train_seconds"] < 2.0 + max(h.seconds for h in trained.history)
    rates = [h.lr for h in trained.history]
    assert rates[0] == pytest.approx(config.lr) and rates == sorted(rates, reverse=True)
    if len(rates) > 2:
        assert rates[-1] < 0.5 * config.lr  # annealed by the clock, not by the 500 epochs


def test_a_diverging_run_stops_with_nothing_written(tmp_path: Path) -> None:
    config = preset(
        "smoke", synthetic_films=16, synthetic_test_films=4, resize=32, crop=32, epochs=3,
        batch_size=4, lr=1e30, lr_schedule="constant", out_dir=tmp_path, version="nan",
        progress=False,
    )  # fmt: skip
    with pytest.raises(TrainingDiverged, match=r"at step \d+ \(learning rate 1e\+30\)"):
        train_orientation(config)
    assert not any(tmp_path.iterdir())


# -- the smoke training run -------------------------------------------------------------------------


def test_smoke_training_learns_and_writes_a_loadable_model_folder(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    started = time.perf_counter()
    config = preset("smoke", out_dir=tmp_path / "models", version="smoke-1", progress=False)
    trained = train_orientation(config)
    seconds = time.perf_counter() - started
    folder = tmp_path / "models" / "smoke-1"
    assert trained.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "error_histogram.png",
        "evaluation.json",
        "model.json",
        "weights.pt",
    ]
    # The held-out films: far better than the 90° of a guess.
    assert trained.metrics["mae_deg"] < 25.0, trained.metrics
    assert trained.metrics["quadrant_accuracy_pct"] > 60.0, trained.metrics
    assert min(h.val_mae_deg for h in trained.history) < 25.0
    card = read_model_card(folder)  # checks the weights' SHA-256
    assert card.pipeline == "hand_orientation" and card.version == "smoke-1"
    assert card.created.tzinfo is not None
    assert card.architecture == {"name": "resnet10"}
    assert InputSpec.from_json(card.input_spec) == InputSpec(resize=64, crop=56)
    data = card.training_data
    assert data["source"] == "synthetic" and data["films"] == config.synthetic_films
    assert data["train_samples"] + data["validation_samples"] == config.synthetic_films
    assert (data["epochs"], data["batch_size"], data["lr"]) == (6, 32, config.lr)
    assert data["fine_tune"] == "all" and data["init"] == "random" and data["seed"] == 0
    assert 1 <= data["best_epoch"] <= 6
    saved = json.loads((folder / "evaluation.json").read_text())
    assert saved["metrics"] == {k: v for k, v in card.metrics.items() if k in saved["metrics"]}
    assert len(saved["history"]) == 6 and saved["metrics"]["films"] == data["evaluation_samples"]
    assert (folder / "error_histogram.png").stat().st_size > 5000
    # The pipeline's loader takes it, and its predictions are the report's.
    model = load_model(folder)
    held_out = render_synthetic_films(8, model.spec, seed=99, size=128)
    again = evaluate_model(model, held_out.samples)
    direct = model.predict_degrees([arrow_film(128, 90.0)])  # any display image runs
    assert len(direct) == 1 and 0.0 <= direct[0] < 360.0
    assert again.samples == 8 and again.mae_deg < 45.0
    with pytest.raises(FileExistsError):
        train_orientation(config)
    print(f"smoke training: {seconds:.1f} s, {trained.metrics}")
