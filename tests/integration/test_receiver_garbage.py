"""Garbage connections (issue 24, item 5): random bytes, truncated and lying PDUs, a valid
association request header with a garbage body. The node stays up, answers C-ECHO after
them, logs one line per problem (never a traceback) and a bounded number of lines per
peer and minute."""

from __future__ import annotations

import logging
import random
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest

from dicom_node.ingest.peer_log import LINES_PER_MINUTE, PeerLineLimit
from tests.integration.conftest import LOCALHOST
from tests.integration.test_receiver_admission import echo, recorded_association_request
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(240)

CONNECTIONS = 1000


def garbage(rng: random.Random, request: bytes, index: int) -> bytes:
    kind = index % 5
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(1, 512))
    if kind == 1:  # an association request cut short
        return request[: rng.randrange(1, len(request))]
    if kind == 2:  # a header lying about its length
        return b"\x01\x00" + struct.pack(">I", rng.randrange(1, 60_000)) + rng.randbytes(64)
    if kind == 3:  # a valid header, a garbage body of the announced length
        body = rng.randbytes(len(request) - 6)
        return request[:6] + body
    # a well-formed request with its items' lengths corrupted
    corrupted = bytearray(request)
    for _ in range(8):
        corrupted[rng.randrange(10, len(corrupted))] = rng.randrange(256)
    return bytes(corrupted)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_thousand_garbage_connections_leave_the_node_up_and_the_log_bounded(
    receiver: Callable[..., Any],
) -> None:
    node = receiver(association_request_timeout_seconds=0.5, max_connections_per_peer=64)
    request = recorded_association_request()
    rng = random.Random(2024)
    lines = Lines()
    watched = [logging.getLogger("pynetdicom"), logging.getLogger("dicom_node")]
    for logger in watched:
        logger.addHandler(lines)
    try:
        for index in range(CONNECTIONS):
            with socket.create_connection((LOCALHOST, node.port), timeout=5) as sock:
                try:
                    sock.sendall(garbage(rng, request, index))
                except OSError:
                    pass  # the node closed it first
        wait_until(lambda: echo(node.port) == 0, 30, message="the node does not answer C-ECHO")
    finally:
        for logger in watched:
            logger.removeHandler(lines)

    warnings = [r for r in lines.records if r.levelno >= logging.WARNING]
    assert all(r.exc_info is None and not r.exc_text for r in lines.records), "a traceback"
    assert all("\n" not in r.getMessage() for r in warnings)
    # All from one address: a few minutes' worth of lines at most, not one per connection.
    assert len(warnings) <= 6 * LINES_PER_MINUTE, len(warnings)
    assert sum(node.receiver.ae.admission_refusals.snapshot().values()) >= CONNECTIONS * 0.5


def test_the_limit_counts_per_peer_and_window() -> None:
    now = [0.0]
    limit = PeerLineLimit(per_minute=3, clock=lambda: now[0])
    assert [limit.allow("a")[0] for _ in range(5)] == [True, True, True, False, False]
    assert limit.allow("b") == (True, 0)  # another peer has its own count
    now[0] = 61.0
    assert limit.allow("a") == (True, 2)  # says how many were dropped
    assert limit.allow("a") == (True, 0)


def test_the_filter_turns_a_traceback_into_one_line() -> None:
    from dicom_node.ingest.peer_log import PeerLogFilter

    try:
        raise ValueError("bad item length")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "pynetdicom.dul", logging.ERROR, __file__, 1, "Unable to decode", (), sys.exc_info()
        )
    assert PeerLogFilter(PeerLineLimit()).filter(record)
    assert record.exc_info is None
    assert record.getMessage() == "Unable to decode (ValueError: bad item length)"
