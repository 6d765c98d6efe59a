"""``benchmarks/triage.py`` at a tiny size (the tiny DenseNets at 32 pixels, one small film):
every measurement is there and positive, the ratios are the ratios of the medians, and the
target says whether the whole path beat each downstream network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import triage


def test_a_tiny_run_reports_every_measurement_and_ratio(tmp_path: Path) -> None:
    out = tmp_path / "triage.json"
    options = "--architecture densenet_tiny --input 32 --films 1 --size 128 --repeat 1 --warmup 0"
    code = triage.main(
        [*options.split(), "--threads", "1", "--workdir", str(tmp_path / "w"), "--json", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert (report["architecture"], report["input"], report["films"]) == ("densenet_tiny", 32, 1)
    assert "untrained" in report["weights"]
    times = report["ms_per_film"]
    assert list(times) == [*triage.STAGES, triage.WHOLE, triage.EAGER, *triage.DOWNSTREAM]
    assert all(value > 0 for value in times.values()), times
    ratios = report["ratios"]
    assert ratios["whole path / eager torch"] == pytest.approx(
        times[triage.WHOLE] / times[triage.EAGER], rel=0.02
    )
    for name in triage.DOWNSTREAM:
        assert ratios[f"whole path / {name}"] == pytest.approx(
            times[triage.WHOLE] / times[name], rel=0.02
        )
        assert report["target_met"][name] is (times[triage.WHOLE] < times[name])
