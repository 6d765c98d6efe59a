"""``docs/conformance.md`` says what the code does: its generated tables equal what
``dicom_node.conformance`` makes from the code, the receiver that ``serve`` builds
supports exactly the presentation contexts listed, and a SOP class, transfer syntax or
coded concept added to the code without the document makes the check fail."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
from pydicom.sr.coding import Code as StandardCode
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_node import conformance
from dicom_node.db import migrate
from dicom_node.db.engine import make_engine
from dicom_node.ingest.receive import Receiver
from dicom_node.ingest.store_requests import EXTRA_STORAGE_SOP_CLASSES
from dicom_node.output import codes
from dicom_node.settings import NodeSettings
from dicom_node.store import DurableStore


def _document() -> str:
    return conformance.DOCUMENT.read_text()


def _stale(document: str) -> str:
    """An empty string when ``document`` is up to date, else a diff to show."""
    fresh = conformance.render(document)
    if fresh == document:
        return ""
    diff = difflib.unified_diff(
        document.splitlines(), fresh.splitlines(), "committed", "generated", lineterm="", n=1
    )
    return "\n".join(list(diff)[:60])


def test_the_document_equals_what_the_code_says() -> None:
    stale = _stale(_document())
    assert stale == "", f"run `python -m dicom_node.conformance`:\n{stale}"
    assert conformance.main(["--check"]) == 0


def test_every_generated_section_is_in_the_document_once() -> None:
    names = conformance.sections_in(_document())
    assert sorted(names) == sorted(conformance.SECTIONS)
    assert len(names) == len(set(names))


def test_every_output_kind_is_documented() -> None:
    conformance.check_output_kinds()


def test_the_running_receiver_supports_exactly_the_documented_contexts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built as ``serve`` builds it (``flow.Node``: settings, store, migrated engine) and
    started on a free port; its contexts are read back, and an SCU is answered on them."""
    for name in [n for n in os.environ if n.startswith("DICOM_NODE_")]:
        monkeypatch.delenv(name)
    settings = NodeSettings(
        ae_title="DICOM_NODE",
        bind_address="127.0.0.1",
        port=0,
        storage_dir=tmp_path / "storage",
        database_url=f"sqlite:///{tmp_path / 'node.sqlite'}",
        model_dir=tmp_path / "models",
        min_free_bytes=0,
    )
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    receiver = Receiver(settings, DurableStore(settings.storage_dir, min_free_bytes=0), engine)
    receiver.start()
    try:
        live = [
            (str(cx.abstract_syntax), tuple(str(s) for s in cx.transfer_syntax))
            for cx in receiver.ae.supported_contexts
        ]
        # pynetdicom keeps supported contexts sorted by UID: compare as sets, no duplicates.
        assert len(live) == len(set(live))
        assert set(live) == set(conformance.scp_contexts())

        scu = AE(ae_title="CONFORMANCE")
        scu.add_requested_context(Verification)
        extra = EXTRA_STORAGE_SOP_CLASSES[0]
        scu.add_requested_context(extra, list(conformance.scp_transfer_syntaxes()[:1]))
        scu.add_requested_context("1.2.840.10008.5.1.4.1.2.2.1")  # Q/R FIND: not offered
        assoc = scu.associate("127.0.0.1", receiver.port, ae_title="DICOM_NODE")
        assert assoc.is_established
        try:
            accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
            assert accepted == {str(Verification), extra}
            assert assoc.send_c_echo().Status == 0x0000
        finally:
            assoc.release()
    finally:
        receiver.stop()
        engine.dispose()


# -- the check fails when the code changes and the document does not -----------------------


def test_a_storage_sop_class_added_to_the_code_makes_the_document_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = conformance.register_storage_sop_classes
    monkeypatch.setattr(
        conformance,
        "register_storage_sop_classes",
        lambda: (*real(), "1.2.840.10008.5.1.4.1.1.999"),
    )
    assert "1.2.840.10008.5.1.4.1.1.999" in _stale(_document())


def test_a_transfer_syntax_added_to_the_code_makes_the_document_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    more = (*conformance.ACCEPTED_TRANSFER_SYNTAXES, "1.2.840.10008.1.2.4.999")
    monkeypatch.setattr(conformance, "ACCEPTED_TRANSFER_SYNTAXES", more)
    assert "1.2.840.10008.1.2.4.999" in _stale(_document())


def test_a_code_added_to_the_codes_module_makes_the_document_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    added = StandardCode("NEW-CONCEPT", codes.PRIVATE_SCHEME, "A concept added to the code")
    monkeypatch.setattr(codes, "NEW_CONCEPT", added, raising=False)
    assert "NEW-CONCEPT" in _stale(_document())


def test_a_code_literal_added_to_a_pipeline_makes_the_document_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for package in conformance.CODE_PACKAGES:
        source = conformance.REPO / package
        for path in source.rglob("*.py"):
            target = tmp_path / path.relative_to(conformance.REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    new = tmp_path / "pipelines" / "new_pipeline.py"
    new.write_text('from pipelines.contract import Code\n\nX = Code("NEW-1", "SCT", "Something")\n')
    monkeypatch.setattr(conformance, "REPO", tmp_path)
    assert "NEW-1" in _stale(_document())


def test_a_section_missing_from_the_document_is_an_error() -> None:
    document = _document()
    start = document.index("<!-- generated: uid-roots -->")
    end = document.index("<!-- end -->", start) + len("<!-- end -->")
    with pytest.raises(ValueError, match="missing: \\['uid-roots'\\]"):
        conformance.render(document[:start] + document[end:])
