"""Small network helpers shared by the receiver and the SCU."""

from __future__ import annotations

import logging
import socket

from pynetdicom import evt

logger = logging.getLogger(__name__)


def set_tcp_nodelay(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: disable Nagle so small DIMSE responses go out at once."""
    transport = getattr(event.assoc.dul, "socket", None)
    sock = getattr(transport, "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        logger.debug("TCP_NODELAY not set: %s", exc)


def parse_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) with a clear error."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return host.strip("[]"), port


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
