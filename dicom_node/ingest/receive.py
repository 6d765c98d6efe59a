"""The C-STORE / C-ECHO receiver (pynetdicom SCP).

The C-STORE handler does only the fast path: the dataset arrives in a spool file
(pynetdicom's chunked receive, never whole in memory), its header is read, the file is
made durable and moved into place, the index row is committed, and only then is a
named status returned. The rows of all associations are committed by one index writer
(``index_writer.py``), in groups; each handler waits for its own row's commit. Routing
and pipelines happen elsewhere.
"""

from __future__ import annotations

import logging
import threading
from enum import IntEnum
from pathlib import Path
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy import Engine

from dicom_node.errors import InvalidUID, OutOfResources, UnreadableDataset, UnsafePath
from dicom_node.ingest.admission import PeerSlots
from dicom_node.ingest.association_guard import install_association_guard
from dicom_node.ingest.index import lookup_instance, read_header
from dicom_node.ingest.index_writer import IndexWriter
from dicom_node.ingest.pdu_limit import install_pdu_limit, receive_limit
from dicom_node.ingest.peer_log import install_peer_log_filter
from dicom_node.ingest.receiver_counts import ReceiverCounts
from dicom_node.ingest.receiver_server import (
    PEER_ATTRIBUTE,
    SHUTDOWN_POLL_SECONDS,
    SharedPortServer,
    ThreadedHandshakeServer,
    connection_opened,
)
from dicom_node.ingest.receiver_slots import NodeSlots
from dicom_node.ingest.receiver_tls import build_ssl_context
from dicom_node.ingest.spool import SpoolFile, install_spooling
from dicom_node.ingest.store_requests import (
    ACCEPTED_TRANSFER_SYNTAXES,
    SOP_CLASS_NOT_SUPPORTED,
    install_store_request_guard,
    register_storage_sop_classes,
)
from dicom_node.net.netutil import set_tcp_nodelay
from dicom_node.net.pynetdicom_hooks import check_pynetdicom_hooks
from dicom_node.settings import AllowedCaller, NodeSettings
from dicom_node.store import DurableStore, Placement

logger = logging.getLogger(__name__)


class StoreStatus(IntEnum):
    """C-STORE response statuses the receiver sends (PS3.4 Annex B.2.3)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700  # disk full, database locked or unwritable
    DATASET_TOO_LARGE = 0xA701  # over max_dataset_bytes (an out-of-resources refusal)
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # the dataset's SOP Class UID is not the request's
    CANNOT_UNDERSTAND = 0xC000  # the dataset cannot be parsed
    INVALID_IDENTIFIERS = 0xC001  # a UID that is missing, malformed or unsafe as a path
    SOP_INSTANCE_MISMATCH = 0xC002  # the dataset's SOP Instance UID is not the request's
    PROCESSING_FAILURE = 0x0110  # an unexpected error, recorded in the log
    SOP_CLASS_NOT_SUPPORTED = SOP_CLASS_NOT_SUPPORTED  # answered by store_requests


class EchoStatus(IntEnum):
    SUCCESS = 0x0000


# Calling AE titles never contain a backslash, so this entry matches no one.
_NOBODY = "\\"


# -- the application entity ----------------------------------------------------------------


class NodeAE(AE):
    """An AE whose calling-AE allowlist can depend on the peer's host."""

    def __init__(
        self,
        ae_title: str,
        *,
        spool_dir: Path,
        max_dataset_bytes: int,
        allowed_callers: tuple[AllowedCaller, ...],
        association_request_timeout: float = 5.0,
        max_connections_per_peer: int = 32,
        node_slots: NodeSlots | None = None,
    ) -> None:
        """``node_slots``: one of several receiver processes, which share the association
        and per-peer limits and the counts (``receiver_slots.py``)."""
        super().__init__(ae_title=ae_title)
        self.spool_dir = spool_dir
        self.max_dataset_bytes = max_dataset_bytes
        self.allowed_callers = allowed_callers
        self.association_request_timeout = association_request_timeout
        self.max_connections_per_peer = max_connections_per_peer
        self.node_slots = node_slots
        self.peer_slots = PeerSlots(node_slots)
        self.pdu_receive_limit: int | None = None  # set from max_pdu_bytes (pdu_limit.py)
        self.counts = ReceiverCounts(node_slots)
        self.admission_refusals = self.counts.refusals

    @property
    def maximum_associations(self) -> int:
        """pynetdicom's limit, read in the thread of an association it negotiates: with
        shared slots (receiver_slots.py), the whole node's count decides."""
        limit = int(AE.maximum_associations.fget(self))  # type: ignore[attr-defined]
        assoc = threading.current_thread()
        if self.node_slots is None or not isinstance(assoc, Association) or assoc.is_requestor:
            return limit
        return limit if self.node_slots.admit(assoc) else 0

    @maximum_associations.setter
    def maximum_associations(self, value: int) -> None:
        AE.maximum_associations.fset(self, value)  # type: ignore[attr-defined]

    def association_ended(self, assoc: Association) -> None:
        """Called by the association guard as an accepted association's thread ends: its
        association slot and its connection's place for its peer address are free."""
        if self.node_slots is not None:
            self.node_slots.release(assoc)
        self.peer_slots.leave(getattr(assoc, PEER_ATTRIBUTE, None) or assoc.requestor.address)

    @property
    def require_calling_aet(self) -> list[str]:
        """Titles allowed for the association being negotiated in this thread."""
        if not self.allowed_callers:
            return []
        assoc = threading.current_thread()
        host = None
        if isinstance(assoc, Association):
            host = assoc.requestor.address
        titles = [caller.ae_title for caller in self.allowed_callers if caller.allows_host(host)]
        return titles or [_NOBODY]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        raise AttributeError("set allowed_callers in the settings instead")


