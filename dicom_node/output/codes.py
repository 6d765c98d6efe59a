"""Every coded concept the node writes into DICOM objects, in one place.

Standard codes come from pydicom's code dictionary (DICOM PS3.16: DCM, SCT, LN, UCUM).
Where no standard code exists the node uses its own private coding scheme, designated
``99DCMNODE`` (PS3.16 8.2: private schemes start with "99"). Today the only private codes
are the ones ``uncoded_measurement`` makes for pipeline measurements that come without a
concept (see there); every object that carries a ``99DCMNODE`` code also carries
``CODING_SCHEME`` in its Coding Scheme Identification Sequence, so a reader can tell who
is responsible for it.

The constants are plain ``pydicom.sr.coding.Code`` values; ``coded`` turns one into a
fresh highdicom ``CodedConcept`` (a dataset) each time, so no two objects share, and
nothing can change, a module-level dataset. Concepts that a pipeline reports (what it
measured, what it found) come from the pipeline itself as ``pipelines.Code`` values;
``concept`` converts them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import Collection, codes
from pydicom.sr.coding import Code as StandardCode

from pipelines.contract import Code

# -- the node's private coding scheme ------------------------------------------------------

PRIVATE_SCHEME = "99DCMNODE"
PRIVATE_SCHEME_NAME = "dicom-node local codes"
PRIVATE_SCHEME_ORGANIZATION = "dicom-node"


def coding_scheme() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification item that documents ``99DCMNODE``."""
    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name=PRIVATE_SCHEME_NAME,
        responsible_organization=PRIVATE_SCHEME_ORGANIZATION,
    )


# -- SR document (TID 1500 Measurement Report) ---------------------------------------------

#: Document title, CID 7021 "Measurement Report Document Titles".
REPORT_TITLE = codes.DCM.ImagingMeasurementReport
#: Observer type of the device observer context (TID 1002).
OBSERVER_TYPE_DEVICE = codes.DCM.Device
#: Procedure reported, CID 100 "Quantitative Diagnostic Imaging Procedures", by Modality.
PROCEDURE_BY_MODALITY: Mapping[str, StandardCode] = {
    "CT": codes.LN.CTUnspecifiedBodyRegion,
    "MR": codes.LN.MRIUnspecifiedBodyRegion,
    "CR": codes.LN.XRUnspecifiedBodyRegion,
    "DX": codes.LN.XRUnspecifiedBodyRegion,
    "RG": codes.LN.XRUnspecifiedBodyRegion,
    "NM": codes.LN.NMUnspecifiedBodyRegion,
    "PT": codes.LN.PETUnspecifiedBodyRegion,
}
#: Procedure reported when the modality has no more specific code.
PROCEDURE_FALLBACK = codes.SCT.ImagingProcedure
#: Concept of the numeric item that carries a finding's probability.
PROBABILITY = codes.DCM.Probability

# -- Key Object Selection documents (TID 2010) ---------------------------------------------

#: CID 7010 "Key Object Selection Document Title": the titles a selection may have.
KEY_OBJECT_TITLES: Mapping[tuple[str, str], StandardCode] = {
    (c.scheme_designator, c.value): c for c in Collection("CID7010").concepts.values()
}
#: The usual title of a selection of images a reader should look at first.
KEY_OBJECT_OF_INTEREST = codes.DCM.OfInterest
#: Concept of the TEXT item that holds a selection's description (TID 2010).
KEY_OBJECT_DESCRIPTION = codes.DCM.KeyObjectDescription
#: Titles of CID 7010 the node never writes: IHE IOCM rejection notes (a PACS that
#: supports them hides or deletes the images referenced) and manifests (which claim to
#: list a whole study or acquisition, not a selection).
KEY_OBJECT_REFUSED_TITLES: frozenset[StandardCode] = frozenset(
    {
        codes.DCM.RejectedForQualityReasons,
        codes.DCM.RejectedForPatientSafetyReasons,
        codes.DCM.IncorrectModalityWorklistEntry,
        codes.DCM.DataRetentionPolicyExpired,
        codes.DCM.Manifest,
        codes.DCM.SignedManifest,
        codes.DCM.CompleteStudyContent,
        codes.DCM.SignedCompleteStudyContent,
        codes.DCM.CompleteAcquisitionContent,
        codes.DCM.SignedCompleteAcquisitionContent,
    }
)

