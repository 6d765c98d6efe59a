"""Secondary Capture images: one per derived image of a result.

Grayscale (MONOCHROME2, 8 or 16 bits) or RGB, with the source images it was made from,
Burned In Annotation and, where known, Pixel Spacing.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DS

from dicom_node.output import codes
from dicom_node.output.base import EncodedOutput, Run
from dicom_node.output.sources import blank_copy, copy_laterality_and_body_part
from pipelines.contract import DerivedImage


def secondary_capture(run: Run, index: int, image: DerivedImage) -> EncodedOutput:
    source = run.source_for(
        image.source_sop_instance_uid, None, f"derived image {index + 1} ({image.kind})"
    )
    referenced = [source] if source is not None else list(run.sources)
    reference = source if source is not None else run.sources[0]
    pixels = np.ascontiguousarray(image.pixels)
    color = image.is_color
    bits = 8 if pixels.dtype == np.uint8 else 16
    texts: list[str] = [image.description, run.device.manufacturer]
    kwargs = run.common_kwargs("images", texts)
    series_uid = run.series_uid("sc")
    sop_uid = run.instance_uid("sc", index)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=blank_copy(reference),
        pixel_array=pixels,
        photometric_interpretation="RGB" if color else "MONOCHROME2",
        bits_allocated=bits,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=run.series_number(series_uid),
        sop_instance_uid=sop_uid,
        instance_number=index + 1,
        manufacturer=run.device.manufacturer,
        # highdicom insists on an orientation; an unknown one is emptied below.
        patient_orientation=image.patient_orientation or ("L", "F"),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        **kwargs,
    )
    if image.patient_orientation is None:
        sc.PatientOrientation = []  # Type 2: empty, unknown
    copy_laterality_and_body_part(sc, reference)
    sc.DateOfSecondaryCapture = run.date
    sc.TimeOfSecondaryCapture = run.time
    sc.BurnedInAnnotation = "YES" if image.burned_in_text else "NO"
    sc.DerivationDescription = image.description[:1024]
    if image.pixel_spacing is not None:
        sc.PixelSpacing = [DS(s, auto_format=True) for s in image.pixel_spacing]
    if not color and bits == 16:
        low, high = int(pixels.min()), int(pixels.max())
        sc.WindowCenter = DS((low + high + 1) / 2, auto_format=True)
        sc.WindowWidth = DS(max(high - low + 1, 1), auto_format=True)
    sc.SourceImageSequence = [_source_image_item(ds) for ds in referenced]
    run.finish(sc, reference, texts)
    return EncodedOutput("sc", sc, str(sc.SOPClassUID), sop_uid, series_uid, image.description)


def _source_image_item(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [codes.coded(codes.SOURCE_IMAGE_PURPOSE)]
    return item


__all__ = ["secondary_capture"]
