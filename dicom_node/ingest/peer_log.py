"""What a broken or hostile peer can write to the log: one line per problem, and a bounded
number of lines per peer address and minute.

pynetdicom logs a full traceback for each PDU it cannot decode (about 1 KB per garbage
connection), and a flood of garbage connections would fill the disk with them. The
receiver installs ``PeerLogFilter`` on pynetdicom's loggers: a record with a traceback
becomes one line ending in the exception's type and message; warnings and errors are
counted per peer address (the association running in the thread that logs), and past
``LINES_PER_MINUTE`` in a minute they are dropped, the next line let through saying how
many were. The receiver's own refusals before association go through the same limit
(``PEER_LINES.allow``), and so do the lines the node writes about one peer's requests in
its association's thread (``NODE_PEER_LOGGERS``: a refused C-STORE is one line, but a peer
sending refusable requests in a loop must not write the log full); those keep their
tracebacks, which are the node's own errors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Warning and error lines logged per peer address and minute, at most.
LINES_PER_MINUTE = 20
#: The node's loggers that write about a peer's requests from its association's thread
#: (refused C-STOREs); the filter limits them per peer and keeps their tracebacks.
NODE_PEER_LOGGERS = ("dicom_node.ingest.receive", "dicom_node.ingest.store_requests")
_WINDOW_SECONDS = 60.0


class PeerLineLimit:
    """Counts lines per peer in one-minute windows (thread-safe)."""

    def __init__(
        self, per_minute: int = LINES_PER_MINUTE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        # peer -> (window start, lines let through, lines dropped)
        self._windows: dict[str, tuple[float, int, int]] = {}

    def allow(self, peer: str) -> tuple[bool, int]:
        """Whether a line about ``peer`` may be logged now, and how many were dropped
        since the last one that was (to say so in it)."""
        now = self._clock()
        with self._lock:
            start, shown, dropped = self._windows.get(peer, (now, 0, 0))
            if now - start >= _WINDOW_SECONDS:
                start, shown = now, 0
            if shown >= self.per_minute:
                self._windows[peer] = (start, shown, dropped + 1)
                return False, 0
            self._windows[peer] = (start, shown + 1, 0)
            if len(self._windows) > 10_000:  # many peers: forget the quiet ones
                self._forget_before(now - _WINDOW_SECONDS)
            return True, dropped

    def _forget_before(self, cutoff: float) -> None:
        for peer in [p for p, (start, _s, _d) in self._windows.items() if start < cutoff]:
            del self._windows[peer]


#: The receiver's one limit, shared by pynetdicom's lines and its own.
PEER_LINES = PeerLineLimit()


def _peer_of_thread() -> str | None:
    """The requestor address of the association whose thread (or DUL thread) logs."""
    thread = threading.current_thread()
    assoc = getattr(thread, "assoc", None) or thread  # the DUL thread has .assoc
    requestor = getattr(assoc, "requestor", None)
    address = getattr(requestor, "address", None)
    return str(address) if address else None


class PeerLogFilter(logging.Filter):
    """One line per record (unless ``one_line`` is False: tracebacks kept), and at most
    ``PEER_LINES.per_minute`` per peer and minute."""

    def __init__(self, limit: PeerLineLimit = PEER_LINES, *, one_line: bool = True) -> None:
        super().__init__()
        self.limit = limit
        self.one_line = one_line

    def filter(self, record: logging.LogRecord) -> bool:
        if self.one_line and record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text = record.getMessage()
            summary = f"{type(error).__name__}: {error}"[:300]
            record.msg = f"{text} ({summary})" if text != str(error) else summary
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        if record.levelno < logging.WARNING:
            return True
        peer = _peer_of_thread()
        if peer is None:
            return True
        allowed, dropped = self.limit.allow(peer)
        if allowed and dropped:
            record.msg = f"{record.getMessage()} ({dropped} more line(s) from {peer} dropped)"
            record.args = ()
        return allowed


_install_lock = threading.Lock()
_installed: set[str] = set()


def install_peer_log_filter(logger_names: tuple[str, ...] | None = None) -> None:
    """Put ``PeerLogFilter`` on every pynetdicom logger and pydicom's, and (tracebacks
    kept) on ``NODE_PEER_LOGGERS``; or, one line each, on ``logger_names`` (once each)."""
    import pynetdicom  # noqa: F401  # its modules make their loggers on import

    filters: dict[str, bool] = dict.fromkeys(
        logger_names
        or (
            "pydicom",  # its warnings about the values it decodes for pynetdicom
            *(
                name
                for name in logging.Logger.manager.loggerDict
                if name == "pynetdicom" or name.startswith("pynetdicom.")
            ),
        ),
        True,
    )
    if logger_names is None:
        filters.update(dict.fromkeys(NODE_PEER_LOGGERS, False))
    with _install_lock:
        for name, one_line in filters.items():
            if name not in _installed:
                logging.getLogger(name).addFilter(PeerLogFilter(one_line=one_line))
                _installed.add(name)
