"""What the receiver's fuzz test (``test_receiver_fuzz.py``) found, one test each.

1. A peer that sends part of a PDU and then nothing, keeping the connection open, held
   the association (its two threads and one of ``max_associations``) for ever: the
   accepted socket had no timeout (``pdu_limit.py`` now gives it the network timeout).
2. Input that raises where pynetdicom has no handler (a presentation context without a
   transfer syntax; a Command Field that names no DIMSE message) killed the
   association's or its DUL's thread with a traceback on stderr, and left the socket
   open until a timeout (``association_guard.py``).
3. A C-STORE data set cut off by an abort stayed in the spool folder until the next
   start (``spool.discard_unfinished``, called when the association ends).
4. A peer sending refusable C-STOREs in a loop wrote one warning each, without the
   per-peer limit (``peer_log.NODE_PEER_LOGGERS``); and a C-STORE request without a
   data set was answered 0x0110 with an error blaming the node's own spooling
   (``store_requests.py`` now answers 0xC000 and says why).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from dicom_node.ingest.peer_log import LINES_PER_MINUTE, PEER_LINES
from tests.integration.conftest import LOCALHOST, RunningReceiver
from tests.integration.test_receiver_admission import echo
from tests.peers import wait_until
from tests.support import pdu_fuzz as p

pytestmark = pytest.mark.timeout(120)

NETWORK_TIMEOUT = 1.0


@pytest.fixture(autouse=True)
def fresh_line_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """No per-peer line window left over by an earlier test in this process."""
    monkeypatch.setattr(PEER_LINES, "_windows", {})


@pytest.fixture
def node(receiver: Callable[..., RunningReceiver]) -> RunningReceiver:
    # A long ACSE timeout: the connections here must end long before it.
    return receiver(network_timeout_seconds=NETWORK_TIMEOUT, acse_timeout_seconds=30)


@pytest.fixture
def thread_deaths() -> Iterator[list[str]]:
    deaths: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: deaths.append(f"{args.exc_type.__name__}")
    try:
        yield deaths
    finally:
        threading.excepthook = previous


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def node_lines() -> Iterator[Lines]:
    lines = Lines()
    logger = logging.getLogger("dicom_node")
    logger.addHandler(lines)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)


def associated(port: int) -> socket.socket:
    sock = socket.create_connection((LOCALHOST, port), timeout=10)
    sock.sendall(p.valid_associate_rq())
    assert read_pdu(sock)[0] == p.ASSOCIATE_AC
    return sock


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    header = sock.recv(6, socket.MSG_WAITALL)
    assert len(header) == 6, f"closed after {len(header)} byte(s)"
    (length,) = struct.unpack_from(">I", header, 2)
    return header[0], sock.recv(length, socket.MSG_WAITALL) if length else b""


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """How long until the node closes ``sock`` (reading what it sends); fails past
    ``limit``."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the node kept the connection open for {limit:g} s")
    return time.monotonic() - started


def no_association_left(node: RunningReceiver) -> None:
    wait_until(
        lambda: not node.receiver.ae.active_associations,
        10,
        message="an association is still there",
    )


def c_store_command(context_id: int, *, data_set_follows: bool = True) -> bytes:
    abstract = p.CONTEXTS[context_id][0]
    return p.command_set(
        [
            p.element(0, p.AFFECTED_SOP_CLASS, p.even(abstract)),
            p.element(0, p.COMMAND_FIELD, p.us(0x0001)),
            p.element(0, p.MESSAGE_ID, p.us(7)),
            p.element(0, p.PRIORITY, p.us(0)),
            p.element(0, p.DATA_SET_TYPE, p.us(0x0000 if data_set_follows else p.NO_DATA_SET)),
            p.element(0, p.AFFECTED_SOP_INSTANCE, p.even(p.fuzz_uid(77))),
        ],
        None,
    )


# -- 1. a stalled PDU ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stalled",
    [
        pytest.param(b"\x04\x00" + struct.pack(">I", 100) + b"x" * 10, id="p-data-body"),
        pytest.param(b"\x04\x00\x00", id="pdu-header"),
        pytest.param(b"\x05\x00\x00\x00\x00\x04\x00", id="release-request"),
    ],
)
def test_a_pdu_that_stops_arriving_ends_the_association_at_the_network_timeout(
    node: RunningReceiver, stalled: bytes
) -> None:
    with associated(node.port) as sock:
        sock.sendall(stalled)  # and nothing more, the connection kept open
        took = seconds_until_closed(sock, 10 * NETWORK_TIMEOUT)
    assert took < 5 * NETWORK_TIMEOUT
    no_association_left(node)
    assert echo(node.port) == 0


