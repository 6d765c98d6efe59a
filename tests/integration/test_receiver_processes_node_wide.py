"""``receiver_processes = 2``: what must hold for the whole node, not per process.

* ``max_connections_per_peer`` counts one address's connections in every process;
* ``/metrics`` counts the associations, refusals and C-STORE answers of every process;
* TLS applies to every process: TLS peers store through both, plain TCP is refused by both.

Each test runs ``dicom-node serve`` as a real process with real sockets. Which process took
a connection is read from the receiver table (``<storage>/.receivers``): each process
writes its connections per peer address and its counts there. The kernel spreads new
connections over the processes (``SO_REUSEPORT``), so each test opens connections until
both processes have taken some (bounded), and then checks the node's totals against
what it sent.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dicom_node.ingest.receiver_slots import TABLE_NAME, ReceiverEntry, read_table
from tests.integration.conftest import SCU_AET, TLSFiles, store_files
from tests.integration.http_node import READ_TOKEN, metric
from tests.integration.node_process import LOCALHOST, NodeProcess
from tests.integration.test_receiver_admission import closed_by_node, echo
from tests.peers import free_port, wait_until

pytestmark = pytest.mark.timeout(120)

#: A P-DATA-TF as a connection's first PDU: refused before association as "malformed".
P_DATA_FIRST = b"\x04\x00" + struct.pack(">I", 10) + b"x" * 10


def table(node: NodeProcess) -> list[ReceiverEntry]:
    return read_table(node.storage_dir / TABLE_NAME)


@contextlib.contextmanager
def start_node(tmp_path: Path, **overrides: Any) -> Iterator[NodeProcess]:
    settings = {"receiver_processes": 2, **overrides}
    env = {"DNODE_TEST_READ": READ_TOKEN}
    with NodeProcess(tmp_path / "node", overrides=settings, env=env) as node:
        wait_until(lambda: all(e.pid for e in table(node)), 45, message="not listening")
        yield node


def both_took(node: NodeProcess, took: Callable[[ReceiverEntry], object]) -> bool:
    return all(took(entry) for entry in table(node))


# -- the per-peer connection limit -------------------------------------------------------------


def test_the_per_peer_limit_counts_the_connections_of_both_processes(tmp_path: Path) -> None:
    limit = 3
    with start_node(
        tmp_path, max_connections_per_peer=limit, association_request_timeout_seconds=60
    ) as node:
        held: list[socket.socket] = []

        def decided(count: int) -> Callable[[], bool]:
            """Whether the node has taken or refused ``count`` connections."""

            def check() -> bool:
                return count == sum(
                    e.peers.get(LOCALHOST, 0) + e.counts.get("refused:limit", 0)
                    for e in table(node)
                )

            return check

        try:
            # Idle connections from one address (they wait for their request) until both
            # processes have taken some: in rounds of 8, at most 6 rounds.
            for _ in range(6):
                held += [socket.create_connection((LOCALHOST, node.port), 5) for _ in range(8)]
                wait_until(decided(len(held)), 10, message=lambda: str(table(node)))
                if both_took(node, lambda e: e.peers or e.counts.get("refused:limit")):
                    break
            entries = table(node)
            assert all(e.peers or e.counts.get("refused:limit") for e in entries), entries
            # Exactly `limit` admitted in the whole node; every other one closed at once.
            assert sum(e.peers.get(LOCALHOST, 0) for e in entries) == limit
            refused = [sock for sock in held if closed_by_node(sock, timeout=0.5)]
            assert len(refused) == len(held) - limit
            assert sum(e.counts.get("refused:limit", 0) for e in entries) == len(refused)
            # A real association from the same address is refused too, by either process.
            assert echo(node.port) is None
            # One admitted connection closes: its place is free at once, for either process.
            waiting = [sock for sock in held if sock not in refused]
            waiting.pop().close()
            wait_until(lambda: sum(e.peers.get(LOCALHOST, 0) for e in table(node)) == limit - 1, 5)
            assert echo(node.port) == 0
        finally:
            for sock in held:
                sock.close()
        wait_until(
            lambda: not any(e.peers for e in table(node)), 10, message=lambda: str(table(node))
        )
        assert echo(node.port) == 0


# -- /metrics ---------------------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    request = urllib.request.Request(f"http://{LOCALHOST}:{port}/metrics")
    request.add_header("Authorization", f"Bearer {READ_TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def serving(port: int) -> bool:
    try:
        return bool(scrape(port))
    except OSError:
        return False


def receiver_totals(samples: dict[str, float]) -> dict[str, float]:
    return {
        "accepted": metric(samples, "dicom_node_associations_accepted_total"),
        "rejected": metric(
            samples, "dicom_node_associations_rejected_total", reason="association_rejected"
        ),
        "malformed": metric(samples, "dicom_node_associations_rejected_total", reason="malformed"),
        "0xC002": metric(samples, "dicom_node_stores_refused_total", status="0xC002"),
        "instances": metric(samples, "dicom_node_instances_received_total"),
    }


def test_metrics_count_what_every_receiver_process_did(
    tmp_path: Path, make_instance: Callable[..., Path]
) -> None:
    http_port = free_port()
    http = {"enabled": True, "port": http_port, "token_env": "DNODE_TEST_READ"}
    callers = [{"ae_title": SCU_AET}]
    with start_node(tmp_path, http=http, allowed_callers=callers, max_associations=8) as node:
        wait_until(lambda: serving(http_port), 20, message="no /metrics")
        sent = {"accepted": 0, "rejected": 0, "malformed": 0, "0xC002": 0, "instances": 0}
        # Rounds of: an association storing two instances and one whose request and data
        # set disagree (0xC002), an association from a calling AE not allowed, and a
        # connection whose first PDU is no association request; until both processes
        # accepted associations and refused something (at most 12 rounds).
        for _ in range(12):
            good = [make_instance(), make_instance()]
            mismatched = make_instance(media_sop_uid="1.2.3.4.5")
            outcome = store_files(node.port, [*good, mismatched])
            assert outcome.statuses == [0x0000, 0x0000, 0xC002]
            sent["accepted"] += 1
            sent["instances"] += 2
            sent["0xC002"] += 1
            assert not store_files(node.port, good, calling_aet="INTRUDER").established
            sent["rejected"] += 1
            with socket.create_connection((LOCALHOST, node.port), 5) as sock:
                sock.sendall(P_DATA_FIRST)
                assert closed_by_node(sock)
            sent["malformed"] += 1
            if both_took(node, lambda e: e.counts.get("accepted") and e.counts.get("rejected")):
                break
        entries = table(node)
        assert all(e.counts.get("accepted") for e in entries), entries
        assert all(e.counts.get("rejected") for e in entries), entries
        # The serve process alone saw fewer than were sent; /metrics counts them all.
        wait_until(
            lambda: receiver_totals(scrape(http_port)) == sent,
            10,
            message=lambda: f"{receiver_totals(scrape(http_port))} != sent {sent}",
        )
        samples = scrape(http_port)
        stored_bytes = node.scalar("select sum(size_bytes) from instances")
        assert metric(samples, "dicom_node_received_bytes_total") == stored_bytes
        by_entry = [e.counts.get("accepted", 0) for e in entries]
        assert sum(by_entry) == sent["accepted"] and min(by_entry) > 0


# -- TLS --------------------------------------------------------------------------------------


@pytest.mark.peers  # the certificates are made with the openssl program
def test_tls_stores_through_both_processes_and_refuses_plain_tcp(
    tmp_path: Path, tls_files: TLSFiles, make_instance: Callable[..., Path]
) -> None:
    tls = {
        "enabled": True,
        "cert": tls_files.server_cert,
        "key": tls_files.server_key,
        "ca": tls_files.ca_cert,
        "require_client_cert": False,
    }
    context = tls_files.client_context()
    with start_node(tmp_path, tls=tls, max_associations=8) as node:
        acknowledged: set[str] = set()
        # One TLS association at a time until each process has stored (at most 20).
        for _ in range(20):
            path = make_instance()
            outcome = store_files(node.port, [path], tls=(context, "localhost"))
            assert outcome.established and outcome.statuses == [0x0000]
            acknowledged.add(path.name)
            if both_took(node, lambda e: e.stores):
                break
        entries = table(node)
        assert all(e.stores for e in entries), f"not every process stored over TLS: {entries}"
        assert sum(e.stores for e in entries) == len(acknowledged)
        assert node.scalar("select count(*) from instances") == len(acknowledged)
        # Plain TCP: refused by either process, at the handshake (at most 20 tries). The
        # node's start was awaited by a bare connect, a refusal too: count from here.
        before = [e.counts.get("refused:tls", 0) for e in entries]

        def refused_here() -> list[int]:
            return [
                e.counts.get("refused:tls", 0) - b for e, b in zip(table(node), before, strict=True)
            ]

        plain = 0
        for _ in range(20):
            assert not store_files(node.port, [make_instance()], timeout=5).established
            plain += 1
            if min(refused_here()) > 0:
                break
        assert min(refused_here()) > 0, f"not every process refused plain TCP: {table(node)}"
        assert sum(refused_here()) == plain
        entries = table(node)
        assert sum(e.counts.get("accepted", 0) for e in entries) == len(acknowledged)
        assert node.scalar("select count(*) from instances") == len(acknowledged)
