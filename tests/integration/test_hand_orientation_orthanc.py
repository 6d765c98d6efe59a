"""hand_orientation end to end: Orthanc sends a hand film, the node turns it upright and
Orthanc receives the SR, the corrected film as SC and a GSPS, in the film's study, each
passing dciodvfy with 0 errors.

The model is a real network in a real model folder, imported with the CLI; its fc is set
so that it predicts 0° (fingers to the right) for every film, which makes the expected
turn (a quarter turn counter-clockwise, Image Rotation 270° clockwise) exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.film_io import read_film
from tests.integration.test_orthanc_results import (
    node_beside_orthanc,
    orthanc_study_objects,
    send_study,
    sr_values,
    wait_all_sent,
)
from tests.peers import dciodvfy, require_tool
from tests.support.models import write_constant_orientation_model
from training.synthetic.hand_films import write_hand_study

pytestmark = [pytest.mark.peers, pytest.mark.timeout(240)]

ROUTES = [
    {
        "name": "hands",
        "pipelines": ["hand_orientation"],
        "modality": ["DX", "CR"],
        "destinations": ["orthanc"],
    }
]


def test_a_hand_film_from_orthanc_comes_back_upright_as_sr_sc_and_gsps(tmp_path: Path) -> None:
    require_tool("Orthanc")
    require_tool("dciodvfy")
    film = write_hand_study(
        tmp_path / "films", angle_deg=0.0, seed=5, scale=0.25, photometric="MONOCHROME1"
    )
    model = tmp_path / "model"
    write_constant_orientation_model(model, 0.0, version="const-0")

    with node_beside_orthanc(tmp_path, ROUTES, [model]) as (node, orthanc):
        orthanc_study = send_study(orthanc, [film.path])
        wait_all_sent(node, 3, timeout=120)
        objects = orthanc_study_objects(orthanc, orthanc_study)

    results = {o.Modality: o for o in objects if o.SOPInstanceUID != film.sop_instance_uid}
    assert sorted(results) == ["OT", "PR", "SR"]
    assert {o.StudyInstanceUID for o in results.values()} == {film.study_instance_uid}

    values = sr_values(results["SR"])
    assert values["Anatomy orientation angle"] == pytest.approx(0.0, abs=0.01)
    assert values["Rotation applied for display"] == pytest.approx(90.0)

    upright = np.rot90(read_film(film.path).display, 1)
    assert np.array_equal(results["OT"].pixel_array, upright)

    gsps = results["PR"]
    assert gsps.ImageRotation == 270 and gsps.ImageHorizontalFlip == "N"
    referenced = gsps.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
    assert referenced.ReferencedSOPInstanceUID == film.sop_instance_uid

    for modality, dataset in results.items():
        path = tmp_path / f"{modality}.dcm"
        dataset.save_as(path)
        errors, _warnings = dciodvfy(path)
        assert errors == [], f"{modality}: {errors}"
