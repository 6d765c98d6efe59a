"""What several receiver processes sharing the port must count together.

With ``receiver_processes`` above 1 (``receiver_pool.py``) each process has its own
pynetdicom AE, whose own checks and counters see only its own threads. ``ReceiverTable``
is a small file, mapped into every receiver process, with one entry per process:

* its pid and the associations it holds now: an association is admitted only if the
  associations held by all processes together stay within ``max_associations``
  (``NodeSlots.admit``, called by pynetdicom's own limit check in the association's
  thread), and how many it admitted since the node started;
* the connections it holds now per peer address (waiting for admission or associated):
  a connection is admitted only if its address's connections in all processes together
  stay within ``max_connections_per_peer`` (``admit_peer``);
* its counters for the metrics (``receiver_counts.py``), by name: associations accepted
  and rejected, connections refused before association by reason, C-STORE answers by
  status. A counter only grows; the entry of a process that died keeps its counts, and
  its replacement adds to them, so the node's totals count every process since the
  node started.

Every check and update happens under an ``flock`` on the file, which the kernel releases
when its holder dies, so a receiver killed at any moment never leaves the table locked.

Slots cannot leak: a process writes the counts it holds as absolute numbers (never by
increments): associations recomputed from its live association threads, on every
admission and every association's end, connections from its own per-address count; the
supervisor zeroes the entry of a process that died, and a process starting zeroes its own.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import threading
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: An entry's head: pid, associations held now, associations admitted.
_HEAD = struct.Struct("<qqq")
#: A counter: its name (NUL-padded) and value; an empty name is a free slot.
_COUNTER = struct.Struct("<24sq")
COUNTER_SLOTS = 48
#: A peer address (NUL-padded) and the connections the process holds from it; an empty
#: address is a free row (a row whose count falls to 0 is freed).
_PEER = struct.Struct("<64sq")
PEER_SLOTS = 256
_COUNTERS_AT = _HEAD.size
_PEERS_AT = _COUNTERS_AT + COUNTER_SLOTS * _COUNTER.size
_STRIDE = _PEERS_AT + PEER_SLOTS * _PEER.size

#: The counter of C-STORE answers with status Success (``receiver_counts.py`` names them).
STORED = "status:0x0000"

#: The table's file name, in the storage folder (a file at the top is never a study).
TABLE_NAME = ".receivers"


@dataclass(frozen=True)
class ReceiverEntry:
    """One receiver process as the table shows it (pid 0: not running)."""

    index: int
    pid: int
    live: int
    associations: int
    counts: dict[str, int] = field(default_factory=dict)
    peers: dict[str, int] = field(default_factory=dict)

    @property
    def stores(self) -> int:
        """C-STORE requests it answered with Success."""
        return self.counts.get(STORED, 0)


def _key(text: str, size: int) -> bytes:
    """``text`` as a NUL-padded table key (an address longer than the row is cut)."""
    return text.encode("ascii", "replace")[:size].ljust(size, b"\0")


class ReceiverTable:
    """The mapped table file; ``create=True`` makes it with ``size`` zeroed entries."""

    def __init__(self, path: Path, size: int = 0, *, create: bool = False) -> None:
        self.path = path
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        self._fd = os.open(path, flags, 0o600)
        if create:
            os.ftruncate(self._fd, size * _STRIDE)
        self.size = os.fstat(self._fd).st_size // _STRIDE
        self._map = mmap.mmap(self._fd, self.size * _STRIDE)
        self._lock = threading.Lock()  # flock does not exclude threads sharing the fd
        self._warned: set[str] = set()  # what ran out of room, said once each

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _get(self, index: int) -> list[int]:
        return list(_HEAD.unpack_from(self._map, index * _STRIDE))

    def _put(self, index: int, values: list[int]) -> None:
        _HEAD.pack_into(self._map, index * _STRIDE, *values)

    def _find(self, key: bytes, start: int, slots: int, size: int) -> int | None:
        """The offset of the slot (of ``size`` bytes, ``slots`` from ``start``) whose key
        is ``key``, or None."""
        end = start + slots * size
        at = self._map.find(key, start, end)
        while at != -1 and (at - start) % size:  # a match across slot boundaries
            at = self._map.find(key, at + 1, end)
        return None if at == -1 else at

    def _named(self, index: int, start: int, slots: int, item: struct.Struct) -> dict[str, int]:
        found: dict[str, int] = {}
        base = index * _STRIDE + start
        for slot in range(slots):
            name, value = item.unpack_from(self._map, base + slot * item.size)
            if name.strip(b"\0"):
                found[name.rstrip(b"\0").decode("ascii", "replace")] = value
        return found

    def _entry(self, index: int) -> ReceiverEntry:
        pid, live, associations = self._get(index)
        return ReceiverEntry(
            index,
            pid,
            live,
            associations,
            counts=self._named(index, _COUNTERS_AT, COUNTER_SLOTS, _COUNTER),
            peers=self._named(index, _PEERS_AT, PEER_SLOTS, _PEER),
        )

    def entries(self) -> list[ReceiverEntry]:
        with self._locked():
            return [self._entry(i) for i in range(self.size)]

    def started(self, index: int, pid: int) -> None:
        """Entry ``index`` is now process ``pid``, holding nothing yet (its counters stay)."""
        with self._locked():
            entry = self._get(index)
            entry[0], entry[1] = pid, 0
            self._put(index, entry)
            start = index * _STRIDE + _PEERS_AT
            self._map[start : start + PEER_SLOTS * _PEER.size] = bytes(PEER_SLOTS * _PEER.size)

    def clear(self, index: int) -> None:
        """Process ``index`` is gone: the associations and connections it held are free."""
        self.started(index, 0)

    def admit(self, index: int, held_here: int, limit: int) -> bool:
        """Take one more slot for process ``index`` (which holds ``held_here``) unless
        that makes more than ``limit`` across all processes; whether it was taken."""
        with self._locked():
            others = sum(self._get(i)[1] for i in range(self.size) if i != index)
            taken = others + held_here + 1 <= limit
            entry = self._get(index)
            entry[1] = held_here + (1 if taken else 0)
            entry[2] += 1 if taken else 0
            self._put(index, entry)
            return taken

    def set_held(self, index: int, held: int) -> None:
        with self._locked():
            entry = self._get(index)
            entry[1] = held
            self._put(index, entry)

    # -- connections per peer address --

    def _peer_held(self, index: int, key: bytes) -> int:
        at = self._find(key, index * _STRIDE + _PEERS_AT, PEER_SLOTS, _PEER.size)
        return 0 if at is None else int(_PEER.unpack_from(self._map, at)[1])

    def _put_peer(self, index: int, key: bytes, held: int) -> None:
        start = index * _STRIDE + _PEERS_AT
        at = self._find(key, start, PEER_SLOTS, _PEER.size)
        if at is None and held > 0:
            at = self._find(bytes(len(key)), start, PEER_SLOTS, _PEER.size)
            if at is None:  # more addresses at once than rows: this one counts locally only
                if "peers" not in self._warned:
                    self._warned.add("peers")
                    logger.warning("receiver table: more than %d peer addresses", PEER_SLOTS)
                return
        if at is not None:
            _PEER.pack_into(self._map, at, key if held > 0 else bytes(len(key)), max(held, 0))

    def admit_peer(self, index: int, host: str, held_here: int, limit: int) -> bool:
        """One more connection from ``host`` for process ``index`` (which holds
        ``held_here`` from it) unless that makes more than ``limit`` across all processes;
        whether it was taken (and written)."""
        key = _key(host, _PEER.size - 8)
        with self._locked():
            others = sum(self._peer_held(i, key) for i in range(self.size) if i != index)
            if others + held_here + 1 > limit:
                return False
            self._put_peer(index, key, held_here + 1)
            return True

    def set_peer(self, index: int, host: str, held: int) -> None:
        """Process ``index`` now holds ``held`` connections from ``host``."""
        with self._locked():
            self._put_peer(index, _key(host, _PEER.size - 8), held)

    # -- counters --

    def add_counts(self, index: int, counts: Mapping[str, int]) -> None:
        """Add ``counts`` to process ``index``'s counters (a new name takes a free slot;
        with none free it is not counted, and said once)."""
        start = index * _STRIDE + _COUNTERS_AT
        with self._locked():
            for name, value in counts.items():
                key = _key(name, _COUNTER.size - 8)
                at = self._find(key, start, COUNTER_SLOTS, _COUNTER.size)
                if at is None:
                    at = self._find(bytes(len(key)), start, COUNTER_SLOTS, _COUNTER.size)
                if at is None:
                    if name not in self._warned:
                        self._warned.add(name)
                        logger.warning("receiver table: no free counter for %r", name)
                    continue
                before = int(_COUNTER.unpack_from(self._map, at)[1])
                _COUNTER.pack_into(self._map, at, key, before + value)

    def totals(self) -> dict[str, int]:
        """Every process's counters added up, by name."""
        total: Counter[str] = Counter()
        with self._locked():
            for index in range(self.size):
                total.update(self._named(index, _COUNTERS_AT, COUNTER_SLOTS, _COUNTER))
        return dict(total)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def read_table(path: Path) -> list[ReceiverEntry]:
    """The entries of the table at ``path`` (for tests and operators)."""
    table = ReceiverTable(path)
    try:
        return table.entries()
    finally:
        table.close()


