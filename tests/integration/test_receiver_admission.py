"""Admission before association (issue 24, item 1): idle, silent, oversized and malformed
connections never take an association slot, a closed socket frees its place at once, and
one peer address holds at most ``max_connections_per_peer`` connections."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dicom_node.ingest.receive import StoreStatus
from tests.integration.conftest import LOCALHOST, scu_ae
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(120)


@contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections that send nothing, closed on exit."""
    held = [socket.create_connection((LOCALHOST, port), timeout=5) for _ in range(count)]
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def echo(port: int) -> int | None:
    """A real C-ECHO: its status, or None when no association was made."""
    ae = scu_ae(timeout=10)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(LOCALHOST, port, ae_title="DICOM_NODE")
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status else None
    finally:
        assoc.release()


def closed_by_node(sock: socket.socket, timeout: float = 10) -> bool:
    """Whether the node closed ``sock`` (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_connections_take_no_association_slot(
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> None:
    # The idle connections would wait the whole 30 s: only admission keeps them out.
    node = receiver(
        max_associations=10,
        acse_timeout_seconds=30,
        association_request_timeout_seconds=30,
        max_connections_per_peer=400,
    )
    with idle_connections(node.port, 200):
        assert echo(node.port) == 0
        outcome = store_scu(node.port, [make_instance()])
        assert outcome.statuses == [StoreStatus.SUCCESS]
        assert node.receiver.ae.admission_refusals.snapshot() == {}  # still waiting
    assert echo(node.port) == 0


def test_a_peer_is_limited_and_its_closed_sockets_free_their_place_at_once(
    receiver: Callable[..., Any],
) -> None:
    node = receiver(max_connections_per_peer=3, association_request_timeout_seconds=30)
    with idle_connections(node.port, 3):
        wait_until(
            lambda: (
                node.receiver.ae.admission_refusals.snapshot() == {} and echo(node.port) is None
            ),
            10,
            message="a 4th connection from the same address was admitted",
        )
        assert node.receiver.ae.admission_refusals.snapshot().get("limit", 0) >= 1
    # Closed: their places are free without waiting for any timeout.
    wait_until(lambda: echo(node.port) == 0, 5, message="slots were not freed on close")


def test_a_silent_connection_is_closed_at_the_deadline(receiver: Callable[..., Any]) -> None:
    node = receiver(association_request_timeout_seconds=0.5)
    with idle_connections(node.port, 1) as (sock,):
        assert closed_by_node(sock)
    assert node.receiver.ae.admission_refusals.snapshot() == {"deadline": 1}
    assert echo(node.port) == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(
            b"\x04\x00" + struct.pack(">I", 10) + b"x" * 10, "malformed", id="p-data-first"
        ),
        pytest.param(b"\x01\x00" + struct.pack(">I", 1 << 20), "too large", id="1-mib-request"),
        pytest.param(b"\x01\x00" + struct.pack(">I", 500) + b"y" * 20, "deadline", id="truncated"),
    ],
)
def test_garbage_before_association_is_closed_and_counted(
    receiver: Callable[..., Any], payload: bytes, reason: str
) -> None:
    node = receiver(association_request_timeout_seconds=1)
    with idle_connections(node.port, 1) as (sock,):
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # the rest of the request never comes
        assert closed_by_node(sock)
    wait_until(
        lambda: node.receiver.ae.admission_refusals.snapshot() == {reason: 1},
        5,
        message=lambda: str(node.receiver.ae.admission_refusals.snapshot()),
    )
    assert echo(node.port) == 0


def recorded_association_request() -> bytes:
    """The A-ASSOCIATE-RQ a pynetdicom SCU sends, caught by a plain socket."""
    listener = socket.create_server((LOCALHOST, 0))
    port = listener.getsockname()[1]
    ae = scu_ae(timeout=1)
    ae.add_requested_context("1.2.840.10008.1.1")
    caller = threading.Thread(target=lambda: ae.associate(LOCALHOST, port, ae_title="DICOM_NODE"))
    caller.start()
    connection, _ = listener.accept()
    connection.settimeout(5)
    data = connection.recv(6)
    (length,) = struct.unpack_from(">I", data, 2)
    while len(data) < 6 + length:
        data += connection.recv(6 + length - len(data))
    connection.close()
    listener.close()
    caller.join()
    return data


def test_a_request_that_arrives_in_pieces_is_admitted(receiver: Callable[..., Any]) -> None:
    """A slow network splits the request: it is waited for, not refused."""
    node = receiver(association_request_timeout_seconds=5)
    request = recorded_association_request()
    assert request[0] == 0x01
    with idle_connections(node.port, 1) as (sock,):
        for start in range(0, len(request), 7):
            sock.sendall(request[start : start + 7])
            time.sleep(0.005)
        sock.settimeout(10)
        answer = sock.recv(1)
    assert answer == b"\x02"  # A-ASSOCIATE-AC
    assert node.receiver.ae.admission_refusals.snapshot() == {}


def test_request_problem_checks_the_structure_of_a_request() -> None:
    from dicom_node.ingest.admission import request_problem

    good = recorded_association_request()
    assert request_problem(good) is None
    bad_title = good[:10] + b"\x01" * 16 + good[26:]
    assert "AE title" in (request_problem(bad_title) or "")
    cut = good[:-3]
    assert "do not add up" in (request_problem(cut) or "")
    # The first item (the application context) turned into an unknown item type.
    unknown = good[:74] + b"\x99" + good[75:]
    assert "unknown item 0x99" in (request_problem(unknown) or "")
    # A presentation context's abstract syntax with a letter in it.
    at = good.index(b"1.2.840.10008.1.1", good.index(b"\x30\x00"))
    not_uid = good[:at] + b"X" + good[at + 1 :]
    assert "presentation context" in (request_problem(not_uid) or "")
    assert "shorter" in (request_problem(good[:40]) or "")
