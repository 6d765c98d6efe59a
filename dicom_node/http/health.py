"""``/healthz`` (the process answers) and ``/readyz``: the database answers, storage is
writable with more than ``min_free_bytes`` free, and the receiver is listening."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from dicom_node.db.models import Study


@dataclass
class Readiness:
    engine: Engine
    storage_dir: Path
    min_free_bytes: int
    receiver_listening: Callable[[], bool]

    def problems(self) -> list[str]:
        """Why the node is not ready; empty when it is."""
        found = []
        database = self._database_problem()
        if database:
            found.append(database)
        found += self._storage_problems()
        if not self.receiver_listening():
            found.append("receiver: not listening")
        return found

    def _database_problem(self) -> str | None:
        url = make_url(str(self.engine.url))
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # A pooled connection keeps a removed file open: look at the path itself.
            if not Path(str(url.database)).is_file():
                return "database: the SQLite file is missing"
        try:
            with self.engine.connect() as conn:
                conn.execute(select(Study.id).limit(1)).all()
        except SQLAlchemyError as exc:
            return f"database: not reachable ({type(getattr(exc, 'orig', None) or exc).__name__})"
        return None

    def _storage_problems(self) -> list[str]:
        probe = self.storage_dir / f".readyz-{os.getpid()}"
        try:
            probe.write_bytes(b"ready")
            probe.unlink()
        except OSError as exc:
            return [f"storage: not writable ({exc.strerror or type(exc).__name__})"]
        free = shutil.disk_usage(self.storage_dir).free
        if free < self.min_free_bytes:
            return [f"storage: {free} bytes free, below min_free_bytes={self.min_free_bytes}"]
        return []
