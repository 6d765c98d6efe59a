"""The node's small error hierarchy.

``Retry`` is raised to ask for another attempt later (arq's ``Retry(defer=...)`` style);
every other ``NodeError`` is final for the thing it is about.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base class for errors the node knows how to report."""


class InvalidUID(NodeError, ValueError):
    """A UID that must not become part of a path or a database key."""


class UnsafePath(NodeError):
    """A path that would leave the storage root."""


class OutOfResources(NodeError):
    """Disk full, database locked or similar: the sender may try again later."""


class UnreadableDataset(NodeError):
    """A received dataset that cannot be parsed."""


class Retry(NodeError):
    """Ask for another attempt after ``defer`` seconds (None: the queue's backoff)."""

    def __init__(self, message: str, defer: float | None = None) -> None:
        super().__init__(message)
        self.defer = defer
