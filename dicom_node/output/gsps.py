"""Grayscale Softcopy Presentation States (GSPS): one per presentation transform of a result.

A presentation state references its one source image and tells a viewer to show it
rotated (Image Rotation, clockwise) and/or flipped (Image Horizontal Flip), the source's
pixels untouched. The source's grayscale display is carried over unchanged (see
``presentation_state``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.output.base import EncodedOutput, Run
from dicom_node.output.sources import EncodeError, blank_copy, copy_laterality_and_body_part
from pipelines.contract import PresentationTransform

#: Content Label of the presentation states (CS: A-Z, 0-9, space and underscore, at most
#: 16 characters): what a viewer lists to choose between presentation states.
GSPS_CONTENT_LABEL = "ORIENTATION"

# The source's grayscale display: copied into a presentation state as they are, and kept
# away from highdicom (whose own extraction handles only some of their forms).
_MODALITY_LUT_KEYWORDS = ("RescaleIntercept", "RescaleSlope", "RescaleType", "ModalityLUTSequence")
_VOI_LUT_KEYWORDS = (
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
)


def presentation_state(run: Run, index: int, transform: PresentationTransform) -> EncodedOutput:
    """A GSPS that shows one source image rotated and/or flipped.

    The display of the source is kept as it is apart from the spatial transformation:
    the source's rescale (or Modality LUT Sequence) becomes the Modality LUT module;
    its window centre/width values (with explanation and VOI LUT Function) and/or VOI
    LUT Sequence become the one Softcopy VOI LUT item, which applies to the one image
    referenced; the Presentation LUT Shape is the source's (IDENTITY or INVERSE) or,
    where the source has none, INVERSE for MONOCHROME1 and IDENTITY for MONOCHROME2,
    since a presentation state's Presentation LUT replaces the inversion that
    MONOCHROME1 implies. A source without a window has no Softcopy VOI LUT module
    (the identity VOI transformation).

    The Displayed Area is the whole image (scale to fit), in the image's own pixel
    coordinates; as PS3.3 C.10.4 defines them, its top left and bottom right hand
    corners are the pixels that end up top left and bottom right *after* the spatial
    transformation, so for a rotation or flip they are other corners of the image.
    """
    what = f"presentation transform {index + 1}"
    source = run.source_for(transform.source_sop_instance_uid, None, what)
    assert source is not None  # a transform always names its source
    _check_grayscale(source, what)
    texts: list[str] = [transform.description, run.device.manufacturer]
    kwargs = run.common_kwargs("presentation", texts)
    # The GSPS IOD has no General Image module: no Content Date and Time.
    kwargs.pop("content_date", None)
    kwargs.pop("content_time", None)
    series_uid = run.series_uid("gsps")
    sop_uid = run.instance_uid("gsps", index)
    reference = blank_copy(source)
    for keyword in (*_MODALITY_LUT_KEYWORDS, *_VOI_LUT_KEYWORDS):
        if keyword in reference:
            del reference[keyword]
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[reference],
        series_instance_uid=series_uid,
        series_number=run.series_number(series_uid),
        sop_instance_uid=sop_uid,
        instance_number=index + 1,
        manufacturer=run.device.manufacturer,
        device_serial_number=None,  # type: ignore[arg-type]  # Type 3: not sent
        content_label=GSPS_CONTENT_LABEL,
        content_description=transform.description,
        presentation_lut_transformation=hd.PresentationLUTTransformation(
            presentation_lut_shape=_presentation_lut_shape(source)
        ),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        **kwargs,
    )
    # Set here, not through highdicom: its person-name check refuses a PN without a
    # caret, and an AE title has none.
    gsps.ContentCreatorName = f"{run.device.ae_title}^"
    gsps.PresentationCreationDate = run.date
    gsps.PresentationCreationTime = run.time
    # Spatial Transformation module (PS3.3 C.10.6): rotation first, then the flip.
    gsps.ImageRotation = transform.rotation_deg
    gsps.ImageHorizontalFlip = "Y" if transform.horizontal_flip else "N"
    gsps.DisplayedAreaSelectionSequence = [_displayed_area(source, transform)]
    copy_laterality_and_body_part(gsps, source)
    _copy_display(gsps, source)
    run.finish(gsps, source, texts)
    return EncodedOutput(
        "gsps", gsps, str(gsps.SOPClassUID), sop_uid, series_uid, transform.description
    )


def _check_grayscale(source: Dataset, what: str) -> None:
    """Refuse a source a grayscale presentation state cannot show."""
    photometric = str(source.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or source.get("SamplesPerPixel") != 1:
        raise EncodeError(
            f"{what}: instance {source.SOPInstanceUID} is not a grayscale image "
            f"(Photometric Interpretation {photometric or 'absent'})"
        )
    if not source.get("Rows") or not source.get("Columns"):
        raise EncodeError(f"{what}: instance {source.SOPInstanceUID} has no Rows or Columns")


def _presentation_lut_shape(source: Dataset) -> str:
    """IDENTITY or INVERSE, so that the presentation state keeps the source's polarity."""
    shape = str(source.get("PresentationLUTShape", ""))
    if shape in ("IDENTITY", "INVERSE"):
        return shape
    return "INVERSE" if source.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"


