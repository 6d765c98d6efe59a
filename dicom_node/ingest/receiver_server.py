"""The receiver's listening server: pynetdicom's threaded server, with the TLS handshake
and the admission of each connection (``admission.py``) in the connection's own thread.

pynetdicom wraps each accepted socket in ``get_request()``, in the one listener thread
and without a timeout: a peer that connects and never sends a ClientHello would stop
every later association. Here the listener only accepts; the handshake runs in the
per-connection thread, bounded by the ACSE timeout. That thread then admits the
connection: within its peer address's connection limit (``PeerSlots``: the place is
taken here and given back when the connection is refused, or when its association ends),
and only once its whole A-ASSOCIATE-RQ has arrived does pynetdicom see it.
"""

from __future__ import annotations

import gc
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from pynetdicom import evt
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.ingest.admission import Refused, await_association_request
from dicom_node.ingest.peer_log import PEER_LINES

if TYPE_CHECKING:
    from dicom_node.ingest.receive import NodeAE

logger = logging.getLogger(__name__)

# How often the listener checks for shutdown (pynetdicom's default is 0.5 s).
SHUTDOWN_POLL_SECONDS = 0.05
_COLLECT_EVERY_SECONDS = 30.0
#: The attribute of an association that names the peer address its connection's place
#: was taken for (set when the connection opens, read when the association ends).
PEER_ATTRIBUTE = "node_peer_host"


def connection_opened(event: evt.Event) -> None:
    """EVT_CONN_OPEN (in the connection's thread, before its association starts): the
    association carries the address its place was taken for, to give it back at its end."""
    address: Any = vars(event)["address"]  # the accepted socket's (host, port, ...)
    setattr(event.assoc, PEER_ATTRIBUTE, str(address[0]))


class ThreadedHandshakeServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, with the TLS handshake and admission in the
    connection's thread."""

    _last_collection = 0.0
    #: The listen backlog (socketserver's default is 5): a burst of connections — many
    #: senders at once, or idle ones held open — must not leave real peers' SYNs dropped
    #: and retried for seconds. The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024

    def service_actions(self) -> None:
        """pynetdicom runs a full ``gc.collect()`` every 60 listener polls to free dead
        association threads; at our short poll interval that would stall the receiver
        every few seconds. Collect at most every ``_COLLECT_EVERY_SECONDS`` instead."""
        now = time.monotonic()
        if now - self._last_collection >= _COLLECT_EVERY_SECONDS:
            self._last_collection = now
            gc.collect()
        slots = getattr(self.ae, "node_slots", None)
        if slots is not None:
            slots.refresh()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client_socket, address = self.socket.accept()
        return client_socket, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        ae: NodeAE = self.ae  # type: ignore[assignment]
        host = str(client_address[0])
        if not ae.peer_slots.enter(host, ae.max_connections_per_peer):
            self._refuse(request, host, Refused("limit", "too many connections from this address"))
            return
        try:
            request = self._admit(ae, request)
        except Refused as refused:
            ae.peer_slots.leave(host)
            self._refuse(request, host, refused)
            return
        super().process_request_thread(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Start the connection's association (its end gives the place back); when that
        fails, no association holds the place: give it back here."""
        try:
            super().finish_request(request, client_address)
        except BaseException:
            self.ae.peer_slots.leave(str(client_address[0]))  # type: ignore[attr-defined]
            raise

    def _admit(self, ae: NodeAE, request: Any) -> Any:
        """The connection to hand to pynetdicom (TLS-wrapped when TLS is on), or raise
        ``Refused``."""
        if self.ssl_context is None:
            await_association_request(request, ae.association_request_timeout)
            return request
        try:
            request.settimeout(ae.acse_timeout)
            wrapped = self.ssl_context.wrap_socket(request, server_side=True)
            wrapped.settimeout(None)
        except (OSError, ValueError) as exc:
            raise Refused("tls", f"TLS handshake failed: {exc}") from exc
        return wrapped

    def _refuse(self, request: Any, host: str, refused: Refused) -> None:
        """Close a connection before it became an association: logged once, counted."""
        ae: NodeAE = self.ae  # type: ignore[assignment]
        ae.admission_refusals.add(refused.reason)
        allowed, dropped = PEER_LINES.allow(host)
        if allowed:
            more = f" ({dropped} more line(s) from {host} dropped)" if dropped else ""
            logger.warning(
                "connection from %s closed before association: %s%s", host, refused, more
            )
        self.shutdown_request(request)


class SharedPortServer(ThreadedHandshakeServer):
    """One of several receiver processes listening on the same port (``receiver_pool.py``)."""

    def server_bind(self) -> None:
        assert self.socket is not None
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()