class NodeSlots:
    """One receiver process's side of the table: admits and releases its associations,
    takes and frees its connections' places per peer address, and adds to its counters."""

    def __init__(self, table: ReceiverTable, index: int, limit: int) -> None:
        self.table = table
        self.index = index
        self.limit = limit
        self._admitted: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _held(self) -> int:
        return sum(1 for assoc in self._admitted if assoc.is_alive())

    def admit(self, assoc: Any) -> bool:
        """Whether ``assoc`` (an association being negotiated) may go on."""
        with self._lock:
            if assoc in self._admitted:
                return True
            if not self.table.admit(self.index, self._held(), self.limit):
                return False
            self._admitted.add(assoc)
            return True

    def release(self, assoc: Any) -> None:
        """``assoc`` has ended (its thread is about to)."""
        with self._lock:
            self._admitted.discard(assoc)
            self.table.set_held(self.index, self._held())

    def refresh(self) -> None:
        """Write the count again from the live threads (a safety net, called now and then)."""
        with self._lock:
            self.table.set_held(self.index, self._held())

    def admit_peer(self, host: str, held_here: int, limit: int) -> bool:
        return self.table.admit_peer(self.index, host, held_here, limit)

    def set_peer(self, host: str, held: int) -> None:
        self.table.set_peer(self.index, host, held)

    def add_counts(self, counts: Mapping[str, int]) -> None:
        self.table.add_counts(self.index, counts)

    def totals(self) -> dict[str, int]:
        return self.table.totals()
