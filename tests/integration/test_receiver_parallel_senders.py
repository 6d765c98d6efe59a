"""Many senders at once: 16 associations × 50 CT instances against one receiver.

Every C-STORE handler hands its index row to the one index writer, which commits the
rows of all associations in groups. Under this load no association is refused, every
store is answered Success, and every acknowledged instance is on disk and indexed
exactly once — read back from the real database (the SQLite file with the ``sqlite3``
module, PostgreSQL through its own connection), not from the receiver's engine.
Run against SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import _config
from sqlalchemy import text
from sqlalchemy.engine import make_url

from dicom_node.db.engine import make_engine
from tests.integration.conftest import LOCALHOST, NODE_AET, scu_ae, store_files, write_instance
from tests.peers import PostgresProcess, wait_until

pytestmark = pytest.mark.timeout(120)

SENDERS = 16
PER_SENDER = 50
MAX_ASSOCIATIONS = 32
SQLITE_BUSY_TIMEOUT_MS = 100


@dataclass
class Sender:
    """One association that sends its files and records what was answered."""

    files: list[Path]
    sop_uids: list[str]
    established: bool = False
    statuses: list[int | None] = field(default_factory=list)


def send(port: int, sender: Sender, start: threading.Barrier) -> None:
    ae = scu_ae(timeout=60)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    start.wait(timeout=30)
    try:
        assoc = ae.associate(LOCALHOST, port, ae_title=NODE_AET)
        sender.established = assoc.is_established
        if not assoc.is_established:
            return
        try:
            for path in sender.files:
                status = assoc.send_c_store(path)
                sender.statuses.append(int(status.Status) if status else None)
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        ae.shutdown()


def make_senders(folder: Path) -> list[Sender]:
    """Sender k sends series k of study k // 2: two associations fill each study at once."""
    studies = [generate_uid() for _ in range(SENDERS // 2)]
    senders = []
    for k in range(SENDERS):
        series = generate_uid()
        files: list[Path] = []
        uids: list[str] = []
        for n in range(PER_SENDER):
            sop = generate_uid()
            files.append(
                write_instance(
                    folder / f"s{k:02d}" / f"{n:03d}.dcm",
                    study_uid=studies[k // 2],
                    series_uid=series,
                    sop_uid=sop,
                    rows=8,
                    columns=8,
                    seed=k * PER_SENDER + n,
                    instance_number=n + 1,
                )
            )
            uids.append(str(sop))
        senders.append(Sender(files, uids))
    return senders


def send_all(port: int, senders: list[Sender]) -> float:
    """Start every sender at the same moment; return the wall time until all finished.
    An exception in a sender is raised here."""
    start = threading.Barrier(len(senders) + 1)
    with ThreadPoolExecutor(max_workers=len(senders), thread_name_prefix="scu") as pool:
        running = [pool.submit(send, port, sender, start) for sender in senders]
        start.wait(timeout=30)
        began = time.monotonic()
        for future in running:
            future.result(timeout=100)
        return time.monotonic() - began


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.sqlite'}"
        return
    pytest.importorskip("psycopg", reason="psycopg (the postgres extra) is not installed")
    with PostgresProcess(dbname="parallel_test") as pg:
        yield pg.url


def source_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def indexed_rows(url: str) -> list[tuple[str, str, int]]:
    """(sop_instance_uid, path, size_bytes) of every instance row, read independently."""
    query = "select sop_instance_uid, path, size_bytes from instances"
    database = make_url(url).database
    if url.startswith("sqlite"):
        assert database is not None
        connection = sqlite3.connect(database)
        try:
            return [(row[0], row[1], row[2]) for row in connection.execute(query)]
        finally:
            connection.close()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [(row[0], row[1], row[2]) for row in conn.execute(text(query))]
    finally:
        engine.dispose()


def test_parallel_senders_are_all_stored_and_indexed_once(
    receiver: Callable[..., Any],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # files as they are
    senders = make_senders(tmp_path / "datasets")
    engine = None
    if database_url.startswith("sqlite"):
        # This disk commits in about a millisecond, so the node's 5 s busy timeout would
        # hide handlers queueing for SQLite's write lock; at 100 ms they show as 0xA700
        # (one transaction per handler, as before the index writer: about half the stores).
        engine = make_engine(database_url, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS)
    node = receiver(database_url=database_url, max_associations=MAX_ASSOCIATIONS, engine=engine)

    wall = send_all(node.port, senders)

    assert all(s.established for s in senders), "an association was refused"
    assert node.receiver.ae.admission_refusals.snapshot() == {}
    answered = Counter(status for s in senders for status in s.statuses)
    assert answered == {0x0000: SENDERS * PER_SENDER}, answered

    acknowledged = {uid for s in senders for uid in s.sop_uids}
    rows = indexed_rows(database_url)
    per_uid = Counter(uid for uid, _path, _size in rows)
    assert set(per_uid) == acknowledged
    assert max(per_uid.values()) == 1, "an instance was indexed twice"
    for uid, relative, size in rows:
        stored = node.root / relative
        assert stored.name == f"{uid}.dcm"
        assert stored.stat().st_size == size
    assert len(node.stored_files()) == SENDERS * PER_SENDER
    assert node.spool_files() == []

    stats = node.receiver.index_writer.stats()
    assert (stats.rows, stats.failed_rows) == (SENDERS * PER_SENDER, 0)
    # Grouping happened: fewer commits than rows.
    assert stats.groups < stats.rows
    # Stopping the receiver ends its index writer: no thread left behind.
    node.receiver.stop()
    assert not node.receiver.index_writer.running
    assert not [t for t in threading.enumerate() if t.name == "index-writer"]
    print(
        f"\n{make_url(database_url).get_backend_name()}: {SENDERS}x{PER_SENDER} stored in "
        f"{wall:.2f} s; {stats.rows} rows in {stats.groups} commits "
        f"(mean {stats.rows / stats.groups:.1f}, largest {stats.largest_group}); "
        f"writer busy {stats.busy_seconds:.2f} s"
    )


def test_stopping_the_receiver_commits_a_store_waiting_for_its_index_row(
    receiver: Callable[..., Any],
    node_settings: Callable[..., Any],
    make_instance: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """A store whose row waits for the database when the receiver stops: stop() waits
    for that row's commit, so the file and its row are both there afterwards (the
    association was aborted, so the sender never saw Success and will send it again)."""
    settings = node_settings(tmp_path)
    node = receiver(settings, engine=make_engine(settings.database_url, busy_timeout_ms=30_000))
    source = make_instance()
    database = make_url(settings.database_url).database
    assert database is not None
    writer = node.receiver.index_writer

    locker = sqlite3.connect(database, isolation_level=None, timeout=0)
    try:
        locker.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(max_workers=2) as pool:
            sending = pool.submit(store_files, node.port, [source], timeout=30)
            wait_until(
                lambda: writer.pending() == 1, 10, message="the row never reached the writer"
            )
            stopping = pool.submit(node.receiver.stop)
            wait_until(lambda: not writer.accepting, 10, message="the writer kept taking rows")
            assert not stopping.done(), "stop() returned with a row still waiting"
            locker.execute("ROLLBACK")
            stopping.result(timeout=30)
            outcome = sending.result(timeout=30)
    finally:
        locker.close()

    assert outcome.statuses != [0x0000]  # aborted before the answer went out
    assert not writer.running
    assert not [t for t in threading.enumerate() if t.name == "index-writer"]
    assert [row.sop_instance_uid for row in node.instances()] == [source_uid(source)]
    assert len(node.stored_files()) == 1
    assert node.spool_files() == []
    assert writer.stats().rows == 1
