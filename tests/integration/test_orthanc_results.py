"""Results back to the PACS: a real Orthanc sends a study, the node runs a test pipeline
(``reporting_demo``: measurements, a finding and four derived images), and the SR and SC
objects arrive in Orthanc in the same study, as new series, with the values intact.

Deliveries survive Orthanc being down (retries, then success, no duplicates), a rerun
sends identical UIDs, and an unreachable destination ends ``dead`` until replayed.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.integration.node_process import TEST_PIPELINES, NodeProcess, make_series, to_toml
from tests.peers import OrthancProcess, free_port, require_tool, wait_until
from tests.support.pipelines import ABNORMALITY, ANGLE

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]

OUTPUTS_PER_JOB = 5  # reporting_demo: one SR and four SC images
PIPELINES = {**TEST_PIPELINES, "reporting_demo": "tests.support.pipelines:ReportingDemo"}
ROUTES = [
    {
        "name": "ct-report",
        "pipelines": ["reporting_demo"],
        "modality": ["CT"],
        "destinations": ["orthanc"],
    }
]


def node_for(workdir: Path, *, max_attempts: int) -> NodeProcess:
    return NodeProcess(
        workdir,
        workers=1,
        routes=ROUTES,
        extra_pipelines=PIPELINES,
        overrides={
            "delivery": {
                "max_attempts": max_attempts,
                "first_retry_seconds": 0.3,
                "max_retry_seconds": 0.6,
                "check_seconds": 0.2,
                "timeout_seconds": 5,
            }
        },
    )


@contextlib.contextmanager
def node_beside_orthanc(
    tmp_path: Path, routes: list[dict[str, Any]], models: list[Path]
) -> Iterator[tuple[NodeProcess, OrthancProcess]]:
    """A running Orthanc and a running node with the built-in pipelines, ``routes``
    (results to ``orthanc``) and ``models`` imported and activated with the CLI."""
    node = NodeProcess(
        tmp_path / "node",
        workers=1,
        routes=routes,
        extra_pipelines={},
        overrides={"delivery": {"check_seconds": 0.2, "first_retry_seconds": 0.3}},
    )
    orthanc = OrthancProcess(
        modalities={"node": [node.ae_title, "127.0.0.1", node.port]},
        workdir=tmp_path / "orthanc",
        graceful_stop=False,
    )
    with orthanc:
        point_at(node, orthanc.dicom_port, orthanc.aet)
        for model in models:
            imported = node.cli("models", "import", str(model), "--activate")
            assert imported.returncode == 0, imported.stderr
        with node:
            yield node, orthanc


def point_at(node: NodeProcess, dicom_port: int, aet: str = "ORTHANC") -> None:
    """Name the destination in the node's settings file (before the node starts)."""
    node.settings["destinations"] = [
        {"name": "orthanc", "host": "127.0.0.1", "port": dicom_port, "ae_title": aet}
    ]
    node.config_path.write_text(to_toml(node.settings))


def send_study(orthanc: OrthancProcess, files: list[Path]) -> str:
    answers = [orthanc.upload(f) for f in files]
    (study,) = {a["ParentStudy"] for a in answers}
    orthanc.store_to_modality("node", [study])
    return str(study)


def deliveries(node: NodeProcess) -> list[dict[str, Any]]:
    return node.rows("select id, state, attempts, last_error from deliveries order by id")


def wait_all_sent(node: NodeProcess, count: int, timeout: float = 60) -> None:
    wait_until(
        lambda: len(rows := deliveries(node)) == count and all(r["state"] == "sent" for r in rows),
        timeout,
        message=lambda: f"deliveries not all sent: {deliveries(node)}\n{node.describe_logs()}",
    )


def walk(items: Any) -> Iterator[Any]:
    for item in items:
        yield item
        yield from walk(item.get("ContentSequence", []))


def sr_values(ds: pydicom.Dataset) -> dict[str, Any]:
    """Numeric and coded values in the SR content tree, by concept name meaning."""
    found: dict[str, Any] = {}
    for item in walk(ds.ContentSequence):
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "NUM":
            found.setdefault(name, float(item.MeasuredValueSequence[0].NumericValue))
        elif item.ValueType == "CODE":
            found.setdefault(name, item.ConceptCodeSequence[0].CodeMeaning)
    return found


def orthanc_study_objects(orthanc: OrthancProcess, study_id: str) -> list[pydicom.Dataset]:
    out = []
    for instance in orthanc.rest("GET", f"/studies/{study_id}/instances"):
        blob = orthanc.rest("GET", f"/instances/{instance['ID']}/file")
        out.append(dcmread(io.BytesIO(blob)))
    return out


