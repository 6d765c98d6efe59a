"""The PDU cap on receive (issue 24, item 2): a PDU announcing more than the receiver
takes is answered with A-ABORT before its body is read, and the node goes on."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dicom_node.ingest.pdu_limit import A_ABORT_INVALID_PARAMETER, receive_limit
from dicom_node.ingest.receive import StoreStatus
from tests.integration.conftest import LOCALHOST
from tests.integration.test_receiver_admission import echo, recorded_association_request

pytestmark = pytest.mark.timeout(60)


def associated(port: int) -> socket.socket:
    """A raw connection with an accepted association (the A-ASSOCIATE-AC read)."""
    sock = socket.create_connection((LOCALHOST, port), timeout=10)
    sock.sendall(recorded_association_request())
    header = sock.recv(6, socket.MSG_WAITALL)
    assert header[0] == 0x02, header  # A-ASSOCIATE-AC
    (length,) = struct.unpack_from(">I", header, 2)
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return sock


def test_a_pdu_claiming_a_gibibyte_is_aborted_before_its_body_is_read(
    receiver: Callable[..., Any], make_instance: Callable[..., Path], store_scu: Callable[..., Any]
) -> None:
    node = receiver(max_pdu_bytes=1024 * 1024)
    sock = associated(node.port)
    try:
        # A P-DATA-TF announcing 1 GiB, and the first KiB of it.
        sock.sendall(b"\x04\x00" + struct.pack(">I", 1 << 30) + b"\x00" * 1024)
        sock.settimeout(10)
        answer = sock.recv(len(A_ABORT_INVALID_PARAMETER), socket.MSG_WAITALL)
        after = sock.recv(1)
    finally:
        sock.close()
    assert answer == A_ABORT_INVALID_PARAMETER  # at once: the body is never waited for
    assert after == b""  # and the connection is closed
    # The node is up and serves the next peer.
    assert echo(node.port) == 0
    assert store_scu(node.port, [make_instance()]).statuses == [StoreStatus.SUCCESS]


def test_the_limit_follows_max_pdu_bytes() -> None:
    assert receive_limit(0) is None
    assert receive_limit(16 * 1024) == 64 * 1024  # an association request may be larger
    assert receive_limit(4 * 1024 * 1024) == 4 * 1024 * 1024


def test_pdus_within_the_limit_are_read_as_always(
    receiver: Callable[..., Any], make_instance: Callable[..., Path], store_scu: Callable[..., Any]
) -> None:
    node = receiver(max_pdu_bytes=16 * 1024)
    paths = [make_instance(rows=256, columns=256) for _ in range(3)]  # 128 KiB each
    assert store_scu(node.port, paths).statuses == [StoreStatus.SUCCESS] * 3