# -- Secondary Capture images --------------------------------------------------------------

#: Purpose of reference of a source image, CID 7202 "Source Image Purposes of Reference".
SOURCE_IMAGE_PURPOSE = codes.DCM.SourceImageForImageProcessingOperation

# -- units (UCUM) --------------------------------------------------------------------------

#: Code meanings of the UCUM units the pipelines use; other units mean themselves.
UCUM_MEANINGS: Mapping[str, str] = {
    "1": "no units",
    "%": "percent",
    "deg": "degree",
    "rad": "radian",
    "mo": "month",
    "a": "year",
    "wk": "week",
    "d": "day",
    "mm": "millimeter",
    "cm": "centimeter",
    "mm2": "square millimeter",
    "mm3": "cubic millimeter",
    "ms": "millisecond",
    "s": "second",
    "[hnsf'U]": "Hounsfield unit",
}
#: The unit of a probability (a ratio in [0, 1]).
PROBABILITY_UNIT = codes.UCUM.NoUnits

# -- conversions ---------------------------------------------------------------------------


def coded(code: StandardCode) -> CodedConcept:
    """A fresh highdicom coded concept for one of the constants above."""
    return CodedConcept.from_code(code)


def concept(code: Code) -> CodedConcept:
    """A pipeline's ``Code`` as a highdicom coded concept."""
    return CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def unit(ucum: str) -> CodedConcept:
    """The coded form of a UCUM unit code (value and meaning as PS3.16 writes them)."""
    if ucum == "1":
        return coded(PROBABILITY_UNIT)
    return CodedConcept(value=ucum, scheme_designator="UCUM", meaning=UCUM_MEANINGS.get(ucum, ucum))


def uncoded_measurement(name: str) -> Code:
    """The private concept for a measurement a pipeline reported without a code.

    The code value is ``"M"`` plus the first 12 hex digits of the SHA-256 of the name,
    so the same name always gets the same code; the meaning is the name itself (cut to
    the 64 characters a Code Meaning holds).
    """
    digest = hashlib.sha256(name.strip().encode("utf-8")).hexdigest()[:12]
    return Code(value=f"M{digest.upper()}", scheme=PRIVATE_SCHEME, meaning=name.strip()[:64])


def is_private(code: Code) -> bool:
    return code.scheme == PRIVATE_SCHEME


def key_object_title(title: Code) -> StandardCode:
    """The CID 7010 code of a key object selection's ``title`` (with its standard meaning).

    Raises ``ValueError`` for a code that is not in CID 7010, and for the titles of
    ``KEY_OBJECT_REFUSED_TITLES`` (rejection notes and manifests).
    """
    standard = KEY_OBJECT_TITLES.get((title.scheme, title.value))
    if standard is None:
        raise ValueError(
            f"title {title} ({title.meaning}) is not a Key Object Selection Document Title "
            "of CID 7010, e.g. DCM:113000 (Of Interest)"
        )
    if standard in KEY_OBJECT_REFUSED_TITLES:
        raise ValueError(
            f"title {title} ({standard.meaning}) is a rejection note or manifest; the node "
            "writes key object selections of images to look at, never those"
        )
    return standard


def procedure_reported(modality: str | None) -> CodedConcept:
    """The TID 1500 "Procedure reported" for a source series of ``modality``."""
    return coded(PROCEDURE_BY_MODALITY.get((modality or "").upper(), PROCEDURE_FALLBACK))
