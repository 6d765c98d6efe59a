"""The index writer: rows of many threads committed in groups, each waiter answered after
its own commit; failures reach every waiter of the group; stop() writes what is pending.

Every test uses a real SQLite file. Where a test needs rows to pile up behind a commit,
another connection holds the database's write lock (``BEGIN IMMEDIATE``): the writer's
next group waits for it in its own ``BEGIN IMMEDIATE`` (the busy timeout), and the rows
handed over meanwhile are counted with ``waiting()`` before the lock is let go.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.exc import IntegrityError

from dicom_node.db.engine import make_engine
from dicom_node.db.models import Instance, Series, Study
from dicom_node.errors import OutOfResources
from dicom_node.ingest.index import IndexOutcome, index_instance
from dicom_node.ingest.index_writer import IndexWriter

from .conftest import UIDs, header, sqlite_url, wait_for

pytestmark = pytest.mark.timeout(60)


@dataclass
class Handed:
    """One row handed to the writer from its own thread, as a C-STORE handler does."""

    study: str
    series: str
    sop: str
    number: int | None = None
    without_path: bool = False  # a row the database rejects by itself (NOT NULL)
    future: Future[IndexOutcome] | None = None

    @property
    def path(self) -> str:
        return f"{self.study}/{self.series}/{self.sop}.dcm"

    @property
    def outcome(self) -> IndexOutcome | None:
        done = self.future is not None and self.future.done() and not self.future.exception()
        return self.future.result() if done and self.future is not None else None

    @property
    def error(self) -> BaseException | None:
        if self.future is None or not self.future.done():
            return None
        return self.future.exception()


class Handlers:
    """Threads that hand rows to a writer and wait, each for its own row."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="handler")

    def hand_over(self, writer: IndexWriter, row: Handed) -> Handed:
        row.future = self._pool.submit(
            writer.index,
            header(row.study, row.series, row.sop, number=row.number),
            relative_path=None if row.without_path else row.path,  # type: ignore[arg-type]
            size_bytes=100,
            calling_ae_title="TEST_SCU",
        )
        return row

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def finish(rows: list[Handed]) -> None:
    futures = [row.future for row in rows if row.future is not None]
    assert len(futures) == len(rows)
    _done, not_done = wait(futures, timeout=30)
    assert not not_done, "a waiter was never answered"


@contextmanager
def write_lock(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Hold the database's write lock from another connection until the block ends."""
    locker = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    try:
        locker.execute("BEGIN IMMEDIATE")
        yield locker
        locker.execute("ROLLBACK")
    finally:
        locker.close()


def queue_behind_the_lock(handlers: Handlers, writer: IndexWriter, rows: list[Handed]) -> None:
    """Hand over the first row alone (the writer takes it and waits for the lock), then
    the others, and wait until they are all waiting for the next group."""
    handlers.hand_over(writer, rows[0])
    wait_for(lambda: writer.waiting() == 0)
    for row in rows[1:]:
        handlers.hand_over(writer, row)
    wait_for(lambda: writer.waiting() == len(rows) - 1)


def count_commits(engine: Engine) -> list[int]:
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    return commits


def instance_rows(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(Instance.sop_instance_uid, Instance.path))]  # type: ignore[misc]


def table_counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            int(conn.scalar(select(func.count(Study.id))) or 0),
            int(conn.scalar(select(func.count(Series.id))) or 0),
            int(conn.scalar(select(func.count(Instance.id))) or 0),
        )


def no_writer_thread() -> bool:
    return not any(t.name == "index-writer" for t in threading.enumerate())


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    handlers = Handlers()
    yield handlers
    handlers.close()


@pytest.fixture
def writer(engine: Engine) -> Iterator[IndexWriter]:
    writer = IndexWriter(engine)
    writer.start()
    yield writer
    writer.stop()


# -- grouping ---------------------------------------------------------------------------------


