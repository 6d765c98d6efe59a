"""``dicom-node demo`` end to end, as a newcomer runs it (with a smaller film and model).

The first run has no models and ``--train``: it trains one per pipeline (the ``smoke``
presets) and uses a receiving SCP as the PACS; the second run finds the models active and
uses a real Orthanc. A run on an empty store without ``--train`` takes the shipped models. Both must bring every hand study back with its SR, SC and (for right-angle turns)
GSPS, and the small CT series (40 slices of 128²) with its SR and score plot SC, its zones
in ``demo-report.json`` and the plot as a PNG in the work folder.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest

from pipelines.model_store import read_model_card
from pipelines.shipped import shipped_models
from tests.peers import require_tool
from tests.unit.test_shipped_models import BOUNDARY_MM
from training.ct_body_part.train import CROSS_CHECK_WARNING_PCT

pytestmark = [pytest.mark.peers, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
CT_SLICES = 40


def demo(workdir: Path, *args: str) -> tuple[dict[str, object], str]:
    """The demo's report, and what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_NODE_")}
    done = subprocess.run(
        [sys.executable, "-m", "dicom_node", "demo", "--workdir", str(workdir), "--preset",
         "smoke", "--studies", "3", "--film-scale", "0.1", "--timeout", "240",
         "--ct-slices", str(CT_SLICES), "--ct-size", "128", "--ct-preset", "smoke",
         "--mura-preset", "smoke", "--triage-preset", "smoke", *args],
        capture_output=True, text=True, timeout=720, cwd=REPO, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "mean absolute error" in done.stdout + done.stderr
    report = json.loads((workdir / "demo-report.json").read_text())
    return report, done.stdout + done.stderr


def test_demo_trains_a_model_and_brings_every_study_back(tmp_path: Path) -> None:
    require_tool("Orthanc")
    first, printed = demo(tmp_path / "demo", "--no-orthanc", "--train")
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
    first_ct = check_ct(first, tmp_path / "demo")
    assert first_ct["trained"] is True and {"sr", "sc"} <= set(first_ct["in_pacs"]), first_ct
    # A CT model whose calibration cross-check is low points to the longer preset.
    (card,) = {p.resolve() for p in (tmp_path / "demo").rglob("ct_body_part/*/model.json")}
    cross_check = json.loads(card.read_text())["metrics"]["calibration_cross_check_pct"]
    hinted = "`--ct-preset cpu` trains the README's" in " ".join(printed.split())
    assert hinted is (cross_check is not None and cross_check < CROSS_CHECK_WARNING_PCT)
    # A model trained for seconds is rough, but far better than a guess (90° on average).
    errors = [abs(float(s["error_deg"])) for s in studies]
    assert sum(errors) / len(errors) < 45.0, studies
    first_mura = check_mura(first, tmp_path / "demo")
    assert first_mura["trained"] is True
    assert check_triage(first)["trained"] is True

    second, _ = demo(tmp_path / "demo", "--orthanc")
    assert second["trained"] is False and second["model_version"] == first["model_version"]
    for study in second["studies"]:  # type: ignore[union-attr]
        assert {"SR", "OT"} <= set(study["in_pacs"]), study
        assert {"DX", "CR"} & set(study["in_pacs"]), study  # the film itself
        if study["rotation_deg"] is not None and float(study["rotation_deg"]) % 90 == 0:
            assert "PR" in study["in_pacs"]
    ct = check_ct(second, tmp_path / "demo")
    assert ct["trained"] is False and ct["model_version"] == first_ct["model_version"]
    assert {"CT", "SR", "OT"} <= set(ct["in_pacs"]), ct
    mura = check_mura(second, tmp_path / "demo")
    assert mura["trained"] is False and mura["model_version"] == first_mura["model_version"]
    for study in mura["studies"]:  # Orthanc holds the views and the results in one study
        assert {"SR", "OT"} <= set(study["in_pacs"]) and {"DX", "CR"} & set(study["in_pacs"])
        assert ("KO" in study["in_pacs"]) is (study["verdict"] == "abnormal"), study


def test_the_first_run_takes_the_shipped_models_and_gets_the_ct_right(tmp_path: Path) -> None:
    """Without --train an empty store gets the models shipped with dicom-node: nothing is
    trained, the CT's zone boundaries lie within 50 mm of the phantom's and a normal
    series raises no anomaly, the films come back upright within a few degrees."""
    require_tool("Orthanc")
    shipped = {name: read_model_card(folder).version for name, folder in shipped_models().items()}
    report, printed = demo(tmp_path / "demo", "--no-orthanc")
    assert "shipped with dicom-node" in printed
    assert report["trained"] is False and report["model_version"] == shipped["hand_orientation"]
    errors = [abs(float(s["error_deg"])) for s in report["studies"]]  # type: ignore[union-attr]
    assert max(errors) < 8.0, report["studies"]
    ct = check_ct(report, tmp_path / "demo")
    assert ct["trained"] is False and ct["model_version"] == shipped["ct_body_part"]
    assert ct["anomaly"] is False and ct["monotonic"] is True and ct["r"] >= 0.99, ct
    assert [zone["zone"] for zone in ct["zones"]] == ["chest", "abdomen", "pelvis"], ct
    found = {zone["zone"]: zone for zone in ct["zones"]}
    true = ct["true_zones"]
    for upper, lower in (("chest", "abdomen"), ("abdomen", "pelvis")):
        boundary = (found[upper]["z_bottom_mm"] + found[lower]["z_top_mm"]) / 2.0
        true_boundary = (true[upper]["z_bottom_mm"] + true[lower]["z_top_mm"]) / 2.0
        # The shipped model's boundaries lie 1 to 49 mm off on phantoms at 2.5 mm (tests/
        # unit/test_shipped_models.py, BOUNDARY_MM); this series' slices are about 19 mm
        # apart, and a boundary cannot be placed closer than a slice.
        assert abs(boundary - true_boundary) <= BOUNDARY_MM + ct["spacing_mm"], (upper, lower, ct)
    # The elbow studies, normal and with hardware, get the right verdicts.
    mura = check_mura(report, tmp_path / "demo")
    assert mura["trained"] is False and mura["model_version"] == shipped["mura_abnormality"]
    assert [study["correct"] for study in mura["studies"]] == [True, True], mura["studies"]
    # The films with no or an empty header go where their image says.
    triage = check_triage(report)
    assert triage["trained"] is False and triage["model_version"] == shipped["xray_triage"]
    assert [film["correct"] for film in triage["films"]] == [True, True, True], triage["films"]


#: Where the demo's routes send a film of each X-ray type (the others: no route).
DEMO_ROUTE_OF_TYPE = {
    "hand": "hand_orientation",
    **{
        region: "mura_abnormality"
        for region in ("elbow", "forearm", "shoulder", "humerus", "wrist", "finger")
    },
}


def check_triage(report: dict[str, object]) -> dict[str, Any]:
    """The report's routing-by-image part: three films with no or an empty header, each
    classified and then routed exactly where its classifier's verdict leads (a trained-for-
    seconds model may see the wrong type; the routing must follow what it saw)."""
    triage = report["triage"]
    assert isinstance(triage, dict), report
    films = triage["films"]
    assert [f["truth"]["film"] for f in films] == ["hand", "elbow", "photo"], films
    for film in films:
        assert film["state"] == "delivered", film
        verdict = DEMO_ROUTE_OF_TYPE.get(film["xray_type"]) if film["is_xray"] else None
        assert film["routed_to"] == ([] if verdict is None else [verdict]), film
    return triage


def check_mura(report: dict[str, object], workdir: Path) -> dict[str, Any]:
    """The report's MURA part: a normal and an abnormal study, each delivered with a verdict
    and a probability per view, a KOS exactly when abnormal, the heat map as a PNG."""
    mura = report["mura"]
    assert isinstance(mura, dict), report
    studies = mura["studies"]
    assert [s["truth"]["abnormal"] for s in studies] == [False, True], studies
    for study in studies:
        assert study["state"] == "delivered" and study["verdict"] in {"normal", "abnormal"}
        assert study["correct"] is ((study["verdict"] == "abnormal") is study["truth"]["abnormal"])
        assert len(study["views"]) == study["truth"]["views"] == 2, study
        assert all(0.0 <= view["probability"] <= 1.0 for view in study["views"]), study
        assert bool(study["key_objects"]) is (study["verdict"] == "abnormal"), study
    assert studies[1]["truth"]["series"] == 2  # one verdict over two series
    png = workdir / "mura_heatmap.png"
    written = [Path(s["heatmap_png"]).resolve() for s in studies if s["heatmap_png"]]
    assert written[:1] == [png.resolve()], studies
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mura


def check_ct(report: dict[str, object], workdir: Path) -> dict[str, Any]:
    """The report's CT part: delivered, zones with extents, r and scores, the plot as an SC
    file and as a PNG of the same picture in the work folder."""
    ct = report["ct"]
    assert isinstance(ct, dict), report
    assert ct["state"] == "delivered" and ct["slices"] >= CT_SLICES - 2, ct
    assert ct["zones"], ct
    for zone in ct["zones"]:
        assert zone["zone"] in {"head_neck", "chest", "abdomen", "pelvis"}, zone
        assert zone["z_top_mm"] >= zone["z_bottom_mm"] and zone["slices"] >= 1, zone
    assert sum(zone["slices"] for zone in ct["zones"]) <= ct["slices"]
    assert set(ct["true_zones"]) >= {"chest", "abdomen", "pelvis"}, ct  # the phantom's
    assert ct["reversed"] is False and -1.0 <= ct["r"] <= 1.0, ct
    low, high = ct["score_range"]
    assert low < high, ct
    png = workdir / "ct_body_part_plot.png"
    assert Path(ct["plot_png"]).resolve() == png.resolve()
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    width, height = struct.unpack(">II", head[16:24])
    sc = pydicom.dcmread(ct["plot_dicom"])
    assert sc.Modality == "OT" and (sc.Columns, sc.Rows) == (width, height)
    return ct
