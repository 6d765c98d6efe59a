"""A presentation state reaches a real PACS: the node's C-STORE SCU (what ``deliver`` uses)
sends a film and its GSPS to Orthanc, which stores both in one study, the GSPS as a PR
series that references the film, its rotation and flip intact.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import GrayscaleSoftcopyPresentationStateStorage

from dicom_node.net.scu import SendReport, inspect_files, send_files
from dicom_node.output.encode import DeviceIdentity, encode_result, write_output
from pipelines import PipelineResult, PresentationTransform
from tests.peers import OrthancProcess, require_tool
from tests.support.datasets import synthetic_dx

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

DEVICE = DeviceIdentity(ae_title="DICOM_NODE", software_version="0.1.0")
UID_ROOT = "1.2.826.0.1.3680043.8.498.99"


def test_orthanc_stores_the_gsps_beside_its_film(tmp_path: Path) -> None:
    require_tool("Orthanc")
    film = synthetic_dx(1)
    film_path = tmp_path / "film.dcm"
    film.save_as(film_path, enforce_file_format=True)
    transform = PresentationTransform(str(film.SOPInstanceUID), 270, True)
    result = PipelineResult("hand_orientation", "3", presentation_transforms=(transform,))
    (output,) = encode_result(result, [film], device=DEVICE, uid_root=UID_ROOT)
    gsps_path = write_output(output, tmp_path)

    with OrthancProcess(graceful_stop=False) as orthanc:
        report = SendReport()
        files = inspect_files([film_path, gsps_path], report)
        assert GrayscaleSoftcopyPresentationStateStorage in {f.sop_class_uid for f in files}
        send_files(
            files,
            "127.0.0.1",
            orthanc.dicom_port,
            calling_aet="DICOM_NODE",
            called_aet=orthanc.aet,
            report=report,
        )
        assert report.failed == [] and report.skipped == [] and report.sent == 2

        (found,) = orthanc.rest(
            "POST",
            "/tools/lookup",
            data=output.sop_instance_uid.encode(),
            content_type="text/plain",
        )
        assert found["Type"] == "Instance"
        stored = dcmread(io.BytesIO(orthanc.rest("GET", f"/instances/{found['ID']}/file")))
        assert stored.SOPClassUID == GrayscaleSoftcopyPresentationStateStorage
        assert stored.Modality == "PR"
        assert (stored.ImageRotation, stored.ImageHorizontalFlip) == (270, "Y")
        referenced = stored.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
        assert referenced.ReferencedSOPInstanceUID == film.SOPInstanceUID
        series = orthanc.rest("GET", f"/instances/{found['ID']}/series")
        study = orthanc.rest("GET", f"/series/{series['ID']}/study")
        assert study["MainDicomTags"]["StudyInstanceUID"] == film.StudyInstanceUID
        assert len(study["Series"]) == 2  # the film's series and the PR series
