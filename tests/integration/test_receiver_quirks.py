"""One bad instance must not cost the rest of the send (issue 25).

Each quirk real archives hold is sent as a raw C-STORE on an accepted presentation
context, followed on the **same association** by a good instance: the quirky one gets
its own status (or is read the way dcmtk and Orthanc read it), the association is not
aborted, and the next instance is stored.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE

from dicom_node.ingest.receive import StoreStatus
from tests.integration.conftest import LOCALHOST, NODE_AET, scu_ae

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR:UserWarning"),
    pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning"),
]


def _encoded(path: Path, *, implicit: bool = False) -> tuple[Dataset, bytes]:
    """The data set of a Part 10 file (no meta group), encoded as asked."""
    ds = pydicom.dcmread(path)
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, ds)
    return ds, out.getvalue()


def _sop_class_as_un(data: bytes) -> bytes:
    """Explicit VR data with its SOP Class UID element re-encoded with VR UN (as a system
    that did not know the tag writes it): 2 reserved bytes and a 4-byte length."""
    head = b"\x08\x00\x16\x00UI"
    at = data.index(head)
    (length,) = struct.unpack_from("<H", data, at + 6)
    value = data[at + 8 : at + 8 + length]
    element = b"\x08\x00\x16\x00UN\x00\x00" + struct.pack("<I", length) + value
    return data[:at] + element + data[at + 8 + length :]


class RawStore:
    """An association that sends C-STORE requests as given (Affected SOP Class UID and
    data bytes of our choosing), the way a broken sender would."""

    def __init__(self, port: int) -> None:
        ae = scu_ae()
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
        self.assoc: Association = ae.associate(LOCALHOST, port, ae_title=NODE_AET)
        assert self.assoc.is_established
        (context,) = self.assoc.accepted_contexts
        self.context_id = int(context.context_id or 0)
        self.message_id = 0

    def send(self, sop_class: str, sop_instance: str, data: bytes) -> int | None:
        self.message_id += 1
        req = C_STORE()
        req.MessageID = self.message_id
        req.Priority = 2
        req.AffectedSOPClassUID = sop_class
        req.AffectedSOPInstanceUID = sop_instance
        req.DataSet = BytesIO(data)
        assoc: Any = self.assoc
        assoc._reactor_checkpoint.clear()  # as send_c_store does: the reactor pauses
        while not assoc._is_paused:
            time.sleep(0.0001)
        try:
            assoc.dimse.send_msg(req, self.context_id)
            _cx, rsp = assoc.dimse.get_msg(block=True)
        finally:
            assoc._reactor_checkpoint.set()
        return None if rsp is None else int(rsp.Status)

    def close(self) -> bool:
        """Release; whether the association was still up (never aborted by the node)."""
        alive = bool(self.assoc.is_established)
        if alive:
            self.assoc.release()
        return alive


@pytest.fixture
def node_and_files(
    receiver: Callable[..., Any], make_instance: Callable[..., Path]
) -> tuple[Any, Path, Path]:
    return receiver(), make_instance(), make_instance()


def _send_then_good(
    node: Any, quirk: tuple[str, str, bytes], good: Path
) -> tuple[int | None, int | None, bool]:
    raw = RawStore(node.port)
    try:
        first = raw.send(*quirk)
        ds, data = _encoded(good)
        second = raw.send(str(ds.SOPClassUID), str(ds.SOPInstanceUID), data)
    finally:
        alive = raw.close()
    return first, second, alive


@pytest.mark.parametrize(
    "sop_class",
    [
        pytest.param("1.2.826.0.1.3680043.9.9999.1", id="private-class"),
        pytest.param("31", id="malformed"),
        pytest.param("1.2.840.10008.1.1", id="verification-class"),
    ],
)
def test_an_unsupported_sop_class_is_refused_0122_and_the_next_instance_stored(
    node_and_files: tuple[Any, Path, Path], sop_class: str
) -> None:
    node, bad, good = node_and_files
    ds, data = _encoded(bad)

    first, second, alive = _send_then_good(node, (sop_class, str(ds.SOPInstanceUID), data), good)

    assert first == StoreStatus.SOP_CLASS_NOT_SUPPORTED == 0x0122
    assert second == StoreStatus.SUCCESS
    assert alive, "the node aborted the association"
    stored = [pydicom.dcmread(p).SOPInstanceUID for p in node.stored_files()]
    assert stored == [pydicom.dcmread(good).SOPInstanceUID]
    assert node.spool_files() == []


def test_a_sop_class_uid_with_vr_un_is_read_as_its_uid(
    node_and_files: tuple[Any, Path, Path],
) -> None:
    node, quirky, good = node_and_files
    ds, data = _encoded(quirky)
    un_data = _sop_class_as_un(data)
    assert un_data != data and b"\x08\x00\x16\x00UN" in un_data

    first, second, alive = _send_then_good(
        node, (str(ds.SOPClassUID), str(ds.SOPInstanceUID), un_data), good
    )

    assert (first, second, alive) == (StoreStatus.SUCCESS, StoreStatus.SUCCESS, True)
    (row, _good_row) = sorted(
        node.instances(), key=lambda r: r.sop_instance_uid != ds.SOPInstanceUID
    )
    assert row.sop_instance_uid == ds.SOPInstanceUID
    stored = node.path_for(
        str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    )
    assert stored.read_bytes().endswith(un_data)  # as received, after the node's meta group


def test_an_implicit_vr_data_set_on_an_explicit_context_is_read_as_dcmtk_reads_it(
    node_and_files: tuple[Any, Path, Path],
) -> None:
    node, quirky, good = node_and_files
    ds, implicit = _encoded(quirky, implicit=True)

    first, second, alive = _send_then_good(
        node, (str(ds.SOPClassUID), str(ds.SOPInstanceUID), implicit), good
    )

    assert (first, second, alive) == (StoreStatus.SUCCESS, StoreStatus.SUCCESS, True)
    assert {r.sop_instance_uid for r in node.instances()} == {
        str(ds.SOPInstanceUID),
        str(pydicom.dcmread(good).SOPInstanceUID),
    }


@pytest.mark.parametrize(
    ("which", "status"),
    [
        pytest.param("instance", StoreStatus.SOP_INSTANCE_MISMATCH, id="sop-instance"),
        pytest.param("class", StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, id="sop-class"),
    ],
)
def test_request_and_data_set_uids_that_differ_are_refused_and_the_next_stored(
    node_and_files: tuple[Any, Path, Path], which: str, status: StoreStatus
) -> None:
    node, bad, good = node_and_files
    ds, data = _encoded(bad)
    sop_class, sop_instance = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    if which == "instance":
        sop_instance = generate_uid()
    else:
        sop_class = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture: a class the node takes

    first, second, alive = _send_then_good(node, (sop_class, sop_instance, data), good)

    assert (first, second, alive) == (status, StoreStatus.SUCCESS, True)
    assert [r.sop_instance_uid for r in node.instances()] == [
        str(pydicom.dcmread(good).SOPInstanceUID)
    ]
    assert node.spool_files() == []


def test_a_non_conformant_but_safe_uid_is_kept_as_sent(
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anonymisers write hex digests as UIDs (pydicom-data's bad_sequence.dcm has them);
    dcmtk and Orthanc store such instances, and so does the node, with a warning."""
    node = receiver()
    digest = "05fa52f0e599f17b8186ff18fcdf2b5570a52206a75c4d03afebf5c475dc8758"
    path = make_instance(study_uid=digest)

    outcome = store_scu(node.port, [path])

    assert outcome.statuses == [StoreStatus.SUCCESS]
    (row,) = node.instances()
    ds = pydicom.dcmread(path)
    assert node.path_for(digest, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)).is_file()
    assert "Study Instance UID is not a conformant UID; kept as sent" in caplog.text
