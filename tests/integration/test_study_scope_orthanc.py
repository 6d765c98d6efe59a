"""A study-scoped pipeline through a real Orthanc: the views of a study arrive in two
series, then a late third view in a new series; each time the node makes one result over
every view, and the rerun's report replaces the first in Orthanc (same SOP Instance UID:
no duplicate; with Orthanc's ``OverwriteInstances`` the new content is what it keeps)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.integration.node_process import TEST_PIPELINES, NodeProcess, make_series
from tests.integration.test_orthanc_results import (
    deliveries,
    orthanc_study_objects,
    point_at,
    send_study,
)
from tests.peers import OrthancProcess, require_tool, wait_until

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]

PIPELINES = {**TEST_PIPELINES, "study_stats": "tests.support.pipelines:StudyStats"}
ROUTES = [
    {"name": "views", "pipelines": ["study_stats"], "modality": ["CT"], "destinations": ["orthanc"]}
]


def sop_uids(files: list[Path]) -> set[str]:
    return {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}


def referenced(report: object) -> set[str]:
    return {
        item.ReferencedSOPInstanceUID
        for evidence in report.CurrentRequestedProcedureEvidenceSequence  # type: ignore[attr-defined]
        for series in evidence.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }


def test_views_in_several_series_and_a_late_view_give_one_verdict_without_duplicates(
    tmp_path: Path,
) -> None:
    require_tool("Orthanc")
    study_uid = generate_uid()
    first = make_series(tmp_path / "a", 2, study_uid=study_uid, seed=1)
    second = make_series(tmp_path / "b", 1, study_uid=study_uid, seed=2)
    late = make_series(tmp_path / "c", 1, study_uid=study_uid, seed=3)
    node = NodeProcess(
        tmp_path / "node",
        workers=1,
        routes=ROUTES,
        extra_pipelines=PIPELINES,
        overrides={"delivery": {"check_seconds": 0.2, "first_retry_seconds": 0.3}},
    )
    orthanc = OrthancProcess(
        modalities={"node": [node.ae_title, "127.0.0.1", node.port]},
        workdir=tmp_path / "orthanc",
        graceful_stop=False,
        # Orthanc keeps the first copy of a SOP Instance UID by default: a site that wants
        # the rerun's report (over the late view too) in place of the first sets this.
        extra_config={"OverwriteInstances": True},
    )
    with orthanc:
        point_at(node, orthanc.dicom_port, orthanc.aet)
        with node:
            orthanc_study = send_study(orthanc, first + second)
            wait_until(
                lambda: [r["state"] for r in deliveries(node)] == ["sent"],
                90,
                message=lambda: f"{deliveries(node)}\n{node.describe_logs()}",
            )
            reports = [
                o for o in orthanc_study_objects(orthanc, orthanc_study) if o.Modality == "SR"
            ]
            assert len(reports) == 1 and referenced(reports[0]) == sop_uids(first + second)

            # Orthanc sends the whole study again, with the late view (and the report).
            send_study(orthanc, late)
            # The rerun's job is done and its delivery (the same output row, the same SOP
            # Instance UID: set pending again in the job's transaction) sent.
            wait_until(
                lambda: (
                    node.scalar("select count(*) from jobs where state = 'done'") == 2
                    and [r["state"] for r in deliveries(node)] == ["sent"]
                ),
                90,
                message=lambda: f"{deliveries(node)}\n{node.describe_logs()}",
            )
            jobs = node.rows("select scope, series_revision, state from jobs order by id")
            assert jobs == [
                {"scope": "study", "series_revision": 3, "state": "done"},
                {"scope": "study", "series_revision": 4, "state": "done"},
            ]
            reports = [
                o for o in orthanc_study_objects(orthanc, orthanc_study) if o.Modality == "SR"
            ]
            assert len(reports) == 1, "the rerun's report must replace the first, not add one"
            assert referenced(reports[0]) == sop_uids(first + second + late)
            assert orthanc.instance_count() == len(first + second + late) + 1
