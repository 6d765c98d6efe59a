"""Deliveries in process: each (output, destination) pair is retried on its own, with
exponential backoff kept in the database, and only the failed pairs are sent again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql

from dicom_node.clock import utcnow
from dicom_node.db.models import Delivery, DeliveryState, Output
from dicom_node.flow import NodeParts
from dicom_node.ingest.stable import promote_stable_studies
from dicom_node.output.deliver import Deliverer, due_deliveries_query, replay_dead
from dicom_node.settings import NodeSettings
from tests.integration.conftest import RunningReceiver, build_node_settings
from tests.peers import dciodvfy, find_tool, free_port

pytestmark = pytest.mark.timeout(120)

PIPELINES = {"reporting_demo": "tests.support.pipelines:ReportingDemo"}


def run_one_job(
    settings: NodeSettings,
    receiver: Callable[..., RunningReceiver],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> NodeParts:
    """A node with these settings receives one CT instance, the study is promoted and
    ``reporting_demo`` runs: its outputs and deliveries are in the database."""
    node = receiver(settings=settings)
    assert store_scu(node.port, [make_instance("a.dcm")]).statuses == [0]
    parts = NodeParts.open(settings)
    report = promote_stable_studies(
        parts.engine, parts.queue, settings.routes, 0, now=utcnow() + timedelta(seconds=1)
    )
    assert report.jobs_created == 1
    outcome = parts.worker().run_once()
    assert outcome is not None and outcome.state == "done", outcome
    return parts


def ct_route(*destinations: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "ct",
            "pipelines": ["reporting_demo"],
            "modality": ["CT"],
            "destinations": list(destinations),
        }
    ]


def test_only_failed_pairs_are_retried_with_backoff(
    tmp_path: Path,
    receiver: Callable[..., RunningReceiver],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> None:
    pacs = receiver(settings=build_node_settings(tmp_path / "pacs", ae_title="PACS"))
    settings = build_node_settings(
        tmp_path / "node",
        routes=ct_route("pacs", "gone"),
        destinations=[
            {"name": "pacs", "host": "127.0.0.1", "port": pacs.port, "ae_title": "PACS"},
            {"name": "gone", "host": "127.0.0.1", "port": free_port(), "ae_title": "GONE"},
        ],
        extra_pipelines=PIPELINES,
        delivery={"max_attempts": 3, "first_retry_seconds": 30, "max_retry_seconds": 600},
    )
    parts = run_one_job(settings, receiver, make_instance, store_scu)

    with parts.engine.connect() as conn:
        outputs = conn.execute(select(Output.id, Output.path)).all()
    assert len(outputs) == 5  # one SR and four SC images
    assert all((settings.outputs_dir / o.path).is_file() for o in outputs)
    if find_tool("dciodvfy"):  # the source has no Pixel Spacing: the SR has no image library
        for o in outputs:
            errors, _warnings = dciodvfy(settings.outputs_dir / o.path)
            assert errors == [], (o.path, errors)

    deliverer: Deliverer = parts.deliverer()
    before = utcnow()
    first = deliverer.run_once()
    assert len(first.sent) == 5 and len(first.retrying) == 5 and not first.dead
    assert len(pacs.instances()) == 5

    def rows(destination: str) -> list[Any]:
        with parts.engine.connect() as conn:
            return list(
                conn.execute(select(Delivery).where(Delivery.destination == destination)).all()
            )

    assert all(r.state == DeliveryState.SENT and r.attempts == 1 for r in rows("pacs"))
    for row in rows("gone"):
        assert (row.state, row.attempts) == (DeliveryState.PENDING, 1)
        assert "gone" in row.last_error
        # First retry after 30 s.
        assert before + timedelta(seconds=29) < row.next_attempt_at
        assert row.next_attempt_at < utcnow() + timedelta(seconds=31)

    # Nothing is due yet: nothing is sent, nothing changes.
    assert deliverer.run_once().sent == deliverer.run_once().retrying == []

    def make_due() -> None:
        with parts.engine.begin() as conn:
            conn.execute(
                update(Delivery)
                .where(Delivery.state == DeliveryState.PENDING)
                .values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )

    make_due()
    second = deliverer.run_once()
    assert sorted(second.retrying) == sorted(r.id for r in rows("gone"))
    assert second.sent == []
    assert len(pacs.instances()) == 5  # the pairs that were sent are not sent again
    for row in rows("gone"):
        assert row.attempts == 2
        delay = (row.next_attempt_at - utcnow()).total_seconds()
        assert 55 < delay <= 60  # doubled

    make_due()
    third = deliverer.run_once()
    assert sorted(third.dead) == sorted(r.id for r in rows("gone"))
    assert all(r.state == DeliveryState.DEAD and r.attempts == 3 for r in rows("gone"))
    assert all(r.state == DeliveryState.SENT and r.attempts == 1 for r in rows("pacs"))

    # A replay of one dead pair queues only that pair.
    one = rows("gone")[0].id
    assert replay_dead(parts.engine, [one]) == 1
    states = {r.id: r.state for r in rows("gone")}
    assert states.pop(one) == DeliveryState.PENDING
    assert set(states.values()) == {DeliveryState.DEAD}
    parts.engine.dispose()


def test_backoff_doubles_and_is_capped(tmp_path: Path) -> None:
    settings = build_node_settings(
        tmp_path, delivery={"first_retry_seconds": 30, "max_retry_seconds": 600}
    )
    deliverer = NodeParts.open(settings).deliverer()
    assert [deliverer.backoff_seconds(n) for n in range(1, 8)] == [
        30,
        60,
        120,
        240,
        480,
        600,
        600,
    ]


def test_two_deliverers_never_take_the_same_pair(
    tmp_path: Path,
    receiver: Callable[..., RunningReceiver],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> None:
    settings = build_node_settings(
        tmp_path / "node",
        routes=ct_route("x"),
        destinations=[{"name": "x", "host": "127.0.0.1", "port": free_port(), "ae_title": "X"}],
        extra_pipelines=PIPELINES,
    )
    parts = run_one_job(settings, receiver, make_instance, store_scu)

    first, second = parts.deliverer(), NodeParts.open(settings).deliverer()
    now = utcnow()
    taken = first.claim_due(now)
    assert len(taken) == 5
    assert second.claim_due(now) == []  # claimed: invisible to the other deliverer

    # The first deliverer dies before recording anything: after the claim period the
    # pairs are due again, for anyone.
    later = now + timedelta(seconds=first.claim_seconds + 1)
    retaken = second.claim_due(later)
    assert sorted(d.id for d in retaken) == sorted(d.id for d in taken)
    assert all(d.attempts == 0 for d in retaken)
    parts.engine.dispose()


def test_the_postgresql_claim_skips_locked_rows() -> None:
    sql = str(due_deliveries_query(utcnow()).compile(dialect=postgresql.dialect()))
    assert sql.rstrip().endswith("FOR UPDATE OF deliveries SKIP LOCKED")
