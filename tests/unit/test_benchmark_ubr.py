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