def test_rows_that_arrive_during_a_commit_share_the_next_one(
    engine: Engine, writer: IndexWriter, handlers: Handlers, db_path: Path, uids: UIDs
) -> None:
    study, series = uids.next(), uids.next()
    rows = [Handed(study, series, uids.next()) for _ in range(12)]
    commits = count_commits(engine)

    with write_lock(db_path):
        queue_behind_the_lock(handlers, writer, rows)
        assert not any(row.future and row.future.done() for row in rows), "answered too early"
    finish(rows)

    assert [row.error for row in rows if row.error] == []
    assert len(commits) == 2  # the first row alone, then the other eleven together
    stats = writer.stats()
    assert (stats.groups, stats.rows, stats.largest_group) == (2, 12, 11)
    assert table_counts(engine) == (1, 1, 12)
    ids = {row.sop: row.outcome.instance_id for row in rows if row.outcome is not None}
    with engine.connect() as conn:
        assert dict(conn.execute(select(Instance.sop_instance_uid, Instance.id)).all()) == ids
    assert all(row.outcome is not None and row.outcome.new for row in rows)


def test_many_threads_at_once_are_grouped_and_indexed_once(
    engine: Engine, writer: IndexWriter, uids: UIDs
) -> None:
    threads, per_thread = 24, 20
    studies = [uids.next() for _ in range(4)]
    plans = [
        [Handed(studies[t % 4], f"{studies[t % 4]}.{t}", uids.next()) for _ in range(per_thread)]
        for t in range(threads)
    ]
    start = threading.Barrier(threads)

    def send(plan: list[Handed]) -> list[IndexOutcome]:
        start.wait(timeout=10)
        return [
            writer.index(
                header(row.study, row.series, row.sop),
                relative_path=row.path,
                size_bytes=1,
                calling_ae_title=None,
            )
            for row in plan
        ]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        sent = [pool.submit(send, plan) for plan in plans]
        outcomes = [o for future in sent for o in future.result(timeout=50)]

    assert len({o.instance_id for o in outcomes}) == threads * per_thread
    assert table_counts(engine) == (4, threads, threads * per_thread)
    stats = writer.stats()
    assert stats.rows == threads * per_thread
    assert stats.groups < stats.rows / 2, stats  # most commits carried several rows


def test_duplicates_in_one_group_are_as_if_committed_one_by_one(
    engine: Engine, writer: IndexWriter, handlers: Handlers, db_path: Path, uids: UIDs
) -> None:
    study, series, sop = uids.next(), uids.next(), uids.next()
    other_series = uids.next()
    rows = [
        Handed(study, series, uids.next()),  # taken alone
        Handed(study, series, sop),
        Handed(study, series, sop),  # the same file again
        Handed(study, other_series, sop),  # the same SOP Instance UID elsewhere
    ]
    with write_lock(db_path):
        queue_behind_the_lock(handlers, writer, rows)
    finish(rows)

    first, again, moved = (row.outcome for row in rows[1:])
    assert first is not None and again is not None and moved is not None
    assert first.new and not again.new and again.instance_id == first.instance_id
    assert not moved.new and moved.kept_at == rows[1].path  # keep_first, as index_instance
    assert writer.stats().largest_group == 3
    assert sorted(instance_rows(engine)) == sorted(
        [(rows[0].sop, rows[0].path), (sop, rows[1].path)]
    )


# -- failures -------------------------------------------------------------------------------


