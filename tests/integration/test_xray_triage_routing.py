"""Routing by image end to end: Orthanc sends a hand film with no Body Part Examined and a
film whose header says CHEST; the node's real ``xray_triage`` pipeline classifies both
(a model whose answer is known in advance: "hand", p 0.95), routes the first to
``hand_orientation`` (whose results come back with it), records the second's header as
disagreeing with its image and routes it by its header (to nothing, here). Every object
the node sends back passes dciodvfy with 0 errors.
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
from tests.support.models import write_constant_orientation_model, write_constant_triage_model
from training.synthetic.xray_types import render_triage_film, write_triage_film

pytestmark = [pytest.mark.peers, pytest.mark.timeout(240)]

ROUTES = [
    {
        "name": "hands",
        "pipelines": ["hand_orientation"],
        "modality": ["DX", "CR"],
        "body_part": ["HAND"],
        "destinations": ["orthanc"],
        "when_headers_unclear": "xray_triage",
        "check_headers": True,
    }
]


def test_films_are_classified_routed_by_image_and_a_lying_header_is_recorded(
    tmp_path: Path,
) -> None:
    require_tool("Orthanc")
    require_tool("dciodvfy")
    films = tmp_path / "films"
    unlabelled = write_triage_film(
        render_triage_film("hand", 3, size=256), films / "hand.dcm", body_part_examined=None
    )
    lying = write_triage_film(
        render_triage_film("hand", 4, size=256), films / "chest.dcm", body_part_examined="CHEST"
    )
    models = tmp_path / "models-in"
    write_constant_orientation_model(models / "orientation", 0.0, version="const-0")
    write_constant_triage_model(models / "triage", xray_type="hand", type_probability=0.95)

    imported = [models / "orientation", models / "triage"]
    with node_beside_orthanc(tmp_path, ROUTES, imported) as (node, orthanc):
        hand_study = send_study(orthanc, [unlabelled])
        chest_study = send_study(orthanc, [lying])
        # hand: the triage SR, then hand_orientation's SR, SC and GSPS; chest: the SR.
        wait_all_sent(node, 5, timeout=150)
        jobs = node.rows(
            "select s.series_instance_uid as series, j.pipeline, j.route, j.state "
            "from jobs j join series s on s.id = j.series_id order by j.id"
        )
        series = {
            r["body_part_examined"]: r
            for r in node.rows(
                "select body_part_examined, triage_state, routing_body_part from series"
            )
        }
        summaries = [
            row["summary"] for row in node.cli_json("results", "--pipeline", "xray_triage")
        ]
        hand_objects = orthanc_study_objects(orthanc, hand_study)
        chest_objects = orthanc_study_objects(orthanc, chest_study)

    assert [(j["pipeline"], j["route"], j["state"]) for j in jobs] == [
        ("xray_triage", "hands", "done"),
        ("xray_triage", "hands", "done"),
        ("hand_orientation", "hands", "done"),
    ]
    assert series[None] == {
        "body_part_examined": None,
        "triage_state": "done",
        "routing_body_part": "HAND",
    }
    assert series["CHEST"]["triage_state"] == "done"
    assert series["CHEST"]["routing_body_part"] == "CHEST"  # routed by its header
    assert sorted(s["header_disagrees"] for s in summaries) == [False, True]

    sent_back = [o for o in hand_objects + chest_objects if o.Modality not in ("DX", "CR")]
    assert sorted(o.Modality for o in hand_objects) == ["DX", "OT", "PR", "SR", "SR"]
    assert sorted(o.Modality for o in chest_objects) == ["DX", "SR"]
    (chest_report,) = [o for o in chest_objects if o.Modality == "SR"]
    values = sr_values(chest_report)
    assert values["X-ray type seen in the image"] == "Hand"
    assert "Body Part Examined disagrees with image" in values, values
    for index, dataset in enumerate(sent_back):
        path = tmp_path / f"out{index}.dcm"
        dataset.save_as(path)
        errors, _warnings = dciodvfy(path)
        assert errors == [], f"{dataset.Modality} {dataset.SeriesDescription}: {errors}"
    assert pydicom.dcmread(unlabelled).get("BodyPartExamined") is None
