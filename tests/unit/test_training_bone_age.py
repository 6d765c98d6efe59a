"""The bone_age trainer: presets, validation, data sources, augmentation, a smoke run."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipelines.bone_age.model import load_model
from pipelines.bone_age.network import SEX_FEMALE, SEX_MALE, SEX_UNKNOWN
from pipelines.model_store import read_model_card
from tests.support.bone_age import write_film
from tests.support.models import smoke_bone_age_model
from training.bone_age.data import LabelsError, load_labelled, load_rsna, parse_sex
from training.bone_age.evaluate import PLOT_FILE, evaluate_predictions
from training.bone_age.train import PRESETS, TRAINER, TrainConfig, augment, preset
from training.synthetic.paediatric_hands import make_paediatric_hands, write_rsna_layout


def test_presets() -> None:
    assert PRESETS.names() == ["paper", "cpu", "demo", "smoke"]
    paper = PRESETS["paper"]
    assert (paper.architecture, paper.input_size, paper.epochs) == ("vgg16", 500, 50)
    assert paper.backbone_init == "imagenet" and paper.freeze_backbone
    assert (paper.rotation_deg, paper.shift, paper.shear_deg, paper.zoom) == (5.0, 0.15, 0.01, 0.25)
    assert paper.horizontal_flip
    assert PRESETS["cpu"].architecture == "vgg_small"
    assert PRESETS["cpu"].input_size < paper.input_size
    for name in ("cpu", "demo", "smoke"):
        PRESETS[name].validate()
        assert PRESETS[name].backbone_init == "random"
    assert TRAINER.pipeline == "bone_age"


def test_the_paper_preset_needs_the_imagenet_weights_and_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="init_weights"):
        PRESETS["paper"].validate()
    with pytest.raises(ValueError, match="data_dir"):
        preset("paper", init_weights=tmp_path / "vgg16.pt").validate()
    preset("paper", init_weights=tmp_path / "vgg16.pt", data_dir=tmp_path).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_size": 16}, "too small"),
        ({"architecture": "resnet"}, "architecture"),
        ({"freeze_backbone": True}, "frozen random"),
        ({"source": "folder", "data_dir": Path("x")}, "labels_csv"),
        ({"lr": 0.0}, "lr"),
        ({"sex_dropout": 1.0}, "sex_dropout"),
        ({"val_fraction": 0.45, "test_fraction": 0.45}, "too little"),
        ({"version": "no spaces"}, "version"),
        ({"device": "gpu"}, "device"),
    ],
)
def test_validate_names_the_setting(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(PRESETS["smoke"], **changes).validate()


def test_real_data_named_on_a_synthetic_preset_trains_on_it(tmp_path: Path) -> None:
    assert preset("cpu", data_dir=tmp_path).source == "rsna"
    assert preset("cpu", data_dir=tmp_path, labels_csv=tmp_path / "l.csv").source == "folder"


def test_augmentation_is_the_identity_at_zero_and_flips(tmp_path: Path) -> None:
    images = torch.rand(4, 1, 32, 32) * 255
    still = replace(
        PRESETS["smoke"],
        rotation_deg=0.0,
        shift=0.0,
        shear_deg=0.0,
        zoom=0.0,
        horizontal_flip=False,
    )
    out = augment(images, still, torch.Generator().manual_seed(0))
    assert torch.allclose(out, images, atol=1e-3)
    flips = replace(still, horizontal_flip=True)
    out = augment(images, flips, torch.Generator().manual_seed(0))
    flipped = [
        bool(torch.allclose(o, i.flip(-1), atol=1e-3)) for o, i in zip(out, images, strict=True)
    ]
    kept = [bool(torch.allclose(o, i, atol=1e-3)) for o, i in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)  # seed 0 flips some of the four, not all
    moved = augment(images, PRESETS["paper"], torch.Generator().manual_seed(0))
    assert moved.shape == images.shape and not torch.allclose(moved, images)


def test_rsna_layout_is_read_directly(tmp_path: Path) -> None:
    hands = make_paediatric_hands(3, 4, size=96)
    write_rsna_layout(tmp_path / "rsna", hands)
    samples = load_rsna(tmp_path / "rsna")
    assert [s.age_months for s in samples] == pytest.approx(
        [h.bone_age_months for h in hands], abs=0.51
    )
    assert [s.sex for s in samples] == [SEX_MALE if h.sex == "M" else SEX_FEMALE for h in hands]
    assert samples[0].image.ndim == 2


def test_folder_and_labels_csv_of_dicom_films(tmp_path: Path) -> None:
    hands = make_paediatric_hands(4, 2, size=96)
    for index, hand in enumerate(hands):
        write_film(tmp_path / f"f{index}.dcm", hand.image, index=index + 1)
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "boneage", "male"])
        writer.writerow(["f0.dcm", "30", "True"])
        writer.writerow(["f1.dcm", "150.5", "False"])
    samples = load_labelled(tmp_path, labels)
    assert [(s.age_months, s.sex) for s in samples] == [(30.0, SEX_MALE), (150.5, SEX_FEMALE)]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,age\nf0.dcm,3\n")
    with pytest.raises(LabelsError, match="'file', 'id' or 'sop_instance_uid'"):
        load_labelled(tmp_path, bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("file,boneage\nnope.dcm,3\n")
    with pytest.raises(LabelsError, match="does not exist"):
        load_labelled(tmp_path, missing)


@pytest.mark.parametrize(
    ("value", "index"),
    [("True", SEX_MALE), ("0", SEX_FEMALE), ("F", SEX_FEMALE), ("", SEX_UNKNOWN)],
)
def test_sex_column_values(value: str, index: int) -> None:
    assert parse_sex(value) == index


def test_mae_overall_and_by_sex() -> None:
    report = evaluate_predictions(
        np.array([10.0, 20.0, 30.0, 40.0]),
        np.array([12.0, 20.0, 24.0, 40.0]),
        np.array([SEX_MALE, SEX_MALE, SEX_FEMALE, SEX_UNKNOWN]),
    )
    assert report.mae_months == pytest.approx(2.0)
    assert report.mae_male_months == pytest.approx(1.0)
    assert report.mae_female_months == pytest.approx(6.0)
    assert (report.films_male, report.films_female) == (2, 1)
    assert report.bias_months == pytest.approx(1.0)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return smoke_bone_age_model(tmp_path_factory.getbasetemp() / "bone-age-smoke")


def test_smoke_run_beats_a_guess_by_far(smoke: Any) -> None:
    report = smoke.report
    assert report.films >= 40
    assert report.mae_months < 0.6 * report.label_sd_months
    assert report.mae_months < 0.7 * report.mean_guess_mae_months
    card = read_model_card(smoke.folder)
    assert card.pipeline == "bone_age" and card.architecture["name"] == "vgg_tiny"
    assert card.architecture["sex_input"] == ["male", "female", "unknown"]
    metrics = card.metrics
    assert metrics["mae_months"] == pytest.approx(report.mae_months, abs=1e-3)
    assert metrics["mae_male_months"] is not None and metrics["mae_female_months"] is not None
    assert metrics["mae_sex_unknown_months"] > 0
    assert metrics["plot"] == PLOT_FILE
    assert (smoke.folder / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluation = json.loads((smoke.folder / "evaluation.json").read_text())
    assert evaluation["paper_mae_months"] == {"male": 9.82, "female": 10.75}
    assert len(evaluation["history"]) == card.training_data["epochs_run"]
    model = load_model(smoke.folder)  # as the pipeline loads it
    assert model.spec.size == 128


def test_a_diverging_or_unreadable_config_writes_nothing(tmp_path: Path) -> None:
    config = replace(
        PRESETS["smoke"], out_dir=tmp_path, version="x1", source="rsna", data_dir=tmp_path
    )
    with pytest.raises(LabelsError):
        TRAINER.train(config)
    assert not (tmp_path / "x1").exists()


def test_trainer_is_registered() -> None:
    from dicom_node.trainers import trainer_module

    module = trainer_module("bone_age")
    assert module.trainer() is TRAINER
    assert module.demo_entry() is None
    assert isinstance(PRESETS["smoke"], TrainConfig)


class _Commands:
    def __init__(self) -> None:
        import argparse

        self.parser = argparse.ArgumentParser()

    def add_train_command(self, name: str, **options: Any) -> Any:
        assert name == "bone_age"
        return self.parser

    def add_models_command(self, name: str, **options: Any) -> Any:
        raise AssertionError("bone_age adds no models command")


def test_command_line_flags_become_settings(tmp_path: Path) -> None:
    from training.bone_age import cli

    commands = _Commands()
    cli.register(commands)
    parse = commands.parser.parse_args
    rsna = cli.chosen_settings(parse(["--rsna", str(tmp_path), "--imagenet-init"]), tmp_path)
    assert rsna["source"] == "rsna" and rsna["data_dir"] == tmp_path
    assert rsna["init_weights"] == tmp_path / "_init" / "vgg16_imagenet.pt"
    assert rsna["out_dir"] == tmp_path / "bone_age"
    config = TRAINER.config("paper", **rsna)
    config.validate()
    scratch = cli.chosen_settings(parse(["--synthetic", "50", "--random-init"]), tmp_path)
    assert TRAINER.config("paper", **scratch).backbone_init == "random"
    with pytest.raises(ValueError, match="--labels"):
        cli.chosen_settings(parse(["--data", str(tmp_path)]), tmp_path)
    with pytest.raises(ValueError, match="not both"):
        cli.chosen_settings(parse(["--data", str(tmp_path), "--rsna", str(tmp_path)]), tmp_path)


def test_the_card_names_the_paper_network_and_the_cpu_variant() -> None:
    from training.bone_age.train import architecture_card

    paper = architecture_card(PRESETS["paper"])
    assert paper["variant"] == "paper (model 2)"
    assert paper["backbone_init"] == "imagenet" and paper["backbone_frozen"]
    cpu = architecture_card(PRESETS["cpu"])
    assert cpu["name"] == "vgg_small" and cpu["variant"].startswith("CPU variant")
    assert cpu["backbone_init"] == "random"


def test_retraining_needs_labels_and_scores_a_folder_by_sop_instance_uid(tmp_path: Path) -> None:
    from dicom_node.trainers import retraining_support
    from tests.support.models import write_seeded_bone_age_model
    from training.bone_age.retraining import RETRAINING, sanity
    from training.contract import CannotRetrain, RetrainInputs

    assert retraining_support("bone_age") is RETRAINING
    assert RETRAINING.metric == "mae_months" and not RETRAINING.higher_is_better
    with pytest.raises(CannotRetrain, match="labels_file"):
        RETRAINING.train_arguments(tmp_path, RetrainInputs())
    with pytest.raises(CannotRetrain, match="no trainer option"):
        RETRAINING.train_arguments(tmp_path, RetrainInputs(tmp_path / "l.csv", options={"x": 1}))
    labels = tmp_path / "labels.csv"
    assert RETRAINING.train_arguments(tmp_path / "films", RetrainInputs(labels)) == [
        "--data",
        str(tmp_path / "films"),
        "--labels",
        str(labels),
    ]
    films = tmp_path / "films"
    films.mkdir()
    rows = ["sop_instance_uid,boneage,male"]
    for index, hand in enumerate(make_paediatric_hands(6, 3, size=128)):
        ds = write_film(films / f"x{index}.dcm", hand.image, index=index + 1)
        rows.append(f"{ds.SOPInstanceUID},{hand.bone_age_months:.1f},{hand.sex == 'M'}")
    labels.write_text("\n".join(rows) + "\n")
    model = tmp_path / "model"
    write_seeded_bone_age_model(model, size=64)
    scores = RETRAINING.evaluate(model, films, RetrainInputs(labels))
    assert scores["films"] == 3 and scores["mae_months"] > 0
    good = {"mae_months": 10.0, "mean_guess_mae_months": 40.0}
    assert sanity({}, good, RetrainInputs(labels)) == []
    bad = {"mae_months": 39.0, "mean_guess_mae_months": 40.0}
    assert "not below" in sanity({}, bad, RetrainInputs(labels))[0]
    assert "not a number" in sanity({}, {"mae_months": float("nan")}, RetrainInputs(labels))[0]
