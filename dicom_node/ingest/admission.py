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
something other than a well-formed A-ASSOCIATE-RQ (``request_problem``: structure only),
or announces a request over ``MAX_REQUEST_BYTES`` is closed at once and never holds a slot; a peer address may hold at
most ``max_connections_per_peer`` connections waiting here or associated (``PeerSlots``;
in all receiver processes together when there are several).

Each refusal is logged once, with the peer and the reason, and counted by reason
(``receiver_counts.py``, for the metrics). TLS connections are admitted after their
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
from typing import Protocol

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
                problem = request_problem(bytes(data[:wanted]))
                if problem is not None:
                    raise Refused("malformed", problem)
                return
    finally:
        sock.settimeout(previous)


# A-ASSOCIATE-RQ items (PS3.8 9.3.2): application context, presentation context, user
# information; inside a presentation context: abstract and transfer syntaxes.
_APPLICATION_CONTEXT, _PRESENTATION_CONTEXT, _USER_INFORMATION = 0x10, 0x20, 0x50
_ABSTRACT_SYNTAX, _TRANSFER_SYNTAX = 0x30, 0x40
_UID_BYTES = frozenset(b"0123456789.")


def _items(data: bytes, start: int, end: int) -> list[tuple[int, bytes]] | None:
    """The (type, value) items tiling ``data[start:end]`` exactly, or None."""
    items: list[tuple[int, bytes]] = []
    offset = start
    while offset < end:
        if offset + 4 > end:
            return None
        kind = data[offset]
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if offset + 4 + length > end:
            return None
        items.append((kind, data[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return items


def _is_uid(value: bytes) -> bool:
    value = value.rstrip(b"\x00 ")
    return 0 < len(value) <= 64 and set(value) <= _UID_BYTES


def _is_ae_title(value: bytes) -> bool:
    text = value.strip(b" \x00")
    return bool(text) and all(0x20 <= c <= 0x7E and c != 0x5C for c in text)


def request_problem(pdu: bytes) -> str | None:
    """Why ``pdu`` (a whole A-ASSOCIATE-RQ) is not a well-formed request; None when it is.

    The structure is checked, not what it asks for (that is pynetdicom's negotiation):
    AE titles of printable characters, items that tile the PDU exactly, one application
    context and at least one presentation context whose syntaxes are UIDs. A request that
    pynetdicom could not decode would otherwise hold an association slot until the ACSE
    timeout, however soon its sender went away.
    """
    if len(pdu) < PDU_HEADER_BYTES + 68:
        return "association request shorter than its fixed fields"
    if not (_is_ae_title(pdu[10:26]) and _is_ae_title(pdu[26:42])):
        return "association request with an AE title that is not printable text"
    items = _items(pdu, PDU_HEADER_BYTES + 68, len(pdu))
    if items is None:
        return "association request whose item lengths do not add up"
    contexts = 0
    for kind, value in items:
        if kind == _APPLICATION_CONTEXT and not _is_uid(value):
            return "association request with an application context that is not a UID"
        if kind == _PRESENTATION_CONTEXT:
            syntaxes = _items(value, 4, len(value)) if len(value) >= 4 else None
            if not syntaxes or any(
                k in (_ABSTRACT_SYNTAX, _TRANSFER_SYNTAX) and not _is_uid(v) for k, v in syntaxes
            ):
                return "association request with a malformed presentation context"
            contexts += 1
        elif kind not in (_APPLICATION_CONTEXT, _USER_INFORMATION):
            return f"association request with an unknown item 0x{kind:02x}"
    if contexts == 0 or sum(kind == _APPLICATION_CONTEXT for kind, _ in items) != 1:
        return "association request without its application or presentation contexts"
    return None


class SharedPeers(Protocol):
    """Where several receiver processes count each address's connections together
    (``receiver_slots.NodeSlots``)."""

    def admit_peer(self, host: str, held_here: int, limit: int) -> bool: ...

    def set_peer(self, host: str, held: int) -> None: ...


class PeerSlots:
    """The connections each peer address holds, from the moment they are accepted
    (waiting for admission) until their association ends or they are refused.

    ``enter`` takes a place unless the address would hold more than the limit; ``leave``
    gives it back, once per connection: the accept path for a connection it refuses or
    that never became an association, the association's end (``association_ended``) for
    the others. With ``shared`` (several receiver processes) the limit counts every
    process's connections, and each change is written there as this process's count."""

    def __init__(self, shared: SharedPeers | None = None) -> None:
        self.shared = shared
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def enter(self, host: str, limit: int) -> bool:
        """Take a place for a new connection from ``host``; whether it was taken."""
        with self._lock:
            held = self._held[host]
            if self.shared is not None:
                taken = self.shared.admit_peer(host, held, limit)
            else:
                taken = held + 1 <= limit
            if taken:
                self._held[host] = held + 1
            return taken

    def leave(self, host: str) -> None:
        with self._lock:
            held = max(self._held[host] - 1, 0)
            if held:
                self._held[host] = held
            else:
                self._held.pop(host, None)
            if self.shared is not None:
                self.shared.set_peer(host, held)

    def snapshot(self) -> dict[str, int]:
        """The connections each address holds in this process now."""
        with self._lock:
            return dict(self._held)
