"""Synthetic DICOM datasets shared by the tests: the building blocks and the encoder's sources.

``new_instance`` starts a dataset with its file meta and the SOP, study and series UIDs;
``set_monochrome_pixels`` fills the Image Pixel module of a one-sample image from a seeded
generator or a given array. The builders of the unit and integration tests
(``make_dataset``, ``write_instance``, ``make_series``) stand on these two.

The encoder's sources are real: pydicom's CT and MR test slices, and a synthetic 16-bit DX
hand film (``synthetic_dx``) built with complete patient, study, series and equipment
modules — pydicom's own test files have no CR/DX radiograph — and a multi-frame CT image
(a synthetic phantom converted to Legacy Converted Enhanced CT by highdicom).
``SOURCE_SETS`` names them.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
)

DX_ROOT = "1.2.826.0.1.3680043.8.498.77"
PATIENT_NAME = "Testperson^Dora"
PATIENT_NAME_WITHOUT_CARET = "Testperson"
PATIENT_ID = "PID-4711"


# -- building blocks -------------------------------------------------------------------------


def new_instance(
    sop_class_uid: str,
    sop_uid: str,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    modality: str | None = None,
    media_sop_class_uid: str | None = None,
    media_sop_uid: str | None = None,
    filename: Path | None = None,
) -> Dataset:
    """A dataset with Explicit VR Little Endian file meta and its SOP Class / Instance UIDs.

    ``media_sop_class_uid`` / ``media_sop_uid`` set the file meta's UIDs where they must
    differ from the data set's. With ``filename`` it is a ``FileDataset`` with a preamble
    and pydicom's Implementation Class UID, ready to be written as it is; without, a plain
    ``Dataset`` that ``save_as(..., enforce_file_format=True)`` completes.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = media_sop_class_uid or sop_class_uid
    meta.MediaStorageSOPInstanceUID = media_sop_uid if media_sop_uid is not None else sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds: Dataset
    if filename is None:
        ds = Dataset()
        ds.file_meta = meta
    else:
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = FileDataset(str(filename), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_uid
    if study_uid is not None:
        ds.StudyInstanceUID = study_uid
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
    if modality is not None:
        ds.Modality = modality
    return ds


def set_monochrome_pixels(
    ds: Dataset,
    rows: int,
    columns: int,
    *,
    bits_stored: int = 16,
    pixels: npt.NDArray[np.integer] | None = None,
    seed: int | np.random.Generator = 0,
    high: int = 4096,
    dtype: type[np.integer] = np.uint16,
) -> Dataset:
    """Fill the Image Pixel module of a ``rows`` x ``columns`` MONOCHROME2 image.

    The pixels are ``pixels`` (any shape with ``rows * columns`` values) or, without them,
    ``integers(0, high)`` of ``dtype`` drawn from ``seed`` (a seed, or a generator that
    goes on from where it stands). Bits Allocated and Pixel Representation follow the
    array's type; High Bit is ``bits_stored - 1``.
    """
    if pixels is None:
        rng = np.random.default_rng(seed)  # a Generator is used as it is
        pixels = rng.integers(0, high, size=(rows, columns), dtype=dtype)
    else:
        pixels = np.asarray(pixels).reshape(rows, columns)
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = pixels.tobytes()
    return ds


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """A code sequence item: Code Value, Coding Scheme Designator, Code Meaning."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def testdata_header(name: str) -> Dataset:
    """The header (no pixel data) of a test file shipped with pydicom."""
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    return pydicom.dcmread(path, stop_before_pixels=True)


# -- a DX hand film --------------------------------------------------------------------------


def synthetic_dx(
    index: int = 1,
    *,
    patient_name: str = PATIENT_NAME,
    rows: int = 96,
    columns: int = 80,
    study_uid: str = f"{DX_ROOT}.1",
) -> Dataset:
    """A DX (for presentation) hand film, 12 of 16 bits, that dciodvfy accepts."""
    ds = new_instance(
        DigitalXRayImageStorageForPresentation,
        f"{DX_ROOT}.3.{index}",
        study_uid=study_uid,
        series_uid=f"{DX_ROOT}.2",
        modality="DX",
    )
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = "20260301"
    ds.InstanceCreationTime = "081500"
    # Patient, General Study, Patient Study
    ds.PatientName = patient_name
    ds.PatientID = PATIENT_ID
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = "20150704"
    ds.PatientSex = "F"
    ds.StudyDate = "20260301"
    ds.StudyTime = "081000"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StudyID = "S42"
    ds.AccessionNumber = "ACC-0815"
    ds.StudyDescription = "Hand left"
    ds.PatientAge = "010Y"
    ds.PatientWeight = "31"
    # General Series, DX Series
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Hand PA"
    ds.BodyPartExamined = "HAND"
    ds.PresentationIntentType = "FOR PRESENTATION"
    # General Equipment
    ds.Manufacturer = "Synthetic Imaging"
    ds.InstitutionName = "Test Hospital"
    ds.StationName = "DXROOM1"
    ds.ManufacturerModelName = "SynthDX 1"
    ds.DeviceSerialNumber = "SN-1"
    ds.SoftwareVersions = "1.0"
    # General Image, DX Image, VOI LUT
    ds.InstanceNumber = index
    ds.PatientOrientation = ["P", "F"]
    ds.ContentDate = "20260301"
    ds.ContentTime = "081200"
    ds.AcquisitionDate = "20260301"
    ds.AcquisitionTime = "081100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    # DX Anatomy Imaged, DX Detector, DX Positioning, Acquisition Context
    ds.ImageLaterality = "L"
    ds.AnatomicRegionSequence = Sequence([code_item("85562004", "SCT", "Hand")])
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = ["0.15", "0.15"]
    ds.PixelSpacing = ["0.15", "0.15"]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "Synthetic phantom"
    ds.ViewPosition = "PA"
    ds.ViewCodeSequence = Sequence([code_item("272479007", "SCT", "postero-anterior")])
    ds.PositionerType = "NONE"
    ds.AcquisitionContextSequence = Sequence()
    # Image Pixel
    return set_monochrome_pixels(ds, rows, columns, bits_stored=12, seed=index)


# -- the encoder's source sets ---------------------------------------------------------------


def ct_sources() -> list[Dataset]:
    return [testdata_header("CT_small.dcm")]


def mr_sources() -> list[Dataset]:
    return [testdata_header("MR_small.dcm")]


def dx_sources() -> list[Dataset]:
    # The second film's patient name has no caret: valid DICOM that highdicom's name
    # check rejects. It must neither fail the encoder nor be logged.
    return [synthetic_dx(1), synthetic_dx(2, patient_name=PATIENT_NAME_WITHOUT_CARET)]


def enhanced_ct_sources() -> list[Dataset]:
    """One multi-frame CT image: a few slices (at most four) of a synthetic phantom, 32 × 32,
    converted to a Legacy Converted Enhanced CT Image by highdicom (``write_multi_frame_ct``)."""
    return [copy.deepcopy(_enhanced_ct())]


@functools.cache
def _enhanced_ct() -> Dataset:
    from training.synthetic.ct_phantoms import (
        make_phantom,
        random_scan,
        write_ct_series,
        write_multi_frame_ct,
    )

    phantom = make_phantom(21)
    scan = random_scan(
        phantom, np.random.default_rng(21), region="chest_abdomen_pelvis", max_slices=4
    )
    with tempfile.TemporaryDirectory() as folder:
        written = write_ct_series(Path(folder) / "single", phantom, scan, size=32, pixel_spacing=14)
        return pydicom.dcmread(write_multi_frame_ct(written, Path(folder) / "image.dcm"))


SOURCE_SETS: dict[str, Callable[[], list[Dataset]]] = {
    "ct": ct_sources,
    "enhanced_ct": enhanced_ct_sources,
    "mr": mr_sources,
    "dx": dx_sources,
}