class Receiver:
    """The SCP: binds, accepts associations and answers C-ECHO and C-STORE."""

    def __init__(
        self,
        settings: NodeSettings,
        store: DurableStore,
        engine: Engine,
        slots: NodeSlots | None = None,
    ) -> None:
        """``slots``: one of several receiver processes sharing the port and the limit."""
        check_pynetdicom_hooks()  # before any patch: a missing internal stops the start
        install_spooling()
        install_store_request_guard()
        install_pdu_limit()
        install_peer_log_filter()
        install_association_guard()
        self.settings = settings
        self.store = store
        self.engine = engine
        self.index_writer = IndexWriter(engine)
        self.ae = NodeAE(
            settings.ae_title,
            spool_dir=store.spool_dir,
            max_dataset_bytes=settings.max_dataset_bytes,
            allowed_callers=settings.allowed_callers,
            association_request_timeout=settings.association_request_timeout_seconds,
            max_connections_per_peer=settings.max_connections_per_peer,
            node_slots=slots,
        )
        self.ae.maximum_associations = settings.max_associations
        self.ae.maximum_pdu_size = settings.max_pdu_bytes
        self.ae.pdu_receive_limit = receive_limit(settings.max_pdu_bytes)
        self.ae.network_timeout = settings.network_timeout_seconds
        self.ae.acse_timeout = settings.acse_timeout_seconds
        self.ae.dimse_timeout = settings.dimse_timeout_seconds
        self.ae.add_supported_context(Verification)
        for sop_class in register_storage_sop_classes():
            self.ae.add_supported_context(sop_class, ACCEPTED_TRANSFER_SYNTAXES)
        self._server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        return int(self._server.server_address[1])

    def start(self) -> None:
        ssl_context = build_ssl_context(self.settings.tls) if self.settings.tls.enabled else None
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, set_tcp_nodelay),
            (evt.EVT_CONN_OPEN, connection_opened),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_REJECTED, self._on_rejected),
            *self.ae.counts.handlers(),
        ]
        server = self.ae.make_server(
            (self.settings.bind_address, self.settings.port),
            ssl_context=ssl_context,
            evt_handlers=handlers,
            server_class=SharedPortServer if self.ae.node_slots else ThreadedHandshakeServer,
        )
        self.ae._servers.append(server)  # so that ae.shutdown() finds it, as start_server does
        self._server = server
        self.index_writer.start()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
            name="receiver",
            daemon=True,
        )
        self._thread.start()
        logger.info(
            "receiver %s listening on %s:%d%s",
            self.settings.ae_title,
            self.settings.bind_address,
            self.port,
            " (TLS)" if ssl_context else "",
        )

    def stop(self) -> None:
        """Stop listening, abort the associations, then stop the index writer: the rows
        already handed to it are committed (or their stores answered 0xA700), and a
        handler that comes later gets 0xA700."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.ae.shutdown()
        self.index_writer.stop()

    # -- handlers ----------------------------------------------------------------------

    def _on_echo(self, event: evt.Event) -> int:
        return EchoStatus.SUCCESS

    def _on_rejected(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        logger.warning(
            "rejected association from %s (calling AE %r)", requestor.address, requestor.ae_title
        )

    def _on_store(self, event: evt.Event) -> int:
        spool = getattr(event.request, "_dataset_file", None)
        calling_ae = event.assoc.requestor.ae_title
        if not isinstance(spool, SpoolFile):
            logger.error("C-STORE arrived without a spool file; chunked receive is not active")
            return StoreStatus.PROCESSING_FAILURE
        try:
            return self._store_spooled(spool, event, calling_ae)
        except Exception:
            logger.exception("unexpected error while storing a dataset from %r", calling_ae)
            spool.discard()
            return StoreStatus.PROCESSING_FAILURE

    def _store_spooled(self, spool: SpoolFile, event: evt.Event, calling_ae: str) -> int:
        request = event.request
        assert isinstance(request, C_STORE)
        affected_uid = str(request.AffectedSOPInstanceUID or "")
        spool.flush()
        if spool.error is not None:
            logger.error("spooling %s failed: %s", affected_uid, spool.error)
            spool.discard()
            return StoreStatus.OUT_OF_RESOURCES
        if spool.too_large:
            logger.warning(
                "refused %s: larger than max_dataset_bytes=%d",
                affected_uid,
                self.settings.max_dataset_bytes,
            )
            spool.discard()
            return StoreStatus.DATASET_TOO_LARGE
        spooled = Path(spool.name)
        try:
            header = read_header(spooled)
        except UnreadableDataset as exc:
            logger.warning("refused %s: %s", affected_uid, exc)
            spool.discard()
            return StoreStatus.CANNOT_UNDERSTAND
        except InvalidUID as exc:
            logger.warning("refused %s: %s", affected_uid, exc)
            spool.discard()
            return StoreStatus.INVALID_IDENTIFIERS
        if header.sop_instance_uid != affected_uid.rstrip("\x00 "):
            logger.warning(
                "refused %s: dataset SOP Instance UID differs from the request", affected_uid
            )
            spool.discard()
            return StoreStatus.SOP_INSTANCE_MISMATCH
        if header.sop_class_uid != str(request.AffectedSOPClassUID or "").rstrip("\x00 "):
            logger.warning(
                "refused %s: dataset SOP Class UID differs from the request", affected_uid
            )
            spool.discard()
            return StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS

        try:
            relative = self.store.relative_path_for(
                header.study_uid, header.series_uid, header.sop_instance_uid
            )
            self.store.check_space(spool.written)
            stored = self.store.place(
                spooled, relative, overwrite=self.settings.duplicate_policy == "overwrite"
            )
        except UnsafePath as exc:
            logger.warning("refused %s: %s", affected_uid, exc)
            spool.discard()
            return StoreStatus.INVALID_IDENTIFIERS
        except OutOfResources as exc:
            logger.error("refused %s: %s", affected_uid, exc)
            spool.discard()
            return StoreStatus.OUT_OF_RESOURCES
        spool.close()
        if stored.placement is Placement.KEPT_EXISTING and (
            lookup_instance(self.engine, header.sop_instance_uid) is not None
        ):
            logger.info("duplicate %s: kept the first copy", header.sop_instance_uid)
            return StoreStatus.SUCCESS

        try:
            outcome = self.index_writer.index(
                header,
                relative_path=stored.relative_path,
                size_bytes=stored.size_bytes,
                calling_ae_title=calling_ae,
                replace_moved=self.settings.duplicate_policy == "overwrite",
            )
        except OutOfResources as exc:
            logger.error("refused %s: %s", affected_uid, exc)
            if stored.placement is Placement.NEW:
                self.store.remove(stored.relative_path)
            return StoreStatus.OUT_OF_RESOURCES
        except Exception:
            # Not indexed: a file of ours without its row must not stay behind either
            # (logged by _on_store, answered 0x0110).
            if stored.placement is Placement.NEW:
                self.store.remove(stored.relative_path)
            raise
        if outcome.kept_at is not None:
            logger.warning(
                "%s was already stored under another study or series; kept the first copy",
                header.sop_instance_uid,
            )
            if stored.placement is Placement.NEW:
                self.store.remove(stored.relative_path)
        if outcome.moved_from is not None:
            logger.warning(
                "%s moved to another study or series; replaced the earlier copy",
                header.sop_instance_uid,
            )
            self.store.remove(outcome.moved_from)
        if outcome.study_reopened:
            logger.info("study %s re-opened by a late instance", header.study_uid)
        logger.debug("stored %s (%s)", header.sop_instance_uid, stored.placement)
        return StoreStatus.SUCCESS
