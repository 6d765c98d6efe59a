"""``dicom-node demo`` end to end, as a newcomer runs it (with a smaller film and model).

The first run has no model: it trains one (the ``smoke`` preset) and uses a receiving SCP
as the PACS; the second run finds the model active and uses a real Orthanc. Both must
bring every study back with its SR, SC and (for right-angle turns) GSPS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.peers import require_tool

pytestmark = [pytest.mark.peers, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def demo(workdir: Path, *args: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_NODE_")}
    done = subprocess.run(
        [sys.executable, "-m", "dicom_node", "demo", "--workdir", str(workdir), "--preset",
         "smoke", "--studies", "3", "--film-scale", "0.1", "--timeout", "240",
         "--ct-slices", "40", "--ct-size", "128", "--ct-preset", "smoke", *args],
        capture_output=True, text=True, timeout=540, cwd=REPO, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "mean absolute error" in done.stdout + done.stderr
    return json.loads((workdir / "demo-report.json").read_text())  # type: ignore[no-any-return]


def test_demo_trains_a_model_and_brings_every_study_back(tmp_path: Path) -> None:
    require_tool("Orthanc")
    first = demo(tmp_path / "demo", "--no-orthanc")
    assert first["trained"] is True
    studies = first["studies"]
    assert isinstance(studies, list) and len(studies) == 3
    for study in studies:
        assert study["state"] == "delivered"
        assert {"sr", "sc"} <= set(study["in_pacs"])
        assert study["predicted_angle_deg"] is not None
    received = [pydicom.dcmread(p) for p in (tmp_path / "demo" / "pacs").rglob("*.dcm")]
    assert {ds.Modality for ds in received} >= {"SR", "OT"}
    # The CT series came back with its zones, and the score plot is a PNG beside the report.
    ct = first["ct"]
    assert isinstance(ct, dict) and ct["trained"] is True and ct["zones"], ct
    assert (tmp_path / "demo" / "ct_body_part_plot.png").stat().st_size > 10_000
    # A model trained for seconds is rough, but far better than a guess (90° on average).
    errors = [abs(float(s["error_deg"])) for s in studies]
    assert sum(errors) / len(errors) < 45.0, studies

    second = demo(tmp_path / "demo", "--orthanc")
    assert second["trained"] is False and second["model_version"] == first["model_version"]
    for study in second["studies"]:  # type: ignore[union-attr]
        assert {"SR", "OT"} <= set(study["in_pacs"]), study
        assert {"DX", "CR"} & set(study["in_pacs"]), study  # the film itself
        if study["rotation_deg"] is not None and float(study["rotation_deg"]) % 90 == 0:
            assert "PR" in study["in_pacs"]
