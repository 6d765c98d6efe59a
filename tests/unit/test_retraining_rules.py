"""Retraining's rules without training: the gate both ways, the held-out split, the
``[[retraining]]`` settings and what each trainer says it needs."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from dicom_node import cli, trainers
from dicom_node.db.models import RunDecision
from dicom_node.retraining.evaluation import TrainerInputs, json_safe
from dicom_node.retraining.gate import GateDecision, decide
from dicom_node.retraining.runner import entry_for, train_option_flags
from dicom_node.retraining.workspace import is_held_out
from dicom_node.settings import SettingsError, load_settings

ACTIVE = "20260101.000000"
CANDIDATE = "20260301.000000-run3"


def _decide(mine: float | None, theirs: float | None, **changes: object) -> GateDecision:
    values: dict[str, object] = {
        "pipeline": "hand_orientation",
        "metric": "mae_deg",
        "higher_is_better": False,
        "candidate_version": CANDIDATE,
        "candidate": {"mae_deg": mine},
        "active_version": ACTIVE if theirs is not None else None,
        "active": {"mae_deg": theirs} if theirs is not None else None,
        "margin": 0.5,
        "problems": [],
        "auto_activate": True,
    }
    values.update(changes)
    return decide(**values)  # type: ignore[arg-type]


def test_the_gate_promotes_a_candidate_within_the_margin_and_rejects_one_beyond_it() -> None:
    promoted = _decide(3.2, 3.0)
    assert promoted.decision is RunDecision.PROMOTED and promoted.activate
    assert "3.2" in promoted.reason and "3" in promoted.reason and "margin 0.5" in promoted.reason
    rejected = _decide(3.6, 3.0)
    assert rejected.decision is RunDecision.REJECTED and not rejected.activate
    assert "worse than the active model by 0.6" in rejected.reason
    assert f"3.6 (candidate {CANDIDATE})" in rejected.reason
    assert f"3 (active {ACTIVE})" in rejected.reason


def test_higher_is_better_turns_the_comparison_around() -> None:
    common: dict[str, Any] = {
        "metric": "auroc",
        "higher_is_better": True,
        "margin": 0.01,
        "active_version": ACTIVE,
    }
    worse = _decide(None, None, candidate={"auroc": 0.80}, active={"auroc": 0.85}, **common)
    assert worse.decision is RunDecision.REJECTED and "by 0.05" in worse.reason
    better = _decide(None, None, candidate={"auroc": 0.90}, active={"auroc": 0.85}, **common)
    assert better.decision is RunDecision.PROMOTED


def test_sanity_problems_reject_even_a_better_candidate() -> None:
    decision = _decide(2.0, 3.0, problems=["its MAE 2.00° is above the sanity limit 1°"])
    assert decision.decision is RunDecision.REJECTED
    assert "failed the sanity check: its MAE 2.00°" in decision.reason
    assert "2 (candidate" in decision.reason and "3 (active" in decision.reason


def test_without_an_active_model_the_sanity_checks_alone_decide() -> None:
    alone = _decide(40.0, None)
    assert alone.decision is RunDecision.PROMOTED and "no active model" in alone.reason
    failed = _decide(40.0, None, problems=["too far"])
    assert failed.decision is RunDecision.REJECTED
    unscored = _decide(4.0, None, active_version=ACTIVE, active={"error": "OSError: gone"})
    assert unscored.decision is RunDecision.PROMOTED
    assert "could not be scored (OSError: gone)" in unscored.reason


def test_auto_activate_off_passes_without_activating() -> None:
    passed = _decide(2.0, 3.0, auto_activate=False)
    assert passed.decision is RunDecision.PASSED and not passed.activate
    assert f"dicom-node models activate hand_orientation {CANDIDATE}" in passed.reason


def test_a_candidate_without_its_figure_is_rejected() -> None:
    for figure in ({"error": "RuntimeError: boom"}, {"mae_deg": float("nan")}, {}):
        decision = _decide(None, 3.0, candidate=figure)
        assert decision.decision is RunDecision.REJECTED
        assert "could not be measured" in decision.reason


def test_a_study_is_held_out_by_its_uid_alone() -> None:
    uids = [f"1.2.826.0.1.3680043.8.498.{i}" for i in range(2000)]
    held = [uid for uid in uids if is_held_out(uid, 20)]
    assert 0.16 < len(held) / len(uids) < 0.24
    assert held == [uid for uid in uids if is_held_out(uid, 20)]  # the same every time
    assert set(held) <= {uid for uid in uids if is_held_out(uid, 30)}  # a bigger share keeps it
    assert not any(is_held_out(uid, 0.0001) for uid in uids[:50])


def test_train_options_become_flags() -> None:
    flags = train_option_flags({"epochs": 3, "lr": 0.002, "realistic_scans": True, "x": False})
    assert flags == ["--epochs", "3", "--lr", "0.002", "--realistic-scans"]


def test_json_safe_writes_nan_as_null() -> None:
    assert json_safe({"a": float("nan"), "b": [1.0, float("inf")], "c": (2,)}) == {
        "a": None,
        "b": [1.0, None],
        "c": [2],
    }


# -- settings -------------------------------------------------------------------------------


def _config(tmp_path: Path, entry: str, extra: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'{extra}\n[[retraining]]\npipeline = "hand_orientation"\n{entry}\n')
    return path


def test_a_retraining_entry_is_read_with_its_paths_beside_the_file(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        'cron = "30 2 * * sat"\nsince = "20250101"\nmax_studies = 200\n'
        'evaluation_dir = "pinned"\nlabels_file = "labels.csv"\n'
        "train_options = { epochs = 4 }\ntrainer_options = { max_tilt_deg = 15 }\n"
        "threads = 2\nnice = 15\nmargin = 0.5\nauto_activate = false",
    )
    (entry,) = load_settings(path).retraining
    assert entry.cron == "30 2 * * sat" and entry.since == "20250101"
    assert (
        entry.evaluation_dir == tmp_path / "pinned" and entry.labels_file == tmp_path / "labels.csv"
    )
    assert entry.train_options == {"epochs": 4} and entry.trainer_options == {"max_tilt_deg": 15}
    assert (entry.threads, entry.nice, entry.margin, entry.auto_activate) == (2, 15, 0.5, False)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('cron = "61 * * * *"', "is not a crontab expression"),
        ('cron = "0 2 * *"', "is not a crontab expression"),
        ('cron = "0 2 * * 6"', "write the day of the week by name"),
        ('since = "2025-01-01"', "is not a study date YYYYMMDD"),
        ('since = "20250231"', "is not a study date YYYYMMDD"),
        ('since = "20250301"\nuntil = "20250101"', "is after until"),
        ('source = "pacs"', "source pacs needs [retrieval]"),
        ('source = "folder"', "retraining.0.source"),
        ("train_options = { out = 'x' }", "a retraining run sets them"),
        ("nice = 25", "retraining.0.nice"),
        ("held_out_pct = 0", "retraining.0.held_out_pct"),
        ("max_studies = 0", "retraining.0.max_studies"),
    ],
)
def test_a_bad_retraining_entry_is_refused_clearly(
    tmp_path: Path, entry: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(_config(tmp_path, entry))
    assert problem in " ".join(raised.value.problems)


def test_an_entry_names_a_trainer_once(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[[retraining]]\npipeline = "chest_xray14"\n')
    with pytest.raises(SettingsError, match="no trainer of that name"):
        load_settings(path)
    path.write_text('[[retraining]]\npipeline = "ct_body_part"\n' * 2)
    with pytest.raises(SettingsError, match="has more than one entry"):
        load_settings(path)


def test_command_line_options_go_on_top_of_the_entry(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path, 'preset = "smoke"\nmax_studies = 50'))
    entry = entry_for(settings, "hand_orientation", max_studies=10, since=None)
    assert entry.preset == "smoke" and entry.max_studies == 10
    fresh = entry_for(settings, "ct_body_part", modality=("CT",))
    assert fresh.modality == ("CT",) and fresh.cron is None
    with pytest.raises(ValueError, match="study date"):
        entry_for(settings, "hand_orientation", until="yesterday")


# -- what each trainer needs ----------------------------------------------------------------


def test_each_trainer_says_what_it_needs_to_retrain(tmp_path: Path) -> None:
    data = tmp_path / "train"
    hand = trainers.retraining_support("hand_orientation")
    assert hand.metric == "mae_deg" and not hand.higher_is_better
    assert hand.train_arguments(data, TrainerInputs()) == ["--data", str(data)]
    active = tmp_path / "active"
    checked = hand.train_arguments(data, TrainerInputs(active_model=active))
    assert checked[-4:] == ["--upright-check", str(active), "--max-tilt", "20"]
    off = TrainerInputs(active_model=active, options={"max_tilt_deg": 180})
    assert "--upright-check" not in hand.train_arguments(data, off)
    with pytest.raises(ValueError, match="no trainer option max_tilt"):
        hand.train_arguments(data, TrainerInputs(options={"max_tilt": 20}))
    with pytest.raises(ValueError, match="takes no labels_file"):
        hand.train_arguments(data, TrainerInputs(labels_file=tmp_path / "x.csv"))

    ct = trainers.retraining_support("ct_body_part")
    with pytest.raises(ValueError, match="calibrates its zones on the site's calibration file"):
        ct.train_arguments(data, TrainerInputs())
    calibration = tmp_path / "calibration.csv"
    assert ct.train_arguments(data, TrainerInputs(labels_file=calibration))[:4] == [
        "--data",
        str(data),
        "--calibration",
        str(calibration),
    ]
    assert ct.sanity(
        {"calibration_cross_check_pct": 85.0}, {"spearman_mean": 0.99}, TrainerInputs()
    )
    assert not ct.sanity(
        {"calibration_cross_check_pct": 97.0}, {"spearman_mean": 0.99}, TrainerInputs()
    )
    floor = TrainerInputs(labels_file=calibration, options={"min_cross_check_pct": 80})
    assert not ct.sanity({"calibration_cross_check_pct": 85.0}, {"spearman_mean": 0.99}, floor)
    assert ct.sanity({"calibration_cross_check_pct": 79.0}, {"spearman_mean": 0.99}, floor) == [
        "its calibration cross-check 79.0 % is below 80 %"
    ]
    too_high = TrainerInputs(labels_file=calibration, options={"min_cross_check_pct": 101})
    with pytest.raises(ValueError, match=r"min_cross_check_pct must be in \[0, 100\]"):
        ct.train_arguments(data, too_high)

    mura = trainers.retraining_support("mura_abnormality")
    with pytest.raises(ValueError, match="needs a normal/abnormal label per study"):
        mura.train_arguments(data, TrainerInputs())
    assert mura.sanity({}, {"auroc": None}, TrainerInputs()) == [
        "its AUROC cannot be measured: the held-out studies hold one class only"
    ]


def test_a_trainer_without_retraining_cannot_be_retrained(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = types.ModuleType("plain_trainer_cli")
    for part in ("register", "trainer", "demo_entry"):  # the contract's parts, no retraining()
        setattr(plain, part, lambda *args: None)
    monkeypatch.setitem(sys.modules, "plain_trainer_cli", plain)
    monkeypatch.setitem(trainers.BUILTIN_TRAINERS, "plain", "plain_trainer_cli")
    with pytest.raises(trainers.TrainerUnavailable, match="cannot retrain from the node's archive"):
        trainers.retraining_support("plain")


def test_retrain_run_refuses_bad_options_and_untrainable_runs_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        f'storage_dir = "storage"\ndatabase_url = "sqlite:///{tmp_path}/node.sqlite"\n'
        '[[routes]]\nname = "wrists"\npipelines = ["mura_abnormality"]\nbody_part = ["WRIST"]\n'
    )
    assert cli.main(["retrain", "run", "hand_orientation", "--config", str(config),
                     "--since", "2025-01-01"]) == 1  # fmt: skip
    assert (
        "since: Value error, '2025-01-01' is not a study date YYYYMMDD" in capsys.readouterr().err
    )
    assert cli.main(["retrain", "run", "mura_abnormality", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "mura_abnormality needs a normal/abnormal label per study" in err
    assert cli.main(["retrain", "runs", "--config", str(config), "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"  # nothing was started
