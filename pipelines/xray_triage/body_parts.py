"""The X-ray types module II tells apart, and the header values that name each (no torch).

Paper 004 (Urinbayev et al.), Table I: fourteen types of projection radiograph. Each type
has the Body Part Examined value the node writes for it (PS3.16 Annex L where the term
exists) and the header values that mean the same type (``aliases``), so that routing can
tell a header it understands from one it does not, and a header that names another type
from one that agrees with the image. The node's routing reads this module without
importing the network (``dicom_node/ingest/route_by_image.py``).

The triage result's ``summary`` keys are named here too, so the pipeline that writes them
and the routing that reads them cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NOT_XRAY",
    "XRAY_TYPES",
    "SUMMARY",
    "TriageSummaryKeys",
    "body_part_examined_of",
    "type_named_by_header",
]


@dataclass(frozen=True)
class XrayType:
    name: str
    body_part_examined: str
    aliases: tuple[str, ...]


#: Module II's classes, in the paper's Table I / confusion-matrix order ("Back" is spine).
XRAY_TYPES: tuple[XrayType, ...] = (
    XrayType("ankle", "ANKLE", ("ANKLE",)),
    XrayType(
        "spine",
        "SPINE",
        ("SPINE", "CSPINE", "TSPINE", "LSPINE", "SSPINE", "BACK", "COCCYX", "SACRUM"),
    ),
    XrayType("chest", "CHEST", ("CHEST", "THORAX", "LUNG", "RIB", "RIBS")),
    XrayType("elbow", "ELBOW", ("ELBOW",)),
    XrayType("finger", "FINGER", ("FINGER", "THUMB")),
    XrayType("foot", "FOOT", ("FOOT", "TOE", "HEEL", "CALCANEUS")),
    XrayType("forearm", "FOREARM", ("FOREARM",)),
    XrayType("hand", "HAND", ("HAND",)),
    XrayType("hip", "HIP", ("HIP", "PELVIS")),
    XrayType("humerus", "HUMERUS", ("HUMERUS", "ARM", "UPPER ARM")),
    XrayType("knee", "KNEE", ("KNEE", "PATELLA")),
    XrayType("shoulder", "SHOULDER", ("SHOULDER", "CLAVICLE", "SCAPULA")),
    XrayType("dental", "JAW", ("JAW", "TOOTH", "TEETH", "MANDIBLE", "MAXILLA", "DENTAL")),
    XrayType("wrist", "WRIST", ("WRIST",)),
)

#: Module I's other answer: a photo, a scanned document or a screenshot sent as CR/SC.
NOT_XRAY = "not_xray"

_BY_NAME = {t.name: t for t in XRAY_TYPES}
_BY_ALIAS = {alias: t.name for t in XRAY_TYPES for alias in t.aliases}


def _normalise(value: str) -> str:
    return " ".join(value.replace("_", " ").split()).upper()


def type_named_by_header(body_part_examined: str | None) -> str | None:
    """The X-ray type a Body Part Examined value names, or None (missing, empty, unknown)."""
    if body_part_examined is None:
        return None
    value = _normalise(body_part_examined)
    if not value:
        return None
    return _BY_ALIAS.get(value)


def body_part_examined_of(xray_type: str) -> str:
    """The Body Part Examined value the node uses for an X-ray type."""
    try:
        return _BY_NAME[xray_type].body_part_examined
    except KeyError:
        raise ValueError(
            f"unknown X-ray type {xray_type!r}; one of {', '.join(_BY_NAME)}"
        ) from None


@dataclass(frozen=True)
class TriageSummaryKeys:
    """Keys of an ``xray_triage`` result's summary (one decision for the series)."""

    #: bool: module I says the series' films are radiographs.
    is_xray: str = "is_xray"
    #: float: module I's mean probability of "X-ray" over the series' films.
    xray_probability: str = "xray_probability"
    #: str | None: module II's type (an ``XRAY_TYPES`` name); None when not an X-ray.
    xray_type: str = "xray_type"
    #: str | None: that type's Body Part Examined value.
    body_part_examined: str = "body_part_examined"
    #: float: module II's mean probability of that type.
    type_probability: str = "type_probability"
    #: str | None: the header's Body Part Examined, as received.
    header_body_part: str = "header_body_part"
    #: str | None: the type the header names (``type_named_by_header``).
    header_type: str = "header_type"
    #: bool: the header names another type and module II is confident (card threshold).
    header_disagrees: str = "header_disagrees"


SUMMARY = TriageSummaryKeys()
