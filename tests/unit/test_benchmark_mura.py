"""``benchmarks/mura.py`` at a tiny size (the tiny DenseNet, two synthetic views): the report's
structure, positive stage times that add up, the ratios against ONNX Runtime's network
time, and the objects each whole path encodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import mura


def test_a_tiny_run_reports_every_stage_and_the_target(tmp_path: Path) -> None:
    out = tmp_path / "mura.json"
    options = "--architecture densenet_tiny --views 2 --size 128 --input 64 --repeat 1 --warmup 0"
    code = mura.main([*options.split(), "--workdir", str(tmp_path / "work"), "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())

    assert report["architecture"] == "densenet_tiny"
    assert report["views"] == 2 and report["threads"] == 2 and report["films"] == "synthetic"
    assert "untrained" in report["weights"]
    assert [f["modality"] for f in report["film_files"]] == ["DX", "DX"]
    assert report["stages"] == {
        "without_gradcam": list(mura.PLAIN_STAGES),
        "gradcam": list(mura.GRADCAM_STAGES),
    }
    assert list(report["runtimes"]) == list(mura.RUNTIMES)

    for name, row in report["runtimes"].items():
        stages = row["stages_ms"]
        assert list(stages) == list(mura.STAGES), name
        for stage, value in stages.items():
            assert value > 0.0, f"{name} {stage}"
        without = sum(stages[s] for s in mura.PLAIN_STAGES)
        extra = sum(stages[s] for s in mura.GRADCAM_STAGES)
        assert row["stages_without_gradcam_ms"] == pytest.approx(without, abs=0.01)
        assert row["stages_gradcam_extra_ms"] == pytest.approx(extra, abs=0.01)
        assert row["stages_total_ms"] == pytest.approx(without + extra, abs=0.01)
        assert row["whole_path_ms"] > 0.0 and row["whole_path_gradcam_ms"] > 0.0
        assert row["gradcam_extra_ms"] == pytest.approx(
            row["whole_path_gradcam_ms"] - row["whole_path_ms"], abs=0.01
        )
        # The SR alone; with Grad-CAM every view is abnormal: SR, one SC per view, a KOS.
        assert row["outputs"] == {"whole path": 1, "whole path + Grad-CAM": 1 + 2 + 1}
        assert row["rounds"] == 1
        # One round: its ratios to its own network time are the ratios of the medians.
        own = row["per_round_ratios_to_own_network"]
        assert set(own) == {*mura.WHOLE_PATHS, mura.READ_FIRST, "Grad-CAM's extra"}
        network = stages["network"]
        assert own["whole path"] == pytest.approx(row["whole_path_ms"] / network, rel=0.01)
        assert own[mura.READ_FIRST] == pytest.approx(
            row["references_ms"][mura.READ_FIRST] / network, rel=0.01
        )
        assert set(row["references_ms"]) == set(mura.REFERENCES)
        assert all(value > 0.0 for value in row["references_ms"].values())

    target = report["target"]
    onnx = report["runtimes"]["onnxruntime"]
    network = onnx["stages_ms"]["network"]
    assert target["baseline"] == "onnxruntime network"
    assert target["network_ms"] == network
    assert target["limit_ms"] == pytest.approx(mura.TARGET_RATIO * network, abs=0.01)
    assert target["whole_path_ratio"] == pytest.approx(onnx["whole_path_ms"] / network, rel=0.01)
    assert target["met"] is (target["whole_path_ratio"] <= mura.TARGET_RATIO)
    assert target["gradcam_extra_ratio"] == pytest.approx(
        onnx["gradcam_extra_ms"] / network, rel=0.01, abs=0.01
    )
    assert target["ratios"]["onnxruntime"]["network"] == 1.0
    assert target["read_first_ratio"] == pytest.approx(
        onnx["references_ms"][mura.READ_FIRST] / network, rel=0.01
    )
    assert target["gradcam_full_backward_over_gradcam"] == pytest.approx(
        onnx["references_ms"][mura.FULL_BACKWARD] / onnx["stages_ms"]["Grad-CAM"], rel=0.01
    )
    for name in mura.RUNTIMES:
        assert set(target["ratios"][name]) == {*mura.STAGES, *mura.WHOLE_PATHS, *mura.REFERENCES}
    assert set(report["references"]) == set(mura.REFERENCES)
