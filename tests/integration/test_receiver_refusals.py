"""C-STOREs the receiver must refuse without writing anything: unsafe or malformed UIDs,
data sets it cannot parse, a SOP Instance UID that disagrees with the request, and data
sets over ``max_dataset_bytes``. Refusals never answer Success and leave no file, no
spool file and no row."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pynetdicom.dsutils import split_dataset

from dicom_node.ingest.receive import StoreStatus

pytestmark = [
    pytest.mark.timeout(60),
    # pydicom warns when it reads the invalid UIDs these tests send on purpose.
    pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning"),
    pytest.mark.filterwarnings("ignore:The value length .* exceeds the maximum:UserWarning"),
    # ... and when it tries to read the garbage data sets.
    pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR:UserWarning"),
    pytest.mark.filterwarnings("ignore:End of file reached before delimiter:UserWarning"),
]

DB_FILES = {"node.sqlite", "node.sqlite-wal", "node.sqlite-shm", "node.sqlite-journal"}

BAD_UIDS = [
    pytest.param("../../etc", id="dotdot"),
    pytest.param("1.2/../../x", id="slash-dotdot"),
    pytest.param("1.2\\3", id="backslash"),
    pytest.param("1.2.3\x00.4", id="nul"),
    pytest.param("1." + "2" * 68, id="70-chars"),
    pytest.param("1.2 3", id="space"),
    pytest.param("-1.2", id="leading-dash"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param(".", id="dot"),
]


def is_failure(status: int) -> bool:
    """A7xx, A9xx or Cxxx: refused or error (never Success or a warning)."""
    return status >> 12 in (0xA, 0xC) or status == StoreStatus.PROCESSING_FAILURE


def carries_as_affected_uid(value: str) -> bool:
    """Whether pynetdicom will put ``value`` in the request's Affected SOP Instance UID."""
    return "\\" not in value and 0 < len(value) <= 64


def assert_nothing_stored(node: Any) -> None:
    assert node.stored_files() == []
    assert node.spool_files() == []
    assert node.instances() == []


@pytest.mark.parametrize("value", BAD_UIDS)
def test_unsafe_uid_is_refused_and_nothing_is_written(
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
    storage_snapshot: Callable[[Path], dict[str, int]],
    tmp_path: Path,
    value: str,
) -> None:
    """The bad value as Study, Series and SOP Instance UID, one C-STORE each."""
    # A root three levels down, so "../.." from it still lands inside tmp_path.
    node = receiver(storage_dir=tmp_path / "deep" / "er" / "storage")
    sop_fields: dict[str, Any] = {"sop_uid": value}
    if not carries_as_affected_uid(value):
        sop_fields["media_sop_uid"] = generate_uid()  # the request needs a UID pynetdicom sends
    paths = [
        make_instance(study_uid=value),
        make_instance(series_uid=value),
        make_instance(**sop_fields),
    ]
    before = storage_snapshot(tmp_path)

    outcome = store_scu(node.port, paths)

    assert outcome.established
    assert None not in outcome.statuses
    assert all(is_failure(status) for status in outcome.statuses), outcome.statuses
    assert outcome.statuses == [StoreStatus.INVALID_IDENTIFIERS] * 3
    after = storage_snapshot(tmp_path)
    changed = {p for p in after.keys() ^ before.keys() if Path(p).name not in DB_FILES}
    assert changed == set()
    assert_nothing_stored(node)


