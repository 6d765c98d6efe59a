"""Validation of DICOM UIDs that become path parts or database keys, and of the UID root
that output UIDs are derived under (``dicom_node.output.uids``).

Received instances are identified by ``received_uid``: a conformant UID, or one that
breaks PS3.5's rules but is still safe as a path part and a key (letters, digits, ``.``,
``-`` and ``_``, beginning with a letter or digit, at most 64 characters), as anonymisers
write them (hex digests) and dcmtk and Orthanc store them. What the node makes itself
(output UIDs, their root) must be conformant: ``validate_uid``.
"""

from __future__ import annotations

import re

from dicom_node.errors import InvalidUID

# PS3.5 9.1: components of digits separated by '.', no leading zero in a
# multi-digit component, at most 64 characters.
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
# Safe as one path part: never empty, ".", ".." or with a separator.
_RECEIVED = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")
_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
MAX_ROOT_LENGTH = 44


def validate_uid(value: object, what: str = "UID") -> str:
    """Return ``value`` stripped of DICOM padding if it is a safe, valid UID, else raise."""
    if not isinstance(value, str):
        raise InvalidUID(f"{what} is missing or not text")
    uid = value.rstrip("\x00 ")
    if not uid:
        raise InvalidUID(f"{what} is empty")
    if len(uid) > 64:
        raise InvalidUID(f"{what} is longer than 64 characters")
    if not _UID.fullmatch(uid):  # not match(): its '$' also matches before a final "\n"
        raise InvalidUID(f"{what} {uid[:70]!r} has characters or components a UID may not have")
    return uid


def is_conformant_uid(uid: str) -> bool:
    """Whether ``uid`` (padding stripped) follows PS3.5 9.1."""
    return len(uid) <= 64 and _UID.fullmatch(uid) is not None


def received_uid(value: object, what: str = "UID") -> str:
    """Return ``value`` stripped of DICOM padding if it can identify a received instance
    (a valid UID, or a non-conformant one that is safe as a path part), else raise."""
    if not isinstance(value, str):
        raise InvalidUID(f"{what} is missing or not text")
    uid = value.rstrip("\x00 ")
    if not uid:
        raise InvalidUID(f"{what} is empty")
    if len(uid) > 64:
        raise InvalidUID(f"{what} is longer than 64 characters")
    if not (_UID.fullmatch(uid) or _RECEIVED.fullmatch(uid)):
        raise InvalidUID(f"{what} {uid[:70]!r} has characters a UID may not have")
    return uid


def check_uid_root(uid_root: str) -> str:
    """``uid_root`` without a trailing dot if it can be used, else raise ``InvalidUID``."""
    root = uid_root.strip().rstrip(".")
    if not root or not _ROOT.fullmatch(root):
        raise InvalidUID(f"UID root {uid_root!r} is not dot-separated numbers")
    if len(root) > MAX_ROOT_LENGTH:
        raise InvalidUID(
            f"UID root {uid_root!r} is longer than {MAX_ROOT_LENGTH} characters: too few "
            "digits would be left to tell outputs apart"
        )
    return root
