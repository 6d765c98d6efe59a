"""End to end through real processes: dcmtk storescu → ``dicom-node serve`` → worker → CLI.

receive → store → index → stable → job → pipeline (series_stats) → results log, checked in
the database and through ``dicom-node studies / jobs / results --format json``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from tests.integration.node_process import NodeProcess, make_series
from tests.peers import require_tool, storescu, wait_until

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

ROUTES = [
    {"name": "ct-stats", "pipelines": ["series_stats"], "modality": ["CT"]},
    {"name": "mr-broken", "pipelines": ["broken"], "modality": ["MR"]},  # never matches here
]


def test_storescu_series_is_indexed_routed_run_and_reported(tmp_path: Path) -> None:
    require_tool("storescu")
    files = make_series(tmp_path / "send", 10, size=64, seed=1)
    first = dcmread(files[0], stop_before_pixels=True)
    study_uid, series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    sop_uids = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}

    with NodeProcess(tmp_path / "node", workers=1, routes=ROUTES) as node:
        result = storescu(node.port, files, aec=node.ae_title)
        assert result.returncode == 0, result.stdout + result.stderr

        # Every instance indexed exactly once, with its file in place.
        rows = node.rows("select sop_instance_uid, path from instances")
        assert sorted(r["sop_instance_uid"] for r in rows) == sorted(sop_uids)
        for row in rows:
            stored = node.storage_dir / row["path"]
            assert dcmread(stored).SOPInstanceUID == row["sop_instance_uid"]
        assert not list((node.storage_dir / ".incoming").iterdir())

        wait_until(
            lambda: node.scalar("select state from studies") == "stable",
            timeout=20,
            message="the study did not become stable",
        )
        wait_until(
            lambda: node.scalar("select count(*) from jobs where state = 'done'") == 1,
            timeout=30,
            message=lambda: f"no job done: {node.rows('select * from jobs')}",
        )
        (job,) = node.rows("select * from jobs")
        assert job["pipeline"] == "series_stats"
        assert job["route"] == "ct-stats"
        assert job["attempts"] == 1
        assert job["series_revision"] == 10
        (res,) = node.rows("select * from results")
        assert res["job_id"] == job["id"]
        assert res["series_instance_uid"] == series_uid
        measurements = {
            r["name"]: r["value"]
            for r in node.rows(
                "select name, value from measurements where result_id = :r", r=res["id"]
            )
        }
        assert measurements == {"instance count": 10.0, "max rows": 64.0}

        # The results log as people query it.
        studies = node.cli_json("studies")
        assert [
            (s["study_instance_uid"], s["state"], s["series"], s["instances"]) for s in studies
        ] == [(study_uid, "stable", 1, 10)]
        jobs = node.cli_json("jobs")
        assert [(j["pipeline"], j["state"], j["series_instance_uid"]) for j in jobs] == [
            ("series_stats", "done", series_uid)
        ]
        results = node.cli_json("results", "--study", study_uid)
        assert len(results) == 1
        assert results[0]["pipeline"] == "series_stats"
        assert results[0]["summary"] == {"instances": 10, "modality": "CT"}
        assert "instance count=10" in results[0]["measurements"]
        assert node.cli_json("results", "--pipeline", "broken") == []

        # A graceful stop ends the receiver and its worker with status 0.
        assert node.stop() == 0