def test_association_survives_refusals(
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> None:
    node = receiver()
    bad = [make_instance(study_uid="../../etc"), make_instance(series_uid="a b")]
    good = make_instance()

    outcome = store_scu(node.port, [*bad, good])

    assert outcome.statuses == [
        StoreStatus.INVALID_IDENTIFIERS,
        StoreStatus.INVALID_IDENTIFIERS,
        StoreStatus.SUCCESS,
    ]
    assert len(node.stored_files()) == 1
    assert len(node.instances()) == 1
    assert node.spool_files() == []


# -- data sets that cannot be parsed -------------------------------------------------------


def part10_with_payload(path: Path, payload: bytes, sop_uid: str | None = None) -> Path:
    """A file with a valid file meta group followed by ``payload`` as the data set."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    buffer = io.BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    path.write_bytes(buffer.getvalue() + payload)
    return path


# A sequence whose item claims 16 bytes and then holds no valid element.
BROKEN_SEQUENCE = (
    b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\x10\x00\x00\x00" + b"garbage"
)


def test_unparsable_dataset_cannot_be_understood(
    receiver: Callable[..., Any], store_scu: Callable[..., Any], tmp_path: Path
) -> None:
    node = receiver()
    path = part10_with_payload(tmp_path / "broken.dcm", BROKEN_SEQUENCE)

    outcome = store_scu(node.port, [path])

    assert outcome.statuses == [StoreStatus.CANNOT_UNDERSTAND]
    assert_nothing_stored(node)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff" * 64, id="all-ff"),
        pytest.param(b"not a DICOM data set, just text" * 4, id="text"),
        pytest.param(b"\x08\x00\x16\x00OB\x00\x00\xff\xff\xff\x7f" + b"x" * 10, id="huge-length"),
    ],
)
def test_garbage_dataset_is_refused_with_a_c000_class_status(
    receiver: Callable[..., Any], store_scu: Callable[..., Any], tmp_path: Path, payload: bytes
) -> None:
    node = receiver()
    path = part10_with_payload(tmp_path / "garbage.dcm", payload)

    outcome = store_scu(node.port, [path])

    [status] = outcome.statuses
    assert status is not None and status >> 12 == 0xC, hex(status or 0)
    assert_nothing_stored(node)


def test_truncated_dataset_is_refused(
    receiver: Callable[..., Any],
    testdata: Callable[[str], Path],
    store_scu: Callable[..., Any],
    tmp_path: Path,
) -> None:
    source = testdata("CT_small.dcm")
    _meta, offset = split_dataset(source)
    data = source.read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: offset + 200])  # stops inside the header, before the UIDs
    node = receiver()

    outcome = store_scu(node.port, [truncated])

    [status] = outcome.statuses
    assert status is not None and status >> 12 == 0xC, hex(status or 0)
    assert_nothing_stored(node)


# -- request and data set disagree ---------------------------------------------------------


def test_sop_instance_uid_differing_from_request_is_refused(
    receiver: Callable[..., Any], make_instance: Callable[..., Path], store_scu: Callable[..., Any]
) -> None:
    node = receiver()
    path = make_instance(sop_uid=generate_uid(), media_sop_uid=generate_uid())

    outcome = store_scu(node.port, [path])

    [status] = outcome.statuses
    assert status is not None and is_failure(status), hex(status or 0)
    assert status == StoreStatus.SOP_INSTANCE_MISMATCH
    assert_nothing_stored(node)


def test_sop_class_uid_differing_from_request_is_refused(
    receiver: Callable[..., Any], make_instance: Callable[..., Path], store_scu: Callable[..., Any]
) -> None:
    node = receiver()
    path = make_instance(sop_class_uid=CTImageStorage, media_sop_class_uid=MRImageStorage)

    outcome = store_scu(node.port, [path])

    assert outcome.statuses == [StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS]
    assert_nothing_stored(node)


# -- size limit ----------------------------------------------------------------------------


def test_dataset_over_max_dataset_bytes_is_refused(
    receiver: Callable[..., Any],
    testdata: Callable[[str], Path],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> None:
    node = receiver(max_dataset_bytes=8 * 1024)
    big = testdata("CT_small.dcm")  # about 39 KB
    small = make_instance(rows=8, columns=8)  # well under 8 KiB

    outcome = store_scu(node.port, [big, small])

    assert outcome.statuses == [StoreStatus.DATASET_TOO_LARGE, StoreStatus.SUCCESS]
    assert len(node.stored_files()) == 1
    assert [row.sop_instance_uid for row in node.instances()] == [
        split_dataset(small)[0].MediaStorageSOPInstanceUID
    ]
    assert node.spool_files() == []
