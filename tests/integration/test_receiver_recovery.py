"""Start-up recovery (``dicom_node.flow.recover_storage``) after a receiver was cut off:
the spool is emptied, a complete file in place without a row is indexed, and files whose
path disagrees with their UIDs (or that cannot be read) are left alone."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from dicom_node.flow import recover_storage

pytestmark = pytest.mark.timeout(60)


def relative_target(source: Path) -> str:
    ds = dcmread(source, stop_before_pixels=True)
    return f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"


def test_recover_storage_after_a_crash(
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> None:
    node = receiver()
    root = node.root
    received = make_instance()
    assert store_scu(node.port, [received]).statuses == [0]

    # What a crash leaves behind:
    # - a half-received data set and a stray folder in the spool,
    leftover = node.store.spool_dir / "rx-leftover.dcm"
    shutil.copyfile(make_instance(), leftover)
    (node.store.spool_dir / "rx-folder").mkdir()
    (node.store.spool_dir / "rx-folder" / "part").write_bytes(b"\x00" * 10)
    # - a complete file renamed into place whose index commit never happened,
    unindexed = make_instance()
    in_place = root / relative_target(unindexed)
    in_place.parent.mkdir(parents=True)
    shutil.copyfile(unindexed, in_place)
    # - a file under a path its UIDs do not give (copied in by hand, say),
    misplaced_source = make_instance()
    misplaced = root / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    misplaced.parent.mkdir(parents=True)
    shutil.copyfile(misplaced_source, misplaced)
    # - and a file in the layout that is not DICOM at all.
    garbage = root / "1.2.9" / "1.2.9.1" / "1.2.9.1.1.dcm"
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"not dicom")

    report = recover_storage(node.store, node.engine)

    assert report.spool_files_removed == 2
    assert report.files_indexed == 1
    assert report.files_skipped == 2
    assert node.spool_files() == []
    rows = {row.path: row for row in node.instances()}
    assert set(rows) == {relative_target(received), relative_target(unindexed)}
    recovered = rows[relative_target(unindexed)]
    assert recovered.sop_instance_uid == str(dcmread(unindexed).SOPInstanceUID)
    assert recovered.size_bytes == in_place.stat().st_size
    assert recovered.calling_ae_title is None
    # Skipped files are neither indexed nor deleted.
    assert misplaced.exists()
    assert garbage.exists()

    # Running it again changes nothing.
    again = recover_storage(node.store, node.engine)
    assert (again.spool_files_removed, again.files_indexed, again.files_skipped) == (0, 0, 2)
    assert len(node.instances()) == 2

    # The recovered instance is known: sending it again is a duplicate, not a new row.
    assert store_scu(node.port, [unindexed]).statuses == [0]
    assert len(node.instances()) == 2