def test_an_unwritable_database_fails_every_waiter_of_the_group(
    db_path: Path, engine: Engine, handlers: Handlers, uids: UIDs
) -> None:
    """The database refuses writes (query_only, as a read-only file would): every row of
    the group is answered OutOfResources and none is committed; once it takes writes
    again, the same writer goes on."""
    unwritable = [True]
    guarded = make_engine(sqlite_url(db_path))

    # After the engine's BEGIN IMMEDIATE (so that the group first waits for the lock
    # like any other), and writable again for the next BEGIN.
    @event.listens_for(guarded, "begin")
    def _read_only(conn: Connection) -> None:
        conn.exec_driver_sql(f"PRAGMA query_only={int(unwritable[0])}")

    @event.listens_for(guarded, "checkout")
    def _writable(dbapi_connection: sqlite3.Connection, _record: Any, _proxy: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only=0")

    writer = IndexWriter(guarded)
    writer.start()
    try:
        study, series = uids.next(), uids.next()
        rows = [Handed(study, series, uids.next()) for _ in range(8)]
        with write_lock(db_path):
            queue_behind_the_lock(handlers, writer, rows)
        finish(rows)

        assert all(isinstance(row.error, OutOfResources) for row in rows), rows
        assert all("readonly" in str(row.error) for row in rows)
        assert table_counts(engine) == (0, 0, 0)
        stats = writer.stats()
        assert (stats.groups, stats.failed_groups, stats.failed_rows) == (0, 2, 8)

        unwritable[0] = False
        again = [handlers.hand_over(writer, Handed(study, series, row.sop)) for row in rows]
        finish(again)  # the senders tried again
        assert [row.error for row in again if row.error] == []
        assert all(row.outcome is not None and row.outcome.new for row in again)
        assert table_counts(engine) == (1, 1, 8)
    finally:
        writer.stop()
        guarded.dispose()


def test_a_failed_commit_fails_every_waiter_of_the_group(
    db_path: Path, engine: Engine, handlers: Handlers, uids: UIDs
) -> None:
    """Every statement of the group succeeds and the COMMIT itself fails (a foreign key
    checked at commit): no row of the group is committed, every waiter gets
    OutOfResources, and the writer goes on with the next group."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER poison AFTER INSERT ON instances WHEN NEW.instance_number = 13 "
            "BEGIN INSERT INTO series (study_id, series_instance_uid) "
            "VALUES (-1, 'orphan.' || NEW.id); END"
        )
    checked_at_commit = make_engine(sqlite_url(db_path))
    event.listen(
        checked_at_commit,
        "begin",
        lambda conn: conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON"),
    )
    writer = IndexWriter(checked_at_commit)
    writer.start()
    try:
        study, series = uids.next(), uids.next()
        rows = [Handed(study, series, uids.next()) for _ in range(6)]
        rows[3].number = 13  # its orphan series fails the second group's commit
        with write_lock(db_path):
            queue_behind_the_lock(handlers, writer, rows)
        finish(rows)

        assert rows[0].error is None and rows[0].outcome is not None
        assert all(isinstance(row.error, OutOfResources) for row in rows[1:]), rows
        assert all("FOREIGN KEY" in str(row.error) for row in rows[1:])
        assert instance_rows(engine) == [(rows[0].sop, rows[0].path)]
        stats = writer.stats()
        assert (stats.groups, stats.rows, stats.failed_groups, stats.failed_rows) == (1, 1, 1, 5)

        retry = handlers.hand_over(writer, Handed(study, series, rows[1].sop))
        finish([retry])
        assert retry.outcome is not None and retry.outcome.new
    finally:
        writer.stop()
        checked_at_commit.dispose()


def test_a_row_that_fails_alone_does_not_fail_its_group(
    engine: Engine, writer: IndexWriter, handlers: Handlers, db_path: Path, uids: UIDs
) -> None:
    """A row the database rejects by itself (here a NOT NULL path) is tried again, then
    answered with its error; the other rows of its group are committed."""
    study, series = uids.next(), uids.next()
    rows = [Handed(study, series, uids.next()) for _ in range(6)]
    rows[3].without_path = True
    with write_lock(db_path):
        queue_behind_the_lock(handlers, writer, rows)
    finish(rows)

    bad = rows.pop(3)
    assert isinstance(bad.error, IntegrityError) and "NOT NULL" in str(bad.error)
    assert [row.error for row in rows if row.error] == []
    assert sorted(instance_rows(engine)) == sorted((row.sop, row.path) for row in rows)
    stats = writer.stats()
    assert (stats.rows, stats.failed_rows, stats.failed_groups) == (5, 1, 0)


# -- start and stop ---------------------------------------------------------------------------


def test_stop_writes_the_rows_handed_over_and_refuses_new_ones(
    engine: Engine, handlers: Handlers, db_path: Path, uids: UIDs
) -> None:
    writer = IndexWriter(engine)
    writer.start()
    study, series = uids.next(), uids.next()
    rows = [Handed(study, series, uids.next()) for _ in range(6)]
    with ThreadPoolExecutor(max_workers=1) as stopper, write_lock(db_path):
        queue_behind_the_lock(handlers, writer, rows)
        stopping = stopper.submit(writer.stop)
        wait_for(lambda: not writer.accepting)
        late = handlers.hand_over(writer, Handed(study, series, uids.next()))
        finish([late])
        assert isinstance(late.error, OutOfResources) and "not running" in str(late.error)
        assert not stopping.done(), "stop() returned before the pending rows were written"
    stopping.result(timeout=30)
    finish(rows)

    assert not writer.running and no_writer_thread()
    assert [row.error for row in rows if row.error] == []
    assert sorted(instance_rows(engine)) == sorted((row.sop, row.path) for row in rows)


def test_stop_with_the_database_locked_fails_the_pending_rows(
    engine: Engine, handlers: Handlers, db_path: Path, uids: UIDs
) -> None:
    impatient = make_engine(sqlite_url(db_path), busy_timeout_ms=300)
    writer = IndexWriter(impatient)
    writer.start()
    try:
        study, series = uids.next(), uids.next()
        rows = [Handed(study, series, uids.next()) for _ in range(4)]
        with write_lock(db_path):
            queue_behind_the_lock(handlers, writer, rows)
            writer.stop()  # returns while the lock is still held
            assert not writer.running and no_writer_thread()
        finish(rows)
        assert all(isinstance(row.error, OutOfResources) for row in rows), rows
        assert all("locked" in str(row.error) for row in rows)
        assert table_counts(engine) == (0, 0, 0)
    finally:
        writer.stop()
        impatient.dispose()


def test_a_stopped_writer_starts_again(engine: Engine, handlers: Handlers, uids: UIDs) -> None:
    writer = IndexWriter(engine)
    with pytest.raises(OutOfResources, match="not running"):
        writer.index(
            header(uids.next(), uids.next(), uids.next()),
            relative_path="a/b/c.dcm",
            size_bytes=1,
            calling_ae_title=None,
        )
    for _ in range(2):
        with writer:
            with pytest.raises(RuntimeError, match="already running"):
                writer.start()
            row = handlers.hand_over(writer, Handed(uids.next(), uids.next(), uids.next()))
            finish([row])
            assert row.outcome is not None and row.outcome.new
        assert not writer.running and no_writer_thread()
    writer.stop()  # stopping a stopped writer is harmless
    assert table_counts(engine)[2] == 2


def test_the_writer_gives_the_same_rows_as_index_instance(
    engine: Engine, writer: IndexWriter, uids: UIDs
) -> None:
    """An instance moved to another series under overwrite: the writer's outcome names the
    old file, and one row stays, as with index_instance."""
    study, sop = uids.next(), uids.next()
    first, second = uids.next(), uids.next()
    index_instance(
        engine,
        header(study, first, sop),
        relative_path=f"{study}/{first}/{sop}.dcm",
        size_bytes=1,
        calling_ae_title=None,
    )
    moved = writer.index(
        header(study, second, sop),
        relative_path=f"{study}/{second}/{sop}.dcm",
        size_bytes=2,
        calling_ae_title="TEST_SCU",
        replace_moved=True,
    )
    assert moved.new and moved.moved_from == f"{study}/{first}/{sop}.dcm"
    assert instance_rows(engine) == [(sop, f"{study}/{second}/{sop}.dcm")]
