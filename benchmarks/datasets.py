"""Deterministic synthetic corpora for the benchmarks.

``make_ingest_corpus(folder)`` writes, once, into ``folder``:

- ``ct/``: one CT series of 300 axial slices, 512 x 512, 16-bit signed with
  RescaleIntercept -1024 (stored value = HU + 1024), CT Image Storage;
- ``radiograph/``: 50 digital radiographs, 2500 x 2000, 16 bits allocated / 12 stored,
  unsigned, MONOCHROME2, Digital X-Ray Image Storage - For Presentation.

All files are Explicit VR Little Endian. Pixel data are smooth shapes plus seeded noise;
UIDs come from ``generate_uid`` with pydicom's root and fixed entropy sources, so two runs
produce byte-identical files. A manifest written last marks the corpus complete; a
folder with a matching manifest and all its files is reused as is.

Run ``python benchmarks/datasets.py FOLDER`` to build a corpus by hand.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_ROOT_UID,
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

CORPUS_VERSION = 1
SEED = 20240601
UID_PREFIX = PYDICOM_ROOT_UID  # "1.2.826.0.1.3680043.8.498."
MANIFEST = "corpus.json"

CT_SLICES = 300
CT_SIZE = 512
CT_SPACING_MM = 0.78125  # 400 mm field of view
CT_SLICE_MM = 1.25

RADIOGRAPHS = 50
DX_ROWS = 2500
DX_COLUMNS = 2000
DX_PIXEL_MM = 0.175
DX_BITS_STORED = 12

STUDY_DATE = "20240601"
STUDY_TIME = "101500"


def _uid(*parts: object) -> UID:
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=["dicom-node-bench", *map(str, parts)])


def _patient_study(ds: Dataset, key: str, patient: str, sex: str, birth: str) -> None:
    ds.PatientName = f"Bench^{patient}"
    ds.PatientID = f"BENCH-{key.upper()}"
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    ds.StudyInstanceUID = _uid(key, "study")
    ds.StudyDate = STUDY_DATE
    ds.StudyTime = STUDY_TIME
    ds.AccessionNumber = f"ACC{key.upper()}"[:16]
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.StudyDescription = f"Benchmark {key}"
    ds.Manufacturer = "dicom-node benchmarks"
    ds.InstitutionName = "Synthetic"
    ds.SpecificCharacterSet = "ISO_IR 100"


def _file_meta(sop_class: UID, sop_instance: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


# -- CT ------------------------------------------------------------------------------------


def _ct_grid() -> tuple[np.ndarray, np.ndarray]:
    half = CT_SIZE / 2
    coords = (np.arange(CT_SIZE, dtype=np.float32) - half + 0.5) * CT_SPACING_MM
    return coords[None, :], coords[:, None]  # x (columns), y (rows), millimetres


def _ct_slice(index: int, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stored values (HU + 1024) of an idealised trunk: body, lungs high up, spine, pelvis."""
    z = index / (CT_SLICES - 1)  # 0 = top (chest), 1 = bottom (pelvis)
    hu = np.full((CT_SIZE, CT_SIZE), -1000.0, dtype=np.float32)
    a, b = 170.0 - 20.0 * z, 120.0 + 10.0 * np.sin(np.pi * z)
    radius = (x / a) ** 2 + (y / b) ** 2
    body = radius <= 1.0
    hu[body] = (40.0 + 20.0 * (1.0 - radius))[body]  # soft tissue with a gentle gradient
    if z < 0.4:  # lungs
        scale = np.sin(np.pi * (z + 0.1) / 0.5)
        for side in (-1.0, 1.0):
            lung = ((x - side * 70.0) / (55.0 * scale + 1.0)) ** 2 + ((y + 5.0) / 80.0) ** 2 <= 1.0
            hu[lung] = -820.0
    spine = ((x / 18.0) ** 2 + ((y - 80.0) / 16.0) ** 2) <= 1.0
    hu[spine] = 700.0
    if z > 0.75:  # iliac wings
        for side in (-1.0, 1.0):
            bone = ((x - side * 95.0) / 40.0) ** 2 + ((y - 40.0) / 12.0) ** 2 <= 1.0
            hu[bone] = 550.0
    hu += rng.standard_normal((CT_SIZE, CT_SIZE), dtype=np.float32) * 12.0
    outside = x**2 + y**2 > (CT_SIZE * CT_SPACING_MM / 2) ** 2
    hu[outside] = -2000.0  # outside the reconstruction circle (pixel padding)
    return np.clip(np.rint(hu + 1024.0), -32768, 32767).astype("<i2")


