"""An association the node accepted ends cleanly whatever its peer sent: an exception in
one of its threads ends it with one log line, and its unfinished spool files go with it.

pynetdicom runs each association in two threads: the association's own (negotiation,
then the DIMSE services) and its DUL's (reading PDUs, the state machine). Some malformed
input raises in them where pynetdicom has no handler, e.g. a presentation context without
a transfer syntax (``IndexError`` in negotiation), a presentation context id that is even
(``ValueError``), a command set whose Command Field names no DIMSE message (``KeyError``),
a PDU the state machine has no transition for (``InvalidEventError``). The thread dies,
and Python prints its traceback on stderr: some 2 KB per connection, beside the log and
past its per-peer limit (``peer_log.py``). When the association's own thread dies, its
socket is left open and its DUL thread running until a timeout ends them.

Separately, a C-STORE data set is spooled to a file as it arrives (``spool.py``) and
only the C-STORE handler removes or keeps that file: when the association ends first
(aborted, closed, timed out, or its request was not a valid C-STORE after all), the
file stayed in the spool folder until the next start.

``install_association_guard()`` wraps both threads' ``run_reactor`` for associations the
node accepted (its own SCU side is left alone):

* an exception that would end the DUL thread is logged as one line (through the
  per-peer limit), an A-ABORT is sent where the socket still takes one and the
  connection is shut down; the association's thread, seeing its DUL gone, ends and
  closes the socket (at once, also while it was still negotiating);
* an exception that would end the association's thread is logged the same way, the
  connection is aborted and shut down, its DUL thread stopped and the socket closed;
* when the association's thread ends, for whatever reason, the spool files its C-STORE
  requests opened and no handler took are removed (``spool.discard_unfinished``), and
  the AE is told (``association_ended``: the node-wide association slot is freed).

At install it checks that pynetdicom still has what it wraps
(``PynetdicomHooksMissing`` otherwise).
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

from dicom_node.ingest.peer_log import PEER_LINES
from dicom_node.ingest.spool import discard_unfinished
from dicom_node.net.pynetdicom_hooks import PynetdicomHooksMissing

logger = logging.getLogger(__name__)

#: A-ABORT PDU (PS3.8 9.3.8): service provider (2), reason not specified (0).
A_ABORT_NOT_SPECIFIED = bytes([0x07, 0x00, 0, 0, 0, 4, 0x00, 0x00, 0x02, 0x00])
#: How long the association's thread waits for its stopped DUL thread before it closes
#: the socket (the DUL stops within one loop turn once the connection is shut down).
DUL_STOP_SECONDS = 5.0

_Reactor = Callable[[Any], None]
_install_lock = threading.Lock()
_originals: dict[str, _Reactor] = {}


def _accepted(assoc: Any) -> bool:
    return bool(getattr(assoc, "is_acceptor", False))


def _raw_socket(assoc: Any) -> socket.socket | None:
    raw = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    return raw if isinstance(raw, socket.socket) else None


def _log_end(assoc: Any, thread: str, error: Exception) -> None:
    address = getattr(getattr(assoc, "requestor", None), "address", None)
    peer = str(address) if address else "?"
    allowed, dropped = PEER_LINES.allow(peer)
    if allowed:
        more = f" ({dropped} more line(s) from {peer} dropped)" if dropped else ""
        logger.warning(
            "association from %s aborted: %s in its %s thread: %s%s",
            peer,
            type(error).__name__,
            thread,
            str(error)[:200],
            more,
        )


def _abort_and_shut(raw: socket.socket) -> None:
    """Send an A-ABORT if the socket takes it at once, then shut the connection down (a
    thread blocked reading it wakes up; the peer sees the end)."""
    try:
        raw.send(A_ABORT_NOT_SPECIFIED, socket.MSG_DONTWAIT)
    except (OSError, ValueError):
        pass  # gone, full, or TLS (no flags): the shutdown says enough
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut or closed


def _guarded_dul_reactor(self: DULServiceProvider) -> None:
    try:
        _originals["dul"](self)
    except Exception as error:
        assoc = self.assoc
        if not _accepted(assoc):
            raise
        _log_end(assoc, "DUL", error)
        assoc.is_aborted = True
        assoc.is_established = False
        raw = _raw_socket(assoc)
        if raw is not None:
            _abort_and_shut(raw)
        # An association thread still waiting for the negotiation's request stops waiting
        # (it takes None as the end of the wait); one past it sees this thread gone.
        # pynetdicom's queue type leaves None out, though its own reader accepts it.
        self.to_user_queue.put(None)  # type: ignore[arg-type]


def _guarded_association_reactor(self: Association) -> None:
    try:
        _originals["association"](self)
    except Exception as error:
        if not _accepted(self):
            raise
        _log_end(self, "association", error)
        self.is_aborted = True
        self.is_established = False
        self._kill = True
        raw = _raw_socket(self)
        if raw is not None:
            _abort_and_shut(raw)
        self.dul.kill_dul()
        if self.dul.is_alive():
            self.dul.join(DUL_STOP_SECONDS)
        if raw is not None and not self.dul.is_alive():
            raw.close()  # only once nothing reads it: its number could be reused
    finally:
        if _accepted(self):
            discard_unfinished(self)
            ended = getattr(self.ae, "association_ended", None)
            if callable(ended):
                ended(self)  # frees its slot of the node's association limit


def install_association_guard() -> None:
    """Wrap ``Association.run_reactor`` and ``DULServiceProvider.run_reactor`` (once per
    process)."""
    with _install_lock:
        if _originals:
            return
        missing = [
            f"{cls.__name__}.run_reactor"
            for cls in (Association, DULServiceProvider)
            if not callable(getattr(cls, "run_reactor", None))
        ]
        if "to_user_queue" not in DULServiceProvider.__init__.__code__.co_names:
            missing.append("DULServiceProvider.to_user_queue")
        if missing:
            raise PynetdicomHooksMissing(
                "pynetdicom lacks what the association guard wraps: " + ", ".join(missing)
            )
        _originals["association"] = Association.run_reactor
        _originals["dul"] = DULServiceProvider.run_reactor
        Association.run_reactor = functools.wraps(  # type: ignore[method-assign]
            _originals["association"]
        )(_guarded_association_reactor)
        DULServiceProvider.run_reactor = functools.wraps(  # type: ignore[method-assign]
            _originals["dul"]
        )(_guarded_dul_reactor)
