"""Secondary Capture images of a result, written and read back.

Sources are real: pydicom's CT and MR test slices, and a synthetic 16-bit DX hand film
(two instances) built with complete patient, study, series and equipment modules —
pydicom's own test files have no CR/DX radiograph. They are built in
``tests/support/datasets.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from pipelines import DerivedImage, PipelineResult
from tests.support.datasets import dx_sources, synthetic_dx
from tests.support.output import encode_and_write
from tests.support.pipelines import SC_KINDS, demo_result

# -- SC ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", sorted(SC_KINDS), ids=SC_KINDS.values())
def test_sc_round_trip(sources: list[Dataset], index: int, tmp_path: Path) -> None:
    result = demo_result(sources, "3")
    image = result.derived_images[index]
    written = [(o, p) for o, p in encode_and_write(result, sources, tmp_path) if o.kind == "sc"]
    assert len(written) == len(result.derived_images)
    output, path = written[index]

    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == SecondaryCaptureImageStorage == output.sop_class_uid
    assert ds.SOPInstanceUID == output.sop_instance_uid
    assert ds.SeriesInstanceUID == output.series_instance_uid
    assert ds.Modality == "OT"
    assert ds.SeriesDescription == "dicom-node reporting_demo v3 - images"
    assert ds.InstanceNumber == index + 1
    assert ds.DerivationDescription == image.description == output.description
    np.testing.assert_array_equal(ds.pixel_array, image.pixels)
    if image.pixels.ndim == 3:
        assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated) == (
            "RGB",
            3,
            8,
        )
    else:
        bits = 8 if image.pixels.dtype == np.uint8 else 16
        assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("MONOCHROME2", 1)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (bits, bits, bits - 1)
    assert ds.BurnedInAnnotation == ("YES" if image.burned_in_text else "NO")
    if image.pixel_spacing is None:
        assert "PixelSpacing" not in ds
    else:
        assert [float(v) for v in ds.PixelSpacing] == list(image.pixel_spacing)
    assert ds.PatientOrientation in ("", None, [])  # not known for a derived picture
    referenced = [item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence]
    if image.source_sop_instance_uid is None:
        assert referenced == [s.SOPInstanceUID for s in sources]  # a plot: all of them
    else:
        assert referenced == [image.source_sop_instance_uid]
    for item in ds.SourceImageSequence:
        purpose = item.PurposeOfReferenceCodeSequence[0]
        assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("121322", "DCM")
    assert (ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture) == ("20260301", "093015")


def test_sc_copies_known_orientation_and_laterality(tmp_path: Path) -> None:
    film = synthetic_dx(1)
    image = DerivedImage(
        np.zeros((8, 8), np.uint8),
        "grayscale",
        "film",
        film.SOPInstanceUID,
        patient_orientation=("A", "F"),
    )
    ((output, path),) = encode_and_write(
        PipelineResult("p", "1", derived_images=(image,)), [film], tmp_path
    )
    ds = pydicom.dcmread(path)
    assert ds.PatientOrientation == ["A", "F"]
    assert ds.Laterality == "L"  # from the film's ImageLaterality
    assert ds.BodyPartExamined == "HAND"


def test_text_outside_ascii_switches_to_utf8(tmp_path: Path) -> None:
    sources = dx_sources()
    image = DerivedImage(np.zeros((8, 8), np.uint8), "grayscale", "Winkel 93° – korrigiert")
    ((output, path),) = encode_and_write(
        PipelineResult("p", "1", derived_images=(image,)), sources, tmp_path
    )
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.DerivationDescription == "Winkel 93° – korrigiert"
    assert ds.PatientName == sources[0].PatientName
