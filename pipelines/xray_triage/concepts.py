"""The pipeline's name and the coded concepts it reports (no torch here).

Standard codes where one fits: each X-ray type's body region is its SNOMED CT code from
PS3.16 CID 4031 "Common Anatomic Regions" (the codes ``mura_abnormality`` and
``ct_body_part`` already use for the same regions), and module I's answer is SNOMED CT
"Yes" (373066001) or "No" (373067005), the values of CID 230 "Yes-No". No standard code
names "the X-ray type a classifier sees", "is this image a radiograph", a classifier's
probabilities or a disagreement between a header and the image: those concepts use the
node's private scheme ``99DCMNODE``. A disagreement's value is one private code per pair
of types (``XT-HDR-<header>-<image>`` with three-letter abbreviations, within the 16
characters of a DICOM Code Value), whose meaning names both types.
"""

from __future__ import annotations

from pipelines.contract import Code
from pipelines.xray_triage.body_parts import XRAY_TYPES

PIPELINE_NAME = "xray_triage"

#: SNOMED CT code of each X-ray type's body region (CID 4031).
TYPE_CODES: dict[str, Code] = {
    "ankle": Code("70258002", "SCT", "Ankle joint"),
    "spine": Code("421060004", "SCT", "Spine"),
    "chest": Code("816094009", "SCT", "Chest"),
    "elbow": Code("16953009", "SCT", "Elbow joint"),
    "finger": Code("7569003", "SCT", "Finger"),
    "foot": Code("56459004", "SCT", "Foot"),
    "forearm": Code("14975008", "SCT", "Forearm"),
    "hand": Code("85562004", "SCT", "Hand"),
    "hip": Code("24136001", "SCT", "Hip joint"),
    "humerus": Code("85050009", "SCT", "Humerus"),
    "knee": Code("72696002", "SCT", "Knee"),
    "shoulder": Code("16982005", "SCT", "Shoulder"),
    "dental": Code("661005", "SCT", "Jaw region"),
    "wrist": Code("74670003", "SCT", "Wrist joint"),
}
assert tuple(TYPE_CODES) == tuple(t.name for t in XRAY_TYPES)

#: Three letters per type, for the disagreement codes (unique).
_ABBREVIATIONS = {name: name[:3].upper() for name in TYPE_CODES}
assert len(set(_ABBREVIATIONS.values())) == len(_ABBREVIATIONS)

YES = Code("373066001", "SCT", "Yes")
NO = Code("373067005", "SCT", "No")

#: Module I's finding: "Image is a radiograph" = Yes / No, with its probability.
IS_XRAY = Code("XT-IS-XRAY", "99DCMNODE", "Image is a projection radiograph")
#: Module II's finding: the X-ray type the image shows = a body region (SNOMED CT).
XRAY_TYPE = Code("XT-TYPE", "99DCMNODE", "X-ray type seen in the image")
#: The type the header's Body Part Examined names, reported beside a disagreement.
HEADER_TYPE = Code("XT-HEADER-TYPE", "99DCMNODE", "X-ray type named by Body Part Examined")
#: A confident disagreement of header and image; its value names both types.
HEADER_DISAGREES = Code("XT-DISAGREES", "99DCMNODE", "Body Part Examined disagrees with image")

XRAY_PROBABILITY = Code("XT-XRAY-P", "99DCMNODE", "Probability that the image is an X-ray")
TYPE_PROBABILITY = Code("XT-TYPE-P", "99DCMNODE", "Probability of the X-ray type")
XRAY_THRESHOLD = Code("XT-XRAY-THR", "99DCMNODE", "X-ray probability threshold")
DISAGREEMENT_THRESHOLD = Code(
    "XT-DISAGREE-THR", "99DCMNODE", "Header disagreement confidence threshold"
)


def disagreement_value(header_type: str, image_type: str) -> Code:
    """The coded value of a disagreement: the header names ``header_type``, the image
    shows ``image_type``."""
    if header_type not in TYPE_CODES or image_type not in TYPE_CODES:
        raise ValueError(f"unknown X-ray type in {header_type!r} / {image_type!r}")
    return Code(
        f"XT-HDR-{_ABBREVIATIONS[header_type]}-{_ABBREVIATIONS[image_type]}",
        "99DCMNODE",
        f"Header says {header_type}, image shows {image_type}",
    )


__all__ = [
    "DISAGREEMENT_THRESHOLD",
    "HEADER_DISAGREES",
    "HEADER_TYPE",
    "IS_XRAY",
    "NO",
    "PIPELINE_NAME",
    "TYPE_CODES",
    "TYPE_PROBABILITY",
    "XRAY_PROBABILITY",
    "XRAY_THRESHOLD",
    "XRAY_TYPE",
    "YES",
    "disagreement_value",
]
