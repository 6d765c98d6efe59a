"""The receiver table: the node-wide association limit across receiver processes.

Two ``ReceiverTable`` objects on one file stand for two processes (each has its own open
file, so the ``flock`` excludes them as it does two processes)."""

from __future__ import annotations

import threading
from pathlib import Path

from dicom_node.ingest.admission import PeerSlots
from dicom_node.ingest.receiver_slots import NodeSlots, ReceiverTable, read_table

#: Live associations are referenced (a running thread is); so are these, as in a node.
KEPT: list[FakeAssociation] = []


class FakeAssociation:
    def __init__(self) -> None:
        self.alive = True
        KEPT.append(self)

    def is_alive(self) -> bool:
        return self.alive


def test_the_limit_counts_every_process(tmp_path: Path) -> None:
    path = tmp_path / "table"
    first = ReceiverTable(path, 2, create=True)
    second = ReceiverTable(path)
    assert second.size == 2
    a, b = NodeSlots(first, 0, 3), NodeSlots(second, 1, 3)
    held = [FakeAssociation() for _ in range(3)]
    assert a.admit(held[0]) and a.admit(held[1]) and b.admit(held[2])
    assert a.admit(held[0])  # asked again for the same association: still admitted
    assert not b.admit(FakeAssociation())
    assert not a.admit(FakeAssociation())
    assert [e.live for e in read_table(path)] == [2, 1]
    # One ends: a slot is free, for either process.
    a.release(held[0])
    assert [e.live for e in read_table(path)] == [1, 1]
    assert b.admit(FakeAssociation())
    assert [(e.live, e.associations) for e in read_table(path)] == [(1, 2), (2, 2)]


def test_a_dead_process_or_thread_frees_its_slots(tmp_path: Path) -> None:
    path = tmp_path / "table"
    first = ReceiverTable(path, 2, create=True)
    second = ReceiverTable(path)
    a, b = NodeSlots(first, 0, 2), NodeSlots(second, 1, 2)
    gone = FakeAssociation()
    assert b.admit(gone) and b.admit(FakeAssociation())
    assert not a.admit(FakeAssociation())
    second.clear(1)  # the supervisor, once process 1 died
    assert a.admit(FakeAssociation())
    # A thread that ended without release() is not counted at the next write.
    assert NodeSlots(second, 1, 2).admit(FakeAssociation())
    gone.alive = False
    assert not a.admit(FakeAssociation())
    a.refresh()
    assert [e.live for e in read_table(path)] == [1, 1]


def test_admissions_from_many_threads_never_exceed_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "table"
    tables = [ReceiverTable(path, 4, create=True)] + [ReceiverTable(path) for _ in range(3)]
    slots = [NodeSlots(table, i, 10) for i, table in enumerate(tables)]
    admitted: list[bool] = []
    lock = threading.Lock()

    def admit(mine: NodeSlots) -> None:
        for _ in range(10):
            taken = mine.admit(FakeAssociation())
            with lock:
                admitted.append(taken)

    threads = [threading.Thread(target=admit, args=(s,)) for s in slots for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 10
    assert sum(e.live for e in read_table(path)) == 10


def test_connections_per_peer_address_count_every_process(tmp_path: Path) -> None:
    path = tmp_path / "table"
    first = ReceiverTable(path, 2, create=True)
    second = ReceiverTable(path)
    a, b = NodeSlots(first, 0, 10), NodeSlots(second, 1, 10)
    # Limit 3 for one address: two places in one process, one in the other.
    assert a.admit_peer("10.0.0.1", 0, 3) and a.admit_peer("10.0.0.1", 1, 3)
    assert b.admit_peer("10.0.0.1", 0, 3)
    assert not b.admit_peer("10.0.0.1", 1, 3)
    assert not a.admit_peer("10.0.0.1", 2, 3)
    # Another address (a prefix of the first one's text among them) has its own count.
    assert b.admit_peer("10.0.0.", 0, 1) and not a.admit_peer("10.0.0.", 0, 1)
    assert [e.peers for e in read_table(path)] == [{"10.0.0.1": 2}, {"10.0.0.1": 1, "10.0.0.": 1}]
    # A connection ends: its place is free, for either process; a count of 0 frees the row.
    a.set_peer("10.0.0.1", 1)
    assert b.admit_peer("10.0.0.1", 1, 3)
    b.set_peer("10.0.0.", 0)
    assert read_table(path)[1].peers == {"10.0.0.1": 2}
    # A dead process's connections are free; so are those of one that starts again.
    second.clear(1)
    assert read_table(path)[1].peers == {}
    assert a.admit_peer("10.0.0.1", 1, 3) and a.admit_peer("10.0.0.1", 2, 3)
    first.started(0, 1234)
    assert read_table(path)[0].peers == {}


def test_counts_add_up_over_processes_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "table"
    first = ReceiverTable(path, 2, create=True)
    second = ReceiverTable(path)
    a, b = NodeSlots(first, 0, 10), NodeSlots(second, 1, 10)
    a.add_counts({"accepted": 2, "status:0x0000": 5})
    b.add_counts({"accepted": 1, "refused:limit": 3})
    b.add_counts({"status:0x0000": 1})
    assert a.totals() == b.totals() == {"accepted": 3, "status:0x0000": 6, "refused:limit": 3}
    second.clear(1)  # died: what it counted still counts, and its replacement adds to it
    second.started(1, 4321)
    b.add_counts({"accepted": 1})
    assert a.totals()["accepted"] == 4
    assert [e.stores for e in read_table(path)] == [5, 1]


def test_connections_from_many_threads_never_exceed_the_peer_limit(tmp_path: Path) -> None:
    path = tmp_path / "table"
    tables = [ReceiverTable(path, 3, create=True)] + [ReceiverTable(path) for _ in range(2)]
    peers = [PeerSlots(NodeSlots(table, i, 100)) for i, table in enumerate(tables)]
    admitted: list[bool] = []
    lock = threading.Lock()

    def enter(mine: PeerSlots) -> None:
        for _ in range(8):
            taken = mine.enter("192.0.2.7", 7)
            with lock:
                admitted.append(taken)

    threads = [threading.Thread(target=enter, args=(p,)) for p in peers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 7
    assert sum(e.peers.get("192.0.2.7", 0) for e in read_table(path)) == 7
    for mine in peers:
        for _ in range(mine.snapshot().get("192.0.2.7", 0)):
            mine.leave("192.0.2.7")
    assert [e.peers for e in read_table(path)] == [{}, {}, {}]
    assert peers[0].enter("192.0.2.7", 1)
