"""Training ``mura_abnormality``: the presets, the metrics against hand-computed values, MURA's
folder layout and DICOM studies with a labels CSV (and their errors), a ``smoke`` run whose
held-out AUROC beats a guess by far, its model card and plots, the command, and (slow) the
Grad-CAM maxima of a model trained longer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from dicom_node import cli
from dicom_node.cli import term
from pipelines.mura_abnormality.model import load_model
from tests.support.mura import smoke_mura_model
from training.mura_abnormality.data import (
    LabelsError,
    MuraView,
    TrainingDataError,
    load_dicom_studies,
    load_mura_folder,
    make_synthetic,
    split_by_patient,
)
from training.mura_abnormality.evaluate import (
    ROC_FILE,
    TABLE_COLUMNS,
    Counts,
    StudyPrediction,
    auroc,
    choose_threshold,
    cohen_kappa,
    evaluate_studies,
    roc_curve,
    study_metrics,
)
from training.mura_abnormality.train import (
    PRESETS,
    TrainConfig,
    TrainedModel,
    class_weights,
    preset,
    train_mura,
)
from training.synthetic.msk_films import make_msk_study, write_msk_study, write_mura_layout

LABELS = [1, 1, 1, 0, 0, 0, 1, 0]
PROBABILITIES = [0.9, 0.8, 0.4, 0.35, 0.2, 0.6, 0.55, 0.1]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return smoke_mura_model(tmp_path_factory.getbasetemp() / "mura-smoke")


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(term, "out", Console(width=400, force_terminal=False))
    monkeypatch.setattr(term, "console", Console(stderr=True, width=400, force_terminal=False))


# -- presets --------------------------------------------------------------------------------


def test_the_paper_preset_is_the_papers_recipe() -> None:
    config = PRESETS["paper"]
    assert (config.architecture, config.size, config.batch_size, config.lr) == (
        "densenet169",
        224,
        64,
        1e-4,
    )
    assert config.dropout == 0.2 and len(config.head) >= 2 and config.class_weights
    assert config.spec.size == 224
    for name in ("cpu", "demo", "smoke"):
        PRESETS.build(name, seed=3).validate()
    real = preset("demo", mura_dir=Path("MURA-v1.1"))
    assert real.synthetic_studies == 0 and real.source == "mura"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "exactly one data source"),
        ({"synthetic_studies": 4, "mura_dir": Path("m")}, "exactly one data source"),
        ({"data_dir": Path("d")}, "both data_dir and labels_csv"),
        ({"synthetic_studies": 4, "architecture": "resnet50"}, "unknown architecture"),
        ({"synthetic_studies": 4, "synthetic_abnormalities": ("bruise",)}, "bruise"),
        ({"synthetic_studies": 4, "size": 16}, "input size"),
        ({"synthetic_studies": 4, "val_fraction": 0.6, "test_fraction": 0.5}, "leave patients"),
        ({"synthetic_studies": 4, "version": "no/slash"}, "model version"),
    ],
)
def test_settings_that_cannot_work_are_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings).validate()  # type: ignore[arg-type]


# -- metrics --------------------------------------------------------------------------------


def test_the_metrics_match_a_hand_computed_example() -> None:
    figures = study_metrics(LABELS, PROBABILITIES, 0.5)
    # predicted abnormal: 0.9, 0.8, 0.6, 0.55 → TP 3, FP 1, TN 3, FN 1
    assert (figures.tp, figures.fp, figures.tn, figures.fn) == (3, 1, 3, 1)
    assert figures.accuracy_pct == 75.0 and figures.f1_pct == 75.0
    assert figures.sensitivity_pct == 75.0 and figures.specificity_pct == 75.0
    assert figures.kappa == pytest.approx(0.5)  # (0.75 − 0.5) / (1 − 0.5)
    assert figures.auroc == pytest.approx(14 / 16)  # 14 of the 16 pairs ranked right
    assert auroc([1, 0, 1, 0], [0.5, 0.5, 0.7, 0.2]) == pytest.approx(3.5 / 4)  # a tie is ½
    assert math.isnan(auroc([1, 1], [0.2, 0.3]))
    assert cohen_kappa(Counts(tp=0, fp=2, tn=0, fn=2)) == pytest.approx(-1.0)  # all wrong
    assert math.isnan(cohen_kappa(Counts(tp=0, fp=0, tn=5, fn=0)))  # agreement by chance only
    fpr, tpr = roc_curve(LABELS, PROBABILITIES)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(14 / 16)


def test_the_threshold_is_the_best_kappa_on_validation() -> None:
    # the cut between 0.35 and 0.4 calls 4 of 4 abnormal and 1 of 4 normal: kappa 0.75
    assert choose_threshold(LABELS, PROBABILITIES) == pytest.approx(0.375)
    assert choose_threshold([1, 1], [0.2, 0.9]) == 0.5  # one class: no choice to make
    assert choose_threshold([0, 1], [0.2, 0.9]) == pytest.approx(0.55)


def test_the_report_has_a_row_per_region_and_overall() -> None:
    predictions = [
        StudyPrediction(f"s{i}", region, label, p, 2)
        for i, (region, label, p) in enumerate(
            zip(["wrist"] * 4 + ["hand"] * 4, LABELS, PROBABILITIES, strict=True)
        )
    ]
    report = evaluate_studies(predictions, 0.5)
    table = report.table()
    assert table["columns"] == list(TABLE_COLUMNS)
    assert [row[0] for row in table["rows"]] == ["hand", "wrist", "overall"]
    wrist = report.by_region["wrist"]  # labels 1 1 1 0, probabilities .9 .8 .4 .35
    assert (wrist.tp, wrist.fn, wrist.tn) == (2, 1, 1) and wrist.auroc == 1.0
    assert "| overall | 8 | 4 | 75.0 | 75.0 | 0.5 | 0.875 | 75.0 | 75.0 |" in report.markdown()


def test_mura_class_weights_per_study_type() -> None:
    def view(region: str, label: int, patient: str) -> MuraView:
        return MuraView(np.zeros((32, 32), np.uint8), patient, patient, region, label, patient)

    views = [view("wrist", 1, "a"), view("wrist", 1, "b"), view("wrist", 1, "c")]
    views += [view("wrist", 0, "d"), view("elbow", 1, "e"), view("elbow", 0, "f")]
    weights = class_weights(views)
    # w_T,0 = |A_T| / (|A_T| + |N_T|), w_T,1 = |N_T| / (|A_T| + |N_T|)
    assert weights["wrist"] == (0.75, 0.25) and weights["elbow"] == (0.5, 0.5)
    parts = split_by_patient(views, [0.34], seed=1)
    assert len(parts) == 2 and {v.patient for v in parts[0]}.isdisjoint(v.patient for v in parts[1])
    assert len(parts[1]) == 2


# -- data sources ----------------------------------------------------------------------------


def _studies(seeds: range, size: int = 64) -> list:
    return [
        make_msk_study(
            s, region=("wrist", "elbow", "finger")[s % 3], abnormal=bool(s % 2), size=size
        )
        for s in seeds
    ]


def test_mura_folders_are_read_with_their_csvs_and_without(tmp_path: Path) -> None:
    root = tmp_path / "MURA-v1.1"
    train, valid = _studies(range(1, 6)), _studies(range(6, 8))
    write_mura_layout(root, train, split="train")
    write_mura_layout(root, valid, split="valid", first_patient=100)
    loaded = load_mura_folder(root, "train", size=32)
    assert loaded.report.studies == 5 and loaded.report.views == sum(len(s.views) for s in train)
    by_study = {v.study: v for v in loaded.views}
    expected = {
        f"train/XR_{s.region.upper()}/patient{i:05d}/study1_{'positive' if s.abnormal else 'negative'}": s
        for i, s in enumerate(train, start=1)
    }
    assert set(by_study) == set(expected)
    for key, study in expected.items():
        assert by_study[key].label == int(study.abnormal) and by_study[key].region == study.region
    assert all(v.image.shape == (32, 32) and v.image.dtype == np.uint8 for v in loaded.views)
    assert load_mura_folder(tmp_path, "valid", size=32).report.studies == 2  # the parent works
    # without the CSVs: every PNG of the layout, labelled by its study folder's name
    (root / "train_image_paths.csv").unlink()
    (root / "train_labeled_studies.csv").unlink()
    again = load_mura_folder(root, "train", size=32)
    assert {v.study: v.label for v in again.views} == {k: v.label for k, v in by_study.items()}


def test_bad_mura_folders_and_csvs_are_named(tmp_path: Path) -> None:
    root = tmp_path / "MURA-v1.1"
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_mura_folder(root, size=32)
    write_mura_layout(root, _studies(range(1, 3)), split="train")
    with pytest.raises(TrainingDataError, match="has no valid/ folder"):
        load_mura_folder(root, "valid", size=32)
    labels = root / "train_labeled_studies.csv"
    good = labels.read_text()
    labels.write_text(good + "MURA-v1.1/train/XR_WRIST/patient00009/study1_positive/,1,extra\n")
    with pytest.raises(LabelsError, match=r"train_labeled_studies.csv:3: expected 2 column"):
        load_mura_folder(root, size=32)
    labels.write_text(good.replace(",1\n", ",maybe\n").replace(",0\n", ",maybe\n"))
    with pytest.raises(LabelsError, match=r"train_labeled_studies.csv:1: label 'maybe'"):
        load_mura_folder(root, size=32)
    (root / "train_image_paths.csv").write_text("../../etc/passwd\n")
    with pytest.raises(LabelsError, match="not a path inside the MURA folder"):
        load_mura_folder(root, size=32)


def _dicom_studies(folder: Path) -> list:
    studies = _studies(range(11, 14), size=96)
    return [
        write_msk_study(folder / f"s{i}", study, series_per_view=True)
        for i, study in enumerate(studies)
    ]


def test_dicom_studies_are_labelled_by_study_uid_or_accession(tmp_path: Path) -> None:
    written = _dicom_studies(tmp_path / "data")
    (tmp_path / "data" / "notes.txt").write_text("not dicom")
    csv = tmp_path / "labels.csv"
    lines = [
        f"{w.study_instance_uid},{'abnormal' if w.study.abnormal else 'normal'}"
        for w in written[:2]
    ]
    csv.write_text("Study Instance UID,Label\n" + "\n".join(lines) + "\n1.2.3.4,normal\n")
    loaded = load_dicom_studies(tmp_path / "data", csv, size=32)
    assert loaded.report.studies == 2
    assert loaded.extra == {"labelled_studies_missing": 1, "unlabelled_studies_skipped": 1}
    for w in written[:2]:
        views = [v for v in loaded.views if v.study == w.study_instance_uid]
        assert len(views) == len(w.files)
        assert {v.label for v in views} == {int(w.study.abnormal)}
        assert {v.region for v in views} == {w.study.region}
    accession = tmp_path / "accession.csv"
    number = str(__import__("pydicom").dcmread(written[2].files[0]).AccessionNumber)
    accession.write_text(f"accession_number,label\n{number},1\n")
    (only,) = {v.study for v in load_dicom_studies(tmp_path / "data", accession, size=32).views}
    assert only == number


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("study_instance_uid,finding\n1.2,normal\n", "no 'label' column"),
        ("patient,label\nx,normal\n", "needs a 'study_instance_uid' or 'accession_number'"),
        ("study_instance_uid,label\n1.2,normal\n1.3,maybe\n", r"labels.csv:3: label 'maybe'"),
        ("study_instance_uid,label\n1.2,normal,extra\n", r"labels.csv:2: expected 2 columns"),
        ("study_instance_uid,label\n1.2,normal\n1.2,abnormal\n", "labelled both ways"),
        ("", "needs a header row"),
        ("study_instance_uid,label\n1.2.3,normal\n", "none of the 1 studies"),
    ],
)
def test_malformed_labels_are_named_with_their_line(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "data").mkdir()
    make = write_msk_study(tmp_path / "data", _studies(range(1, 2))[0])
    assert make.files
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    with pytest.raises(LabelsError, match=message):
        load_dicom_studies(tmp_path / "data", csv, size=32)


def test_missing_dicom_folder_or_labels_are_named(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("study_instance_uid,label\n1.2,normal\n")
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_dicom_studies(tmp_path / "nowhere", csv, size=32)
    (tmp_path / "data").mkdir()
    with pytest.raises(LabelsError, match="labels file .* does not exist"):
        load_dicom_studies(tmp_path / "data", tmp_path / "none.csv", size=32)


def test_synthetic_pairs_differ_only_in_the_lesion() -> None:
    loaded = make_synthetic(4, seed=5, size=64, image_size=128, kinds=("hardware",), paired=True)
    pairs: dict[str, list[MuraView]] = {}
    for view in loaded.views:
        pairs.setdefault(view.patient, []).append(view)
    assert len(pairs) == 2
    for views in pairs.values():
        normal = [v for v in views if v.label == 0]
        abnormal = [v for v in views if v.label == 1]
        assert len(normal) == len(abnormal) and all(v.lesion_box is None for v in normal)
        assert any(v.lesion_box is not None for v in abnormal)


# -- training ------------------------------------------------------------------------------


def test_a_smoke_run_beats_a_guess_on_held_out_studies(trained: TrainedModel) -> None:
    overall = trained.report.overall
    assert overall.studies == 40 and overall.abnormal == 20
    assert overall.auroc >= 0.75, trained.report.markdown()
    card = trained.card
    assert card.metrics["auroc"] == pytest.approx(overall.auroc, abs=1e-4)
    assert card.metrics["evaluated_on"].startswith("40 synthetic studies")
    table = card.metrics["table"]
    assert table["columns"] == list(TABLE_COLUMNS)
    regions = [row[0] for row in table["rows"]]
    assert regions[-1] == "overall" and len(regions) == 8  # seven regions, then overall
    assert set(card.metrics["by_region"]) == set(regions[:-1])
    threshold = card.calibration["threshold"]
    assert 0.0 < threshold < 1.0 and card.metrics["threshold"] == pytest.approx(threshold, abs=1e-4)
    assert "Cohen's kappa" in card.calibration["chosen_by"]
    assert card.architecture == {"name": "densenet_tiny", "head": [128, 64], "dropout": 0.2}
    data = card.training_data
    assert data["best_epoch"] >= 1 and data["validation_studies"] > 0
    assert set(data["class_weights"]) <= set(regions)
    assert (trained.folder / ROC_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| overall |" in (trained.folder / "evaluation.md").read_text()
    saved = json.loads((trained.folder / "evaluation.json").read_text())
    assert len(saved["studies"]) == 40 and saved["gradcam"]["views"] > 0
    model = load_model(trained.folder)
    assert model.threshold == pytest.approx(threshold) and model.architecture == "densenet_tiny"


def test_the_command_trains_and_registers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        'database_url = "sqlite:///var/node.sqlite"\nstorage_dir = "var/storage"\n'
        'model_dir = "var/models"\n'
    )
    (tmp_path / "var").mkdir()
    args = ["train", "mura_abnormality", "--config", str(config), "--preset", "smoke"]
    args += ["--synthetic", "16", "--epochs", "1", "--size", "32", "--no-progress"]
    assert cli.main([*args, "--version", "cli-1", "--activate", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "model cli-1" in out and "AUROC" in out and "Grad-CAM maximum on the lesion" in out
    assert (tmp_path / "var/models/mura_abnormality/cli-1/model.json").is_file()
    assert cli.main(["models", "list", "--config", str(config), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [
        (r["version"], bool(r["active"])) for r in rows if r["pipeline"] == "mura_abnormality"
    ] == [("cli-1", True)]


@pytest.mark.slow
def test_grad_cam_maxima_fall_on_the_lesion_in_most_abnormal_views(tmp_path: Path) -> None:
    """The demo preset (the tiny DenseNet at 96 pixels, lateral inversions; about a minute
    on 2 idle cores): on its held-out synthetic studies the heat map's maximum lies on the
    lesion in most abnormal views by the pointing game (within 15/224 of the image's side
    of the box: 60 of 71 views, 85 %, measured), and inside the box itself many times more
    often than a random point would (46 of 71, 65 %; chance 6 %)."""
    trained = train_mura(preset("demo", out_dir=tmp_path, progress=False, time_limit_s=None))
    gradcam = trained.gradcam
    assert gradcam is not None and gradcam["views"] >= 40
    assert gradcam["layer"] == "features.transition2.relu"
    assert gradcam["pointing_game_pct"] > 50.0, gradcam
    assert gradcam["peak_on_lesion_pct"] > 5 * gradcam["chance_pct"], gradcam
    assert trained.report.overall.auroc >= 0.9
