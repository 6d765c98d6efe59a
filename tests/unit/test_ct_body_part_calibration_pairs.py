"""The calibration-pair study behind the README's accuracy table, on the smoke model."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from pipelines.ct_body_part.model import UbrModel, load_model
from pipelines.ct_body_part.zones import PAPER_ZONES, calibrate
from tests.support.models import smoke_ubr_model
from training.ct_body_part import calibration_pairs
from training.ct_body_part.data import TrainingVolume, render_phantom_volume
from training.ct_body_part.evaluate import calibration_pair_study, evaluate_volumes

#: The first test that needs the model trains it (1–2 minutes on 2 idle cores).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_ubr_model(tmp_path_factory.getbasetemp() / "ubr-models")


@pytest.fixture(scope="module")
def model(model_dir: Path) -> UbrModel:
    return load_model(model_dir)


def _phantoms(model: UbrModel, seeds: range, region: str | None = None) -> list[TrainingVolume]:
    return [render_phantom_volume(s, model.spec, max_slices=60, region=region) for s in seeds]


def test_each_pair_agrees_with_the_evaluation_of_its_own_calibration(model: UbrModel) -> None:
    labelled = _phantoms(model, range(910, 913), "chest_abdomen_pelvis")
    test = _phantoms(model, range(920, 924))
    study = calibration_pair_study(model, test, labelled)
    assert len(study.pair_accuracy_pct) == 3 and study.labelled_volumes == 3
    for (a, b), figure in zip(
        itertools.combinations(range(3), 2), study.pair_accuracy_pct, strict=True
    ):
        # The same calibration, fitted on the pair's labelled slices and applied through
        # the training run's own evaluation path.
        pair = [labelled[a], labelled[b]]
        scores = [model.scores(v.images) for v in pair]
        keep = [[i for i, z in enumerate(v.zone_labels()) if z in PAPER_ZONES] for v in pair]
        fitted = calibrate(
            [s for score, k in zip(scores, keep, strict=True) for s in score[k]],
            [str(v.zone_labels()[i]) for v, k in zip(pair, keep, strict=True) for i in k],
        )
        evaluation = evaluate_volumes(model, test, calibration=fitted)
        assert evaluation.zone_slices == study.test_slices > 0
        assert figure == pytest.approx(evaluation.zone_accuracy_pct)
    # The ceiling's thresholds are fitted on the test slices: no calibration beats it.
    assert study.ceiling_pct >= max(study.pair_accuracy_pct)
    assert study.ceiling_pct >= study.all_labelled_pct
    figures = study.metrics()
    assert figures["pair_min_pct"] <= figures["pair_mean_pct"] <= figures["pair_max_pct"]


def test_a_labelled_volume_without_every_zone_is_refused_by_name(model: UbrModel) -> None:
    labelled = _phantoms(model, range(910, 911), "chest_abdomen_pelvis")
    labelled += _phantoms(model, range(930, 931), "chest")
    with pytest.raises(ValueError, match="phantom-930 has no .*pelvis"):
        calibration_pair_study(model, _phantoms(model, range(920, 921)), labelled)
    with pytest.raises(ValueError, match="two labelled"):
        calibration_pair_study(model, labelled, labelled[:1])


def test_the_command_writes_the_figures(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pairs.json"
    args = [str(model_dir), "--labelled", "3", "--test", "2", "--max-slices", "50"]
    assert calibration_pairs.main([*args, "--json", str(out), "--no-progress"]) == 0
    figures = json.loads(out.read_text())
    assert figures["pairs"] == 3 and figures["test_volumes"] == 2
    assert figures["paper_zone_accuracy_pct"] == 95.99
    assert figures["ceiling_pct"] >= figures["pair_max_pct"]
    assert "each of 3 pairs" in capsys.readouterr().out


def test_the_command_explains_a_folder_that_is_not_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert calibration_pairs.main([str(tmp_path), "--no-progress"]) == 2
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        calibration_pairs.main([str(tmp_path), "--labelled", "1"])
