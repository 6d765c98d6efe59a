"""The index writer: one thread commits the index rows of every association, in groups.

A C-STORE handler first makes its file durable (fsynced, renamed into place, folder
fsynced), then hands the instance's row to the writer and waits for the commit of the
group its row went into; only then does it answer Success. One writer instead of one
transaction per handler: the handlers no longer queue for SQLite's write lock, where
each waited at most the busy timeout (5 s) and many associations at once ran it out
(0xA700, "database is locked"); and one commit, one fsync of the write-ahead log,
covers every row that arrived while the commit before it ran (group commit). Nothing
waits to fill a group: a lone store is committed at once, and under load the groups
grow by themselves, up to ``max_group`` rows.

A group is one write transaction (``BEGIN IMMEDIATE`` on SQLite) that runs each row's
statements (``index.index_rows``) in the order the rows arrived, then commits; only
after the commit does each waiter get its ``IndexOutcome``. Rows in one group behave as
if committed one by one: a duplicate behind its first copy finds it. When it fails:

- the database cannot take the group (locked past the busy timeout, unwritable, disk
  full, connection lost, a failed commit): the transaction is rolled back and every
  waiter of the group gets ``OutOfResources`` (its handler answers 0xA700 and removes
  the file it placed); no row of the group is committed.
- one row fails on its own: the transaction is rolled back and the rest of the group
  written again without that row, whose waiter gets the error. An ``IntegrityError``
  (on PostgreSQL another process may insert the same study, series or instance between
  our select and insert) is first tried again, up to ``RACE_RETRIES`` times.

``stop()`` takes no new rows (``OutOfResources``), commits the rows already handed over
(or fails them as above), and returns once the writer thread has ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from dicom_node.db.engine import write_transaction
from dicom_node.errors import OutOfResources
from dicom_node.ingest.index import RACE_RETRIES, IndexOutcome, InstanceHeader, index_rows

logger = logging.getLogger(__name__)

#: The most rows one commit takes. Each association has at most one store waiting, so
#: under ``max_associations`` a group is never larger than that anyway.
MAX_GROUP = 256


@dataclass(frozen=True)
class IndexWriterStats:
    """What the writer has done since it was made (a snapshot)."""

    groups: int = 0  #: transactions committed
    rows: int = 0  #: rows committed in them
    largest_group: int = 0  #: the most rows one commit took
    failed_groups: int = 0  #: transactions the database did not take
    failed_rows: int = 0  #: rows whose waiter got an error
    busy_seconds: float = 0.0  #: time spent writing groups (the rest it waited for rows)


@dataclass(eq=False)
class _Row:
    """One instance handed to the writer, and where its waiter learns the outcome."""

    header: InstanceHeader
    relative_path: str
    size_bytes: int
    calling_ae_title: str | None
    received_at: datetime
    replace_moved: bool
    result: Future[IndexOutcome] = field(default_factory=Future)
    integrity_errors: int = 0


class IndexWriter:
    """The one thread that writes the receiver's index rows, in group commits.

    ``index()`` is called by many handler threads at once; each returns once its own row
    is committed, or raises. ``start()`` / ``stop()`` go with the receiver's.
    """

    def __init__(self, engine: Engine, *, max_group: int = MAX_GROUP) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self._engine = engine
        self._max_group = max_group
        self._queue: deque[_Row] = deque()
        self._wake = threading.Condition()
        self._accepting = False
        self._writing = 0  # rows of the group being written
        self._thread: threading.Thread | None = None
        self._stats = IndexWriterStats()  # replaced, never changed: readers see a snapshot

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        with self._wake:
            if self._thread is not None:
                raise RuntimeError("the index writer is already running")
            self._accepting = True
            self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Take no new rows, write those handed over, and wait for the thread to end."""
        with self._wake:
            self._accepting = False
            thread = self._thread
            self._wake.notify_all()
        if thread is not None:
            thread.join()
        with self._wake:
            if self._thread is thread:
                self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def accepting(self) -> bool:
        """Whether ``index()`` takes rows now (between ``start()`` and ``stop()``)."""
        return self._accepting

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def waiting(self) -> int:
        """Rows handed over and not yet taken into a group."""
        with self._wake:
            return len(self._queue)

    def pending(self) -> int:
        """Rows handed over and not yet answered: waiting, or in the group being written."""
        with self._wake:
            return len(self._queue) + self._writing

    def stats(self) -> IndexWriterStats:
        return self._stats

    # -- the handlers' side --------------------------------------------------------------

    def index(
        self,
        header: InstanceHeader,
        *,
        relative_path: str,
        size_bytes: int,
        calling_ae_title: str | None,
        received_at: datetime | None = None,
        replace_moved: bool = False,
    ) -> IndexOutcome:
        """Index one stored instance and return once its row is committed.

        The same rows and outcome as ``index.index_instance``. Raise ``OutOfResources``
        when the database did not take the row's group, or the writer is not running;
        any other error of this row alone is raised as it is.
        """
        row = _Row(
            header,
            relative_path,
            size_bytes,
            calling_ae_title,
            received_at or datetime.now(UTC),
            replace_moved,
        )
        with self._wake:
            if not self._accepting:
                raise OutOfResources("the index writer is not running")
            self._queue.append(row)
            self._wake.notify()
        return row.result.result()

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and self._accepting:
                    self._wake.wait()
                if not self._queue:
                    return  # stopped, and every row handed over has its answer
                take = min(len(self._queue), self._max_group)
                group = [self._queue.popleft() for _ in range(take)]
                self._writing = take
            began = time.monotonic()
            try:
                self._write(group)
            except BaseException as exc:
                # A bug, not the database: no waiter may be left hanging on it.
                logger.exception("index writer failed on a group of %d row(s)", len(group))
                for row in group:
                    if not row.result.done():
                        row.result.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                busy = self._stats.busy_seconds + time.monotonic() - began
                self._stats = replace(self._stats, busy_seconds=busy)
                with self._wake:
                    self._writing = 0

    def _write(self, group: list[_Row]) -> None:
        rows = list(group)
        while rows:
            current: _Row | None = None
            try:
                with write_transaction(self._engine) as conn:
                    outcomes = []
                    for current in rows:
                        outcomes.append(
                            index_rows(
                                conn,
                                current.header,
                                current.relative_path,
                                current.size_bytes,
                                current.calling_ae_title,
                                current.received_at,
                                current.replace_moved,
                            )
                        )
                    current = None  # what fails from here on is the commit
            except OperationalError as exc:
                self._fail_group(rows, exc)
                return
            except SQLAlchemyError as exc:
                if current is None:
                    self._fail_group(rows, exc)
                    return
                if isinstance(exc, IntegrityError):
                    current.integrity_errors += 1
                    if current.integrity_errors < RACE_RETRIES:
                        continue  # the whole group again: the other insert is visible now
                self._fail_row(rows, current, exc)
            except Exception as exc:
                if current is None:
                    raise
                self._fail_row(rows, current, exc)
            else:
                for row, outcome in zip(rows, outcomes, strict=True):
                    row.result.set_result(outcome)
                stats = self._stats
                self._stats = replace(
                    stats,
                    groups=stats.groups + 1,
                    rows=stats.rows + len(rows),
                    largest_group=max(stats.largest_group, len(rows)),
                )
                return

    def _fail_group(self, rows: list[_Row], exc: SQLAlchemyError) -> None:
        """The database did not take the group: every waiter gets OutOfResources."""
        cause = getattr(exc, "orig", None) or exc
        logger.warning("index commit of %d row(s) failed: %s", len(rows), cause)
        for row in rows:
            error = OutOfResources(f"database unavailable: {cause}")
            error.__cause__ = exc
            row.result.set_exception(error)
        stats = self._stats
        self._stats = replace(
            stats, failed_groups=stats.failed_groups + 1, failed_rows=stats.failed_rows + len(rows)
        )

    def _fail_row(self, rows: list[_Row], row: _Row, exc: Exception) -> None:
        """One row failed on its own: its waiter gets the error, the others go on."""
        rows.remove(row)
        row.result.set_exception(exc)
        stats = self._stats
        self._stats = replace(stats, failed_rows=stats.failed_rows + 1)
