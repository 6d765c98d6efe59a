"""DICOM Upper Layer PDUs and DIMSE command sets, byte by byte, and Hypothesis strategies
that bend them: for the receiver's fuzz test (``tests/integration/test_receiver_fuzz.py``).

The encoders (``pdu``, ``item``, ``associate_rq``, ``presentation_context``, the user
information sub-items, ``pdv``, ``element``, ``command_set``, ``dataset``) write what PS3.8
9.3 and PS3.7 Annex E describe, but take every length, type and flag as given, so that a
length can lie, an item type can be anything and a field can be out of range. They check
nothing. ``valid_associate_rq()`` is the honest request the data-phase cases start from
(its contexts: ``CONTEXTS``).

The strategies build an honest value and put none to three defects in it, drawn from a
named list (``REQUEST_DEFECTS``, ``MESSAGE_DEFECTS``: an item type, a length, a field, the
order of fragments...), so that many cases get past the receiver's admission check (which
only looks at the request's structure) into pynetdicom's decoder and state machine, and
past the association into the DIMSE layer and the C-STORE handler; a few are random bytes
altogether. Hypothesis shrinks a failing case toward fewer defects. A ``Case`` is the
bytes a client sends, in pieces, how it ends the connection, and the names of its steps
and defects.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from hypothesis import strategies as st

# -- PDU and item types (PS3.8 9.3) -----------------------------------------------------------

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07
APPLICATION_CONTEXT, PRESENTATION_CONTEXT, USER_INFORMATION = 0x10, 0x20, 0x50
ABSTRACT_SYNTAX, TRANSFER_SYNTAX = 0x30, 0x40
MAX_LENGTH, IMPLEMENTATION_UID, ASYNC_OPS, ROLE_SELECTION = 0x51, 0x52, 0x53, 0x54
IMPLEMENTATION_VERSION, SOP_EXTENDED, COMMON_EXTENDED, USER_IDENTITY = 0x55, 0x56, 0x57, 0x58

APPLICATION_CONTEXT_NAME = b"1.2.840.10008.3.1.1.1"
VERIFICATION = b"1.2.840.10008.1.1"
CT_IMAGE = b"1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = b"1.2.840.10008.5.1.4.1.1.4"
STUDY_ROOT_FIND = b"1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
EXPLICIT_LE = b"1.2.840.10008.1.2.1"
DEFLATED_LE = b"1.2.840.10008.1.2.1.99"
JPEG_BASELINE = b"1.2.840.10008.1.2.4.50"
STORAGE_COMMITMENT = b"1.2.840.10008.1.20.1"
#: A UID root for the fuzzer's own UIDs (2.25: UUID-derived; this one is made up here).
FUZZ_ROOT = "2.25.24024024024"

CALLED_AET = b"DICOM_NODE"
CALLING_AET = b"FUZZ_SCU"

#: The contexts of ``valid_associate_rq``: id -> (abstract syntax, transfer syntax). The
#: node accepts all three, each with its one transfer syntax.
CONTEXTS: dict[int, tuple[bytes, bytes]] = {
    1: (VERIFICATION, IMPLICIT_LE),
    3: (CT_IMAGE, EXPLICIT_LE),
    5: (CT_IMAGE, IMPLICIT_LE),
}

# -- encoders ---------------------------------------------------------------------------------


def pdu(kind: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU: type, reserved byte, 4-byte big-endian length (``length`` may lie), body."""
    return struct.pack(">BBI", kind, 0, len(body) if length is None else length) + body


def item(kind: int, body: bytes, length: int | None = None) -> bytes:
    """An item or sub-item: type, reserved byte, 2-byte big-endian length, body."""
    return struct.pack(">BBH", kind, 0, len(body) if length is None else length) + body


def ae_field(title: bytes) -> bytes:
    """A 16-byte AE title field: ``title`` padded with spaces or cut."""
    return title[:16].ljust(16, b" ")


