"""Spooling: where pynetdicom writes a C-STORE dataset while it arrives.

pynetdicom writes each incoming dataset (chunked receive) into a file it makes with
``NamedTemporaryFile``; the receiver replaces that name so the dataset goes into the
node's own spool folder on the storage volume, size-limited, and write errors become
statuses instead of a dead association (``dicom_node.net.pynetdicom_hooks`` checks the
internals at start).

Each spool file is listed on the association it belongs to; when the association ends,
the files no C-STORE handler took (the association aborted or closed before its data set
was complete or answered, or the request was no valid C-STORE after all) are removed
(``discard_unfinished``, called by ``association_guard.py``), instead of staying in the
spool folder until the next start.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from pynetdicom import _config, dimse_messages

logger = logging.getLogger(__name__)


def spool_prefix(pid: int | None = None) -> str:
    """The names of a process's spool files start with this: unique names come from
    ``mkstemp`` (O_EXCL) in any case; the pid lets the node remove the files a receiver
    process that died left behind, while the other receiver processes go on."""
    return f"rx-{os.getpid() if pid is None else pid}-"


class SpoolFile:
    """Where pynetdicom writes a dataset while it arrives (replaces its NamedTemporaryFile).

    Write errors (ENOSPC, EIO) and a dataset over the size limit are recorded instead of
    raised, so that the association survives and the handler can answer 0xA7xx.
    pynetdicom calls ``write()``, ``file.flush()``, ``close()`` and reads ``name``.
    """

    def __init__(self, folder: str | None, limit: int | None) -> None:
        fd, self.name = tempfile.mkstemp(suffix=".dcm", prefix=spool_prefix(), dir=folder)
        self._out: IO[bytes] = os.fdopen(fd, "wb", buffering=1024 * 1024)
        self.file = self  # pynetdicom flushes through ``.file``
        self.limit = limit
        self.written = 0
        self.error: OSError | None = None
        self.too_large = False
        self.closed = False  # by a handler (kept or discarded) or pynetdicom after one

    @property
    def usable(self) -> bool:
        return self.error is None and not self.too_large

    def write(self, data: bytes) -> int:
        if not self.usable:
            return len(data)
        self.written += len(data)
        if self.limit is not None and self.written > self.limit:
            self.too_large = True
            self._give_space_back()
            return len(data)
        try:
            return self._out.write(data)
        except OSError as exc:
            self.error = exc
            self._give_space_back()
            return len(data)

    def flush(self) -> None:
        if not self.usable:
            return
        try:
            self._out.flush()
        except OSError as exc:
            self.error = exc
            self._give_space_back()

    def _give_space_back(self) -> None:
        try:
            self._out.truncate(0)
        except (OSError, ValueError) as exc:
            logger.debug("could not truncate spool file %s: %s", self.name, exc)

    def close(self) -> None:
        self.closed = True
        try:
            self._out.close()
        except OSError as exc:
            self.error = self.error or exc

    def discard(self) -> None:
        self.close()
        Path(self.name).unlink(missing_ok=True)


#: The attribute of an association that lists its spool files not yet closed.
_OPEN_SPOOLS = "_node_open_spool_files"


def _spool_file_factory(*_args: Any, **_kwargs: Any) -> SpoolFile:
    """Called by pynetdicom in the association's DUL thread for each incoming C-STORE."""
    assoc = getattr(threading.current_thread(), "assoc", None)
    ae = getattr(assoc, "ae", None)
    spool_dir = getattr(ae, "spool_dir", None)
    limit = getattr(ae, "max_dataset_bytes", None)
    spool = SpoolFile(str(spool_dir) if spool_dir else None, limit)
    if assoc is not None:
        listed: list[SpoolFile] = [f for f in getattr(assoc, _OPEN_SPOOLS, ()) if not f.closed]
        listed.append(spool)
        setattr(assoc, _OPEN_SPOOLS, listed)
    return spool


def discard_unfinished(assoc: Any) -> int:
    """Remove the spool files of ``assoc`` that no handler closed; how many. Called when
    the association has ended (nothing writes to them any more)."""
    listed: list[SpoolFile] = list(getattr(assoc, _OPEN_SPOOLS, ()))
    setattr(assoc, _OPEN_SPOOLS, [])
    unfinished = [spool for spool in listed if not spool.closed]
    for spool in unfinished:
        spool.discard()
    if unfinished:
        logger.debug("removed %d unfinished spool file(s)", len(unfinished))
    return len(unfinished)


_install_lock = threading.Lock()


def install_spooling() -> None:
    """Make pynetdicom spool C-STORE datasets to our files (once per process)."""
    with _install_lock:
        _config.STORE_RECV_CHUNKED_DATASET = True
        _config.LOG_REQUEST_IDENTIFIERS = False  # never log patient identifiers
        dimse_messages.NamedTemporaryFile = _spool_file_factory  # type: ignore[assignment]
