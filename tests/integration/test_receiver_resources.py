"""Out of resources: a full disk, a free-space reserve and a locked database answer
0xA700 (never Success), leave no file in place and no spool file, and the association
and the node go on working."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from sqlalchemy.engine import make_url

from dicom_node.db.engine import make_engine
from dicom_node.ingest.receive import StoreStatus

pytestmark = pytest.mark.timeout(60)

TMPFS_BYTES = 3 * 1024 * 1024


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted inside tmp_path (needs root / CAP_SYS_ADMIN)."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("mount/umount not installed: a full disk needs a small tmpfs")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill the disk needs root")
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield folder
    finally:
        subprocess.run([umount, str(folder)], capture_output=True, timeout=30, check=False)
        if os.path.ismount(folder):
            subprocess.run(
                [umount, "-l", str(folder)], capture_output=True, timeout=30, check=False
            )


def open_files_under(folder: Path) -> list[str]:
    """Files below ``folder`` this process still has open (deleted ones included)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def target_of(node: Any, source: Path) -> Path:
    ds = dcmread(source, stop_before_pixels=True)
    return node.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def test_full_disk_answers_out_of_resources_and_keeps_working(
    small_tmpfs: Path,  # first, so it is unmounted after the receiver has stopped
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> None:
    node = receiver(storage_dir=small_tmpfs / "storage", min_free_bytes=0)
    big = make_instance(rows=2048, columns=2048)  # 8 MiB of pixel data
    small = make_instance()
    assert big.stat().st_size > TMPFS_BYTES

    outcome = store_scu(node.port, [big, small, big])

    assert outcome.statuses == [
        StoreStatus.OUT_OF_RESOURCES,
        StoreStatus.SUCCESS,
        StoreStatus.OUT_OF_RESOURCES,
    ]
    assert not target_of(node, big).exists()
    assert node.stored_files() == [target_of(node, small)]
    assert node.spool_files() == []
    assert [row.path for row in node.instances()] == [
        str(target_of(node, small).relative_to(node.root))
    ]
    # The space the refused data set took while it arrived was given back.
    assert node.store.free_bytes() > TMPFS_BYTES - 256 * 1024
    assert open_files_under(small_tmpfs) == []
    # A new association after the refusals works too.
    assert store_scu(node.port, [make_instance()]).statuses == [StoreStatus.SUCCESS]


def test_free_space_reserve_refuses_every_store(
    receiver: Callable[..., Any], make_instance: Callable[..., Path], store_scu: Callable[..., Any]
) -> None:
    node = receiver(min_free_bytes=2**62)
    source = make_instance(rows=8, columns=8)

    outcome = store_scu(node.port, [source, source])

    assert outcome.statuses == [StoreStatus.OUT_OF_RESOURCES] * 2
    assert node.stored_files() == []
    assert node.spool_files() == []
    assert node.instances() == []


def test_locked_database_answers_out_of_resources(
    receiver: Callable[..., Any],
    node_settings: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
    tmp_path: Path,
) -> None:
    settings = node_settings(tmp_path)
    engine = make_engine(settings.database_url, busy_timeout_ms=200)
    node = receiver(settings, engine=engine)
    source = make_instance()
    database = make_url(settings.database_url).database
    assert database is not None

    locker = sqlite3.connect(database, isolation_level=None, timeout=0)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        locked = store_scu(node.port, [source])
        assert locked.statuses == [StoreStatus.OUT_OF_RESOURCES]
        assert not target_of(node, source).exists()
        assert node.stored_files() == []
        assert node.spool_files() == []
        locker.execute("ROLLBACK")
    finally:
        locker.close()

    assert node.instances() == []
    # Once the lock is gone the same data set is stored.
    assert store_scu(node.port, [source]).statuses == [StoreStatus.SUCCESS]
    assert node.stored_files() == [target_of(node, source)]
    assert len(node.instances()) == 1