def associate_rq(
    items: Sequence[bytes],
    *,
    called: bytes = CALLED_AET,
    calling: bytes = CALLING_AET,
    version: int = 1,
    reserved: bytes = b"\x00" * 32,
    length: int | None = None,
) -> bytes:
    """An A-ASSOCIATE-RQ with the given variable items (already encoded)."""
    body = (
        struct.pack(">HH", version, 0)
        + ae_field(called)
        + ae_field(calling)
        + reserved
        + b"".join(items)
    )
    return pdu(ASSOCIATE_RQ, body, length)


def presentation_context(
    context_id: int, syntaxes: Sequence[bytes], *, kind: int = PRESENTATION_CONTEXT
) -> bytes:
    """A presentation context item around already encoded abstract/transfer sub-items."""
    return item(kind, bytes([context_id, 0, 0, 0]) + b"".join(syntaxes))


def max_length(value: int) -> bytes:
    return item(MAX_LENGTH, struct.pack(">I", value))


def uid_and_rest(kind: int, uid: bytes, rest: bytes, uid_length: int | None = None) -> bytes:
    """A sub-item that starts with a 2-byte UID length and the UID (role selection, SOP
    class extended negotiation)."""
    return item(
        kind, struct.pack(">H", len(uid) if uid_length is None else uid_length) + uid + rest
    )


def common_extended(uid: bytes, service: bytes, related: Sequence[bytes]) -> bytes:
    related_bytes = b"".join(struct.pack(">H", len(r)) + r for r in related)
    return item(
        COMMON_EXTENDED,
        struct.pack(">H", len(uid))
        + uid
        + struct.pack(">H", len(service))
        + service
        + struct.pack(">H", len(related_bytes))
        + related_bytes,
    )


def user_identity(kind: int, response: int, primary: bytes, secondary: bytes) -> bytes:
    return item(
        USER_IDENTITY,
        bytes([kind, response])
        + struct.pack(">H", len(primary))
        + primary
        + struct.pack(">H", len(secondary))
        + secondary,
    )


def valid_associate_rq(maximum_length: int = 16384) -> bytes:
    """An honest request: the application context, ``CONTEXTS``, a user information item."""
    contexts = [
        presentation_context(cid, [item(ABSTRACT_SYNTAX, a), item(TRANSFER_SYNTAX, t)])
        for cid, (a, t) in CONTEXTS.items()
    ]
    user = item(
        USER_INFORMATION,
        max_length(maximum_length)
        + item(IMPLEMENTATION_UID, f"{FUZZ_ROOT}.1".encode())
        + item(IMPLEMENTATION_VERSION, b"FUZZ_24"),
    )
    return associate_rq([item(APPLICATION_CONTEXT, APPLICATION_CONTEXT_NAME), *contexts, user])


def pdv(context_id: int, header: int, fragment: bytes, length: int | None = None) -> bytes:
    """A presentation data value item: 4-byte length, context id, message control header."""
    true_length = len(fragment) + 2
    return struct.pack(">IBB", true_length if length is None else length, context_id, header) + (
        fragment
    )


def release_rq() -> bytes:
    return pdu(RELEASE_RQ, b"\x00" * 4)


def abort(source: int = 0, reason: int = 0) -> bytes:
    return pdu(ABORT, bytes([0, 0, source, reason]))


def element(group: int, number: int, value: bytes, length: int | None = None) -> bytes:
    """An Implicit VR Little Endian element (how command sets are always encoded)."""
    return struct.pack("<HHI", group, number, len(value) if length is None else length) + value


def explicit_element(group: int, number: int, vr: bytes, value: bytes) -> bytes:
    """An Explicit VR Little Endian element of a VR with a 2-byte length."""
    return struct.pack("<HH", group, number) + vr + struct.pack("<H", len(value)) + value


def us(value: int) -> bytes:
    return struct.pack("<H", value & 0xFFFF)


def even(value: bytes, pad: bytes = b"\x00") -> bytes:
    return value + pad if len(value) % 2 else value


