"""A bounded fuzz test of the receiver's association and DIMSE layers (issue 24).

Hypothesis builds connections (``tests/support/pdu_fuzz.py``): A-ASSOCIATE-RQs with bent
item types, lying or truncated lengths, odd AE titles, presentation contexts and user
information sub-items (maximum length, implementation UID, asynchronous operations, role
selection, extended negotiation, user identity); and, after a valid association,
P-DATA-TF PDUs with lying PDV lengths, wrong message control headers and context ids,
DIMSE command sets with a wrong Command Field, elements left out or of the wrong size,
garbage elements and a bad group length, fragments out of order, and other PDUs out of
turn (release, abort, a second request, unknown types). Each case goes over a real socket
to a real receiver on loopback, and its client ends the connection in one of four ways:
an A-RELEASE-RQ and read until the node releases, aborts or closes; the same after a
half-close; close at once; or hold it open until the node ends it (at most
``HELD_CASES`` of those: each waits for the node's network timeout).

Properties, per case: the connection ends within ``ENDS_WITHIN`` seconds; the node's
side is clean again within that time (no association, no connection waiting for
admission, no thread left over, no spool file left behind); no thread dies of an
exception; the listener is alive. After the run: the node answers a real C-ECHO and
accepts a real C-STORE, nothing printed a traceback, and the node logged a bounded
number of warning lines (one per problem, ``LINES_PER_MINUTE`` per peer and minute).

CI runs ``DEFAULT_EXAMPLES`` cases with a fixed seed (under a minute on two cores). A
longer local run, with another seed::

    DICOM_NODE_FUZZ_EXAMPLES=5000 DICOM_NODE_FUZZ_SEED=7 \\
        .venv/bin/python -m pytest tests/integration/test_receiver_fuzz.py -q

(the pytest timeout grows with the example count).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, seed, settings

from dicom_node.ingest.peer_log import LINES_PER_MINUTE
from dicom_node.ingest.receive import StoreStatus
from tests.integration.conftest import LOCALHOST, RunningReceiver
from tests.integration.test_receiver_admission import echo
from tests.support import pdu_fuzz
from tests.support.pdu_fuzz import ABORT, RELEASE_RP, Case

DEFAULT_EXAMPLES = 200
EXAMPLES = int(os.environ.get("DICOM_NODE_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
SEED = int(os.environ.get("DICOM_NODE_FUZZ_SEED", "24"))

#: The node's timeouts in this test (seconds): short, so that held connections end soon.
NODE_TIMEOUTS = {
    "association_request_timeout_seconds": 0.5,
    "acse_timeout_seconds": 1.0,
    "dimse_timeout_seconds": 1.0,
    "network_timeout_seconds": 1.0,
}
#: At most this many cases hold their connection open until the node ends it (each takes
#: the node's network timeout); further ones are rejected (Hypothesis draws others).
HELD_CASES = max(1, EXAMPLES // 16)
#: A connection, and the node's side of it, must have ended this long after the client
#: stopped sending: the longest timeout above plus room for a busy two-core machine.
ENDS_WITHIN = 8.0

pytestmark = [
    pytest.mark.timeout(120 + EXAMPLES * 2),
    # pydicom warns (and logs, within the per-peer limit) about the values it decodes
    # from fuzzed command sets: expected here.
    pytest.mark.filterwarnings("ignore::UserWarning:pydicom"),
]


class Lines(logging.Handler):
    """Every record the watched loggers let through."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def lines_by(records: list[logging.LogRecord]) -> dict[str, int]:
    """How many records each logger wrote (for a failure message)."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.name] = counts.get(record.name, 0) + 1
    return counts


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    lines = Lines()
    watched = [logging.getLogger(name) for name in ("pynetdicom", "dicom_node", "pydicom")]
    for logger in watched:
        logger.addHandler(lines)
    try:
        yield lines
    finally:
        for logger in watched:
            logger.removeHandler(lines)


@pytest.fixture
def thread_deaths() -> Iterator[list[str]]:
    """Exceptions that ended a thread (``threading.excepthook``), as one line each."""
    deaths: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "?"
        deaths.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")

    threading.excepthook = hook
    try:
        yield deaths
    finally:
        threading.excepthook = previous


# -- the client ------------------------------------------------------------------------------


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    """One whole PDU (type, body) from ``sock``; raises on a short read."""
    header = sock.recv(6, socket.MSG_WAITALL)
    if len(header) < 6:
        raise ConnectionError(f"the node closed after {len(header)} header byte(s)")
    (length,) = struct.unpack_from(">I", header, 2)
    body = sock.recv(length, socket.MSG_WAITALL) if length else b""
    if len(body) < length:
        raise ConnectionError("the node closed within a PDU")
    return header[0], body


def pdu_types(data: bytes) -> list[int]:
    """The types of the whole PDUs at the start of ``data``."""
    types, offset = [], 0
    while offset + 6 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset + 2)
        if offset + 6 + length > len(data):
            break
        types.append(data[offset])
        offset += 6 + length
    return types


def read_to_end(sock: socket.socket, within: float, *, polite: bool) -> bytes:
    """What the node sends until it ends the connection, or, ``polite``, until it sent
    an A-RELEASE-RP or A-ABORT (after which a peer closes); fails after ``within`` s."""
    deadline = time.monotonic() + within
    received = bytearray()
    while True:
        if polite and {RELEASE_RP, ABORT} & set(pdu_types(bytes(received))):
            return bytes(received)
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"the node did not end the connection within {within:g} s "
                f"(received {bytes(received[:60])!r})"
            )
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(received)
        except TimeoutError:
            continue
        if not chunk:
            return bytes(received)
        received += chunk


def play(port: int, case: Case) -> bytes:
    """Connect, (associate,) send the case's pieces, end as the case says; what came back
    (empty after an immediate close)."""
    with socket.create_connection((LOCALHOST, port), timeout=ENDS_WITHIN) as sock:
        if case.associate_first:
            sock.sendall(pdu_fuzz.valid_associate_rq())
            kind, _body = read_pdu(sock)
            assert kind == pdu_fuzz.ASSOCIATE_AC, f"a valid request got PDU type 0x{kind:02x}"
        try:
            for piece in case.pieces:
                sock.sendall(piece)
        except OSError:
            pass  # the node closed it first: fine, what matters is that it ended
        if case.ending == "close":
            return b""
        if case.ending == "release":
            try:
                sock.sendall(pdu_fuzz.release_rq())
            except OSError:
                pass
        elif case.ending == "half-close":
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return read_to_end(sock, ENDS_WITHIN, polite=case.ending != "hold")


# -- the node's side -------------------------------------------------------------------------


def leftovers(node: RunningReceiver, baseline_threads: set[str]) -> list[str]:
    """What of the last connection is still alive on the node's side (empty: nothing)."""
    ae = node.receiver.ae
    found = [f"association {a.name}" for a in ae.active_associations]
    held = ae.peer_slots.snapshot()
    if held:
        found.append(f"connections holding a place for their address: {held}")
    threads = {t.name for t in threading.enumerate() if t.is_alive()} - baseline_threads
    found += [f"thread {name}" for name in sorted(threads)]
    found += [f"spool file {p.name}" for p in node.spool_files()]
    return found


