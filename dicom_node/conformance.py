"""The generated sections of the DICOM Conformance Statement, ``docs/conformance.md``.

The statement is prose written by hand, with tables between marker comments::

    <!-- generated: scp-sop-classes -->
    ...
    <!-- end -->

``render(text)`` replaces what stands between each pair of markers with the table this
module makes from the code itself: the presentation contexts the receiver supports (the
same calls ``Receiver`` makes), the statuses it answers, the contexts the SCU side
proposes, the objects the encoder makes, every coded concept (``dicom_node.output.codes``
and the literal ``Code(...)`` values of the node and the pipelines), UID roots, character
sets and the association settings with their defaults.

    python -m dicom_node.conformance            # rewrite docs/conformance.md
    python -m dicom_node.conformance --check    # exit 1 when the document is stale

``tests/unit/test_conformance_statement.py`` checks that the committed document equals
``render`` of itself, and that the receiver's live contexts equal the ones listed here.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import get_args

from pydicom.sr.coding import Code as StandardCode
from pydicom.uid import (
    UID,
    ComprehensiveSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
    SecondaryCaptureImageStorage,
)
from pynetdicom import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_node.ingest.receive import StoreStatus
from dicom_node.ingest.store_requests import (
    ACCEPTED_TRANSFER_SYNTAXES,
    EXTRA_STORAGE_SOP_CLASSES,
    register_storage_sop_classes,
)
from dicom_node.net.pacs_link import find_context, get_context, move_context
from dicom_node.output import base, codes
from dicom_node.output.uids import UUID_ROOT
from dicom_node.settings import NodeSettings, OutputSettings

REPO = Path(__file__).resolve().parents[1]
DOCUMENT = REPO / "docs" / "conformance.md"
#: Packages whose literal ``Code("value", "scheme", "meaning")`` calls are listed.
CODE_PACKAGES = ("dicom_node", "pipelines")

_SECTION = re.compile(
    r"(<!-- generated: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- end -->)", re.DOTALL
)

#: What the encoder makes, by ``OutputKind``: SOP class, modality, template or modules.
OUTPUT_OBJECTS: Mapping[str, tuple[str, str, str]] = {
    "sr": (
        ComprehensiveSRStorage,
        "SR",
        "TID 1500 Measurement Report (TID 1001 observation context with a TID 1004 "
        "device observer, TID 1501 measurement groups with TID 4019 algorithm "
        "identification, TID 1600 image library)",
    ),
    "sc": (
        SecondaryCaptureImageStorage,
        "OT",
        "SC Equipment, SC Image, General Image, Image Pixel; Source Image Sequence",
    ),
    "gsps": (
        GrayscaleSoftcopyPresentationStateStorage,
        "PR",
        "Presentation State Identification, Presentation State Relationship, "
        "Spatial Transformation (rotation, flip), Displayed Area, Modality and "
        "Softcopy VOI LUT of the source, Softcopy Presentation LUT",
    ),
    "kos": (
        KeyObjectSelectionDocumentStorage,
        "KO",
        "TID 2010 Key Object Selection (CID 7010 title, TID 1002 device observer), "
        "Current Requested Procedure Evidence Sequence",
    ),
}

#: The settings that make the association policy, in the order the statement lists them.
POLICY_SETTINGS = (
    "ae_title",
    "port",
    "allowed_callers",
    "max_associations",
    "max_connections_per_peer",
    "max_pdu_bytes",
    "max_dataset_bytes",
    "association_request_timeout_seconds",
    "acse_timeout_seconds",
    "dimse_timeout_seconds",
    "network_timeout_seconds",
    "duplicate_policy",
)


# -- what the code says ---------------------------------------------------------------------


def uid_name(uid: str) -> str:
    """The standard name of ``uid`` (pydicom's dictionary), or the UID for an unknown one."""
    return UID(uid).name or uid


def scp_contexts() -> list[tuple[str, tuple[str, ...]]]:
    """``(abstract syntax, transfer syntaxes)`` of the contexts the receiver supports, in
    the order ``Receiver`` adds them (Verification with pynetdicom's default syntaxes)."""
    verification = build_context(Verification)
    return [
        (str(Verification), tuple(str(s) for s in verification.transfer_syntax)),
        *((uid, scp_transfer_syntaxes()) for uid in register_storage_sop_classes()),
    ]


def scp_transfer_syntaxes() -> tuple[str, ...]:
    return tuple(ACCEPTED_TRANSFER_SYNTAXES)


def standard_codes() -> Iterator[tuple[StandardCode, str]]:
    """The ``pydicom`` codes ``dicom_node.output.codes`` defines, with the constant's name.

    ``KEY_OBJECT_TITLES`` (all of CID 7010, a lookup table) and the refused titles (never
    written; a table of their own) are left out: the titles the node writes are the
    ones the pipelines name."""
    for name, value in vars(codes).items():
        if not name.isupper() or name in ("KEY_OBJECT_TITLES", "KEY_OBJECT_REFUSED_TITLES"):
            continue
        if isinstance(value, StandardCode):
            yield value, name
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(item, StandardCode):
                    yield item, f"{name}[{key}]"


def literal_codes(packages: Iterable[str] = CODE_PACKAGES) -> Iterator[tuple[str, str, str, str]]:
    """``(value, scheme, meaning, module)`` of every ``Code(...)`` call with literal
    arguments in the sources of ``packages`` (found by parsing, nothing is imported)."""
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Code"
                ):
                    continue
                args = [*node.args, *(k.value for k in node.keywords)]
                if len(args) == 3 and all(
                    isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args
                ):
                    value, scheme, meaning = (str(a.value) for a in args)  # type: ignore[attr-defined]
                    yield value, scheme, meaning, module