def command_set(elements: Sequence[bytes], group_length: int | None | Literal["absent"]) -> bytes:
    """Elements after a (0000,0000) Command Group Length: honest (None), a given value, or
    left out ("absent")."""
    body = b"".join(elements)
    if group_length == "absent":
        return body
    value = len(body) if group_length is None else group_length
    return element(0x0000, 0x0000, struct.pack("<I", value & 0xFFFFFFFF)) + body


def dataset(
    sop_class: bytes,
    sop_instance: bytes,
    study: bytes,
    series: bytes,
    *,
    explicit: bool,
) -> bytes:
    """A tiny image-less data set: SOP Class/Instance, Modality, study and series UIDs."""
    fields = [
        (0x0008, 0x0016, b"UI", even(sop_class)),
        (0x0008, 0x0018, b"UI", even(sop_instance)),
        (0x0008, 0x0060, b"CS", b"CT"),
        (0x0020, 0x000D, b"UI", even(study)),
        (0x0020, 0x000E, b"UI", even(series)),
    ]
    if explicit:
        return b"".join(explicit_element(g, n, vr, v[:0xFFFF]) for g, n, vr, v in fields)
    return b"".join(element(g, n, v) for g, n, _vr, v in fields)


def retyped(encoded: bytes, kind: int) -> bytes:
    """An encoded item or PDU with its type byte replaced."""
    return bytes([kind]) + encoded[1:]


def relengthed(encoded: bytes, length: int, width: int = 2) -> bytes:
    """An encoded item (``width`` 2) or PDU (4) with its length field replaced."""
    return encoded[:2] + length.to_bytes(width, "big") + encoded[2 + width :]


# -- strategies: pieces ----------------------------------------------------------------------


def lies(true_length: int, maximum: int) -> st.SearchStrategy[int]:
    """A length other than ``true_length``: near it, zero, one, the maximum or anything."""
    return st.one_of(
        st.integers(max(0, true_length - 6), min(maximum, true_length + 6)),
        st.sampled_from([0, 1, maximum]),
        st.integers(0, maximum),
    ).filter(lambda n: n != true_length)


def defects(kinds: Sequence[str], most: int) -> st.SearchStrategy[list[str]]:
    """Which of ``kinds`` to apply: none (an honest value) to ``most`` of them; Hypothesis
    shrinks a failing case toward fewer."""
    return st.lists(st.sampled_from(kinds), max_size=most, unique=True)


UIDS = [
    APPLICATION_CONTEXT_NAME,
    VERIFICATION,
    CT_IMAGE,
    MR_IMAGE,
    STUDY_ROOT_FIND,
    STORAGE_COMMITMENT,
    IMPLICIT_LE,
    EXPLICIT_LE,
    DEFLATED_LE,
    JPEG_BASELINE,
]
odd_uids = st.one_of(
    st.sampled_from([b"", b"\x00", b"1", b"1.2.", b".", b"0" * 64, b"1." * 40, b"1.2\x001.3"]),
    st.text(alphabet="0123456789.", max_size=80).map(str.encode),
    st.binary(max_size=80),
    st.sampled_from(UIDS).map(lambda u: u + b"\x00"),  # padded as PS3.5 wants
    st.sampled_from(UIDS),  # a real UID where another belongs
)
"""Something in the place of a UID: UID-shaped or not, too long, padded, or a real one."""

item_types = st.integers(0, 255)
odd_titles = st.one_of(
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16
    ).map(str.encode),
    st.binary(min_size=0, max_size=20),
    st.sampled_from([b"", b" " * 16, b"\x00" * 16, b"A\\B", b"\xff" * 16, b"\x1b[31m"]),
)


