"""Encode a pipeline's result as DICOM objects for the PACS.

``encode_result`` turns one ``PipelineResult`` and the headers of its source instances
(``dicom_node.output.sources``) into:

* one **Comprehensive SR** (when the result has measurements or findings): a TID 1500
  Measurement Report (``dicom_node.output.sr``);
* one **Secondary Capture image** per derived image (``dicom_node.output.sc``);
* one **Grayscale Softcopy Presentation State** (GSPS) per presentation transform
  (``dicom_node.output.gsps``);
* one **Key Object Selection Document** (KOS) per key object selection
  (``dicom_node.output.kos``).

Each kind goes to its own new series in the source study, with patient and study
attributes copied from the sources and UIDs derived from what it is
(``dicom_node.output.base``). The sources of a study-scoped result may come from several
series of the study: the SR and the KOS reference each instance under its own series.

``write_output`` writes an encoded object as a Part 10 file, durably.

Nothing here logs patient names or IDs: only UIDs and counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset

from dicom_node.output.base import (
    DeviceIdentity,
    EncodedOutput,
    OutputKind,
    Run,
    series_description,
)
from dicom_node.output.gsps import GSPS_CONTENT_LABEL, presentation_state
from dicom_node.output.kos import key_object_selection
from dicom_node.output.sc import secondary_capture
from dicom_node.output.sources import (
    EncodeError,
    read_source_headers,
    source_headers_for,
    unique_sources,
)
from dicom_node.output.sr import structured_report
from dicom_node.store import write_durably
from dicom_node.uids import check_uid_root, validate_uid
from pipelines.contract import PipelineResult

logger = logging.getLogger(__name__)


def encode_result(
    result: PipelineResult,
    sources: Sequence[Dataset],
    *,
    device: DeviceIdentity,
    uid_root: str,
    created_at: datetime | None = None,
    source_key: str | None = None,
) -> list[EncodedOutput]:
    """The DICOM objects for ``result``: an SR (if anything to report), SC images, GSPS, KOS.

    ``sources`` are the source instances (headers are enough), in the order the
    pipeline saw them (``SeriesInput.files``, or ``StudyInput.files`` for a study), so
    ``Measurement.slice_index`` indexes them. ``created_at`` (local time) stamps content,
    series and creation dates and times; by default the current time. ``source_key``
    replaces the source series in every derived UID: a study-scoped job passes
    ``"study:<Study Instance UID>"``, so its outputs keep their UIDs when a late series
    joins the study and the job runs again; by default the UIDs follow the set of source
    series. Raises ``EncodeError`` when the result refers to an instance that is not
    among ``sources`` or the sources are unusable.
    """
    check_uid_root(uid_root)
    headers = unique_sources(sources)
    when = created_at or datetime.now()
    run = Run(result, headers, device, uid_root, when, source_key)
    outputs: list[EncodedOutput] = []
    if result.measurements or result.findings:
        outputs.append(structured_report(run))
    for index, image in enumerate(result.derived_images):
        outputs.append(secondary_capture(run, index, image))
    for index, transform in enumerate(result.presentation_transforms):
        outputs.append(presentation_state(run, index, transform))
    for index, selection in enumerate(result.key_objects):
        outputs.append(key_object_selection(run, index, selection))
    logger.info(
        "encoded %d output(s) of %s %s for %s: %s",
        len(outputs),
        result.pipeline,
        result.model_version,
        run.source_key,
        ", ".join(f"{o.kind} {o.sop_instance_uid}" for o in outputs) or "nothing to send",
    )
    return outputs


def write_output(output: EncodedOutput, folder: Path) -> Path:
    """Write ``output`` as ``<folder>/<SOPInstanceUID>.dcm`` (Part 10), durably.

    The file is written under a temporary name in ``folder``, fsynced, renamed into
    place and the folder fsynced; an existing file of the same name (a rerun) is
    replaced. ``OSError`` becomes ``OutOfResources``.
    """
    name = validate_uid(output.sop_instance_uid, "SOPInstanceUID") + ".dcm"
    target = folder / name
    write_durably(target, lambda handle: output.dataset.save_as(handle, enforce_file_format=True))
    return target


# The entry point's API: what the worker, the benchmarks and the tests import from here.
__all__ = [
    "DeviceIdentity",
    "EncodeError",
    "EncodedOutput",
    "GSPS_CONTENT_LABEL",
    "OutputKind",
    "encode_result",
    "read_source_headers",
    "series_description",
    "source_headers_for",
    "write_output",
]
