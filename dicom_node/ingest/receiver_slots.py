"""The whole-node association limit when several receiver processes share the port.

With ``receiver_processes`` above 1 (``receiver_pool.py``) each process has its own
pynetdicom AE, whose own ``maximum_associations`` check counts only its own threads.
``ReceiverTable`` is a small file, mapped into every receiver process, with one entry per
process: its pid, the associations it holds now, and (for tests and operators) how many
associations it admitted and how many stores it answered with Success since the node
started. An association is admitted only if the associations held by all processes
together stay within ``max_associations`` (``NodeSlots.admit``, called by pynetdicom's
own limit check in the association's thread): the check and the update happen under an
``flock`` on the file, which the kernel releases when its holder dies, so a receiver
killed at any moment never leaves the table locked.

Slots cannot leak: a process writes the count it holds recomputed from its live
association threads (never by increments), on every admission and every association's
end; the supervisor zeroes the entry of a process that died.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: One entry: pid, associations held now, associations admitted, stores answered Success.
_ENTRY = struct.Struct("<qqqq")

#: The table's file name, in the storage folder (a file at the top is never a study).
TABLE_NAME = ".receivers"


@dataclass(frozen=True)
class ReceiverEntry:
    """One receiver process as the table shows it (pid 0: not running)."""

    index: int
    pid: int
    live: int
    associations: int
    stores: int


class ReceiverTable:
    """The mapped table file; ``create=True`` makes it with ``size`` zeroed entries."""

    def __init__(self, path: Path, size: int = 0, *, create: bool = False) -> None:
        self.path = path
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        self._fd = os.open(path, flags, 0o600)
        if create:
            os.ftruncate(self._fd, size * _ENTRY.size)
        self.size = os.fstat(self._fd).st_size // _ENTRY.size
        self._map = mmap.mmap(self._fd, self.size * _ENTRY.size)
        self._lock = threading.Lock()  # flock does not exclude threads sharing the fd

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _get(self, index: int) -> list[int]:
        return list(_ENTRY.unpack_from(self._map, index * _ENTRY.size))

    def _put(self, index: int, values: list[int]) -> None:
        _ENTRY.pack_into(self._map, index * _ENTRY.size, *values)

    def entries(self) -> list[ReceiverEntry]:
        with self._locked():
            return [ReceiverEntry(i, *self._get(i)) for i in range(self.size)]

    def started(self, index: int, pid: int) -> None:
        """Entry ``index`` is now process ``pid``, holding nothing yet."""
        with self._locked():
            entry = self._get(index)
            entry[0], entry[1] = pid, 0
            self._put(index, entry)

    def clear(self, index: int) -> None:
        """Process ``index`` is gone: the associations it held are free."""
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

    def count_store(self, index: int) -> None:
        with self._locked():
            entry = self._get(index)
            entry[3] += 1
            self._put(index, entry)

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
    """One receiver process's side of the table: admits and releases its associations."""

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

    def count_store(self) -> None:
        self.table.count_store(self.index)
