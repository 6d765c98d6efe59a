"""C-STORE requests that name a SOP class the node has no storage service for: refused
for that one instance, the association goes on.

pynetdicom picks the service for a request from its Affected SOP Class UID. When that
UID is no storage SOP class it knows (a private class, a typing error in the sender's
database, a value mangled on the way, e.g. a SOP Class UID element that went through a
system which wrote it with VR UN), pynetdicom finds no service, logs an error and
**aborts the association**: every instance the peer had still to send in it is lost, and
a PACS that resends the study hits the same file again. dcmtk and Orthanc answer such a
request with a failure status and go on.

``install_store_request_guard()`` wraps ``Association._serve_request`` so that such a
C-STORE, on a presentation context the node accepted, is answered with 0x0122 "SOP
Class not supported" (PS3.4 Annex GG's status for it; dcmtk's and Orthanc's too) and
its spooled dataset is removed. A C-STORE request whose command says that no data set
follows (Command Data Set Type 0x0101) is answered 0xC000 "Cannot understand" with one
warning line, instead of reaching the handler as if the node's spooling were broken. Everything else, a request on a context that was never
accepted included (a protocol violation, which pynetdicom rightly aborts), goes to
pynetdicom as before. ``dicom_node.net.pynetdicom_hooks`` checks at start that the
wrapped internals are still there.

The presentation contexts the receiver accepts are every storage SOP class
(``register_storage_sop_classes``) with ``ACCEPTED_TRANSFER_SYNTAXES``.
pynetdicom's storage SOP classes leave out the retired ones and a few recent ones, which
dcmtk and Orthanc accept and real archives still hold (an ultrasound image of the 1993
standard, an old nuclear medicine image, an SR of the trial classes); a sender offering
them would get no presentation context. ``register_storage_sop_classes()`` registers
those (``EXTRA_STORAGE_SOP_CLASSES``) with pynetdicom's storage service (its public
``register_uid``) and gives every storage SOP class the receiver accepts.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from pydicom.uid import UID, AllTransferSyntaxes, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AllStoragePresentationContexts, _config, association, register_uid
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.service_class import StorageServiceClass

logger = logging.getLogger(__name__)

#: Refused: SOP Class not supported (PS3.4 Annex GG, C-STORE).
SOP_CLASS_NOT_SUPPORTED = 0x0122
#: Error: cannot understand (PS3.4 Annex B.2.3): a C-STORE request without a data set.
CANNOT_UNDERSTAND = 0xC000

#: Storage SOP classes of PS3.4 (retired ones included) that pynetdicom 3.0 does not
#: list; dcmtk accepts them as storage (its dcmAllStorageSOPClassUIDs), and so Orthanc.
EXTRA_STORAGE_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.1.27",  # Stored Print Storage (retired)
    "1.2.840.10008.5.1.1.29",  # Hardcopy Grayscale Image Storage (retired)
    "1.2.840.10008.5.1.1.30",  # Hardcopy Color Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.5",  # Nuclear Medicine Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.8",  # Standalone Overlay Storage (retired)
    "1.2.840.10008.5.1.4.1.1.9",  # Standalone Curve Storage (retired)
    "1.2.840.10008.5.1.4.1.1.9.1",  # Waveform Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.10",  # Standalone Modality LUT Storage (retired)
    "1.2.840.10008.5.1.4.1.1.11",  # Standalone VOI LUT Storage (retired)
    "1.2.840.10008.5.1.4.1.1.12.3",  # X-Ray Angiographic Bi-Plane Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.77.1",  # VL Image Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.77.2",  # VL Multi-frame Image Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.88.1",  # Text SR Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.88.2",  # Audio SR Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.88.3",  # Detail SR Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.88.4",  # Comprehensive SR Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.129",  # Standalone PET Curve Storage (retired)
    "1.2.840.10008.5.1.4.1.1.200.1",  # CT Defined Procedure Protocol Storage
    "1.2.840.10008.5.1.4.1.1.200.3",  # Protocol Approval Storage
    "1.2.840.10008.5.1.4.1.1.200.7",  # XA Defined Procedure Protocol Storage
    "1.2.840.10008.5.1.4.1.1.201.1",  # Inventory Storage
    "1.2.840.10008.5.1.4.1.1.601.1",  # Eddy Current Image Storage
    "1.2.840.10008.5.1.4.1.1.601.2",  # Eddy Current Multi-frame Image Storage
    "1.2.840.10008.5.1.4.34.1",  # RT Beams Delivery Instruction Storage - Trial (retired)
    "1.2.840.10008.5.1.4.38.1",  # Hanging Protocol Storage
    "1.2.840.10008.5.1.4.39.1",  # Color Palette Storage
    "1.2.840.10008.5.1.4.43.1",  # Generic Implant Template Storage
    "1.2.840.10008.5.1.4.44.1",  # Implant Assembly Template Storage
    "1.2.840.10008.5.1.4.45.1",  # Implant Template Group Storage
)

# Transfer syntaxes accepted for every storage SOP class. The dataset is stored as
# received; decoding is the pipelines' job. pynetdicom takes, of those a context proposes,
# the first in this order: Explicit VR Little Endian first (it keeps every element's VR,
# as dcmtk's and Orthanc's acceptors prefer), Implicit VR Little Endian last.
ACCEPTED_TRANSFER_SYNTAXES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            str(ExplicitVRLittleEndian),
            *(str(uid) for uid in AllTransferSyntaxes if uid != ImplicitVRLittleEndian),
            str(ImplicitVRLittleEndian),
        ]
    )
)

_ServeRequest = Callable[[Association, Any, int], None]
_install_lock = threading.Lock()
_original: _ServeRequest | None = None


def storage_service_for(assoc: Association, class_uid: str) -> bool:
    """Whether pynetdicom would serve a C-STORE naming ``class_uid`` with its storage
    service on ``assoc`` (after SOP Class Common Extended Negotiation, as it does)."""
    extended: dict[Any, Any] = assoc.acceptor.accepted_common_extended
    try:
        class_uid = str(extended[class_uid][0])
    except (KeyError, IndexError, TypeError):
        pass
    service = association.uid_to_service_class(class_uid)
    return isinstance(service, type) and issubclass(service, StorageServiceClass)


def register_storage_sop_classes() -> tuple[str, ...]:
    """Register ``EXTRA_STORAGE_SOP_CLASSES`` with pynetdicom's storage service (once per
    process) and return every storage SOP class UID the receiver accepts."""
    with _install_lock:
        for uid in EXTRA_STORAGE_SOP_CLASSES:
            if not issubclass(association.uid_to_service_class(uid), StorageServiceClass):
                keyword = UID(uid).keyword or f"Storage_{uid.replace('.', '_')}"
                register_uid(uid, keyword, StorageServiceClass)
    known = [str(c.abstract_syntax) for c in AllStoragePresentationContexts if c.abstract_syntax]
    return tuple(dict.fromkeys([*known, *EXTRA_STORAGE_SOP_CLASSES]))


def _spool_of(msg: C_STORE) -> Any:
    return getattr(msg, "_dataset_file", None)


def _discard_spool(msg: C_STORE) -> None:
    spool = _spool_of(msg)
    if spool is None:
        return
    discard = getattr(spool, "discard", None)
    if callable(discard):
        discard()
        return
    spool.close()


def _answer(assoc: Association, msg: C_STORE, context_id: int, status: int) -> None:
    """Answer ``msg`` with ``status`` on its context and drop its dataset."""
    _discard_spool(msg)
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = msg.MessageID
    # Echoed where they are valid UIDs (both are conditional in the response).
    for keyword in ("AffectedSOPClassUID", "AffectedSOPInstanceUID"):
        try:
            setattr(rsp, keyword, getattr(msg, keyword))
        except (TypeError, ValueError):
            pass
    rsp.Status = status
    assoc.dimse.send_msg(rsp, context_id)


def refuse_unsupported_class(assoc: Association, msg: C_STORE, context_id: int) -> None:
    """Answer ``msg`` with 0x0122 on its context and drop its dataset."""
    logger.warning(
        "refused %s: its SOP Class UID %r is no storage SOP class the node supports (0x0122)",
        str(msg.AffectedSOPInstanceUID or "?"),
        str(msg.AffectedSOPClassUID or "")[:64],
    )
    _answer(assoc, msg, context_id, SOP_CLASS_NOT_SUPPORTED)


def has_no_data_set(msg: C_STORE) -> bool:
    """Whether a received C-STORE request came without a data set (while datasets are
    spooled, each C-STORE request that announces one gets a spool file)."""
    return (
        bool(_config.STORE_RECV_CHUNKED_DATASET)
        and _spool_of(msg) is None
        and getattr(msg, "_dataset_path", None) is None
    )


def _guarded_serve_request(self: Association, msg: Any, context_id: int) -> None:
    assert _original is not None
    if (
        isinstance(msg, C_STORE)
        and msg.is_valid_request
        and context_id in self._accepted_cx
        and not self._sent_release
    ):
        if not storage_service_for(self, str(msg.AffectedSOPClassUID or "")):
            refuse_unsupported_class(self, msg, context_id)
            return
        if has_no_data_set(msg):
            logger.warning(
                "refused %s: a C-STORE request without a data set (0xC000)",
                str(msg.AffectedSOPInstanceUID or "?"),
            )
            _answer(self, msg, context_id, CANNOT_UNDERSTAND)
            return
    _original(self, msg, context_id)


def install_store_request_guard() -> None:
    """Wrap ``Association._serve_request`` (once per process)."""
    global _original
    with _install_lock:
        if _original is not None:
            return
        _original = Association._serve_request
        guarded = functools.wraps(_original)(_guarded_serve_request)
        Association._serve_request = guarded  # type: ignore[method-assign]
