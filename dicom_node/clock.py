"""The node's clock: timezone-aware UTC, as every timestamp in the database is kept."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