@st.composite
def user_sub_items(draw: st.DrawFn) -> bytes:
    """One user information sub-item of a kind PS3.7 Annex D defines (or an unknown one),
    its values drawn from their whole range, most of which is out of it."""
    kind = draw(
        st.sampled_from(
            [
                MAX_LENGTH,
                IMPLEMENTATION_UID,
                ASYNC_OPS,
                ROLE_SELECTION,
                IMPLEMENTATION_VERSION,
                SOP_EXTENDED,
                COMMON_EXTENDED,
                USER_IDENTITY,
                -1,  # an unknown type
                -2,  # a known type, a garbage body
            ]
        )
    )
    if kind == MAX_LENGTH:
        value = draw(st.one_of(st.sampled_from([0, 1, 0xFFFFFFFF]), st.integers(0, 2**32 - 1)))
        return max_length(value)
    if kind == IMPLEMENTATION_UID:
        return item(IMPLEMENTATION_UID, draw(odd_uids))
    if kind == ASYNC_OPS:
        return item(ASYNC_OPS, struct.pack(">HH", *draw(st.tuples(*[st.integers(0, 0xFFFF)] * 2))))
    if kind == ROLE_SELECTION:
        uid = draw(st.one_of(st.sampled_from(UIDS), odd_uids))
        roles = bytes(draw(st.tuples(st.integers(0, 255), st.integers(0, 255))))
        told = draw(st.one_of(st.none(), lies(len(uid), 0xFFFF)))
        return uid_and_rest(ROLE_SELECTION, uid, roles, told)
    if kind == IMPLEMENTATION_VERSION:
        return item(IMPLEMENTATION_VERSION, draw(st.binary(max_size=20)))
    if kind == SOP_EXTENDED:
        uid = draw(st.one_of(st.sampled_from(UIDS), odd_uids))
        told = draw(st.one_of(st.none(), lies(len(uid), 0xFFFF)))
        return uid_and_rest(SOP_EXTENDED, uid, draw(st.binary(max_size=12)), told)
    if kind == COMMON_EXTENDED:
        return common_extended(
            draw(st.sampled_from(UIDS)), draw(odd_uids), draw(st.lists(odd_uids, max_size=3))
        )
    if kind == USER_IDENTITY:
        return user_identity(
            draw(st.integers(0, 255)),
            draw(st.integers(0, 255)),
            draw(st.binary(max_size=24)),
            draw(st.binary(max_size=24)),
        )
    if kind == -1:
        return item(draw(item_types), draw(st.binary(max_size=16)))
    return item(draw(st.integers(MAX_LENGTH, USER_IDENTITY)), draw(st.binary(max_size=16)))


# -- cases -----------------------------------------------------------------------------------

Ending = Literal["release", "half-close", "close", "hold"]
#: How the client ends: an A-RELEASE-RQ, then read until the node closes; half-close (shut
#: its side) and read until the node closes; close at once; or hold the connection open
#: and wait for the node to end it by itself (its timeouts: the slowest, so the rarest).
endings: st.SearchStrategy[Ending] = st.sampled_from(
    ["release"] * 4 + ["half-close"] * 2 + ["close"] * 2 + ["hold"]
)


