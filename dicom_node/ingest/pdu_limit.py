"""PDU size cap and read timeout on receive: a PDU longer than the receiver takes is
aborted before its body is read, and a PDU that stops arriving ends the association.

``max_pdu_bytes`` is what the node advertises as its Maximum Length Received; pynetdicom
does not hold peers to it, and reads whatever length a PDU header claims: a P-DATA-TF
claiming 1 GiB is read on, growing the association's memory with every byte sent. Here
``AssociationSocket.recv`` is wrapped: on an association the node accepted, a read
longer than the limit (the PDU body pynetdicom asks for right after the 6-byte header)
sends an A-ABORT (service provider, invalid PDU parameter value), closes the connection
and returns nothing; pynetdicom then sees a short PDU, logs one line and ends the
association. Memory per association stays bounded by the limit.

The limit is the larger of ``max_pdu_bytes`` and ``admission.MAX_REQUEST_BYTES`` (an
A-ASSOCIATE-RQ may be larger than the data PDUs a peer agrees to send); 0 means no limit.

The same wrapper bounds the wait: a socket accepted by the listener is blocking without a
timeout (``socket.accept`` makes it so, whatever the listening socket's), and pynetdicom
reads a PDU whose header has arrived until all of it has. A peer that sends part of a PDU
and then nothing, keeping the connection open, would hold the association's threads and
its slot (one of ``max_associations``) for ever: pynetdicom's own network timeout fires
in another thread and waits on the blocked one. So, before each read, the socket of an
association the node accepted gets ``network_timeout_seconds`` as its timeout: a read
that waits that long for the next byte raises ``TimeoutError``, which pynetdicom takes
as a closed connection (one log line); it closes the socket and ends the association.
Sends get the same bound (a peer that never reads).

``dicom_node.net.pynetdicom_hooks`` checks at start that ``recv`` is still where it is
wrapped.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from pynetdicom.transport import AssociationSocket

from dicom_node.ingest.admission import MAX_REQUEST_BYTES
from dicom_node.ingest.peer_log import PEER_LINES

logger = logging.getLogger(__name__)

#: A-ABORT PDU (PS3.8 9.3.8): type 0x07, length 4, source 2 (service provider), reason 6
#: (invalid PDU parameter value).
A_ABORT_INVALID_PARAMETER = bytes([0x07, 0x00, 0, 0, 0, 4, 0x00, 0x00, 0x02, 0x06])

_Recv = Callable[[AssociationSocket, int], bytearray]
_install_lock = threading.Lock()
_original: _Recv | None = None


def receive_limit(max_pdu_bytes: int) -> int | None:
    """The longest single PDU body the receiver reads; None: no limit."""
    return None if max_pdu_bytes <= 0 else max(max_pdu_bytes, MAX_REQUEST_BYTES)


def _accepted(sock: AssociationSocket) -> Any:
    """The association of ``sock`` if the node accepted it, else None (the node's own SCU
    side, deliveries, is neither limited nor given a timeout here)."""
    assoc: Any = getattr(sock, "_assoc", None)
    if assoc is None or not getattr(assoc, "is_acceptor", False):
        return None
    return assoc


def _limit_of(assoc: Any) -> int | None:
    limit = getattr(assoc.ae, "pdu_receive_limit", None)
    return limit if isinstance(limit, int) else None


def _bound_wait(sock: AssociationSocket, assoc: Any) -> None:
    """Give the raw socket the association's network timeout (once; a no-op after)."""
    raw: socket.socket | None = getattr(sock, "socket", None)
    timeout = getattr(assoc, "network_timeout", None)
    if raw is None or not isinstance(timeout, int | float) or timeout <= 0:
        return
    try:
        if raw.gettimeout() != timeout:
            raw.settimeout(timeout)
    except OSError:
        pass  # closed meanwhile: the read that follows says so


def _abort(sock: AssociationSocket, length: int, limit: int) -> None:
    raw: socket.socket | None = getattr(sock, "socket", None)
    peer = "?"
    if raw is not None:
        try:
            peer = str(raw.getpeername()[0])
            raw.sendall(A_ABORT_INVALID_PARAMETER)
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone: nothing more to tell it
    allowed, dropped = PEER_LINES.allow(peer)
    if allowed:
        logger.warning(
            "association from %s aborted: a PDU of %d bytes announced, at most %d taken%s",
            peer,
            length,
            limit,
            f" ({dropped} more line(s) from {peer} dropped)" if dropped else "",
        )


def _limited_recv(self: AssociationSocket, nr_bytes: int) -> bytearray:
    assert _original is not None
    assoc = _accepted(self)
    if assoc is not None:
        limit = _limit_of(assoc)
        if limit is not None and nr_bytes > limit:
            _abort(self, nr_bytes, limit)
            return bytearray()
        _bound_wait(self, assoc)
    return _original(self, nr_bytes)


def install_pdu_limit() -> None:
    """Wrap ``AssociationSocket.recv`` (once per process)."""
    global _original
    with _install_lock:
        if _original is not None:
            return
        _original = AssociationSocket.recv
        AssociationSocket.recv = functools.wraps(_original)(_limited_recv)  # type: ignore[method-assign]
