"""An SR document's content tree as indented lines people can read on a page.

Only the content tree is shown (the header holds the patient's name and ID); person
names in the tree (PNAME items) are shown only when the pages may show identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

MAX_LINES = 400


@dataclass(frozen=True)
class Line:
    depth: int
    name: str
    value: str


def _meaning(item: Any, keyword: str) -> str:
    sequence = item.get(keyword)
    if sequence:
        return str(sequence[0].get("CodeMeaning", sequence[0].get("CodeValue", "")))
    return ""


def _value(item: Any, show_names: bool) -> str:
    kind = str(item.get("ValueType", ""))
    if kind == "TEXT":
        return str(item.get("TextValue", ""))
    if kind == "CODE":
        return _meaning(item, "ConceptCodeSequence")
    if kind == "NUM":
        measured = item.get("MeasuredValueSequence")
        if not measured:
            return "(no value)"
        unit = measured[0].get("MeasurementUnitsCodeSequence")
        unit_text = str(unit[0].CodeValue) if unit else ""
        return f"{measured[0].NumericValue} {unit_text}".strip()
    if kind == "UIDREF":
        return str(item.get("UID", ""))
    if kind in ("IMAGE", "COMPOSITE"):
        ref = item.get("ReferencedSOPSequence")
        return f"{kind.lower()} {ref[0].ReferencedSOPInstanceUID}" if ref else kind.lower()
    if kind == "PNAME":
        return str(item.get("PersonName", "")) if show_names else "(name not shown)"
    if kind in ("DATETIME", "DATE", "TIME"):
        return str(item.get(kind.title().replace("time", "Time"), ""))
    return ""


def _walk(items: Any, depth: int, show_names: bool, out: list[Line]) -> None:
    for item in items or ():
        if len(out) >= MAX_LINES:
            return
        out.append(Line(depth, _meaning(item, "ConceptNameCodeSequence"), _value(item, show_names)))
        _walk(item.get("ContentSequence"), depth + 1, show_names, out)


def sr_lines(path: Path, show_names: bool = False) -> list[Line]:
    dataset = pydicom.dcmread(path)
    out = [Line(0, _meaning(dataset, "ConceptNameCodeSequence"), "")]
    _walk(dataset.get("ContentSequence"), 1, show_names, out)
    return out
