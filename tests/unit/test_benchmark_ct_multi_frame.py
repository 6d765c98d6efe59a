"""``benchmarks/ct_multi_frame.py`` on a tiny series: every form read, results in JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import ct_multi_frame


def test_quick_run_reads_every_form_to_the_same_inputs(tmp_path: Path) -> None:
    out = tmp_path / "mf.json"
    options = "--slices 10 --size 64 --input 32 --repeat 1".split()
    code = ct_multi_frame.main([*options, "--workdir", str(tmp_path / "work"), "--json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert results["series"]["slices"] == 10
    assert results["baseline"] == "single-frame"
    forms = results["forms"]
    assert list(forms) == list(ct_multi_frame.FORMS)
    assert forms["single-frame"]["files"] == 10
    assert forms["multi-frame"]["files"] == forms["multi-frame RLE"]["files"] == 1
    for row in forms.values():
        assert row["same_inputs_as_baseline"] is True
        medians = row["median_s"]
        for stage in ct_multi_frame.STAGES:
            assert medians[stage] > 0.0, stage
        assert medians["total"] == pytest.approx(
            sum(medians[s] for s in ct_multi_frame.STAGES), abs=1e-3
        )
    assert forms["single-frame"]["vs_baseline"]["total"] == 1.0
    multi = forms["multi-frame"]
    assert multi["vs_baseline"]["total"] == pytest.approx(
        multi["median_s"]["total"] / forms["single-frame"]["median_s"]["total"], abs=0.01
    )