def test_results_arrive_in_orthanc_survive_an_outage_and_rerun_without_duplicates(
    tmp_path: Path,
) -> None:
    require_tool("Orthanc")
    study_uid = generate_uid()
    ct = make_series(tmp_path / "ct", 3, size=64, study_uid=study_uid, modality="CT", seed=11)
    source_series = str(dcmread(ct[0], stop_before_pixels=True).SeriesInstanceUID)

    node = node_for(tmp_path / "node", max_attempts=50)
    orthanc = OrthancProcess(
        modalities={"node": [node.ae_title, "127.0.0.1", node.port]},
        workdir=tmp_path / "orthanc",
        graceful_stop=False,
    )
    with orthanc:
        point_at(node, orthanc.dicom_port, orthanc.aet)
        with node:
            ports = (orthanc.http_port, orthanc.dicom_port)
            orthanc_study = send_study(orthanc, ct)

            # 1. Orthanc goes down before the results are ready: deliveries retry.
            orthanc.kill()
            wait_until(
                lambda: any(r["attempts"] >= 2 and r["last_error"] for r in deliveries(node)),
                60,
                message=lambda: f"no retried delivery: {deliveries(node)}\n{node.describe_logs()}",
            )
            assert all(r["state"] == "pending" for r in deliveries(node))

            # 2. Orthanc is back where the node expects it: every delivery succeeds.
            orthanc.start(ports=ports)
            wait_all_sent(node, OUTPUTS_PER_JOB)
            assert orthanc.instance_count() == len(ct) + OUTPUTS_PER_JOB

            objects = orthanc_study_objects(orthanc, orthanc_study)
            results = [o for o in objects if o.SeriesInstanceUID != source_series]
            assert len(results) == OUTPUTS_PER_JOB
            assert {o.StudyInstanceUID for o in results} == {study_uid}
            assert {o.Modality for o in results} == {"SR", "OT"}
            assert len({o.SeriesInstanceUID for o in results}) >= 2  # new series: SR, SC
            (report,) = [o for o in results if o.Modality == "SR"]
            values = sr_values(report)
            assert values[ANGLE.meaning] == pytest.approx(93.25)
            assert values[ABNORMALITY.meaning] == "Present"
            captures = [o for o in results if o.Modality == "OT"]
            assert all(o.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" for o in captures)
            first_uids = {o.SOPInstanceUID for o in results}

            # 3. A rerun of the job sends the same UIDs: Orthanc counts no new instance.
            (job,) = node.rows("select id from jobs")
            assert node.cli("jobs", "retry", str(job["id"])).returncode == 0
            wait_until(
                lambda: node.scalar("select count(*) from results") == 2,
                60,
                message=lambda: node.describe_logs(),
            )
            wait_all_sent(node, OUTPUTS_PER_JOB)
            assert node.scalar("select count(*) from outputs") == OUTPUTS_PER_JOB
            assert orthanc.instance_count() == len(ct) + OUTPUTS_PER_JOB
            rerun = orthanc_study_objects(orthanc, orthanc_study)
            assert {o.SOPInstanceUID for o in rerun if o.SeriesInstanceUID != source_series} == (
                first_uids
            )

            # The results log shows where the newest result went (the rerun took over
            # the outputs, which have the same UIDs).
            latest = node.cli_json("results", "--format", "json")[-1]
            assert latest["deliveries"].count("→orthanc: sent") == OUTPUTS_PER_JOB


def test_unreachable_destination_goes_dead_then_replays(tmp_path: Path) -> None:
    require_tool("Orthanc")
    ct = make_series(tmp_path / "ct", 2, size=64, study_uid=generate_uid(), modality="CT", seed=12)
    http_port, dicom_port = free_port(), free_port()

    node = node_for(tmp_path / "node", max_attempts=3)
    point_at(node, dicom_port)  # nothing listens there yet
    with node:
        # The study comes straight from a file sender: Orthanc is not up yet.
        sent = node.cli("send", *map(str, ct), "--to", f"127.0.0.1:{node.port}", "--aec", "X")
        assert sent.returncode == 0, sent.stderr

        wait_until(
            lambda: (
                len(rows := deliveries(node)) == OUTPUTS_PER_JOB
                and all(r["state"] == "dead" for r in rows)
            ),
            60,
            message=lambda: f"deliveries not dead: {deliveries(node)}\n{node.describe_logs()}",
        )
        rows = deliveries(node)
        assert all(r["attempts"] == 3 for r in rows)
        assert all("refused" in r["last_error"] or "association" in r["last_error"] for r in rows)
        dead = node.cli_json("deliveries", "--state", "dead", "--format", "json")
        assert len(dead) == OUTPUTS_PER_JOB

        orthanc = OrthancProcess(workdir=tmp_path / "orthanc", graceful_stop=False)
        orthanc.start(ports=(http_port, dicom_port))
        try:
            replay = node.cli("deliveries", "retry", "--all-dead")
            assert replay.returncode == 0, replay.stderr
            assert f"{OUTPUTS_PER_JOB} dead deliveries queued again" in replay.stdout
            wait_all_sent(node, OUTPUTS_PER_JOB)
            assert orthanc.instance_count() == OUTPUTS_PER_JOB
        finally:
            orthanc.kill()
