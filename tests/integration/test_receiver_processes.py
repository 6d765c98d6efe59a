"""``receiver_processes`` above 1: several receiver processes share the port (SO_REUSEPORT)
and the whole node's ``max_associations``; ``serve`` supervises them.

Each test runs ``dicom-node serve`` as a real process (``NodeProcess``) and real
associations against it. Which process served an association is read from the node's
receiver table (``<storage>/.receivers``): each process writes its own pid, the
associations it holds now, and counts of associations admitted and stores answered.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from dicom_node.ingest.receiver_slots import TABLE_NAME, ReceiverEntry, read_table
from tests.integration.node_process import LOCALHOST, NodeProcess, make_series
from tests.integration.test_process_crash_receiver import RecordingSender
from tests.peers import wait_until

pytestmark = pytest.mark.timeout(90)


def table(node: NodeProcess) -> list[ReceiverEntry]:
    return read_table(node.storage_dir / TABLE_NAME)


def held(node: NodeProcess) -> list[int]:
    return [entry.live for entry in table(node)]


def wait_until_holding(node: NodeProcess, count: int) -> None:
    wait_until(lambda: sum(held(node)) >= count, 10, message=lambda: str(table(node)))


def all_listening(node: NodeProcess) -> bool:
    return all(entry.pid for entry in table(node))


@contextlib.contextmanager
def start_node(tmp_path: Path, processes: int, max_associations: int) -> Iterator[NodeProcess]:
    overrides = {"receiver_processes": processes, "max_associations": max_associations}
    with NodeProcess(tmp_path / "node", overrides=overrides) as node:
        wait_until(lambda: all_listening(node), 45, message="receiver processes not listening")
        yield node


@pytest.fixture
def scu() -> Iterator[AE]:
    ae = AE(ae_title="PROCS_SCU")
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    yield ae
    ae.shutdown()


def associate(ae: AE, node: NodeProcess) -> Association:
    return ae.associate(LOCALHOST, node.port, ae_title=node.ae_title)


def alive(pid: int) -> bool:
    """Running (a zombie or a missing /proc entry is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def indexed(node: NodeProcess) -> Counter[str]:
    rows = node.rows("select sop_instance_uid, path from instances")
    for row in rows:
        assert (node.storage_dir / row["path"]).is_file(), row["path"]
    return Counter(row["sop_instance_uid"] for row in rows)


def test_parallel_senders_are_served_by_several_processes(tmp_path: Path) -> None:
    series = [make_series(tmp_path / f"s{k}", 30, size=16, seed=k) for k in range(8)]
    with start_node(tmp_path, processes=3, max_associations=16) as node:
        senders = [RecordingSender(node.port, node.ae_title, files) for files in series]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(60)
        assert [s.stopped_by for s in senders] == ["all sent"] * 8
        acknowledged = [uid for s in senders for uid in s.succeeded]
        assert len(acknowledged) == len(set(acknowledged)) == 240
        rows = indexed(node)
        assert set(rows) == set(acknowledged)
        assert max(rows.values()) == 1, "an instance was indexed twice"
        entries = table(node)
        assert sum(e.associations for e in entries) == 8
        assert sum(e.stores for e in entries) == 240
        serving = {e.pid for e in entries if e.stores}
        assert len(serving) >= 2, f"every store went to one process: {entries}"
        assert node.pid in {e.pid for e in entries}


def test_max_associations_holds_across_processes(tmp_path: Path, scu: AE) -> None:
    with start_node(tmp_path, processes=2, max_associations=4) as node:
        # Hold four associations spread over both processes (the kernel picks the process;
        # one that lands where the other three are is released and tried again).
        kept: list[tuple[Association, int]] = []
        for _ in range(40):
            if len(kept) == 4 and min(held(node)) > 0:
                break
            if len(kept) == 4:
                busy = max(range(2), key=lambda i: held(node)[i])
                assoc, where = next(k for k in kept if k[1] == busy)
                kept.remove((assoc, where))
                assoc.release()
                wait_until(lambda: sum(held(node)) == len(kept), 10)
            before = held(node)
            assoc = associate(scu, node)
            assert assoc.is_established
            after = held(node)
            kept.append((assoc, next(i for i in range(2) if after[i] > before[i])))
        assert sorted(held(node)) != [0, 4], "could not spread the associations"
        assert sum(held(node)) == 4
        # Neither process holds four itself: only the node-wide count refuses these.
        for _ in range(4):
            refused = associate(scu, node)
            assert refused.is_rejected, "a fifth association was accepted"
        assert sum(held(node)) == 4
        # One ends: its slot is free again.
        kept.pop()[0].release()
        wait_until(lambda: sum(held(node)) == 3, 10, message=lambda: str(table(node)))
        fifth = associate(scu, node)
        assert fifth.is_established
        fifth.release()
        for assoc, _ in kept:
            assoc.release()
        wait_until(lambda: sum(held(node)) == 0, 10)


def test_a_killed_receiver_process_is_replaced_and_its_slots_freed(tmp_path: Path, scu: AE) -> None:
    with start_node(tmp_path, processes=2, max_associations=6) as node:
        child = table(node)[1].pid
        senders: list[RecordingSender] = []
        # Associations, held before sending, until one is on the child and another on the
        # serve process: the kernel spreads connections by a hash, so one that lands where
        # the first already is is released unused (twenty tries: all on one side 2^-19).
        for attempt in range(20):
            if min(held(node)) > 0:
                break
            files = make_series(tmp_path / f"s{attempt}", 150, size=16, seed=attempt)
            sender = RecordingSender(node.port, node.ae_title, files, go=threading.Event())
            before = held(node)
            sender.start()
            assert sender.associated.wait(20)
            wait_until_holding(node, sum(before) + 1)
            if senders and min(held(node)) == 0:  # beside the first one
                sender.cancel()
                sender.join(30)
                wait_until(lambda b=before: held(node) == b, 10, message=lambda: str(table(node)))
            else:
                senders.append(sender)
        assert min(held(node)) > 0, "no association landed on the child"
        for sender in senders:
            assert sender.go is not None
            sender.go.set()  # the kept ones send now
        wait_until(lambda: sum(len(s.succeeded) for s in senders) >= 10, 30)
        child_held = held(node)[1]
        os.kill(child, signal.SIGKILL)
        for sender in senders:
            sender.join(60)
        # The child's senders were cut off (it held an association when it died).
        assert child_held > 0
        assert any(s.stopped_by != "all sent" for s in senders)
        acknowledged = {uid for s in senders for uid in s.succeeded}
        rows = indexed(node)
        assert acknowledged <= set(rows), "an acknowledged instance was lost"
        assert max(rows.values()) == 1
        # Replaced, and what it held is free: six associations at once are accepted.
        wait_until(lambda: table(node)[1].pid not in (0, child), 45, message="not replaced")
        wait_until(lambda: all_listening(node), 45)
        assert not alive(child)
        # What it was receiving when it died is gone from the spool (the others go on).
        assert not list((node.storage_dir / ".incoming").glob(f"rx-{child}-*"))
        wait_until(lambda: sum(held(node)) == 0, 10, message=lambda: str(table(node)))
        again = [associate(scu, node) for _ in range(6)]
        assert all(a.is_established for a in again)
        for assoc in again:
            assoc.release()
        assert node.stop() == 0


def test_stopping_the_node_stops_its_receiver_processes(tmp_path: Path) -> None:
    with start_node(tmp_path / "stop", processes=3, max_associations=8) as node:
        children = [e.pid for e in table(node)[1:]]
        assert all(alive(pid) for pid in children)
        assert node.stop() == 0
        wait_until(lambda: not any(alive(pid) for pid in children), 15)
    # kill -9 of the serve process alone (not its group): the children go with it.
    with start_node(tmp_path / "kill", processes=3, max_associations=8) as node:
        children = [e.pid for e in table(node)[1:]]
        os.kill(node.pid, signal.SIGKILL)
        wait_until(
            lambda: not any(alive(pid) for pid in children),
            15,
            message="receiver processes outlived their serve process",
        )
        node.kill9()