# -- tables ---------------------------------------------------------------------------------


def _table(header: tuple[str, ...], rows: Iterable[Iterable[object]]) -> str:
    def line(cells: Iterable[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [line(header), line("---" for _ in header), *(line(r) for r in rows)]
    return "\n".join(lines) + "\n"


def _syntax_names(syntaxes: Iterable[str]) -> str:
    return ", ".join(uid_name(str(s)) for s in syntaxes)


def _scp_sop_classes() -> str:
    extra = set(EXTRA_STORAGE_SOP_CLASSES)
    rows = []
    for uid, syntaxes in scp_contexts():
        service = "Verification" if uid == str(Verification) else "Storage"
        shown = "all of 2.3" if syntaxes == scp_transfer_syntaxes() else _syntax_names(syntaxes)
        note = "added by the node (not in pynetdicom's list)" if uid in extra else ""
        rows.append((uid_name(uid), f"`{uid}`", service, shown, note))
    return f"{len(rows)} SOP classes, all as SCP only.\n\n" + _table(
        ("SOP class", "UID", "service", "transfer syntaxes", "note"), rows
    )


def _scp_transfer_syntaxes() -> str:
    rows = [
        (n, uid_name(uid), f"`{uid}`") for n, uid in enumerate(scp_transfer_syntaxes(), start=1)
    ]
    return _table(("preference", "transfer syntax", "UID"), rows)


def _scp_statuses() -> str:
    rows = [(f"`0x{s.value:04X}`", s.name) for s in sorted(StoreStatus, key=lambda s: s.value)]
    return _table(("status", "meaning (`StoreStatus`)"), rows)


def _scu_contexts() -> str:
    rows: list[tuple[str, ...]] = []
    for what, context in (
        ("C-ECHO (`dicom-node echo`)", build_context(Verification)),
        ("C-FIND (retrieval)", find_context()),
        ("C-MOVE (retrieval)", move_context()),
        ("C-GET (retrieval)", get_context()),
    ):
        uid = str(context.abstract_syntax)
        rows.append(
            (what, f"{uid_name(uid)} (`{uid}`)", "SCU", _syntax_names(context.transfer_syntax))
        )
    for kind, (uid, _modality, _what) in OUTPUT_OBJECTS.items():
        rows.append(
            (f"C-STORE of results ({kind})", f"{uid_name(uid)} (`{uid}`)", "SCU", "as stored")
        )
    return _table(("use", "SOP class", "role", "transfer syntaxes proposed"), rows)


def _output_objects() -> str:
    rows = [
        (f"`{kind}`", uid_name(uid), f"`{uid}`", modality, what)
        for kind, (uid, modality, what) in OUTPUT_OBJECTS.items()
    ]
    return _table(("kind", "SOP class", "UID", "Modality", "template / modules"), rows)


def _coded_concepts() -> str:
    seen: dict[tuple[str, str], tuple[str, set[str]]] = {}

    def add(value: str, scheme: str, meaning: str, where: str) -> None:
        seen.setdefault((scheme, value), (meaning, set()))[1].add(where)

    for code, name in standard_codes():
        add(code.value, code.scheme_designator, code.meaning, f"output.codes.{name}")
    for ucum, meaning in codes.UCUM_MEANINGS.items():
        add(ucum, "UCUM", meaning, "output.codes.UCUM_MEANINGS")
    for value, scheme, meaning, module in literal_codes():
        add(value, scheme, meaning, module.removeprefix("dicom_node."))
    rows = [
        (f"`{value}`", scheme, meaning, ", ".join(f"`{w}`" for w in sorted(where)))
        for (scheme, value), (meaning, where) in sorted(
            seen.items(), key=lambda item: (item[0][0] == codes.PRIVATE_SCHEME, item[0])
        )
    ]
    return _table(("code value", "scheme", "code meaning", "defined in"), rows)


def _refused_titles() -> str:
    rows = [
        (f"`{c.value}`", c.scheme_designator, c.meaning)
        for c in sorted(codes.KEY_OBJECT_REFUSED_TITLES, key=lambda c: c.value)
    ]
    return _table(("code value", "scheme", "code meaning"), rows)


def _private_scheme() -> str:
    return _table(
        ("Coding Scheme Designator", "Coding Scheme Name", "Responsible Organization"),
        [(codes.PRIVATE_SCHEME, codes.PRIVATE_SCHEME_NAME, codes.PRIVATE_SCHEME_ORGANIZATION)],
    )


def _uid_roots() -> str:
    default = OutputSettings.model_fields["uid_root"].default
    rows = [
        ("default `[output] uid_root`", f"`{default}`"),
        ("UUID-derived root (ISO/IEC 9834-8)", f"`{UUID_ROOT}`"),
    ]
    return _table(("what", "value"), rows)


def _character_sets() -> str:
    rows = [
        ("received objects", "stored as received; any Specific Character Set"),
        ("objects made, all text ASCII", "Specific Character Set of the source, or none"),
        ("objects made, any text not ASCII", f"`{base._CHARSET_UTF8}` (UTF-8)"),
    ]
    return _table(("objects", "Specific Character Set (0008,0005)"), rows)


def _association_policy() -> str:
    rows = []
    for name in POLICY_SETTINGS:
        field = NodeSettings.model_fields[name]
        default = field.default
        shown = "none (anyone)" if default == () else f"`{default}`"
        rows.append((f"`{name}`", shown, field.description or ""))
    return _table(("setting", "default", "note"), rows)


SECTIONS: Mapping[str, Callable[[], str]] = {
    "scp-sop-classes": _scp_sop_classes,
    "scp-transfer-syntaxes": _scp_transfer_syntaxes,
    "scp-statuses": _scp_statuses,
    "scu-contexts": _scu_contexts,
    "association-policy": _association_policy,
    "output-objects": _output_objects,
    "coded-concepts": _coded_concepts,
    "private-scheme": _private_scheme,
    "refused-key-object-titles": _refused_titles,
    "uid-roots": _uid_roots,
    "character-sets": _character_sets,
}


# -- the document ---------------------------------------------------------------------------


def sections_in(text: str) -> list[str]:
    return [m.group("name") for m in _SECTION.finditer(text)]


def render(text: str) -> str:
    """``text`` with every generated section made again from the code.

    Raises ``ValueError`` for a section this module does not know, and for a section it
    makes that ``text`` lacks (so a new table cannot be left out of the document)."""
    names = sections_in(text)
    unknown = sorted(set(names) - set(SECTIONS))
    missing = sorted(set(SECTIONS) - set(names))
    if unknown or missing:
        raise ValueError(f"generated sections unknown: {unknown}, missing: {missing}")
    made = {name: make() for name, make in SECTIONS.items()}
    return _SECTION.sub(
        lambda m: m.group(1) + "\n" + made[m.group("name")] + "\n" + m.group(4), text
    )


def check_output_kinds() -> None:
    """Every kind the encoder makes has its row in ``OUTPUT_OBJECTS``."""
    kinds = set(get_args(base.OutputKind))
    if kinds != set(OUTPUT_OBJECTS):
        raise ValueError(f"output kinds {sorted(kinds)} != documented {sorted(OUTPUT_OBJECTS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dicom_node.conformance", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the document is stale")
    parser.add_argument("path", nargs="?", type=Path, default=DOCUMENT)
    args = parser.parse_args(argv)
    check_output_kinds()
    current = args.path.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print(f"{args.path} is stale: run python -m dicom_node.conformance", file=sys.stderr)
            return 1
        return 0
    if fresh != current:
        args.path.write_text(fresh)
        print(f"rewrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