def _displayed_area_corners(
    rows: int, columns: int, rotation: int, flip: bool
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Top left and bottom right hand corners, (column, row), of the whole image.

    They are pixels of the image before the spatial transformation (1\\1 is its first
    pixel) that are shown top left and bottom right after it: a clockwise rotation by k
    quarter turns shows at each corner of the screen the image corner k places
    counter-clockwise of it, and a flip after it swaps left and right.
    """
    clockwise = ((1, 1), (columns, 1), (columns, rows), (1, rows))  # TL, TR, BR, BL
    turns = rotation // 90
    top_left = clockwise[((1 if flip else 0) - turns) % 4]
    bottom_right = clockwise[((3 if flip else 2) - turns) % 4]
    return top_left, bottom_right


def _displayed_area(source: Dataset, transform: PresentationTransform) -> Dataset:
    """The one Displayed Area Selection item: the whole image, scaled to fit."""
    top_left, bottom_right = _displayed_area_corners(
        int(source.Rows), int(source.Columns), transform.rotation_deg, transform.horizontal_flip
    )
    item = Dataset()
    item.DisplayedAreaTopLeftHandCorner = list(top_left)
    item.DisplayedAreaBottomRightHandCorner = list(bottom_right)
    item.PresentationSizeMode = "SCALE TO FIT"
    # The shape of the source's pixels, before the spatial transformation.
    spacing = source.get("PixelSpacing")
    if source.get("PixelAspectRatio"):
        item.PresentationPixelAspectRatio = [int(v) for v in source.PixelAspectRatio]
    elif spacing and len(spacing) == 2 and float(spacing[0]) != float(spacing[1]):
        item.PresentationPixelSpacing = list(spacing)
    else:
        item.PresentationPixelAspectRatio = [1, 1]
    return item


def _copy_elements(target: Dataset, source: Dataset, keywords: Iterable[str]) -> None:
    """The elements of ``source`` named ``keywords`` that have a value, copied into ``target``."""
    for keyword in keywords:
        if source.get(keyword) not in (None, ""):
            element = source[keyword]
            target.add(pydicom.DataElement(element.tag, element.VR, copy.deepcopy(element.value)))


def _copy_display(target: Dataset, source: Dataset) -> None:
    """The source's Modality LUT and VOI LUT into the presentation state, values unchanged.

    A Modality LUT Sequence wins over rescale values (as pydicom applies them; an image
    should not have both). A rescale without Rescale Type (a CT image, say) gets the one
    the presentation state needs (Type 1): HU for CT, US (unspecified) otherwise.
    """
    if source.get("ModalityLUTSequence"):
        _copy_elements(target, source, ["ModalityLUTSequence"])
    elif source.get("RescaleIntercept") is not None and source.get("RescaleSlope") is not None:
        _copy_elements(target, source, ["RescaleIntercept", "RescaleSlope", "RescaleType"])
        if "RescaleType" not in target:
            target.RescaleType = "HU" if source.get("Modality") == "CT" else "US"
    voi = Dataset()
    _copy_elements(voi, source, _VOI_LUT_KEYWORDS)
    has_window = "WindowCenter" in voi and "WindowWidth" in voi
    if not has_window:  # half a window, or a function without one: nothing to apply
        for keyword in (
            "WindowCenter",
            "WindowWidth",
            "WindowCenterWidthExplanation",
            "VOILUTFunction",
        ):
            if keyword in voi:
                del voi[keyword]
    if has_window or "VOILUTSequence" in voi:
        target.SoftcopyVOILUTSequence = [voi]


__all__ = ["GSPS_CONTENT_LABEL", "presentation_state"]
