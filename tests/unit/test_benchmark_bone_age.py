"""``benchmarks/bone_age.py`` at a tiny size: every stage timed, the whole path and the
network alone in the same report."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bone_age


def test_a_tiny_run_reports_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "bone_age.json"
    options = "--architecture vgg_tiny --input 64 --films 2 --size 160 --repeat 1 --warmup 0"
    code = bone_age.main(
        [*options.split(), "--threads", "1", "--workdir", str(tmp_path / "w"), "--json", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["architecture"] == "vgg_tiny" and report["films"] == 2
    assert list(report["stages_ms"]) == list(bone_age.STAGES)
    assert all(value > 0 for value in report["stages_ms"].values())
    assert report["network_alone_ms"] > 0
    assert report["whole_path_ms"] > report["network_alone_ms"]
    assert report["whole_path_over_network"] > 1
    assert (tmp_path / "w" / "films" / "film1.dcm").is_file()
