"""UID validation: what may become a path part or a database key."""

from __future__ import annotations

import pytest

from dicom_node.errors import InvalidUID
from dicom_node.uids import is_conformant_uid, received_uid, validate_uid

LONGEST = "1." + "2" * 62  # 64 characters


@pytest.mark.parametrize(
    "uid",
    [
        "1.2",
        "0.0",
        "1.2.840.10008.1.2.1",
        "1.2.826.0.1.3680043.8.498.1",
        "2.25.329800735698586629295641978511506172918",
        "1.0.0.10",
        LONGEST,
    ],
)
def test_accepts_valid_uids(uid: str) -> None:
    assert validate_uid(uid) == uid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.2.3\x00", "1.2.3"),
        ("1.2.3 ", "1.2.3"),
        ("1.2.3\x00\x00", "1.2.3"),
        ("1.2.3 \x00", "1.2.3"),
        (LONGEST + "\x00", LONGEST),
    ],
)
def test_strips_trailing_padding(raw: str, expected: str) -> None:
    assert validate_uid(raw) == expected


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "\x00",
        " ",
        "..",
        "1..2",
        ".1.2",
        "1.2.",
        "../1.2",
        "1.2/3",
        "/1.2.3",
        "1.2\\3",
        "..\\1.2",
        "1.2\x00.3",
        "1.2.3\x00x",
        LONGEST + "3",
        "1." + "9" * 80,
        "1.2.a",
        "1.2.3e5",
        "-1.2",
        "1.02.3",
        "01.2",
        "1.2.00",
        " 1.2.3",
        "1. 2",
        "1.2.3\n",
        "1.2.3\r",
        "1.2.3\t",
        "1.2.3\n\x00",
        "１.２",  # full-width digits
    ],
)
def test_rejects_unsafe_or_invalid(uid: str) -> None:
    with pytest.raises(InvalidUID):
        validate_uid(uid)


@pytest.mark.parametrize("value", [None, 12, b"1.2.3", ["1.2"]])
def test_rejects_non_text(value: object) -> None:
    with pytest.raises(InvalidUID, match="missing or not text"):
        validate_uid(value, "SOPInstanceUID")


def test_message_names_the_field() -> None:
    with pytest.raises(InvalidUID, match=r"^StudyInstanceUID is longer than 64 characters$"):
        validate_uid(LONGEST + "1", "StudyInstanceUID")
    with pytest.raises(InvalidUID, match=r"^SeriesInstanceUID is empty$"):
        validate_uid("\x00 ", "SeriesInstanceUID")


def test_invalid_uid_is_a_value_error() -> None:
    """Callers that catch ValueError (pydicom style) see it too."""
    with pytest.raises(ValueError):
        validate_uid("../etc")


@pytest.mark.parametrize(
    "value",
    [
        "1.2.840.10008.5.1.4.1.1.2",
        "05fa52f0e599f17b8186ff18fcdf2b5570a52206a75c4d03afebf5c475dc8758",  # a hex digest
        "1.2.03",  # a leading zero
        "ANON_1-2.3",
    ],
)
def test_received_uids_may_be_non_conformant_when_safe_as_a_path_part(value: str) -> None:
    assert received_uid(value + "\x00") == value
    assert is_conformant_uid(value) == (value == "1.2.840.10008.5.1.4.1.1.2")


@pytest.mark.parametrize(
    "value", ["", ".", "..", "../x", "a/b", "a\\b", "1.2 3", "-1", "_x", "é1", "1" * 65, None, 12]
)
def test_received_uids_that_are_unsafe_are_refused(value: object) -> None:
    with pytest.raises(InvalidUID):
        received_uid(value)
