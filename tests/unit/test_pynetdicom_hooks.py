"""The pynetdicom internals the receiver patches: present in the pinned version, and a
missing one stops the receiver (and the SCU) before anything is patched."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import _config, dimse_messages, transport
from pynetdicom.ae import ApplicationEntity

from dicom_node.net import pynetdicom_hooks
from dicom_node.net.pynetdicom_hooks import (
    PynetdicomHooksMissing,
    check_pynetdicom_hooks,
    missing_hooks,
    module_calls_name,
)
from dicom_node.net.scu import SendReport, send_files


def test_the_installed_pynetdicom_has_every_hook() -> None:
    assert missing_hooks() == []
    check_pynetdicom_hooks()


def test_the_pin_in_pyproject_is_the_tested_minor_version() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    major, minor = pynetdicom_hooks.TESTED_MINOR.split(".")
    assert f'"pynetdicom>={major}.{minor}.4,<{major}.{int(minor) + 1}"' in pyproject


def test_a_missing_config_name_is_named() -> None:
    config = types.ModuleType("fake_config")
    config.STORE_RECV_CHUNKED_DATASET = False  # type: ignore[attr-defined]
    config.LOG_REQUEST_IDENTIFIERS = True  # type: ignore[attr-defined]
    assert missing_hooks(config=config) == ["pynetdicom._config.STORE_SEND_CHUNKED_DATASET"]


def test_a_spool_hook_that_is_no_longer_called_is_found() -> None:
    assert module_calls_name(dimse_messages, "NamedTemporaryFile")
    messages = types.ModuleType("fake_dimse_messages")
    messages.NamedTemporaryFile = object  # type: ignore[attr-defined]

    def decode(data: bytes) -> bytes:  # spools somewhere else now
        return bytes(data)

    messages.decode = decode  # type: ignore[attr-defined]
    (problem,) = missing_hooks(messages=messages)
    assert "a call of NamedTemporaryFile" in problem
    del messages.NamedTemporaryFile
    assert missing_hooks(messages=messages) == ["pynetdicom.dimse_messages.NamedTemporaryFile"]


def test_server_ae_and_dul_changes_are_named() -> None:
    class Server:  # no get_request & co.
        pass

    class Ae:
        require_calling_aet: list[str] = []

        def __init__(self) -> None:
            self.servers: list[object] = []

    class Dul:
        assoc = None

    found = missing_hooks(server=Server, ae=Ae, dul=Dul)
    assert found == [
        "Server.get_request",
        "Server.process_request_thread",
        "Server.service_actions",
        "Server.shutdown_request",
        "ApplicationEntity.require_calling_aet (a property)",
        "ApplicationEntity._servers",
        "DULServiceProvider.assoc",
        "AssociationSocket.recv, as DULServiceProvider._read_pdu_data reads a PDU with it "
        "(the receive limit on PDU size would no longer apply)",
    ]

    class WrapsNothing(transport.ThreadedAssociationServer):
        def get_request(self) -> Any:
            return None

    assert missing_hooks(server=WrapsNothing) == ["the TLS wrap in WrapsNothing.get_request"]
    assert missing_hooks(ae=ApplicationEntity) == []


def test_association_changes_are_named() -> None:
    from pynetdicom import association
    from pynetdicom.association import Association

    assert missing_hooks(assoc=Association) == []

    class NoServe:
        def __init__(self) -> None:
            self._accepted_cx: dict[int, object] = {}
            self._sent_release = False

    assert missing_hooks(assoc=NoServe) == ["Association._serve_request"]

    class ServesOtherwise(NoServe):
        def _serve_request(self, msg: object, context_id: int) -> None:
            return None  # no longer looks the service class up by uid_to_service_class

    (problem,) = missing_hooks(assoc=ServesOtherwise)
    assert "uid_to_service_class lookup in Association._serve_request" in problem

    class Renamed:
        def __init__(self) -> None:
            self.accepted_contexts: dict[int, object] = {}

        def _serve_request(self, msg: object, context_id: int) -> None:
            association.uid_to_service_class(str(msg))

    assert missing_hooks(assoc=Renamed) == [
        "Association._accepted_cx",
        "Association._sent_release",
    ]


def test_pdu_reading_changes_are_named() -> None:
    class NoRecv:
        def __init__(self) -> None:
            self._assoc = None

    (problem,) = missing_hooks(assoc_socket=NoRecv)
    assert problem.startswith("AssociationSocket.recv")

    class Renamed(transport.AssociationSocket):
        def __init__(self) -> None:
            self.association = None

    assert missing_hooks(assoc_socket=Renamed) == ["AssociationSocket._assoc"]


def test_a_missing_hook_stops_the_receiver_before_it_patches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dicom_node.ingest.receive import Receiver

    monkeypatch.delattr(dimse_messages, "NamedTemporaryFile")
    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", False)
    with pytest.raises(PynetdicomHooksMissing, match=r"dimse_messages\.NamedTemporaryFile"):
        Receiver(None, None, None)  # type: ignore[arg-type]  # fails before using them
    assert _config.STORE_RECV_CHUNKED_DATASET is False  # nothing was patched
    with pytest.raises(PynetdicomHooksMissing, match="tested with pynetdicom 3.0.x"):
        send_files([], "127.0.0.1", 1, calling_aet="A", called_aet="B", report=SendReport())


def test_another_minor_version_with_every_hook_only_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pynetdicom_hooks.pynetdicom, "__version__", "3.1.0")
    with caplog.at_level("WARNING", logger="dicom_node.net.pynetdicom_hooks"):
        check_pynetdicom_hooks()
    assert "pynetdicom 3.1.0 is not the tested 3.0.x" in caplog.text