def _ct_dataset(index: int, pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    sop_uid = _uid("ct", "sop", index)
    ds.file_meta = _file_meta(CTImageStorage, sop_uid)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    _patient_study(ds, "ct", "Trunk", "F", "19600101")
    ds.Modality = "CT"
    ds.SeriesInstanceUID = _uid("ct", "series")
    ds.SeriesNumber = 2
    ds.SeriesDescription = "CHEST ABDOMEN PELVIS 1.25mm"
    ds.SeriesDate = STUDY_DATE
    ds.SeriesTime = STUDY_TIME
    ds.BodyPartExamined = "CHESTABDPELVIS"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = _uid("ct", "frame")
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = index + 1
    ds.AcquisitionNumber = 1
    ds.ContentDate = STUDY_DATE
    ds.ContentTime = STUDY_TIME
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = 120
    ds.XRayTubeCurrent = 200
    ds.ExposureTime = 500
    ds.ConvolutionKernel = "STANDARD"
    ds.SliceThickness = CT_SLICE_MM
    ds.SpacingBetweenSlices = CT_SLICE_MM
    z_mm = -CT_SLICE_MM * index  # feet-wards from the top slice
    origin = -(CT_SIZE / 2) * CT_SPACING_MM + CT_SPACING_MM / 2
    ds.ImagePositionPatient = [f"{origin:.5f}", f"{origin:.5f}", f"{z_mm:.2f}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = f"{z_mm:.2f}"
    ds.PixelSpacing = [CT_SPACING_MM, CT_SPACING_MM]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = CT_SIZE
    ds.Columns = CT_SIZE
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelPaddingValue = -976  # -2000 HU stored as HU + 1024
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelData = pixels.tobytes()
    return ds


# -- radiographs --------------------------------------------------------------------------


def _dx_pixels(index: int, rng: np.random.Generator) -> np.ndarray:
    """A bright collimated field with a soft 'limb' and a couple of 'bones', plus noise."""
    yy = np.linspace(-1.0, 1.0, DX_ROWS, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, DX_COLUMNS, dtype=np.float32)[None, :]
    angle = (index * 37 % 360) * np.pi / 180.0
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    image = 3400.0 - 500.0 * (yy + 1.0)  # heel-effect gradient in the background
    soft = np.exp(-((u / 0.45) ** 2)) * 1500.0
    image = image - soft
    for offset in (-0.12, 0.12):
        image = image - np.exp(-(((u - offset) / 0.05) ** 2)) * (600.0 + 200.0 * np.cos(6 * v))
    image = image + rng.standard_normal((DX_ROWS, DX_COLUMNS), dtype=np.float32) * 25.0
    # collimation: outside the field is almost white (unexposed)
    field = (np.abs(xx) < 0.92) & (np.abs(yy) < 0.94)
    image = np.where(field, image, 200.0)
    top = 2**DX_BITS_STORED - 1
    return np.clip(np.rint(top - image * top / 4095.0), 0, top).astype("<u2")


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "SCT"
    item.CodeMeaning = meaning
    return item


def _dx_dataset(index: int, pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    key = f"dx{index:02d}"
    sop_uid = _uid("dx", "sop", index)
    ds.file_meta = _file_meta(DigitalXRayImageStorageForPresentation, sop_uid)
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_uid
    _patient_study(ds, key, f"Film{index:02d}", "M" if index % 2 else "F", "19900101")
    ds.Modality = "DX"
    ds.SeriesInstanceUID = _uid(key, "series")
    ds.SeriesNumber = 1
    ds.SeriesDescription = "HAND PA"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "HAND"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["R", "F"]
    ds.ImageLaterality = "L" if index % 2 else "R"
    ds.AnatomicRegionSequence = [_code("85562004", "Hand")]
    ds.ViewCodeSequence = [_code("272479007", "postero-anterior")]
    ds.PositionerType = "NONE"
    ds.AcquisitionContextSequence = []
    ds.InstanceNumber = 1
    ds.ContentDate = STUDY_DATE
    ds.ContentTime = STUDY_TIME
    ds.AcquisitionDate = STUDY_DATE
    ds.AcquisitionTime = STUDY_TIME
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.KVP = 55
    ds.ExposureInuAs = 2000
    ds.DistanceSourceToDetector = 1000
    ds.ImagerPixelSpacing = [DX_PIXEL_MM, DX_PIXEL_MM]
    ds.DetectorType = "SCINTILLATOR"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = DX_ROWS
    ds.Columns = DX_COLUMNS
    ds.BitsAllocated = 16
    ds.BitsStored = DX_BITS_STORED
    ds.HighBit = DX_BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.PixelData = pixels.tobytes()
    return ds


# -- the corpus ---------------------------------------------------------------------------


def _expected_names() -> dict[str, list[str]]:
    return {
        "ct": [f"ct/CT_{i + 1:04d}.dcm" for i in range(CT_SLICES)],
        "radiograph": [f"radiograph/DX_{i + 1:03d}.dcm" for i in range(RADIOGRAPHS)],
    }


def _complete(folder: Path, names: dict[str, list[str]]) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("version") != CORPUS_VERSION or manifest.get("files") != names:
        return False
    return all((folder / n).is_file() for group in names.values() for n in group)


def make_ingest_corpus(folder: Path) -> dict[str, list[Path]]:
    """Write (or reuse) the ingest corpus in ``folder``; paths by corpus, sorted.

    Keys: ``"ct"`` (300 slices of one series) and ``"radiograph"`` (50 DX films).
    """
    folder = Path(folder)
    names = _expected_names()
    paths = {key: [folder / n for n in group] for key, group in names.items()}
    if _complete(folder, names):
        return paths
    (folder / MANIFEST).unlink(missing_ok=True)
    for sub in ("ct", "radiograph"):
        (folder / sub).mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(SEED)
    x, y = _ct_grid()
    for index, path in enumerate(paths["ct"]):
        ds = _ct_dataset(index, _ct_slice(index, x, y, rng))
        ds.save_as(path, enforce_file_format=True)
    rng = np.random.default_rng(SEED + 1)
    for index, path in enumerate(paths["radiograph"]):
        ds = _dx_dataset(index, _dx_pixels(index, rng))
        ds.save_as(path, enforce_file_format=True)

    manifest = {
        "version": CORPUS_VERSION,
        "seed": SEED,
        "files": names,
        "bytes": {k: sum(p.stat().st_size for p in v) for k, v in paths.items()},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "var/benchmarks/corpus")
    started = time.perf_counter()
    corpus = make_ingest_corpus(target)
    took = time.perf_counter() - started
    for name, files in corpus.items():
        size = sum(f.stat().st_size for f in files) / 1e6
        print(f"{name}: {len(files)} files, {size:.1f} MB in {target / name}")
    print(f"{took:.1f} s")