@dataclass
class Case:
    """What one fuzz connection sends: ``pieces`` in order (after the valid association
    request and its answer when ``associate_first``), then it ends as ``ending`` says.
    ``steps`` names what was sent and the defects put in it."""

    pieces: list[bytes]
    ending: Ending
    associate_first: bool = False
    label: str = ""
    steps: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # what Hypothesis prints for a failing case
        data = b"".join(self.pieces)
        return (
            f"Case({self.label!r}, associate_first={self.associate_first}, ending={self.ending!r}, "
            f"steps={self.steps}, {len(self.pieces)} piece(s), {len(data)} bytes: {data[:600]!r}"
            f"{'...' if len(data) > 600 else ''})"
        )


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length)."""
    if not data:
        return [data]
    points = sorted({c % len(data) for c in cuts} - {0})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


pieces_cuts = st.lists(st.integers(1, 100_000), max_size=3)
"""Where the bytes of a case are cut into separate sends (none: one send)."""

#: (abstract syntax, transfer syntaxes) of honest presentation contexts.
HONEST_CONTEXTS: list[tuple[bytes, list[bytes]]] = [
    (VERIFICATION, [IMPLICIT_LE]),
    (CT_IMAGE, [EXPLICIT_LE, IMPLICIT_LE]),
    (MR_IMAGE, [JPEG_BASELINE, EXPLICIT_LE]),
    (STUDY_ROOT_FIND, [IMPLICIT_LE]),
    (STORAGE_COMMITMENT, [IMPLICIT_LE]),
]

REQUEST_DEFECTS = (
    "random bytes",
    "PDU length",
    "truncated",
    "trailing bytes",
    "called AE title",
    "calling AE title",
    "protocol version",
    "reserved field",
    "application context",
    "item type",
    "item length",
    "item order",
    "junk between items",
    "no presentation context",
    "presentation context",
    "syntax sub-item",
    "user information",
    "sub-item length",
    "no user information",
)


@st.composite
def presentation_context_items(draw: st.DrawFn, bent: list[str]) -> list[bytes]:
    """One to four honest presentation contexts; one of them bent when asked to."""
    chosen = draw(
        st.lists(st.integers(0, len(HONEST_CONTEXTS) - 1), min_size=1, max_size=4, unique=True)
    )
    contexts: list[tuple[int, list[bytes]]] = []
    for number, index in enumerate(chosen):
        abstract, transfers = HONEST_CONTEXTS[index]
        subs = [item(ABSTRACT_SYNTAX, abstract), *(item(TRANSFER_SYNTAX, t) for t in transfers)]
        contexts.append((2 * number + 1, subs))
    which = draw(st.integers(0, len(contexts) - 1))
    context_id, subs = contexts[which]
    if "presentation context" in bent:
        change = draw(
            st.sampled_from(
                [
                    "context id",
                    "no transfer syntax",
                    "many transfer syntaxes",
                    "odd syntaxes",
                    "no abstract syntax",
                    "two abstract syntaxes",
                    "same id twice",
                ]
            )
        )
        if change == "context id":
            context_id = draw(st.integers(0, 255))
        elif change == "no transfer syntax":
            subs = subs[:1]
        elif change == "many transfer syntaxes":
            subs = subs[:1] + [item(TRANSFER_SYNTAX, u) for u in UIDS] * draw(st.integers(1, 8))
        elif change == "odd syntaxes":
            subs = [item(ABSTRACT_SYNTAX, draw(odd_uids)), item(TRANSFER_SYNTAX, draw(odd_uids))]
        elif change == "no abstract syntax":
            subs = subs[1:]
        elif change == "two abstract syntaxes":
            subs = subs[:1] + subs
        else:
            contexts.append((context_id, subs))
    if "syntax sub-item" in bent:
        index = draw(st.integers(0, len(subs) - 1))
        if draw(st.booleans()):
            subs[index] = retyped(subs[index], draw(item_types))
        else:
            subs[index] = relengthed(subs[index], draw(lies(len(subs[index]) - 4, 0xFFFF)))
    contexts[which] = (context_id, subs)
    return [presentation_context(cid, s) for cid, s in contexts]


@st.composite
def association_requests(draw: st.DrawFn) -> Case:
    """An honest A-ASSOCIATE-RQ with none to three ``REQUEST_DEFECTS``: bent item types,
    lying lengths, odd AE titles, presentation contexts and user information sub-items;
    cut short, followed by garbage, or random bytes altogether."""
    bent = draw(defects(REQUEST_DEFECTS, 3))
    ending = draw(endings)
    if "random bytes" in bent:
        data = draw(st.binary(min_size=1, max_size=300))
        return Case([data], ending, label="association request", steps=["random bytes"])
    name = draw(odd_uids) if "application context" in bent else APPLICATION_CONTEXT_NAME
    items = [item(APPLICATION_CONTEXT, name)]
    if "no presentation context" not in bent:
        items += draw(presentation_context_items(bent))
    subs = [
        max_length(16384),
        item(IMPLEMENTATION_UID, f"{FUZZ_ROOT}.1".encode()),
        item(IMPLEMENTATION_VERSION, b"FUZZ_24"),
    ]
    if "user information" in bent:
        for sub in draw(st.lists(user_sub_items(), min_size=1, max_size=3)):
            subs.insert(draw(st.integers(0, len(subs))), sub)
    if "sub-item length" in bent:
        index = draw(st.integers(0, len(subs) - 1))
        subs[index] = relengthed(subs[index], draw(lies(len(subs[index]) - 4, 0xFFFF)))
    if "no user information" not in bent:
        items.append(item(USER_INFORMATION, b"".join(subs)))
    if "item type" in bent:
        index = draw(st.integers(0, len(items) - 1))
        items[index] = retyped(items[index], draw(item_types))
    if "item length" in bent:
        index = draw(st.integers(0, len(items) - 1))
        items[index] = relengthed(items[index], draw(lies(len(items[index]) - 4, 0xFFFF)))
    if "item order" in bent:
        items = draw(st.permutations(items))
    if "junk between items" in bent:
        items.insert(draw(st.integers(0, len(items))), draw(st.binary(min_size=1, max_size=12)))
    request = associate_rq(
        items,
        called=draw(odd_titles) if "called AE title" in bent else CALLED_AET,
        calling=draw(odd_titles) if "calling AE title" in bent else CALLING_AET,
        version=draw(st.integers(0, 0xFFFF)) if "protocol version" in bent else 1,
        reserved=draw(st.binary(min_size=32, max_size=32))
        if "reserved field" in bent
        else b"\x00" * 32,
    )
    if "PDU length" in bent:
        request = relengthed(request, draw(lies(len(request) - 6, 0xFFFFFFFF)), width=4)
    if "truncated" in bent:
        request = request[: draw(st.integers(1, len(request) - 1))]
    if "trailing bytes" in bent:
        request += draw(st.binary(min_size=1, max_size=64))
    return Case(split(request, draw(pieces_cuts)), ending, label="association request", steps=bent)


# -- the data phase --------------------------------------------------------------------------

#: Command Field values (PS3.7 E.1): requests, responses, C-CANCEL, and a few nobody defines.
COMMAND_FIELDS = [
    0x0001,  # C-STORE-RQ
    0x0030,  # C-ECHO-RQ
    0x0020,  # C-FIND-RQ
    0x0010,  # C-GET-RQ
    0x0021,  # C-MOVE-RQ
    0x0FFF,  # C-CANCEL-RQ
    0x0100,  # N-EVENT-REPORT-RQ
    0x0110,  # N-GET-RQ
    0x0120,  # N-SET-RQ
    0x0130,  # N-ACTION-RQ
    0x0140,  # N-CREATE-RQ
    0x0150,  # N-DELETE-RQ
    0x8001,  # C-STORE-RSP
    0x8030,  # C-ECHO-RSP
    0x8100,  # N-EVENT-REPORT-RSP
    0x0000,
    0x0002,
    0x0080,
    0xFFFF,
]

# Command set elements (group 0000), by element number.
AFFECTED_SOP_CLASS, COMMAND_FIELD, MESSAGE_ID = 0x0002, 0x0100, 0x0110
PRIORITY, DATA_SET_TYPE, AFFECTED_SOP_INSTANCE = 0x0700, 0x0800, 0x1000
NO_DATA_SET = 0x0101

MESSAGE_DEFECTS = (
    "command field",
    "element left out",
    "element size",
    "element length",
    "extra element",
    "element order",
    "group length",
    "affected SOP class",
    "affected SOP instance",
    "priority",
    "data set type",
    "data set",
    "fragment order",
    "control header",
    "context id",
    "PDV length",
    "short PDV",
    "PDU length",
)


def fuzz_uid(number: int) -> bytes:
    return f"{FUZZ_ROOT}.{number}".encode()


@st.composite
def message_pdus(draw: st.DrawFn) -> tuple[bytes, str]:
    """An honest C-ECHO-RQ or C-STORE-RQ (with a tiny data set) on one of ``CONTEXTS``,
    with none to three ``MESSAGE_DEFECTS`` in its command set, its data set, its
    fragments (message control headers, context ids, order), its PDVs and PDUs; as
    P-DATA-TF PDUs, its fragments spread over one or more."""
    bent = draw(defects(MESSAGE_DEFECTS, 3))
    context_id = draw(st.sampled_from(sorted(CONTEXTS)))
    abstract, transfer = CONTEXTS[context_id]
    store = abstract != VERIFICATION
    command_field = 0x0001 if store else 0x0030
    if "command field" in bent:
        command_field = draw(st.one_of(st.sampled_from(COMMAND_FIELDS), st.integers(0, 0xFFFF)))
    instance = fuzz_uid(draw(st.integers(1, 10**9)))
    values: dict[int, bytes] = {
        AFFECTED_SOP_CLASS: even(draw(odd_uids) if "affected SOP class" in bent else abstract),
        COMMAND_FIELD: us(command_field),
        MESSAGE_ID: us(draw(st.integers(0, 0xFFFF))),
        DATA_SET_TYPE: us(0x0000 if store else NO_DATA_SET),
    }
    if store:
        values[PRIORITY] = us(draw(st.integers(3, 0xFFFF)) if "priority" in bent else 0)
        values[AFFECTED_SOP_INSTANCE] = even(
            draw(odd_uids) if "affected SOP instance" in bent else instance
        )
    if "data set type" in bent:  # a data set announced where none comes, or the reverse
        values[DATA_SET_TYPE] = us(NO_DATA_SET if store else draw(st.integers(0, 0x0100)))
    if "element left out" in bent:
        for tag in draw(st.sets(st.sampled_from(sorted(values)), min_size=1, max_size=2)):
            del values[tag]
    if "element size" in bent and values:
        for tag in draw(st.sets(st.sampled_from(sorted(values)), min_size=1, max_size=2)):
            values[tag] = draw(st.binary(max_size=9))
    elements = [(0x0000, tag, value, None) for tag, value in sorted(values.items())]
    if "element length" in bent and elements:
        index = draw(st.integers(0, len(elements) - 1))
        group, number, value, _ = elements[index]
        elements[index] = (group, number, value, draw(lies(len(value), 0xFFFFFFFF)))
    if "extra element" in bent:
        for _ in range(draw(st.integers(1, 3))):
            group = draw(st.sampled_from([0x0000, 0x0000, 0x0002, 0x0008, 0xFFFE, 0x7FE0]))
            number = draw(st.integers(0, 0xFFFF))
            elements.append((group, number, draw(st.binary(max_size=12)), None))
        elements.sort(key=lambda e: (e[0], e[1]))
    if "element order" in bent:
        elements = draw(st.permutations(elements))
    group_length: int | None | Literal["absent"] = None
    if "group length" in bent:
        group_length = draw(st.one_of(st.just("absent"), st.integers(0, 0xFFFFFFFF)))
    command = command_set([element(g, n, v, told) for g, n, v, told in elements], group_length)

    data: bytes | None = None
    if store or "data set type" in bent:
        data = dataset(
            abstract, instance, fuzz_uid(1), fuzz_uid(2), explicit=transfer == EXPLICIT_LE
        )
        if "data set" in bent:
            data = draw(
                st.one_of(
                    st.binary(max_size=600),
                    st.just(data[: draw(st.integers(0, len(data)))]),
                    st.just(
                        dataset(abstract, instance, draw(odd_uids), draw(odd_uids), explicit=True)
                    ),
                )
            )

    fragments: list[tuple[int, bytes]] = []  # (message control header, bytes)
    for is_command, content in ((True, command), (False, data)):
        if content is None:
            continue
        parts = split(content, draw(st.lists(st.integers(1, 4096), max_size=2)))
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            fragments.append((int(is_command) | (2 if last else 0), part))
    if "fragment order" in bent:
        fragments = draw(st.permutations(fragments))
    pdvs: list[tuple[int, int, bytes, int | None]] = [
        (context_id, h, p, None) for h, p in fragments
    ]
    if "control header" in bent:
        index = draw(st.integers(0, len(pdvs) - 1))
        cid, _header, part, told = pdvs[index]
        pdvs[index] = (cid, draw(st.integers(0, 255)), part, told)
    if "context id" in bent:
        index = draw(st.integers(0, len(pdvs) - 1))
        _cid, header, part, told = pdvs[index]
        pdvs[index] = (draw(st.integers(0, 255)), header, part, told)
    if "PDV length" in bent:
        index = draw(st.integers(0, len(pdvs) - 1))
        cid, header, part, _told = pdvs[index]
        pdvs[index] = (cid, header, part, draw(lies(len(part) + 2, 0xFFFFFFFF)))
    encoded = [pdv(cid, header, part, told) for cid, header, part, told in pdvs]
    if "short PDV" in bent:  # a PDV item shorter than its own header
        encoded.insert(
            draw(st.integers(0, len(encoded))), struct.pack(">I", draw(st.integers(0, 1)))
        )
    groups: list[list[bytes]] = []  # the PDVs, into PDUs
    for value in encoded:
        if groups and draw(st.booleans()):
            groups[-1].append(value)
        else:
            groups.append([value])
    pdus = [pdu(P_DATA_TF, b"".join(group)) for group in groups]
    if "PDU length" in bent:
        index = draw(st.integers(0, len(pdus) - 1))
        pdus[index] = relengthed(pdus[index], draw(lies(len(pdus[index]) - 6, 0xFFFFFFFF)), 4)
    name = ("C-STORE" if store else "C-ECHO") + (f" {bent}" if bent else "")
    return b"".join(pdus), name


@st.composite
def other_pdus(draw: st.DrawFn) -> tuple[bytes, str]:
    """What else a peer may send once associated: a release request (honest or not), an
    abort, a second association request, a PDU only an acceptor sends, an unknown type,
    an empty P-DATA-TF, or random bytes."""
    kind = draw(
        st.sampled_from(
            [
                "release",
                "bad release",
                "abort",
                "associate",
                "acceptor PDU",
                "unknown PDU",
                "empty P-DATA-TF",
                "random bytes",
            ]
        )
    )
    if kind == "release":
        return release_rq(), kind
    if kind == "bad release":
        body = draw(st.binary(max_size=8))
        return pdu(RELEASE_RQ, body, draw(st.one_of(st.none(), lies(len(body), 0xFFFF)))), kind
    if kind == "abort":
        return abort(draw(st.integers(0, 255)), draw(st.integers(0, 255))), kind
    if kind == "associate":
        return valid_associate_rq(), kind
    if kind == "acceptor PDU":
        body = draw(st.binary(max_size=80))
        return pdu(draw(st.sampled_from([ASSOCIATE_AC, ASSOCIATE_RJ, RELEASE_RP])), body), kind
    if kind == "unknown PDU":
        body = draw(st.binary(max_size=40))
        return pdu(draw(st.sampled_from([0x00, 0x08, 0x09, 0x10, 0x80, 0xFF])), body), kind
    if kind == "empty P-DATA-TF":
        return pdu(P_DATA_TF, b""), kind
    return draw(st.binary(min_size=1, max_size=200)), kind


@st.composite
def data_phases(draw: st.DrawFn) -> Case:
    """After the valid association: one to four steps, three in four of them DIMSE
    messages (``message_pdus``), the others ``other_pdus``."""
    steps = draw(
        st.lists(
            st.integers(0, 3).flatmap(lambda n: other_pdus() if n == 3 else message_pdus()),
            min_size=1,
            max_size=4,
        )
    )
    data = b"".join(data for data, _ in steps)
    return Case(
        split(data, draw(pieces_cuts)),
        draw(endings),
        associate_first=True,
        label="data phase",
        steps=[name for _, name in steps],
    )


def cases() -> st.SearchStrategy[Case]:
    """Association requests and data phases, about half each."""
    return st.booleans().flatmap(lambda first: association_requests() if first else data_phases())