# -- 2. exceptions in the association's threads ----------------------------------------------


def test_a_request_that_breaks_negotiation_is_aborted_at_once_without_a_traceback(
    node: RunningReceiver,
    thread_deaths: list[str],
    node_lines: Lines,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A presentation context with an abstract syntax and no transfer syntax: pynetdicom's
    # negotiation raises IndexError in the association's thread.
    context = p.presentation_context(1, [p.item(p.ABSTRACT_SYNTAX, p.VERIFICATION)])
    user = p.item(p.USER_INFORMATION, p.max_length(16384))
    request = p.associate_rq(
        [p.item(p.APPLICATION_CONTEXT, p.APPLICATION_CONTEXT_NAME), context, user]
    )
    with socket.create_connection((LOCALHOST, node.port), timeout=10) as sock:
        sock.sendall(request)
        took = seconds_until_closed(sock, 20)
    assert took < 5  # not the ACSE timeout (30 s)
    no_association_left(node)
    assert thread_deaths == []
    assert "Traceback" not in capfd.readouterr().err
    assert any("IndexError in its association thread" in r.getMessage() for r in node_lines.records)
    assert echo(node.port) == 0


def test_a_command_field_that_names_no_message_is_aborted_without_a_traceback(
    node: RunningReceiver,
    thread_deaths: list[str],
    node_lines: Lines,
    capfd: pytest.CaptureFixture[str],
) -> None:
    command = p.command_set(
        [
            p.element(0, p.AFFECTED_SOP_CLASS, p.even(p.VERIFICATION)),
            p.element(0, p.COMMAND_FIELD, p.us(0x0080)),  # no DIMSE message has it
            p.element(0, p.MESSAGE_ID, p.us(1)),
            p.element(0, p.DATA_SET_TYPE, p.us(p.NO_DATA_SET)),
        ],
        None,
    )
    with associated(node.port) as sock:
        sock.sendall(p.pdu(p.P_DATA_TF, p.pdv(1, 0x03, command)))
        took = seconds_until_closed(sock, 10)
    assert took < 5 * NETWORK_TIMEOUT
    no_association_left(node)
    assert thread_deaths == []
    assert "Traceback" not in capfd.readouterr().err
    assert any("KeyError in its DUL thread" in r.getMessage() for r in node_lines.records)
    assert echo(node.port) == 0


# -- 3. spool files of an aborted association ------------------------------------------------


@pytest.mark.parametrize("ending", ["abort", "close"])
def test_a_data_set_cut_off_by_the_end_of_its_association_leaves_no_spool_file(
    node: RunningReceiver, ending: str
) -> None:
    data = p.dataset(p.CT_IMAGE, p.fuzz_uid(77), p.fuzz_uid(1), p.fuzz_uid(2), explicit=True)
    with associated(node.port) as sock:
        sock.sendall(
            p.pdu(
                p.P_DATA_TF,
                p.pdv(3, 0x03, c_store_command(3)) + p.pdv(3, 0x00, data[:40]),  # not the last
            )
        )
        wait_until(node.spool_files, 10, message="the data set was never spooled")
        if ending == "abort":
            sock.sendall(p.abort())
    wait_until(lambda: not node.spool_files(), 10, message=lambda: str(node.spool_files()))
    no_association_left(node)
    assert node.instances() == []


# -- 4. refused C-STOREs: a status that says why, and a bounded log --------------------------


def test_c_stores_without_a_data_set_are_refused_as_not_understood_and_logged_within_the_limit(
    node: RunningReceiver, node_lines: Lines
) -> None:
    count = 3 * LINES_PER_MINUTE
    statuses = []
    with associated(node.port) as sock:
        for _ in range(count):
            sock.sendall(
                p.pdu(p.P_DATA_TF, p.pdv(3, 0x03, c_store_command(3, data_set_follows=False)))
            )
            kind, body = read_pdu(sock)
            assert kind == p.P_DATA_TF
            status_at = body.index(struct.pack("<HHI", 0x0000, 0x0900, 2)) + 8
            statuses.append(struct.unpack_from("<H", body, status_at)[0])
        sock.sendall(p.release_rq())
        assert read_pdu(sock)[0] == p.RELEASE_RP
    assert statuses == [0xC000] * count
    warnings = [r for r in node_lines.records if r.levelno >= logging.WARNING]
    assert not any("chunked receive" in r.getMessage() for r in warnings)
    # One line per refusal up to the per-peer limit for the minute, not one per request.
    assert len(warnings) == LINES_PER_MINUTE, [r.getMessage() for r in warnings]
