"""The seven upper-extremity regions of MURA and how a film's header names them.

MURA (Rajpurkar et al.; paper 001, Ghalyan et al.) has studies of the elbow, finger,
forearm, hand, humerus, shoulder and wrist. The node knows a film's region from its
Body Part Examined (0018,0015; PS3.16 Annex L's defined terms are the upper-case names
below), or else from a region's name in the series or study description. Each region has
its SNOMED CT code from CID 4031 "Common Anatomic Regions", which the SR writes as the
finding site of a view's probability.

No torch or numpy here: the pipeline class imports this module when the node loads it.
"""

from __future__ import annotations

import re

from pydicom.dataset import Dataset

from pipelines.contract import Code

#: MURA's study types, in its own order (XR_ELBOW ... XR_WRIST).
REGIONS: tuple[str, ...] = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")
UNKNOWN_REGION = "unknown"

#: SNOMED CT code of each region (PS3.16 CID 4031).
REGION_CODES: dict[str, Code] = {
    "elbow": Code("16953009", "SCT", "Elbow joint"),
    "finger": Code("7569003", "SCT", "Finger"),
    "forearm": Code("14975008", "SCT", "Forearm"),
    "hand": Code("85562004", "SCT", "Hand"),
    "humerus": Code("85050009", "SCT", "Humerus"),
    "shoulder": Code("16982005", "SCT", "Shoulder"),
    "wrist": Code("74670003", "SCT", "Wrist joint"),
}

# Words in a description that name a region (longest first: "forearm" before "arm").
_WORDS: tuple[tuple[str, str], ...] = (
    ("forearm", "forearm"),
    ("humerus", "humerus"),
    ("shoulder", "shoulder"),
    ("finger", "finger"),
    ("thumb", "finger"),
    ("elbow", "elbow"),
    ("wrist", "wrist"),
    ("hand", "hand"),
)


def normalise_region(name: str | None) -> str:
    """A region name as MURA spells it (``"XR_WRIST"``, ``"WRIST"``, ``"wrist"`` → ``"wrist"``),
    or ``"unknown"``."""
    if not name:
        return UNKNOWN_REGION
    text = str(name).strip().lower()
    if text.startswith("xr_"):
        text = text[3:]
    return text if text in REGIONS else UNKNOWN_REGION


def region_of(header: Dataset) -> str:
    """The region of a film: its Body Part Examined, else a region named in its series or
    study description, else ``"unknown"``."""
    region = normalise_region(str(header.get("BodyPartExamined", "") or ""))
    if region != UNKNOWN_REGION:
        return region
    for keyword in ("SeriesDescription", "StudyDescription", "ProtocolName"):
        text = str(header.get(keyword, "") or "").lower()
        for word, found in _WORDS:
            if re.search(rf"\b{word}s?\b", text):
                return found
    return UNKNOWN_REGION


__all__ = ["REGIONS", "REGION_CODES", "UNKNOWN_REGION", "normalise_region", "region_of"]
