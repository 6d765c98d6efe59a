"""What the receiver accepts as storage, and what it answers a C-STORE naming a SOP class
with no storage service (the guard around pynetdicom's ``_serve_request``)."""

from __future__ import annotations

from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AllStoragePresentationContexts
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from dicom_node.ingest.store_requests import (
    ACCEPTED_TRANSFER_SYNTAXES,
    EXTRA_STORAGE_SOP_CLASSES,
    register_storage_sop_classes,
)


def test_the_extra_storage_classes_are_storage_classes_pynetdicom_lacks() -> None:
    known = {str(c.abstract_syntax) for c in AllStoragePresentationContexts}
    for uid in EXTRA_STORAGE_SOP_CLASSES:
        assert uid not in known
        assert "Storage" in UID(uid).name, uid  # a storage SOP class by pydicom's dictionary
    assert len(set(EXTRA_STORAGE_SOP_CLASSES)) == len(EXTRA_STORAGE_SOP_CLASSES)


def test_registering_serves_them_with_pynetdicoms_storage_service() -> None:
    accepted = register_storage_sop_classes()
    assert register_storage_sop_classes() == accepted  # once per process, same answer
    assert "1.2.840.10008.5.1.4.1.1.6" in accepted  # Ultrasound Image Storage (retired)
    assert "1.2.840.10008.5.1.4.1.1.2" in accepted  # CT Image Storage
    assert len(accepted) == len(set(accepted))
    for uid in accepted:
        assert issubclass(uid_to_service_class(uid), StorageServiceClass), uid
    assert "1.2.840.10008.1.1" not in accepted  # Verification is not storage


def test_explicit_vr_is_preferred_and_implicit_comes_last() -> None:
    assert ACCEPTED_TRANSFER_SYNTAXES[0] == ExplicitVRLittleEndian
    assert ACCEPTED_TRANSFER_SYNTAXES[-1] == ImplicitVRLittleEndian
    assert JPEGBaseline8Bit in ACCEPTED_TRANSFER_SYNTAXES
    assert len(ACCEPTED_TRANSFER_SYNTAXES) == len(set(ACCEPTED_TRANSFER_SYNTAXES))
