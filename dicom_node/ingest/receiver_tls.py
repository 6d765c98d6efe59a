"""The receiver's TLS context (every receiver process builds its own from the settings)."""

from __future__ import annotations

import ssl

from dicom_node.settings import TLSSettings


def build_ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """TLS 1.2 or newer, AEAD ciphers only; client certificates optional or required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL")
    context.options |= ssl.OP_NO_COMPRESSION
    assert tls.cert is not None and tls.key is not None  # checked by TLSSettings
    context.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
    if tls.ca is not None:
        context.load_verify_locations(cafile=str(tls.ca))
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context
