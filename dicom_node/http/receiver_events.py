"""Counts of the receiver's associations and C-STORE answers, for ``/metrics``.

The receiver keeps the connections it refuses before association itself
(``NodeAE.admission_refusals``: read, not duplicated). What it does not count, accepted
and rejected associations and the status of each C-STORE answer, is observed here through
pynetdicom notification events bound to the receiver's server after it started (a
notification handler runs beside the receiver's own handlers and changes nothing).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from pynetdicom import evt
from pynetdicom.dimse_messages import C_STORE_RSP

from dicom_node.ingest.receive import Receiver

#: C-STORE answers that stored the instance: success and the storage warnings (PS3.4 B.2.3).
_WARNING_OR_SUCCESS = (0x0000, 0x0001, 0xB000, 0xB006, 0xB007)


class ReceiverEvents:
    """Thread-safe counters fed by the receiver's association threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0
        self.store_statuses: Counter[int] = Counter()

    def attach(self, receiver: Receiver) -> None:
        """Bind to the running receiver's server (``Receiver.start`` made it)."""
        for server in receiver.ae._servers:
            server.bind(evt.EVT_ACCEPTED, self._on_accepted)
            server.bind(evt.EVT_REJECTED, self._on_rejected)
            server.bind(evt.EVT_DIMSE_SENT, self._on_dimse_sent)

    def _on_accepted(self, event: evt.Event) -> None:
        with self._lock:
            self.accepted += 1

    def _on_rejected(self, event: evt.Event) -> None:
        with self._lock:
            self.rejected += 1

    def _on_dimse_sent(self, event: evt.Event) -> None:
        message: Any = event.message
        if isinstance(message, C_STORE_RSP):
            status = int(getattr(message.command_set, "Status", 0xC000))
            with self._lock:
                self.store_statuses[status] += 1

    def snapshot(self) -> tuple[int, int, dict[int, int]]:
        with self._lock:
            return self.accepted, self.rejected, dict(self.store_statuses)


def is_refusal(status: int) -> bool:
    """A C-STORE answer that did not store the instance (failure statuses; success and
    the storage warnings are not refusals)."""
    return status not in _WARNING_OR_SUCCESS
