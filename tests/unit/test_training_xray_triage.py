"""Training ``xray_triage``: the presets (the paper's recipe), settings refused, the labels
CSV and its errors, weak labels from the films' own headers and the confidence filter, the
split, the metrics against a hand-computed example, a ``smoke`` run whose held-out figures
beat chance by far for both modules, its model card and plot, the command, and the
retraining hooks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from dicom_node import cli
from dicom_node.cli import term
from pipelines.model_store import read_model_card
from pipelines.xray_triage.model import load_model
from pipelines.xray_triage.network import MODULE_1_CLASSES, MODULE_2_CLASSES
from tests.support.models import smoke_triage_model, write_constant_triage_model
from training.contract import CannotRetrain, RetrainInputs
from training.synthetic.xray_types import render_triage_film, write_triage_film
from training.xray_triage import retraining
from training.xray_triage.data import (
    LABELS,
    LabelsError,
    TrainingDataError,
    TriageSample,
    confidence_filter,
    load_labelled_folder,
    load_weak_labels,
    parse_label,
    split_samples,
)
from training.xray_triage.evaluate import CONFUSION_FILE, TABLE_FILE, report_of
from training.xray_triage.train import PRESETS, TrainConfig, TrainedModel, preset


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    model: TrainedModel = smoke_triage_model(tmp_path_factory.getbasetemp() / "xray-triage-smoke")
    return model


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(term, "out", Console(width=400, force_terminal=False))
    monkeypatch.setattr(term, "console", Console(stderr=True, width=400, force_terminal=False))


def _write(folder: Path, kind: str, seed: int, **kw: object) -> Path:
    film = render_triage_film(kind, seed, size=96)
    return write_triage_film(film, folder / f"{kind}-{seed}.dcm", seed=seed, **kw)  # type: ignore[arg-type]


# -- presets and settings ---------------------------------------------------------------------


def test_the_paper_preset_is_the_papers_recipe() -> None:
    config = PRESETS["paper"]
    assert (config.architecture, config.size, config.epochs) == ("densenet121", 224, 10)
    assert (config.lr, config.weight_decay, config.plateau_patience) == (1e-3, 1e-5, 3)
    assert config.split == (0.7, 0.2, 0.1)
    assert PRESETS["cpu"].architecture == "densenet121" and PRESETS["cpu"].size < 224
    assert PRESETS["smoke"].architecture == PRESETS["demo"].architecture == "densenet_tiny"
    for name in ("cpu", "demo", "smoke"):
        PRESETS.build(name, seed=3).validate()
    real = preset("demo", data_dir=Path("films"), weak_labels=True)
    assert real.synthetic_per_label == 0 and real.sources() == ["weak"]
    mixed = preset("demo", data_dir=Path("films"), weak_labels=True, synthetic_per_label=2)
    assert mixed.sources() == ["weak", "synthetic"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "give a data source"),
        ({"data_dir": Path("d")}, "needs labels_csv or weak_labels"),
        ({"labels_csv": Path("l.csv")}, "need data_dir"),
        ({"data_dir": Path("d"), "labels_csv": Path("l"), "weak_labels": True}, "not both"),
        ({"synthetic_per_label": 2, "synthetic_labels": ("thumb",)}, "unknown synthetic labels"),
        ({"synthetic_per_label": 2, "architecture": "resnet50"}, "unknown architecture"),
        ({"synthetic_per_label": 2, "size": 16}, "input size"),
        ({"synthetic_per_label": 2, "split": (0.5, 0.2, 0.2)}, "adding up to 1"),
        ({"synthetic_per_label": 2, "disagreement_threshold": 1.5}, "disagreement_threshold"),
        ({"synthetic_per_label": 2, "filter_model": Path("m")}, "give data_dir"),
        ({"synthetic_per_label": 2, "version": "no/slash"}, "model version"),
    ],
)
def test_settings_that_cannot_work_are_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings).validate()  # type: ignore[arg-type]


# -- labels ----------------------------------------------------------------------------------------


def test_labels_are_type_names_not_xray_or_header_values() -> None:
    assert parse_label("Hand", "x") == "hand"
    assert parse_label("THORAX", "x") == "chest"
    assert parse_label("not xray", "x") == parse_label("not_xray", "x") == "not_xray"
    with pytest.raises(LabelsError, match=r"labels\.csv:3: label 'tibia'"):
        parse_label("tibia", "labels.csv:3")


def test_a_folder_with_a_labels_csv_is_read_dicom_and_pictures(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write(data / "a", "chest", 1)
    _write(data / "b", "knee", 2, body_part_examined=None)
    Image.fromarray(np.full((50, 40, 3), 200, dtype=np.uint8)).save(data / "photo.png")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na/chest-1.dcm,chest\nknee-2.dcm,KNEE\nphoto.png,not_xray\n")
    loaded = load_labelled_folder(data, labels, size=32)
    assert [(s.name, s.label) for s in loaded.samples] == [
        ("a/chest-1.dcm", "chest"),
        ("b/knee-2.dcm", "knee"),
        ("photo.png", "not_xray"),
    ]
    assert all(s.image.shape == (32, 32) and s.image.dtype == np.uint8 for s in loaded.samples)
    assert loaded.samples[2].group == "photo.png"  # a picture is its own group
    assert loaded.samples[0].group.startswith("1.")  # a DICOM file's group is its study


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("path,kind\nx.dcm,hand\n", "no 'label' column"),
        ("name,label\nx.dcm,hand\n", "needs a 'path' or 'file' column"),
        ("path,label\nx.dcm,hand,extra\n", r"labels\.csv:2: expected 2 columns"),
        ("path,label\n,hand\n", r"labels\.csv:2: empty path"),
        ("path,label\nx.dcm,tibia\n", r"labels\.csv:2: label 'tibia'"),
        ("path,label\n../x.dcm,hand\n", "not a path inside"),
        ("path,label\nmissing.dcm,hand\n", "no image named"),
    ],
)
def test_a_bad_labels_csv_is_named_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "data").mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(LabelsError, match=message):
        load_labelled_folder(tmp_path / "data", labels, size=32)


def test_weak_labels_come_from_body_part_examined_and_modality(tmp_path: Path) -> None:
    _write(tmp_path, "hand", 1)  # HAND
    _write(tmp_path, "chest", 2, body_part_examined="THORAX")
    _write(tmp_path, "knee", 3, body_part_examined="")  # empty: left out
    _write(tmp_path, "wrist", 4, body_part_examined="EXTREMITY")  # unknown: left out
    _write(tmp_path, "photo", 5, modality="XC")  # a camera's photo: not an X-ray
    loaded = load_weak_labels(tmp_path, size=32)
    assert sorted(s.label for s in loaded.samples) == ["chest", "hand", "not_xray"]
    assert loaded.extra["without_weak_label"] == 2
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_weak_labels(tmp_path / "nowhere", size=32)


def test_the_confidence_filter_drops_films_the_model_calls_otherwise(tmp_path: Path) -> None:
    model = tmp_path / "model"
    write_constant_triage_model(
        model, xray_probability=0.97, xray_type="hand", type_probability=0.95
    )
    data = tmp_path / "data"
    _write(data, "hand", 1)
    _write(data, "hand", 2, body_part_examined="CHEST")  # the model is sure it is a hand
    _write(data, "photo", 3, modality="US")  # not_xray, but the model says X-ray (0.97)
    loaded = load_weak_labels(data, size=32, check=confidence_filter(model, 0.9))
    assert [s.label for s in loaded.samples] == ["hand"]
    assert loaded.extra["dropped_by_confidence_filter"] == 2
    assert any("the model says hand (p=0.95)" in s for s in loaded.skipped)
    kept = load_weak_labels(data, size=32, check=confidence_filter(model, 0.99))
    assert len(kept.samples) == 3  # nothing is that sure


def test_the_split_is_70_20_10_by_group_and_label() -> None:
    samples = [
        TriageSample(np.zeros((4, 4), np.uint8), label, f"{label}-{i // 2}", f"{label}-{i}")
        for label in ("hand", "chest", "not_xray")
        for i in range(40)
    ]
    train, validation, test = split_samples(samples, (0.7, 0.2, 0.1), seed=1)
    assert (len(train), len(validation), len(test)) == (84, 24, 12)
    for part in (train, validation, test):
        assert {s.label for s in part} == {"hand", "chest", "not_xray"}
    groups = [{s.group for s in part} for part in (train, validation, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_the_figures_match_a_hand_computed_example() -> None:
    labels = ["hand", "hand", "chest", "not_xray", "not_xray"]
    xray = np.array([0.9, 0.8, 0.7, 0.6, 0.1])  # the first not_xray is called an X-ray
    types = np.zeros((5, 14))
    types[0, MODULE_2_CLASSES.index("hand")] = 1.0
    types[1, MODULE_2_CLASSES.index("chest")] = 1.0  # a hand called a chest
    types[2, MODULE_2_CLASSES.index("chest")] = 1.0
    types[3, MODULE_2_CLASSES.index("hand")] = 1.0
    types[4, MODULE_2_CLASSES.index("knee")] = 1.0
    report = report_of(labels, xray, types, 0.5)
    assert report.module_1.matrix.tolist() == [[1, 1], [0, 3]]  # rows: not_xray, xray
    assert report.module_1.accuracy_pct == pytest.approx(80.0)
    assert report.module_1.per_class_pct() == {"not_xray": 50.0, "xray": 100.0}
    assert report.module_2.images == 3 and report.module_2.accuracy_pct == pytest.approx(200 / 3)
    per_class = report.module_2.per_class_pct()
    assert per_class["hand"] == 50.0 and per_class["chest"] == 100.0 and per_class["knee"] is None
    # Whole triage: hand ✓, hand→chest ✗, chest ✓, not_xray→hand ✗, not_xray ✓
    assert report.whole.accuracy_pct == pytest.approx(60.0)


# -- a smoke run -----------------------------------------------------------------------------------


def test_a_smoke_run_beats_chance_for_both_modules(trained: TrainedModel) -> None:
    """The smoke preset's held-out part (its 10 %): module I right on most X-rays and most
    non-X-rays (each class, so calling everything an X-ray cannot pass), module II right on
    far more than the 1 in 14 of a guess."""
    report = trained.report
    per_class = report.module_1.per_class_pct()
    assert per_class["xray"] is not None and per_class["xray"] >= 75.0, per_class
    assert per_class["not_xray"] is not None and per_class["not_xray"] >= 75.0, per_class
    assert report.module_2.images >= 14
    assert report.module_2.accuracy_pct >= 30.0, report.module_2.per_class_pct()  # chance: 7 %


def test_the_model_folder_has_its_card_evaluation_and_plot(trained: TrainedModel) -> None:
    folder = trained.folder
    card = read_model_card(folder)
    assert card.pipeline == "xray_triage" and card.version == "smoke-1"
    modules = card.architecture["modules"]
    assert card.architecture["name"] == "densenet_tiny"
    assert modules["xray_or_not"]["classes"] == list(MODULE_1_CLASSES)
    assert modules["xray_type"]["classes"] == list(MODULE_2_CLASSES)
    assert card.input_spec["size"] == 48 and card.input_spec["grey"] == "8-bit"
    assert card.calibration["xray_threshold"] == 0.5
    assert card.calibration["disagreement_threshold"] == 0.9
    metrics = card.metrics
    assert metrics["confusion_matrix_png"] == CONFUSION_FILE
    assert metrics["paper"] == {"module_1_accuracy_pct": 98.7, "module_2_accuracy_pct": 97.6}
    assert set(metrics["module_2"]["per_class_pct"]) == set(MODULE_2_CLASSES)
    matrix = np.array(metrics["module_2"]["confusion"]["matrix"])
    assert matrix.shape == (14, 14) and int(matrix.sum()) == metrics["module_2"]["images"]
    assert (folder / CONFUSION_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(folder / CONFUSION_FILE) as plot:
        assert plot.width > 600 and plot.height > 300
    assert "Module II (X-ray type)" in (folder / TABLE_FILE).read_text()
    data = card.training_data
    assert data["train_images"] + data["validation_images"] + data["test_images"] == sum(
        s["images"] for s in data["sources"]
    )
    assert data["optimizer"] == "Adam(lr=0.001, betas=(0.9, 0.999), weight_decay=1e-05)"
    assert set(data["best_epoch"]) == {"xray_or_not", "xray_type"}
    model = load_model(folder)
    assert model.architecture == "densenet_tiny" and model.spec.size == 48


def test_the_command_trains_and_registers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'database_url = "sqlite:///var/node.sqlite"\nstorage_dir = "var/storage"\n'
        'model_dir = "var/models"\n'
    )
    (tmp_path / "var").mkdir()
    args = ["train", "xray_triage", "--config", str(config), "--preset", "smoke"]
    args += ["--synthetic", "3", "--synthetic-not-xray", "6", "--epochs", "1", "--size", "32"]
    assert (
        cli.main([*args, "--no-progress", "--version", "cli-1", "--activate", "--threads", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "model cli-1" in out and "module I (X-ray or not)" in out and "paper: 98.7 %" in out
    assert (tmp_path / "var/models/xray_triage/cli-1/model.json").is_file()
    assert cli.main(["models", "list", "--config", str(config), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], bool(r["active"])) for r in rows if r["pipeline"] == "xray_triage"] == [
        ("cli-1", True)
    ]


# -- retraining ------------------------------------------------------------------------------------


def test_retraining_uses_weak_labels_filtered_by_the_active_model(tmp_path: Path) -> None:
    data = tmp_path / "data"
    weak = retraining.train_arguments(data, RetrainInputs(active_model=tmp_path / "active"))
    assert weak[:3] == ["--data", str(data), "--weak-labels"]
    assert weak[weak.index("--filter-model") + 1] == str(tmp_path / "active")
    assert weak[weak.index("--filter-confidence") + 1] == "0.9"
    assert weak[weak.index("--synthetic-labels") + 1] == "not_xray"
    assert weak[weak.index("--synthetic-not-xray") + 1] == "300"
    labelled = retraining.train_arguments(
        data,
        RetrainInputs(
            labels_file=tmp_path / "l.csv", options={"synthetic_not_xray": 0, "min_confidence": 1}
        ),
    )
    assert labelled == ["--data", str(data), "--labels", str(tmp_path / "l.csv"), "--no-progress"]
    with pytest.raises(CannotRetrain, match="no trainer option colour"):
        retraining.train_arguments(data, RetrainInputs(options={"colour": 1}))
    with pytest.raises(CannotRetrain, match="min_confidence must be a number"):
        retraining.train_arguments(data, RetrainInputs(options={"min_confidence": 2}))
    for preset_name in ("smoke",):  # the flags the node adds parse into a valid config
        config = preset(preset_name, data_dir=data, weak_labels=True, synthetic_per_label=1)
        config.validate()


def test_retraining_scores_a_model_and_checks_its_sanity(tmp_path: Path) -> None:
    model = tmp_path / "model"
    write_constant_triage_model(
        model, xray_probability=0.97, xray_type="hand", type_probability=0.95
    )
    data = tmp_path / "held-out"
    _write(data, "hand", 1)
    _write(data, "hand", 2)
    _write(data, "chest", 3)
    _write(data, "photo", 4, modality="US")
    figures = retraining.evaluate(model, data, RetrainInputs())
    assert figures["images"] == 4 and figures["accuracy_pct"] == pytest.approx(50.0)
    assert figures["module_1_accuracy_pct"] == pytest.approx(75.0)
    assert figures["module_2_per_class_pct"]["chest"] == 0.0
    assert retraining.sanity({}, figures, RetrainInputs()) == []
    low = retraining.sanity({}, figures, RetrainInputs(options={"min_accuracy_pct": 60}))
    assert low == ["its accuracy 50.0 % on the held-out images is below 60 %"]
    assert "not a number" in retraining.sanity({}, {"accuracy_pct": None}, RetrainInputs())[0]
    assert retraining.RETRAINING.metric == "accuracy_pct" and retraining.RETRAINING.higher_is_better
    assert set(LABELS) >= {"not_xray", "hand"}


def test_retraining_arguments_train_from_the_archives_own_headers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The flags ``train_arguments`` gives, with those the node adds, train a model from
    films labelled by their Body Part Examined, the active model filtering them, and
    synthetic non-X-rays for module I."""
    archive = tmp_path / "archive"
    for index, kind in enumerate(MODULE_2_CLASSES * 3):
        _write(archive, kind, index)
    active = tmp_path / "active"
    write_constant_triage_model(
        active, xray_probability=0.97, xray_type="hand", type_probability=0.95
    )
    config = tmp_path / "node.toml"
    config.write_text('database_url = "sqlite:///var/node.sqlite"\nmodel_dir = "var/models"\n')
    (tmp_path / "var").mkdir()
    flags = retraining.train_arguments(
        archive,
        RetrainInputs(
            active_model=active, options={"synthetic_not_xray": 12, "min_confidence": 0.96}
        ),
    )
    node = ["--preset", "smoke", "--out", str(tmp_path / "out"), "--version", "re-1"]
    node += ["--no-register", "--threads", "1", "--epochs", "1", "--size", "32"]
    assert cli.main(["train", "xray_triage", "--config", str(config), *flags, *node]) == 0
    assert "model re-1" in capsys.readouterr().out
    card = read_model_card(tmp_path / "out" / "re-1")
    weak, synthetic = card.training_data["sources"]
    # The active model calls every film a hand, but at 0.95, below the entry's 0.96.
    assert weak["by_label"] == {name: 3 for name in MODULE_2_CLASSES}
    assert weak["dropped_by_confidence_filter"] == 0
    assert synthetic["by_label"] == {"not_xray": 12}
