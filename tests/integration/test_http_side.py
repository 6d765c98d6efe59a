"""The HTTP side of a real in-process node (receiver, scheduler, uvicorn on free ports):
health and readiness, /metrics moving by the right amounts as a study goes through,
authentication and the error pages."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tests.integration.conftest import store_files
from tests.integration.http_node import (
    READ_TOKEN,
    WRITE_TOKEN,
    HttpNode,
    metric,
    start_http_node,
)
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(60)

PATIENT_TEXTS = ("Test^Integration", "Test", "IT-0001")


@pytest.fixture
def http_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., HttpNode]]:
    started: list[HttpNode] = []

    def start(**overrides: object) -> HttpNode:
        node = start_http_node(tmp_path / f"node{len(started)}", monkeypatch, **overrides)
        started.append(node)
        return node

    yield start
    for node in started:
        node.node.stop()


def test_healthz_and_readyz_need_no_token(http_node: Callable[..., HttpNode]) -> None:
    node = http_node()
    assert node.get("/healthz", token=None).json() == {"status": "ok"}
    ready = node.get("/readyz", token=None)
    assert (ready.status, ready.json()) == (200, {"status": "ready"})


def test_readyz_is_unready_while_the_database_file_is_gone(
    http_node: Callable[..., HttpNode], tmp_path: Path
) -> None:
    node = http_node()
    database = tmp_path / "node0" / "node.sqlite"
    moved = database.with_name("moved.sqlite")
    # Paused: its next connection would create an empty file in the database's place.
    node.node.scheduler.pause()
    os.rename(database, moved)
    try:
        reply = node.get("/readyz", token=None)
        assert reply.status == 503
        assert reply.json()["reasons"] == ["database: the SQLite file is missing"]
    finally:
        os.rename(moved, database)
        node.node.scheduler.resume()
    assert node.get("/readyz", token=None).status == 200


def test_readyz_is_unready_below_min_free_bytes(http_node: Callable[..., HttpNode]) -> None:
    node = http_node(min_free_bytes=2**62)
    reply = node.get("/readyz", token=None)
    assert reply.status == 503
    (reason,) = reply.json()["reasons"]
    assert reason.startswith("storage: ") and "below min_free_bytes=4611686018427387904" in reason


def test_metrics_move_by_what_a_study_did(
    http_node: Callable[..., HttpNode], make_instance: Callable[..., Path]
) -> None:
    node = http_node()
    before = node.metrics()
    study, series = generate_uid(), generate_uid()
    films = [make_instance(study_uid=study, series_uid=series, instance_number=n) for n in (1, 2)]
    assert store_files(node.port, films).statuses == [0, 0]
    mismatched = make_instance(media_sop_uid=generate_uid())  # request and dataset disagree
    assert store_files(node.port, [mismatched]).statuses == [0xC002]
    assert not store_files(node.port, films, calling_aet="INTRUDER").established
    node.run_job()
    outputs = node.scalar("select count(*) from outputs")
    wait_until(
        lambda: node.scalar("select count(*) from deliveries where state = 'dead'") == outputs,
        timeout=20,
        message="the deliveries to a closed port did not end dead",
    )
    after = node.metrics()

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("dicom_node_instances_received_total") == 2
    stored_bytes = node.scalar("select sum(size_bytes) from instances")
    assert moved("dicom_node_received_bytes_total") == stored_bytes
    assert moved("dicom_node_associations_accepted_total") == 2
    assert moved("dicom_node_associations_rejected_total", reason="association_rejected") == 1
    assert moved("dicom_node_stores_refused_total", status="0xC002") == 1
    assert metric(after, "dicom_node_studies", state="stable") == 1
    assert metric(after, "dicom_node_jobs", state="done", pipeline="reporting_demo") == 1
    labels = {"pipeline": "reporting_demo", "state": "done"}
    assert moved("dicom_node_job_duration_seconds_count", **labels) == 1
    took = node.scalar("select (julianday(finished_at) - julianday(started_at)) * 86400 from jobs")
    assert moved("dicom_node_job_duration_seconds_sum", **labels) == pytest.approx(took, abs=0.01)
    assert moved("dicom_node_inference_seconds_count", pipeline="reporting_demo") == 1
    inference = metric(after, "dicom_node_inference_seconds_sum", pipeline="reporting_demo")
    assert 0 <= inference <= took + 0.01
    assert outputs == 5  # an SR and four SC images
    assert metric(after, "dicom_node_deliveries", state="dead", destination="nowhere") == 5
    assert metric(after, "dicom_node_oldest_pending_delivery_age_seconds") == 0
    # A second scrape counts the finished job once only.
    again = node.metrics()
    assert metric(again, "dicom_node_job_duration_seconds_count", **labels) == metric(
        after, "dicom_node_job_duration_seconds_count", **labels
    )


def test_the_token_guards_pages_and_metrics_and_only_a_write_token_retries(
    http_node: Callable[..., HttpNode], make_instance: Callable[..., Path]
) -> None:
    node = http_node()
    assert node.get("/metrics", token=None, accept="text/plain").status == 401
    refused = node.get("/studies", token=None)
    assert refused.status == 401 and 'name="token"' in refused.text
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert node.get("/studies", token="wrong").status == 401
    assert node.get("/studies").status == 200

    assert store_files(node.port, [make_instance()]).statuses == [0]
    node.run_job()
    wait_until(
        lambda: node.scalar("select count(*) from deliveries where state = 'dead'") == 5,
        timeout=20,
    )
    dead = node.scalar("select min(id) from deliveries")
    study = node.scalar("select study_instance_uid from studies")
    assert "Send again" not in node.get(f"/studies/{study}").text  # read token: no buttons
    assert "Send again" in node.get(f"/studies/{study}", token=WRITE_TOKEN).text
    retry = f"/deliveries/{dead}/retry"
    assert node.request("POST", retry, token=None).status == 401
    assert node.request("POST", retry, token=READ_TOKEN).status == 403
    forged = node.request("POST", retry, token=WRITE_TOKEN, Origin="http://elsewhere.example")
    assert forged.status == 403
    assert node.scalar(f"select state from deliveries where id = {dead}") == "dead"
    # Queued again (a 409 otherwise), then the redirect back to the deliveries page.
    assert node.request("POST", retry, token=WRITE_TOKEN).status == 200
    assert node.request("POST", "/deliveries/999999/retry", token=WRITE_TOKEN).status == 404
    sent = node.request("POST", "/jobs/1/retry", token=WRITE_TOKEN)  # done: queued again
    assert sent.status == 200 and node.scalar("select state from jobs") == "queued"
    assert node.request("POST", "/jobs/1/retry", token=WRITE_TOKEN).status == 409


def test_bad_input_gives_404_and_400_pages_without_traces_or_patient_data(
    http_node: Callable[..., HttpNode], make_instance: Callable[..., Path]
) -> None:
    node = http_node()
    assert store_files(node.port, [make_instance()]).statuses == [0]
    study = node.scalar("select study_instance_uid from studies")
    page = node.get(f"/studies/{study}")
    assert page.status == 200 and study in page.text
    listing = node.get("/studies")
    for text in PATIENT_TEXTS[::2]:
        assert text not in page.text and text not in listing.text
    for path, status, reason in (
        ("/studies/1.2.3.4", 404, "no study with that Study Instance UID"),
        ("/studies/%3Cscript%3E", 404, "no study with that Study Instance UID"),
        ("/jobs?state=exploded", 400, "state must be one of"),
        ("/jobs?since=yesterday", 400, "since must be an ISO date"),
        ("/deliveries?destination=a%20b", 400, "destination must be"),
        ("/studies?state=gone", 400, "state must be one of"),
        ("/outputs/1.2.3.png", 404, "no SC image"),
        ("/no/such/page", 404, "Not Found"),
    ):
        reply = node.get(path)
        assert reply.status == status, (path, reply.text)
        assert reason in reply.text and "Traceback" not in reply.text
        assert "<h1>" in reply.text  # a page, with the reason


def test_basic_credentials_read_and_identifiers_show_only_when_configured(
    http_node: Callable[..., HttpNode],
    make_instance: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DNODE_TEST_BASIC", "radiology:pass word")
    http = {"enabled": True, "port": 0, "basic_env": "DNODE_TEST_BASIC"}
    node = http_node(http={**http, "show_patient_identifiers": True})
    assert store_files(node.port, [make_instance()]).statuses == [0]
    study = node.scalar("select study_instance_uid from studies")
    good = "Basic " + base64.b64encode(b"radiology:pass word").decode()
    bad = "Basic " + base64.b64encode(b"radiology:guess").decode()
    assert node.get("/studies", token=None, Authorization=bad).status == 401
    refused = node.get("/metrics", token=None, accept="text/plain")
    assert refused.headers["www-authenticate"].startswith("Basic")
    page = node.get(f"/studies/{study}", token=None, Authorization=good)
    assert page.status == 200 and "Test^Integration (IT-0001)" in page.text
    assert "Run again" not in page.text  # basic credentials read only
