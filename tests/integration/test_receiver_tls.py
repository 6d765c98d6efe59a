"""The receiver with TLS: server certificate, optional or required client certificates,
TLS 1.2 as the floor, and dcmtk's echoscu as a TLS peer."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.peers import require_tool

# The certificates are made with the openssl program (a Debian package).
pytestmark = [pytest.mark.timeout(60), pytest.mark.peers]

HOST = "127.0.0.1"


def tls_settings(tls_files: Any, *, require_client_cert: bool) -> dict[str, Any]:
    return {
        "enabled": True,
        "cert": tls_files.server_cert,
        "key": tls_files.server_key,
        "ca": tls_files.ca_cert,
        "require_client_cert": require_client_cert,
    }


@contextlib.contextmanager
def association(
    port: int, context: ssl.SSLContext | None, server_hostname: str = "localhost"
) -> Iterator[Association]:
    ae = AE(ae_title="TLS_SCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    ae.connection_timeout = 5  # bounds the client's TLS handshake too
    ae.add_requested_context(Verification)
    tls_args = (context, server_hostname) if context is not None else None
    assoc = ae.associate(HOST, port, ae_title="DICOM_NODE", tls_args=tls_args)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def echo_status(
    port: int, context: ssl.SSLContext | None, server_hostname: str = "localhost"
) -> int | None:
    """C-ECHO status, or None when no association could be established."""
    with association(port, context, server_hostname) as assoc:
        if not assoc.is_established:
            return None
        status = assoc.send_c_echo()
        return int(status.Status) if status else None


@pytest.fixture
def tls_receiver(receiver: Callable[..., Any], tls_files: Any) -> Callable[[bool], Any]:
    def start(require_client_cert: bool) -> Any:
        return receiver(tls=tls_settings(tls_files, require_client_cert=require_client_cert))

    return start


def test_tls_echo_and_store_without_client_certificate(
    tls_receiver: Callable[[bool], Any],
    tls_files: Any,
    make_instance: Callable[..., Path],
    store_scu: Callable[..., Any],
) -> None:
    node = tls_receiver(False)
    context = tls_files.client_context()
    path = make_instance()

    assert echo_status(node.port, context) == 0
    assert echo_status(node.port, context, server_hostname="127.0.0.1") == 0
    outcome = store_scu(node.port, [path], tls=(context, "localhost"))

    assert outcome.established
    assert outcome.statuses == [0x0000]
    assert [row.sop_instance_uid for row in node.instances()] == [str(dcmread(path).SOPInstanceUID)]


def test_plain_tcp_association_to_tls_receiver_fails(
    tls_receiver: Callable[[bool], Any], tls_files: Any
) -> None:
    node = tls_receiver(False)

    assert echo_status(node.port, None) is None
    # The failed plain attempt does not disturb TLS clients.
    assert echo_status(node.port, tls_files.client_context()) == 0


def test_untrusted_server_certificate_is_refused_by_the_client(
    tls_receiver: Callable[[bool], Any],
) -> None:
    node = tls_receiver(False)
    system_trust_only = ssl.create_default_context()

    assert echo_status(node.port, system_trust_only) is None


def test_required_client_certificate(tls_receiver: Callable[[bool], Any], tls_files: Any) -> None:
    node = tls_receiver(True)

    assert echo_status(node.port, tls_files.client_context(with_client_cert=False)) is None
    assert echo_status(node.port, tls_files.client_context(with_client_cert=True)) == 0


def tls_1_1_client_context(tls_files: Any) -> ssl.SSLContext | None:
    """A client that really offers only TLS 1.0/1.1, or None where OpenSSL forbids it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_verify_locations(cafile=str(tls_files.ca_cert))
            # Without @SECLEVEL=0 Debian's OpenSSL policy stops such a client before the
            # server is asked; with it, the refusal has to come from the node.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ssl.SSLError, ValueError):
        return None
    return context


def test_tls_1_1_client_is_refused(tls_receiver: Callable[[bool], Any], tls_files: Any) -> None:
    node = tls_receiver(False)
    context = tls_1_1_client_context(tls_files)
    if context is None:
        return  # OpenSSL refused to build a TLS 1.1 client: that is the failure.

    with socket.create_connection((HOST, node.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            context.wrap_socket(raw, server_hostname="localhost")
    # Either the node answered with a protocol_version alert, or this client's OpenSSL
    # refused to offer TLS 1.1 after all: no TLS 1.1 session in both cases.
    assert refused.value.reason in {
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "WRONG_SSL_VERSION",
    }, refused.value
    assert echo_status(node.port, context) is None
    assert echo_status(node.port, tls_files.client_context()) == 0


def test_idle_tcp_connection_does_not_block_tls_clients(
    tls_receiver: Callable[[bool], Any], tls_files: Any
) -> None:
    """A peer that connects and never starts the handshake must not stall the listener."""
    node = tls_receiver(False)
    idle = socket.create_connection((HOST, node.port), timeout=5)
    try:
        assert echo_status(node.port, tls_files.client_context()) == 0
    finally:
        idle.close()


def dcmtk_echoscu(port: int, *tls_args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = require_tool("echoscu")
    return subprocess.run(
        [exe, "-aet", "DCMTK_TLS", "-aec", "DICOM_NODE", "-to", "10", "-ta", "10",
         *map(str, tls_args), HOST, str(port)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def require_dcmtk_tls() -> None:
    exe = require_tool("echoscu")
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False)
    if "+tls" not in help_text.stdout:
        pytest.skip("this dcmtk echoscu was built without OpenSSL (no +tls option)")


def test_dcmtk_echoscu_over_tls(tls_receiver: Callable[[bool], Any], tls_files: Any) -> None:
    require_dcmtk_tls()
    node = tls_receiver(True)
    with_cert = ("+tls", tls_files.client_key, tls_files.client_cert, "+cf", tls_files.ca_cert)

    good = dcmtk_echoscu(node.port, *with_cert)
    anonymous = dcmtk_echoscu(node.port, "+tla", "+cf", tls_files.ca_cert)
    plain = dcmtk_echoscu(node.port)

    assert good.returncode == 0, good.stdout + good.stderr
    assert anonymous.returncode != 0
    assert plain.returncode != 0
