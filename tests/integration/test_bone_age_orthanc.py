"""bone_age after hand_orientation end to end: Orthanc sends a paediatric hand film lying
on its side; the node turns it upright (hand_orientation, a model that always sees 0°:
fingers to the right) and only then estimates bone age, on the upright film the first
pipeline wrote (its job waits for the first one's). Both pipelines' results arrive in
Orthanc in the film's study, each object passing dciodvfy with 0 errors.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.integration.test_orthanc_results import (
    node_beside_orthanc,
    orthanc_study_objects,
    send_study,
    sr_values,
    wait_all_sent,
)
from tests.peers import dciodvfy, require_tool
from tests.support.models import write_constant_orientation_model, write_seeded_bone_age_model
from training.synthetic.paediatric_hands import render_paediatric_hand, write_paediatric_hand_film

pytestmark = [pytest.mark.peers, pytest.mark.timeout(240)]

ROUTES = [
    {
        "name": "hands",
        # The order here does not matter: bone_age runs after hand_orientation.
        "pipelines": ["bone_age", "hand_orientation"],
        "modality": ["DX", "CR"],
        "body_part": ["HAND"],
        "destinations": ["orthanc"],
    }
]


def test_bone_age_runs_on_the_film_hand_orientation_turned_upright(tmp_path: Path) -> None:
    require_tool("Orthanc")
    require_tool("dciodvfy")
    hand = render_paediatric_hand(120.0, "F", 11, size=256, angle_deg=0.0)
    film = write_paediatric_hand_film(hand, tmp_path / "films" / "hand.dcm", seed=11)
    source = pydicom.dcmread(film, stop_before_pixels=True)
    models = tmp_path / "models-in"
    write_constant_orientation_model(models / "orientation", 0.0, version="const-0")
    write_seeded_bone_age_model(models / "bone_age")

    imported = [models / "orientation", models / "bone_age"]
    with node_beside_orthanc(tmp_path, ROUTES, imported) as (node, orthanc):
        study = send_study(orthanc, [film])
        # hand_orientation: SR, SC (the upright film), GSPS; bone_age: SR, SC (attention).
        wait_all_sent(node, 5, timeout=150)
        jobs = node.rows("select pipeline, state, started_at, finished_at from jobs order by id")
        (result,) = node.cli_json("results", "--pipeline", "bone_age")
        objects = orthanc_study_objects(orthanc, study)

    by_pipeline = {j["pipeline"]: j for j in jobs}
    assert sorted(by_pipeline) == ["bone_age", "hand_orientation"]
    assert all(j["state"] == "done" for j in jobs)
    # bone_age was queued waiting and ran only once hand_orientation had ended.
    assert by_pipeline["bone_age"]["started_at"] >= by_pipeline["hand_orientation"]["finished_at"]
    (estimate,) = result["summary"]["films"]
    assert estimate["film"] == "upright", result["summary"]
    assert estimate["sop_instance_uid"] == source.SOPInstanceUID

    sent_back = [o for o in objects if o.SOPInstanceUID != source.SOPInstanceUID]
    assert sorted(o.Modality for o in sent_back) == ["OT", "OT", "PR", "SR", "SR"]
    assert {o.StudyInstanceUID for o in sent_back} == {source.StudyInstanceUID}
    reports = [sr_values(o) for o in sent_back if o.Modality == "SR"]
    (bone_age,) = [r for r in reports if "Bone age" in r]
    assert bone_age["Bone age"] == pytest.approx(estimate["bone_age_months"], abs=0.01)
    assert bone_age["Chronological age"] == pytest.approx(
        estimate["chronological_age_months"], abs=0.01
    )
    for index, dataset in enumerate(sent_back):
        path = tmp_path / f"out{index}.dcm"
        dataset.save_as(path)
        errors, _warnings = dciodvfy(path)
        assert errors == [], f"{dataset.Modality} {dataset.SeriesDescription}: {errors}"
