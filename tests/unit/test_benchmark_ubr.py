"""``benchmarks/ubr.py`` end to end on a tiny series: every stage timed, results in JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import ubr


def test_quick_run_times_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "ubr.json"
    threads = torch.get_num_threads()
    code = ubr.main(
        [
            "--quick",
            "--slices",
            "12",
            "--size",
            "128",
            "--variants",
            "alexnet@64/all",
            "--repeat",
            "1",
            "--baseline-slices",
            "0",
            "--onnx-variant",
            "none",
            "--threads",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    assert torch.get_num_threads() == threads  # restored
    results = json.loads(out.read_text())
    assert results["series"]["slices"] == 12
    assert results["stages"] == list(ubr.STAGES)
    assert results["baseline"] is None
    (row,) = results["variants"]
    assert row["variant"] == "alexnet@64/all"
    assert row["timed_runs"] == 1 and row["scored_slices"] == 12
    assert row["weights"] == "random" and row["held_out"] is None
    assert row["outputs"] == ["sc", "sr"]  # the SR and the score plot's SC
    medians = row["median_s"]
    for stage in ubr.STAGES:
        if stage == "other":  # what run() spends outside the four stages; may round to 0
            assert medians[stage] >= 0.0
        else:
            assert medians[stage] > 0.0, stage
    assert medians["total"] == pytest.approx(sum(medians[s] for s in ubr.STAGES))
    assert row["total_s"] == medians["total"]
    assert row["first_run_s"]["total"] > 0.0
    assert row["total_over_target"] == pytest.approx(row["total_s"] / ubr.TARGET_S)


def test_variant_names_parse_and_reject() -> None:
    assert ubr.parse_variant("vgg16@224/50") == ubr.Variant("vgg16", 224, 50)
    assert ubr.parse_variant("alexnet@96/all").key == "alexnet@96/all"
    for bad in ("resnet@96/all", "alexnet@32/all", "vgg16@64/1", "vgg16-64"):
        with pytest.raises(ValueError):
            ubr.parse_variant(bad)


def test_several_trained_models_are_weighed_in_one_run(tmp_path: Path) -> None:
    from training.ct_body_part.train import preset, train_ubr

    folders = []
    for size in (64, 72):
        config = preset(
            "smoke", size=size, synthetic_volumes=4, max_slices=40, iterations=4,
            validation_volumes=1, test_volumes=1, abnormal_test_volumes=0,
            out_dir=tmp_path / "models", version=f"tiny-{size}", progress=False,
        )  # fmt: skip
        folders.append(train_ubr(config).folder)
    common = ["--quick", "--slices", "12", "--size", "128", "--variants", "alexnet@64/all"]
    common += ["--repeat", "1", "--baseline-slices", "0", "--onnx-variant", "none"]
    common += ["--threads", "1", "--accuracy-volumes", "1", "--workdir", str(tmp_path / "work")]
    twice = ["--model", str(folders[0]), "--model", str(folders[0])]
    assert ubr.main([*common, *twice, "--json", str(tmp_path / "refused.json")]) == 2
    assert not (tmp_path / "refused.json").exists()

    out = tmp_path / "ubr.json"
    both = ["--model", str(folders[0]), "--model", str(folders[1])]
    assert ubr.main([*common, *both, "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [(m["architecture"], m["size"]) for m in results["models"]] == [
        ("alexnet", 64),
        ("alexnet", 72),
    ]
    by_model = results["accuracy"]["by_model"]
    assert sorted(by_model) == ["alexnet@64", "alexnet@72"]
    rows = {row["variant"]: row for row in results["variants"]}
    assert sorted(rows) == ["alexnet@64/all", "alexnet@72/all"]  # the 2nd model got its row
    for key, row in rows.items():
        assert row["weights"] == "trained"
        own = by_model[key.split("/")[0]]["by_max_scored_slices"]["0"]
        assert row["held_out"] == own and 0.0 <= own["zone_accuracy_pct"] <= 100.0
