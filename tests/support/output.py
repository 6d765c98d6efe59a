"""What the tests of ``dicom_node.output`` share: the node, the UID root, the time, the
patient and study attributes an output copies (the ``sources`` fixture is in
``tests/unit/conftest.py``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydicom import Dataset

from dicom_node.output.encode import DeviceIdentity, EncodedOutput, encode_result, write_output
from pipelines import PipelineResult

UID_ROOT = "1.2.826.0.1.3680043.8.498.99"  # below pydicom's example root
DEVICE = DeviceIdentity(ae_title="DICOM_NODE", software_version="0.1.0")
WHEN = datetime(2026, 3, 1, 9, 30, 15)

PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)


def encode_and_write(
    result: PipelineResult, sources: list[Dataset], folder: Path, **kwargs: object
) -> list[tuple[EncodedOutput, Path]]:
    options: dict[str, object] = {"device": DEVICE, "uid_root": UID_ROOT, "created_at": WHEN}
    options.update(kwargs)
    outputs = encode_result(result, sources, **options)  # type: ignore[arg-type]
    return [(output, write_output(output, folder)) for output in outputs]
