"""What the receiver did, counted for ``/metrics``: associations accepted and rejected
(A-ASSOCIATE-RJ), connections refused before association by reason (``admission.py``),
and C-STORE answers by status.

Accepted and rejected associations and C-STORE answers are observed through pynetdicom
notification events (``handlers()``, bound with the receiver's own handlers: a
notification handler runs beside them and changes nothing); refusals before association
are added by the receiver's accept path (``refusals.add``).

Every receiver process counts its own in memory (``snapshot()``). With several receiver
processes (``receiver_processes`` above 1) there is one more place, shared by all:
each process also adds every count to its entry of the receiver table
(``receiver_slots.py``), and ``node_totals()``, which the ``serve`` process's metrics
read, adds up every process's entry, children that died and were replaced included. A
shared file rather than messages to the ``serve`` process: the table is already mapped
in every receiver process and locked for each admission, a child that is killed loses
nothing it counted (nothing waits in a pipe), and a scrape reads it without asking any
child. prometheus-client's multiprocess mode would need an environment variable set
before the import in every process, a folder of per-process files to clean, and its
own metric objects instead of the collector that reads everything at scrape time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pynetdicom import evt
from pynetdicom.dimse_messages import C_STORE_RSP

ACCEPTED = "accepted"
REJECTED = "rejected"
REFUSED = "refused:"  # + the reason (admission.Refused.reason)
STATUS = "status:"  # + the C-STORE answer's status as 0x%04X


class SharedCounts(Protocol):
    """Where one receiver process adds its counts for the whole node (``NodeSlots``)."""

    def add_counts(self, counts: Mapping[str, int]) -> None: ...

    def totals(self) -> dict[str, int]: ...


def status_name(status: int) -> str:
    return f"{STATUS}0x{status:04X}"


@dataclass(frozen=True)
class ReceiverTotals:
    """Counts of the whole node (every receiver process), as the metrics show them."""

    accepted: int
    rejected: int
    refusals: dict[str, int]  # connections refused before association, by reason
    statuses: dict[int, int]  # C-STORE answers, by status

    @classmethod
    def from_counts(cls, counts: Mapping[str, int]) -> ReceiverTotals:
        refusals = {k[len(REFUSED) :]: v for k, v in counts.items() if k.startswith(REFUSED)}
        statuses = {int(k[len(STATUS) :], 16): v for k, v in counts.items() if k.startswith(STATUS)}
        return cls(counts.get(ACCEPTED, 0), counts.get(REJECTED, 0), refusals, statuses)


class Refusals:
    """The connections refused before association (``NodeAE.admission_refusals``)."""

    def __init__(self, counts: ReceiverCounts) -> None:
        self._counts = counts

    def add(self, reason: str) -> None:
        self._counts.add(REFUSED + reason)

    def snapshot(self) -> dict[str, int]:
        """This process's refusals, by reason."""
        mine = self._counts.snapshot()
        return {k[len(REFUSED) :]: v for k, v in mine.items() if k.startswith(REFUSED)}


class ReceiverCounts:
    """One receiver process's counts (thread-safe), also added to ``shared`` when set."""

    def __init__(self, shared: SharedCounts | None = None) -> None:
        self.shared = shared
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.refusals = Refusals(self)

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1
        if self.shared is not None:
            self.shared.add_counts({name: 1})

    def snapshot(self) -> dict[str, int]:
        """This process's counts, by name."""
        with self._lock:
            return dict(self._counts)

    def node_totals(self) -> ReceiverTotals:
        """The whole node's counts: every receiver process's, or this one's when alone."""
        counts = self.shared.totals() if self.shared is not None else self.snapshot()
        return ReceiverTotals.from_counts(counts)

    def handlers(self) -> list[tuple[evt.NotificationEvent, Callable[[evt.Event], None]]]:
        """The notification handlers that count; bind them with the server's."""
        return [
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_DIMSE_SENT, self._on_dimse_sent),
        ]

    def _on_accepted(self, event: evt.Event) -> None:
        self.add(ACCEPTED)

    def _on_rejected(self, event: evt.Event) -> None:
        self.add(REJECTED)

    def _on_dimse_sent(self, event: evt.Event) -> None:
        message: Any = event.message
        if isinstance(message, C_STORE_RSP):
            self.add(status_name(int(getattr(message.command_set, "Status", 0xC000))))
