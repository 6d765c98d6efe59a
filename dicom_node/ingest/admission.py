"""Admission: a connection becomes an association only once it has sent a whole, well-formed
A-ASSOCIATE-RQ, in time and within a size cap.

pynetdicom starts an association (a thread that counts against ``max_associations``) for
every TCP connection and waits for its request for up to the ACSE timeout: ten
connections that send nothing lock every real peer out for that long, and a peer that
repeats it keeps the node closed to the PACS. Here the receiver's own accept path waits
first, in the connection's thread, without consuming a byte (``MSG_PEEK``): until the
request's PDU header and its whole body are in the socket's buffer (a silent connection
costs a thread asleep in ``select``, no CPU), at most
``association_request_timeout_seconds``. Then the connection goes to pynetdicom, which
reads the request as it always does. A connection that closes, stays silent, sends
something other than an A-ASSOCIATE-RQ, or announces a request over
``MAX_REQUEST_BYTES`` is closed at once and never holds a slot; a peer address may hold at
most ``max_connections_per_peer`` connections waiting here or associated.

Each refusal is logged once, with the peer and the reason, and counted by reason
(``AdmissionCounts``, for the metrics). TLS connections are admitted after their
handshake without the peek (an SSL socket cannot peek); the handshake has its own
deadline.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable

#: An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2): type 0x01, a reserved byte, a 4-byte length.
ASSOCIATE_RQ = 0x01
PDU_HEADER_BYTES = 6
#: The largest A-ASSOCIATE-RQ taken (header included). A request with every storage SOP
#: class and a dozen transfer syntaxes each is well under it; it also stays under the
#: kernel's default receive buffer, so that waiting for the whole request can complete.
MAX_REQUEST_BYTES = 64 * 1024
#: Looking again at a partly arrived request: first after this, then twice as long...
FIRST_PAUSE_SECONDS = 0.002
#: ... up to this.
MAX_PAUSE_SECONDS = 0.1


class Refused(Exception):
    """The connection is closed before pynetdicom sees it; ``reason`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def await_association_request(
    sock: socket.socket, deadline_seconds: float, *, clock: Callable[[], float] = time.monotonic
) -> None:
    """Return once ``sock`` holds a whole A-ASSOCIATE-RQ (nothing consumed), or raise
    ``Refused`` ("deadline", "closed", "malformed" or "too large").

    Nothing has arrived: it sleeps in ``select`` until something does. Part of a request
    has arrived: it looks again after a pause that doubles up to ``MAX_PAUSE_SECONDS``
    (a peek cannot tell a slow sender from one that stopped halfway: the deadline does).
    """
    end = clock() + deadline_seconds
    wanted = PDU_HEADER_BYTES
    seen = 0  # bytes buffered at the last look
    pause = FIRST_PAUSE_SECONDS
    previous = sock.gettimeout()
    try:
        while True:
            left = end - clock()
            if left <= 0:
                raise Refused(
                    "deadline", f"no complete association request in {deadline_seconds:g} s"
                )
            if seen == 0:
                readable, _, _ = select.select([sock], [], [], left)
                if not readable:
                    continue
            else:
                time.sleep(min(pause, left))
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
            sock.settimeout(max(end - clock(), 0.001))
            try:
                data = sock.recv(wanted, socket.MSG_PEEK)
            except TimeoutError:
                continue  # the loop's deadline check says so
            except OSError as exc:
                raise Refused("closed", f"connection error ({exc.strerror or exc})") from exc
            if not data:
                raise Refused("closed", "closed before sending an association request")
            seen = len(data)
            if seen >= PDU_HEADER_BYTES:
                if data[0] != ASSOCIATE_RQ:
                    raise Refused(
                        "malformed", f"first PDU is type 0x{data[0]:02x}, not A-ASSOCIATE-RQ"
                    )
                (length,) = struct.unpack_from(">I", data, 2)
                if PDU_HEADER_BYTES + length > MAX_REQUEST_BYTES:
                    raise Refused(
                        "too large",
                        f"association request of {length} bytes (at most {MAX_REQUEST_BYTES})",
                    )
                wanted = PDU_HEADER_BYTES + length
            if seen >= wanted:
                return
    finally:
        sock.settimeout(previous)


class AdmissionCounts:
    """Connections refused before association, by reason (thread-safe)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class PeerSlots:
    """How many connections each peer address has waiting for admission."""

    def __init__(self) -> None:
        self._waiting: Counter[str] = Counter()
        self._lock = threading.Lock()

    def enter(self, host: str, associated: int, limit: int) -> bool:
        """Take a waiting slot for ``host`` (which has ``associated`` live associations)
        unless that makes more than ``limit`` connections; whether it was taken."""
        with self._lock:
            if self._waiting[host] + associated >= limit:
                return False
            self._waiting[host] += 1
            return True

    def leave(self, host: str) -> None:
        with self._lock:
            self._waiting[host] -= 1
            if self._waiting[host] <= 0:
                del self._waiting[host]
