"""Validation of DICOM UIDs that become path parts or database keys, and of the UID root
that output UIDs are derived under (``dicom_node.output.uids``)."""

from __future__ import annotations

import re

from dicom_node.errors import InvalidUID

# PS3.5 9.1: components of digits separated by '.', no leading zero in a
# multi-digit component, at most 64 characters.
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
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