def check_ended(node: RunningReceiver, baseline_threads: set[str]) -> None:
    deadline = time.monotonic() + ENDS_WITHIN
    while left := leftovers(node, baseline_threads):
        if time.monotonic() >= deadline:
            raise AssertionError(f"still there {ENDS_WITHIN:g} s after the case: {left}")
        time.sleep(0.01)


# -- the test --------------------------------------------------------------------------------


def test_fuzzed_associations_and_dimse_messages_leave_the_node_working(
    receiver: Callable[..., RunningReceiver],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
    log_lines: Lines,
    thread_deaths: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Every connection comes from 127.0.0.1: room for the held ones and the checks.
    node = receiver(max_connections_per_peer=64, **NODE_TIMEOUTS)
    listener = node.receiver._thread
    assert listener is not None
    baseline = {t.name for t in threading.enumerate()}
    assert echo(node.port) == 0
    check_ended(node, baseline)  # the echo's own threads have gone
    started = time.monotonic()
    answers: dict[str, int] = {}
    holds = [0]
    spent: dict[str, float] = {}  # seconds per ending, for the summary line

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # nothing written into the repository; the seed replays a run
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
        print_blob=True,
    )
    @given(case=pdu_fuzz.cases())
    def one_connection(case: Case) -> None:
        if case.ending == "hold":
            # Each waits for the node's network timeout: a bounded share of the run.
            assume(holds[0] < HELD_CASES)
            holds[0] += 1
        for stale in node.spool_files():  # left by a failing case: not this one's fault
            stale.unlink()
        thread_deaths.clear()
        began = time.monotonic()
        received = play(node.port, case)
        first = f"0x{received[0]:02x}" if received else "nothing"
        answers[first] = answers.get(first, 0) + 1
        if not case.associate_first and received:
            # To a request the node answers accept, reject or abort, nothing else.
            assert received[0] in (0x02, 0x03, 0x07), received[:20]
        check_ended(node, baseline)
        assert not thread_deaths, thread_deaths
        assert listener.is_alive(), "the receiver's listener thread died"
        spent[case.ending] = spent.get(case.ending, 0.0) + time.monotonic() - began

    one_connection()
    elapsed = time.monotonic() - started

    # The node still does its job.
    assert echo(node.port) == 0
    outcome = store_scu(node.port, [make_instance()])
    assert outcome.statuses == [StoreStatus.SUCCESS]

    # One line per problem, never a traceback, and a bounded number per peer and minute.
    assert "Traceback" not in capfd.readouterr().err
    assert all(r.exc_info is None and not r.exc_text for r in log_lines.records), "a traceback"
    warnings = [r for r in log_lines.records if r.levelno >= logging.WARNING]
    assert all("\n" not in r.getMessage() for r in warnings)
    # All from 127.0.0.1: a line budget per minute window, plus the window an earlier test
    # in this process may have opened.
    windows = int(elapsed // 60) + 2
    assert len(warnings) <= windows * LINES_PER_MINUTE, (len(warnings), elapsed, lines_by(warnings))
    seconds = {ending: round(value, 1) for ending, value in spent.items()}
    print(f"{EXAMPLES} cases in {elapsed:.1f} s ({seconds}); answers began with: {answers}")
