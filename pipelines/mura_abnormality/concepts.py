"""The pipeline's name, its runtimes and the coded concepts it reports (no torch here).

Standard codes where one fits: the verdict is a DCM "Finding" (121071) whose value is
SNOMED CT "Abnormal" (263654008) or "Normal" (17621005), the two values of PS3.16 CID 222
"Normality Codes"; the Key Object Selection's title is DCM "Of Interest" (113000, CID
7010). No standard code names "the model's probability that a study (or one view) is
abnormal" or its decision threshold; those use the node's private scheme ``99DCMNODE``.
"""

from __future__ import annotations

from typing import Literal, get_args

from pipelines.contract import Code

PIPELINE_NAME = "mura_abnormality"

Runtime = Literal["auto", "torch", "onnxruntime"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)

FINDING = Code("121071", "DCM", "Finding")
ABNORMAL = Code("263654008", "SCT", "Abnormal")
NORMAL = Code("17621005", "SCT", "Normal")
STUDY_PROBABILITY = Code("MURA-STUDY-P", "99DCMNODE", "Probability of an abnormal study")
VIEW_PROBABILITY = Code("MURA-VIEW-P", "99DCMNODE", "Probability of an abnormal view")
THRESHOLD = Code("MURA-THRESHOLD", "99DCMNODE", "Abnormal study probability threshold")
KEY_OBJECTS_TITLE = Code("113000", "DCM", "Of Interest")

__all__ = [
    "ABNORMAL",
    "FINDING",
    "KEY_OBJECTS_TITLE",
    "NORMAL",
    "PIPELINE_NAME",
    "RUNTIMES",
    "STUDY_PROBABILITY",
    "THRESHOLD",
    "VIEW_PROBABILITY",
    "Runtime",
]
