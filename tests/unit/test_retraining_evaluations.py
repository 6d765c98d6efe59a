"""The gate's evaluations of ct_body_part and mura_abnormality (``retraining.py`` of each
trainer), run on the shipped models and a few synthetic studies written as DICOM: they
load, read a folder as the node links it, and give the figure the gate compares."""

from __future__ import annotations

import math
from pathlib import Path

from dicom_node import trainers
from dicom_node.retraining.evaluation import TrainerInputs, json_safe
from pipelines.shipped import shipped_model
from training.synthetic.ct_phantoms import write_ct_study
from training.synthetic.msk_films import make_msk_study, write_msk_study


def test_ct_body_part_is_scored_by_slice_order_on_held_out_series(tmp_path: Path) -> None:
    for seed in (5, 6):
        write_ct_study(
            tmp_path / f"ct{seed}", seed, size=96, region="chest_abdomen_pelvis", max_slices=40
        )
    model = shipped_model("ct_body_part")
    assert model is not None
    support = trainers.retraining_support("ct_body_part")
    figures = support.evaluate(model, tmp_path, TrainerInputs())
    assert figures["volumes"] == 2 and figures["series_skipped"] == 0
    assert 0.9 < figures[support.metric] <= 1.0  # the shipped model orders them
    card = {"calibration_cross_check_pct": 91.6}
    assert support.sanity(card, figures, TrainerInputs()) == []


def test_mura_abnormality_is_scored_by_auroc_on_labelled_held_out_studies(tmp_path: Path) -> None:
    labels = ["study_instance_uid,label"]
    for seed in range(4):
        study = make_msk_study(seed, region="wrist", abnormal=bool(seed % 2), size=128)
        written = write_msk_study(tmp_path / "data" / f"s{seed}", study)
        labels.append(f"{written.study_instance_uid},{'abnormal' if study.abnormal else 'normal'}")
    (tmp_path / "labels.csv").write_text("\n".join(labels) + "\n")
    model = shipped_model("mura_abnormality")
    assert model is not None
    support = trainers.retraining_support("mura_abnormality")
    inputs = TrainerInputs(labels_file=tmp_path / "labels.csv")
    figures = json_safe(support.evaluate(model, tmp_path / "data", inputs))
    assert figures["studies"] == 4 and figures["abnormal"] == 2
    assert 0.0 <= figures[support.metric] <= 1.0 and not math.isnan(figures["threshold"])
    assert isinstance(support.sanity({}, figures, inputs), list)
