"""C-ECHO and C-STORE as an SCU: ``dicom-node echo`` and ``dicom-node send``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_node.errors import NodeError
from dicom_node.net.netutil import set_tcp_nodelay
from dicom_node.net.pynetdicom_hooks import check_pynetdicom_hooks

logger = logging.getLogger(__name__)

MAX_CONTEXTS = 128  # presentation contexts one association may propose


class AssociationFailed(NodeError):
    """No association, or it ended early."""


@dataclass(frozen=True)
class Sendable:
    path: Path
    sop_class_uid: str
    transfer_syntax_uid: str
    size_bytes: int


@dataclass
class SendReport:
    sent: int = 0
    bytes_sent: int = 0
    succeeded: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path} does not exist")


def inspect_files(paths: Iterable[Path], report: SendReport) -> list[Sendable]:
    """Read each file's SOP class and transfer syntax; note non-DICOM files as skipped."""
    found = []
    for path in iter_files(paths):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
            sop_class = str(ds.SOPClassUID)
            syntax = str(ds.file_meta.TransferSyntaxUID)
        except (InvalidDicomError, AttributeError, OSError, EOFError, ValueError) as exc:
            report.skipped.append((path, f"not a DICOM Part 10 file: {exc}"))
            continue
        found.append(Sendable(path, sop_class, syntax, path.stat().st_size))
    return found


def _batches(files: list[Sendable]) -> Iterator[tuple[list[tuple[str, str]], list[Sendable]]]:
    """Split into associations of at most 128 (SOP class, transfer syntax) contexts."""
    contexts: list[tuple[str, str]] = []
    batch: list[Sendable] = []
    for item in files:
        pair = (item.sop_class_uid, item.transfer_syntax_uid)
        if pair not in contexts:
            if len(contexts) == MAX_CONTEXTS:
                yield contexts, batch
                contexts, batch = [], []
            contexts.append(pair)
        batch.append(item)
    if batch:
        yield contexts, batch


def _associate(ae: AE, host: str, port: int, called_aet: str) -> Association:
    assoc = ae.associate(
        host, port, ae_title=called_aet, evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)]
    )
    if not assoc.is_established:
        if assoc.is_rejected:
            raise AssociationFailed(f"{called_aet}@{host}:{port} rejected the association")
        raise AssociationFailed(f"no association with {called_aet}@{host}:{port}")
    return assoc


def echo(host: str, port: int, *, calling_aet: str, called_aet: str, timeout: float = 30) -> int:
    """C-ECHO; return the status (0 is success). Raise AssociationFailed."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    ae.add_requested_context(Verification)
    assoc = _associate(ae, host, port, called_aet)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status:
        raise AssociationFailed("no C-ECHO response")
    return int(status.Status)


def send_files(
    files: list[Sendable],
    host: str,
    port: int,
    *,
    calling_aet: str,
    called_aet: str,
    report: SendReport | None = None,
    on_progress: Callable[[Sendable], None] | None = None,
    timeout: float = 60,
) -> SendReport:
    """C-STORE each file as stored (no transcoding), in chunks, over as few associations
    as the presentation-context limit allows."""
    report = report or SendReport()
    check_pynetdicom_hooks()
    _config.STORE_SEND_CHUNKED_DATASET = True
    for contexts, batch in _batches(files):
        ae = AE(ae_title=calling_aet)
        ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
        for sop_class, syntax in contexts:
            ae.add_requested_context(sop_class, [syntax])
        assoc = _associate(ae, host, port, called_aet)
        try:
            for item in batch:
                try:
                    status = assoc.send_c_store(item.path)
                except (ValueError, RuntimeError, OSError) as exc:
                    report.failed.append((item.path, str(exc)))
                else:
                    code = int(status.Status) if status else None
                    if code is None:
                        report.failed.append((item.path, "no response (association lost)"))
                    elif code in (0x0000, 0xB000, 0xB007, 0xB006):
                        report.sent += 1
                        report.bytes_sent += item.size_bytes
                        report.succeeded.append(item.path)
                    else:
                        report.failed.append((item.path, f"status 0x{code:04X}"))
                if on_progress is not None:
                    on_progress(item)
                if not assoc.is_established:
                    raise AssociationFailed("the association ended during the transfer")
        finally:
            if assoc.is_established:
                assoc.release()
    return report
