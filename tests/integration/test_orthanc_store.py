"""A real PACS (Orthanc) sends a study to ``dicom-node serve`` with C-STORE.

The study has a CT series (routed to ``series_stats``) and an MR series that no route
matches: every instance arrives once and is indexed, the study becomes stable, one job
is made for the CT series and none for the MR one. Orthanc sending the study again
changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.integration.node_process import NodeProcess, make_series
from tests.peers import OrthancProcess, require_tool, wait_until

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

ROUTES = [
    {"name": "ct-stats", "pipelines": ["series_stats"], "modality": ["CT"]},
    {"name": "cr-only", "pipelines": ["broken"], "modality": ["CR", "DX"]},
]


def test_orthanc_study_store_reaches_the_node_and_is_routed(tmp_path: Path) -> None:
    require_tool("Orthanc")
    study_uid = generate_uid()
    ct = make_series(tmp_path / "ct", 6, size=64, study_uid=study_uid, modality="CT", seed=4)
    mr = make_series(tmp_path / "mr", 3, size=64, study_uid=study_uid, modality="MR", seed=5)
    ct_series = str(dcmread(ct[0], stop_before_pixels=True).SeriesInstanceUID)
    mr_series = str(dcmread(mr[0], stop_before_pixels=True).SeriesInstanceUID)
    sop_uids = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in ct + mr}

    with NodeProcess(tmp_path / "node", workers=1, routes=ROUTES) as node:
        modalities = {"node": [node.ae_title, "127.0.0.1", node.port]}
        with OrthancProcess(
            modalities=modalities, workdir=tmp_path / "orthanc", graceful_stop=False
        ) as orthanc:
            answers = [orthanc.upload(f) for f in ct + mr]
            (orthanc_study,) = {a["ParentStudy"] for a in answers}
            assert orthanc.instance_count() == len(sop_uids)

            sent = orthanc.store_to_modality("node", [orthanc_study])
            assert int(sent["InstancesCount"]) == len(sop_uids)
            assert int(sent.get("FailedInstancesCount", 0)) == 0

            counts = node.rows(
                "select sop_instance_uid, count(*) as n, min(calling_ae_title) as caller "
                "from instances group by sop_instance_uid"
            )
            assert {r["sop_instance_uid"] for r in counts} == sop_uids
            assert all(r["n"] == 1 and r["caller"] == orthanc.aet for r in counts)
            for row in node.rows("select sop_instance_uid, path from instances"):
                stored = dcmread(node.storage_dir / row["path"], stop_before_pixels=True)
                assert stored.SOPInstanceUID == row["sop_instance_uid"]

            wait_until(
                lambda: node.scalar("select state from studies") == "stable",
                timeout=20,
                message="the study did not become stable",
            )
            assert "1 series without a route" in node.log_text()
            jobs = node.rows(
                "select j.pipeline, j.route, s.series_instance_uid as series from jobs j "
                "join series s on s.id = j.series_id"
            )
            assert jobs == [{"pipeline": "series_stats", "route": "ct-stats", "series": ct_series}]
            wait_until(
                lambda: node.scalar("select count(*) from jobs where state = 'done'") == 1,
                timeout=30,
                message=lambda: f"job not done: {node.rows('select * from jobs')}",
            )
            (summary,) = [r["summary"] for r in node.cli_json("results")]
            assert summary == {"instances": len(ct), "modality": "CT"}
            modalities_seen = dict(
                (r["series_instance_uid"], r["modality"])
                for r in node.rows("select series_instance_uid, modality from series")
            )
            assert modalities_seen == {ct_series: "CT", mr_series: "MR"}

            # The PACS sends the study again: duplicates are kept once, nothing re-opens.
            orthanc.store_to_modality("node", [orthanc_study])
            assert node.scalar("select count(*) from instances") == len(sop_uids)
            assert node.scalar("select state from studies") == "stable"
            assert node.scalar("select times_reopened from studies") == 0
            assert node.scalar("select count(*) from jobs") == 1
