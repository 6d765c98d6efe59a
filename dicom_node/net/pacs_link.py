"""The Query/Retrieve SCU side of ``retrieve``: one association with the PACS of
``[retrieval]``, C-FIND, and one C-MOVE or C-GET of a series with its final status.

Patient names and IDs are never asked for, and pynetdicom is told not to log the
identifiers it sends or receives (a PACS may answer with more than was asked).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, build_context, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.status import code_to_category

from dicom_node.errors import NodeError
from dicom_node.net.netutil import set_tcp_nodelay
from dicom_node.settings import NodeSettings, RetrievalSettings

#: What a C-MOVE / C-GET status means, where a bare number would not say (PS3.4 C.4.2,
#: C.4.3).
RETRIEVE_STATUSES: dict[int, str] = {
    0xA701: "out of resources: unable to calculate the number of matches",
    0xA702: "out of resources: unable to perform the sub-operations",
    0xA801: "move destination unknown: the PACS does not know the node's AE title as a modality",
    0xA900: "identifier does not match the SOP class",
    0xB000: "sub-operations complete, one or more failures or warnings",
    0xFE00: "cancelled",
    0x0122: "SOP class not supported",
    0x0124: "not authorised",
}


class RetrieveError(NodeError):
    """Nothing was retrieved: not configured, the PACS unreachable, or the query failed."""


class PacsUnavailable(RetrieveError):
    """The PACS could not be reached or refused the association."""


class FindFailed(Exception):
    """One C-FIND failed (status or lost association); the caller decides what it means."""


# -- identifiers -----------------------------------------------------------------------------


def text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def values(ds: Dataset, keyword: str) -> tuple[str, ...]:
    """The values of a multi-valued attribute (none when absent or empty)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    return tuple(str(v).strip() for v in items if str(v).strip())


def integer(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def status_line(status: Dataset) -> str:
    """A C-MOVE / C-GET final status as words, with its sub-operation counts."""
    code = int(status.Status)
    meaning = RETRIEVE_STATUSES.get(code, code_to_category(code).lower())
    counts = [
        f"{n} {what}"
        for what, keyword in (
            ("completed", "NumberOfCompletedSuboperations"),
            ("failed", "NumberOfFailedSuboperations"),
            ("with warnings", "NumberOfWarningSuboperations"),
        )
        if (n := integer(status, keyword))
    ]
    comment = text(status, "ErrorComment")[:200]
    if comment:
        counts.append(f"the PACS says: {comment}")
    return f"status 0x{code:04X} ({meaning})" + (f"; {', '.join(counts)}" if counts else "")


def sent_count(final: Dataset) -> int | None:
    """Sub-operations the PACS completed (with or without warnings), where it says."""
    completed = integer(final, "NumberOfCompletedSuboperations")
    warnings = integer(final, "NumberOfWarningSuboperations")
    if completed is None and warnings is None:
        return None
    return (completed or 0) + (warnings or 0)


# -- the association -------------------------------------------------------------------------


def quiet_identifiers() -> None:
    """pynetdicom logs the identifiers of requests and responses by default: never."""
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


def _why_not_associated(host: str, port: int, timeout: float) -> str:
    """Why an association was not made, where pynetdicom does not say."""
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)):
            return "it took the connection but ended the association request"
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"


class PacsLink:
    """One association with the PACS, opened when a request needs it (again, when the
    one before was lost); ``PacsUnavailable`` when that fails. A context manager that
    releases it."""

    def __init__(
        self,
        settings: NodeSettings,
        pacs: RetrievalSettings,
        contexts: list[PresentationContext],
        *,
        ae: AE | None = None,
        ext_neg: list[Any] | None = None,
        handlers: list[Any] | None = None,
    ) -> None:
        self.pacs = pacs
        self.ae = ae or AE(ae_title=settings.ae_title)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = (
            pacs.timeout_seconds
        )
        self.contexts = contexts
        self.ext_neg = ext_neg or []
        self.handlers = [(evt.EVT_CONN_OPEN, set_tcp_nodelay), *(handlers or [])]
        self.max_pdu = settings.max_pdu_bytes
        self.assoc: Association | None = None

    @property
    def peer(self) -> str:
        return f"{self.pacs.ae_title}@{self.pacs.host}:{self.pacs.port}"

    def open(self) -> Association:
        if self.assoc is not None and self.assoc.is_established:
            return self.assoc
        assoc = self.ae.associate(
            self.pacs.host,
            self.pacs.port,
            contexts=self.contexts,
            ae_title=self.pacs.ae_title,
            max_pdu=self.max_pdu,
            ext_neg=self.ext_neg,
            evt_handlers=self.handlers,
        )
        if not assoc.is_established:
            if assoc.is_rejected:
                reason = "it rejected the association (is the node's AE title known to it?)"
            else:
                reason = _why_not_associated(
                    self.pacs.host, self.pacs.port, self.pacs.timeout_seconds
                )
            raise PacsUnavailable(f"no association with the PACS {self.peer}: {reason}")
        self.assoc = assoc
        return assoc

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()
        self.assoc = None

    def __enter__(self) -> PacsLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def find_context() -> PresentationContext:
    return build_context(StudyRootQueryRetrieveInformationModelFind)


def move_context() -> PresentationContext:
    return build_context(StudyRootQueryRetrieveInformationModelMove)


def get_context() -> PresentationContext:
    return build_context(StudyRootQueryRetrieveInformationModelGet)


# -- requests --------------------------------------------------------------------------------


def find(link: PacsLink, identifier: Dataset) -> list[Dataset]:
    """The matches of one C-FIND (Study Root); ``FindFailed`` on a failure status or a lost
    answer, ``PacsUnavailable`` when no association can be made."""
    matches = []
    assoc = link.open()
    for status, answer in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
        if "Status" not in status:
            link.close()
            raise FindFailed("no answer (association lost or timed out)")
        category = code_to_category(int(status.Status))
        if category == "Pending":
            if answer is not None:
                matches.append(answer)
        elif category not in ("Success", "Warning"):
            raise FindFailed(f"status 0x{int(status.Status):04X} ({category.lower()})")
    return matches


def retrieve_series(
    link: PacsLink, method: str, destination: str, study_uid: str, series_uid: str
) -> tuple[Dataset | None, str | None]:
    """One C-MOVE (to ``destination``) or C-GET of a series: (final status, None), or
    (None, what went wrong). ``PacsUnavailable`` when no association can be made."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = study_uid
    identifier.SeriesInstanceUID = series_uid
    assoc = link.open()
    if method == "move":
        responses = assoc.send_c_move(
            identifier, destination, StudyRootQueryRetrieveInformationModelMove
        )
    else:
        responses = assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
    final: Dataset | None = None
    for status, _answer in responses:
        if "Status" not in status:
            link.close()
            return None, "no answer from the PACS (association lost or timed out)"
        if code_to_category(int(status.Status)) != "Pending":
            final = status
    if final is None:
        return None, "the PACS ended without a final status"
    return final, None
