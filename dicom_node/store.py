"""Durable file storage under one root.

A received dataset is spooled to ``<root>/.incoming/`` (same file system as the final
place), fsynced, renamed to ``<root>/<study>/<series>/<sop>.dcm`` and the directory
fsynced, so a file that is in place is complete and survives a power cut. Paths are
built only from validated UIDs and checked to stay under the root.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from dicom_node.errors import OutOfResources, UnsafePath
from dicom_node.uids import received_uid

logger = logging.getLogger(__name__)

SPOOL_DIR_NAME = ".incoming"
SUFFIX = ".dcm"


class Placement(StrEnum):
    NEW = "new"
    KEPT_EXISTING = "kept_existing"  # duplicate, policy keep_first: the spooled copy is dropped
    REPLACED = "replaced"  # duplicate, policy overwrite


@dataclass(frozen=True)
class StoredFile:
    path: Path
    relative_path: str
    size_bytes: int
    placement: Placement


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``target`` so that it is either absent or complete, even after a power cut.

    ``write`` fills a temporary file in the same folder, which is fsynced, renamed over
    ``target`` and the folder fsynced. ``OSError`` (ENOSPC, EIO, ...) becomes
    ``OutOfResources``; the temporary file never stays behind.
    """
    temporary: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        temporary = None
        fsync_dir(target.parent)
    except OSError as exc:
        raise OutOfResources(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


class DurableStore:
    """The storage root and the only code that writes, moves or deletes stored files."""

    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        self.root = root.resolve()
        self.spool_dir = self.root / SPOOL_DIR_NAME
        self.min_free_bytes = min_free_bytes
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    # -- paths ---------------------------------------------------------------------

    def relative_path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        parts = [
            received_uid(study_uid, "StudyInstanceUID"),
            received_uid(series_uid, "SeriesInstanceUID"),
            received_uid(sop_uid, "SOPInstanceUID") + SUFFIX,
        ]
        return "/".join(parts)

    def resolve(self, relative_path: str) -> Path:
        """The absolute path of a stored file; raise if it would leave the root."""
        candidate = (self.root / relative_path).resolve()
        if not candidate.is_relative_to(self.root) or candidate == self.root:
            raise UnsafePath(f"{relative_path!r} leaves the storage root")
        if candidate.is_relative_to(self.spool_dir):
            raise UnsafePath(f"{relative_path!r} points into the spool folder")
        return candidate

    # -- space ---------------------------------------------------------------------

    def free_bytes(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def check_space(self, incoming_bytes: int = 0) -> None:
        """Raise ``OutOfResources`` when storing would leave less than the reserve."""
        free = self.free_bytes()
        if free - incoming_bytes < self.min_free_bytes:
            raise OutOfResources(
                f"storage has {free} bytes free; {incoming_bytes} more would leave less than "
                f"the reserve of {self.min_free_bytes}"
            )

    # -- placing files -----------------------------------------------------------------

    def place(self, spooled: Path, relative_path: str, *, overwrite: bool) -> StoredFile:
        """Make the spooled file durable and move it into place.

        On any error the spooled file is removed and nothing is left at the final path
        that was not there before. ``OSError`` from the file system (ENOSPC, EIO, ...)
        becomes ``OutOfResources``.
        """
        try:
            target = self.resolve(relative_path)
        except UnsafePath:
            spooled.unlink(missing_ok=True)
            raise
        try:
            if target.exists() and not overwrite:
                size = target.stat().st_size
                spooled.unlink(missing_ok=True)
                return StoredFile(target, relative_path, size, Placement.KEPT_EXISTING)
            existed = target.exists()
            fd = os.open(spooled, os.O_RDONLY)
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            self._make_parents(target.parent)
            os.replace(spooled, target)
            fsync_dir(target.parent)
        except OSError as exc:
            spooled.unlink(missing_ok=True)
            raise OutOfResources(f"cannot store {relative_path}: {exc.strerror or exc}") from exc
        placement = Placement.REPLACED if existed else Placement.NEW
        return StoredFile(target, relative_path, size, placement)

    def _make_parents(self, folder: Path) -> None:
        missing: list[Path] = []
        current = folder
        while not current.exists():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
            fsync_dir(path.parent)

    def remove(self, relative_path: str) -> None:
        """Remove a stored file (used to undo a placement whose index commit failed)."""
        target = self.resolve(relative_path)
        target.unlink(missing_ok=True)
        try:
            fsync_dir(target.parent)
        except OSError as exc:
            logger.warning("could not fsync %s after removing a file: %s", target.parent, exc)

    # -- start-up --------------------------------------------------------------------

    def clear_spool(self) -> int:
        """Remove files left in the spool by an earlier run; return how many."""
        removed = 0
        for entry in self.spool_dir.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        if removed:
            fsync_dir(self.spool_dir)
        return removed

    def iter_stored(self) -> Iterator[str]:
        """Relative paths of every stored file that has the study/series/sop layout."""
        for study in sorted(self.root.iterdir()):
            if not study.is_dir() or study.name == SPOOL_DIR_NAME:
                continue
            for series in sorted(study.iterdir()):
                if not series.is_dir():
                    continue
                for item in sorted(series.iterdir()):
                    if item.is_file() and item.suffix == SUFFIX:
                        yield f"{study.name}/{series.name}/{item.name}"
