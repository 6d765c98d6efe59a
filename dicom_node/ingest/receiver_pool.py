"""Several receiver processes on one port: ``receiver_processes`` above 1.

One Python process decodes every PDU and parses every header under one GIL: with several
associations at once it uses one core. With ``receiver_processes = N`` the node's own
receiver (in the ``serve`` process) is joined by N-1 receiver child processes (started
with ``spawn``), each with its own pynetdicom AE, index writer and database engine,
bound to the same address and port with ``SO_REUSEPORT``: the kernel spreads new
connections over them. They write through the same durable path (spool, fsync, rename,
index commit, then Success) into the same storage; a spool file's name carries its
process's pid. ``max_associations`` and ``max_connections_per_peer`` stay the whole
node's limits, and the receiver's counts for ``/metrics`` cover every process, through
the receiver table they all map (``receiver_slots.py``, ``receiver_counts.py``).

Stable-study promotion, jobs and deliveries stay in the ``serve`` process (they go
through the database, which every receiver writes).

``ReceiverPool`` supervises the children from one thread of its own, which starts them
all: a child's parent-death signal (``PR_SET_PDEATHSIG``, which kills it when the
``serve`` process dies, ``kill -9`` included) follows the thread that started it, so
that thread lives as long as the children. A child that dies is replaced within about a
second; the associations it held are freed in the table and its unfinished spool files
removed (a store it had not answered was never acknowledged: its sender sees the
association end and sends again). ``stop()`` stops the children (SIGTERM: each stops
listening, aborts its associations and commits the rows handed to its index writer).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from dicom_node.db.engine import make_engine
from dicom_node.ingest.receive import Receiver
from dicom_node.ingest.receiver_slots import TABLE_NAME, NodeSlots, ReceiverTable
from dicom_node.ingest.spool import spool_prefix
from dicom_node.settings import NodeSettings
from dicom_node.store import DurableStore

logger = logging.getLogger(__name__)

#: How often the supervisor looks for a dead child.
SUPERVISE_SECONDS = 0.5
#: How long ``start()`` waits for the children to listen.
READY_SECONDS = 60.0
#: How long a child may take to stop after SIGTERM before it is killed.
STOP_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def receiver_process_count(settings: NodeSettings) -> int:
    """``receiver_processes``, with ``"auto"`` as the cores this process may use (one GIL
    per core), at most ``max_associations`` (a process more would have nothing to do)."""
    wanted = settings.receiver_processes
    if wanted == "auto":
        wanted = min(len(os.sched_getaffinity(0)), settings.max_associations)
    return max(1, int(wanted))


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        logger.warning("no parent-death signal (%s); watching the parent instead", exc)
    if os.getppid() != parent_pid:
        os._exit(0)


def receiver_process_main(
    settings: NodeSettings,
    index: int,
    table_path: str,
    parent_pid: int,
    log_levels: dict[str, int],
    log_format: str | None,
) -> None:
    """A receiver child: listen on the shared port until SIGTERM or the parent's end."""
    _die_with_parent(parent_pid)
    if log_format is not None:  # the serve process's logging, as its CLI set it up
        logging.basicConfig(level=log_levels.get("", logging.INFO), format=log_format)
        for name, level in log_levels.items():
            logging.getLogger(name or None).setLevel(level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the serve process stops us
    engine = make_engine(settings.database_url)
    store = DurableStore(settings.storage_dir, min_free_bytes=settings.min_free_bytes)
    table = ReceiverTable(Path(table_path))
    receiver = Receiver(settings, store, engine, NodeSlots(table, index, settings.max_associations))
    try:
        receiver.start()
        table.started(index, os.getpid())
        while not stop.wait(1.0):
            if os.getppid() != parent_pid:
                logger.warning("serve process %d is gone; receiver stopping", parent_pid)
                break
    finally:
        receiver.stop()
        engine.dispose()
        table.close()


class ReceiverPool:
    """The receiver child processes of one node (none with ``receiver_processes = 1``)."""

    def __init__(self, settings: NodeSettings, store: DurableStore) -> None:
        self.settings = settings
        self.store = store
        self.count = receiver_process_count(settings)
        self.table_path = store.root / TABLE_NAME
        self.table: ReceiverTable | None = None
        if self.count > 1:
            self.table = ReceiverTable(self.table_path, self.count, create=True)
        self.processes: dict[int, BaseProcess] = {}
        self._context = multiprocessing.get_context("spawn")
        self._child_settings = settings
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def main_slots(self) -> NodeSlots | None:
        """The slots of the serve process's own receiver (entry 0); None with one process."""
        if self.table is None:
            return None
        return NodeSlots(self.table, 0, self.settings.max_associations)

    def start(self, port: int) -> None:
        """Start the children on ``port`` (the one the serve process's receiver bound) and
        wait until they listen (at most ``READY_SECONDS``)."""
        if self.table is None:
            return
        self.table.started(0, os.getpid())
        self._child_settings = self.settings.model_copy(update={"port": port})
        self._thread = threading.Thread(target=self._supervise, name="receiver-pool", daemon=True)
        self._thread.start()
        if not self._ready.wait(READY_SECONDS):
            logger.warning("not every receiver process listens after %g s", READY_SECONDS)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values() if p.pid is not None]

    def _spawn(self, index: int) -> None:
        assert self.table is not None
        root = logging.getLogger()
        handlers = root.handlers
        log_format = handlers[0].formatter._fmt if handlers and handlers[0].formatter else None
        levels = {"": root.level, "pynetdicom": logging.getLogger("pynetdicom").level}
        process = self._context.Process(
            target=receiver_process_main,
            args=(self._child_settings, index, str(self.table_path), os.getpid(), levels),
            kwargs={"log_format": log_format},
            name=f"receiver-{index}",
            daemon=False,
        )
        process.start()
        self.processes[index] = process
        logger.info("receiver process %d (pid %s) started", index, process.pid)

    def _listening(self) -> bool:
        assert self.table is not None
        pids = {entry.index: entry.pid for entry in self.table.entries()}
        return all(pids.get(i) == p.pid for i, p in self.processes.items())

    def _supervise(self) -> None:
        for index in range(1, self.count):
            self._spawn(index)
        deadline = time.monotonic() + READY_SECONDS
        while not self._listening() and time.monotonic() < deadline:
            if self._stop.wait(0.05):
                break
        self._ready.set()
        try:
            while not self._stop.wait(SUPERVISE_SECONDS):
                for index, process in list(self.processes.items()):
                    if process.is_alive():
                        continue
                    try:
                        self._replace(index, process)
                    except Exception:  # the next round tries again; supervision goes on
                        logger.exception("could not replace receiver process %d", index)
        finally:
            self._stop_children()

    def _replace(self, index: int, process: BaseProcess) -> None:
        assert self.table is not None
        process.join(0)
        logger.error(
            "receiver process %d (pid %s) exited (%s); starting another",
            index,
            process.pid,
            process.exitcode,
        )
        self.table.clear(index)  # the associations it held are free
        if process.pid is not None:
            self._remove_spool_of(process.pid)
        self._spawn(index)

    def _remove_spool_of(self, pid: int) -> None:
        prefix = spool_prefix(pid)
        removed = 0
        for entry in self.store.spool_dir.glob(f"{prefix}*"):
            entry.unlink(missing_ok=True)
            removed += 1
        if removed:
            logger.info("removed %d unfinished spool file(s) of pid %d", removed, pid)

    def _stop_children(self) -> None:
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
        for index, process in self.processes.items():
            process.join(STOP_SECONDS)
            if process.is_alive():
                logger.error("receiver process %s did not stop; killing it", process.pid)
                process.kill()
                process.join(STOP_SECONDS)
            if self.table is not None:
                self.table.clear(index)
        self.processes.clear()

    def stop(self) -> None:
        """Stop and join the children (each commits what its index writer holds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.table is not None:
            self.table.clear(0)
