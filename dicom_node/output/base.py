"""What every output object shares: the node as its creator, its series and its UIDs.

SR, SC images, presentation states and key object selections go to four new series (SR,
OT, PR and KO). All UIDs are derived from (source, pipeline, model version, output kind,
index) under the site's UID root (``dicom_node.output.uids``), so running the same model
again gives the same objects and a new model version new ones. The source is the source
series (their UIDs, sorted and joined with "+") or, for a study-scoped result, the key the
caller gives (``"study:<Study Instance UID>"``), so that a late series, which re-opens the
study and runs the job again, does not change the UIDs.

``Run`` holds what one ``encode_result`` call shares between its outputs; the modules
of the objects (``sr``, ``sc``, ``gsps``, ``kos``) build each from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypedDict

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, TM

from dicom_node.output import codes
from dicom_node.output.sources import EncodeError, copy_patient_and_study
from dicom_node.output.uids import derive_uid, output_instance_uid, output_series_uid
from pipelines.contract import PipelineResult

OutputKind = Literal["sr", "sc", "gsps", "kos"]

MANUFACTURER = "dicom-node"

_CHARSET_UTF8 = "ISO_IR 192"


class _CommonAttributes(TypedDict, total=False):
    """Keyword arguments every output's highdicom constructor gets."""

    series_description: str
    manufacturer_model_name: str
    software_versions: str
    content_date: DA
    content_time: TM
    series_date: DA
    series_time: TM
    institution_name: str


@dataclass(frozen=True)
class DeviceIdentity:
    """The node as the creator of the objects (General Equipment, SR device observer).

    ``model_name`` defaults to the pipeline's name; ``device_uid`` (the SR device
    observer UID) defaults to a UID derived from the UID root and the AE title.
    """

    ae_title: str
    software_version: str
    manufacturer: str = MANUFACTURER
    model_name: str | None = None
    institution_name: str | None = None
    device_uid: str | None = None


@dataclass(frozen=True, eq=False)
class EncodedOutput:
    """One DICOM object made from a result, ready to be written and sent."""

    kind: OutputKind
    dataset: Dataset
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    description: str


def series_description(pipeline: str, model_version: str, what: str) -> str:
    """``"dicom-node <pipeline> v<version> - <what>"``, cut to the 64 characters of LO."""
    version = model_version if model_version[:1] in ("v", "V") else f"v{model_version}"
    return f"{MANUFACTURER} {pipeline} {version} - {what}"[:64]


class Run:
    """Everything one ``encode_result`` call shares between its outputs.

    ``source_key`` is what the output UIDs are derived from besides pipeline, model
    version, kind and index: by default the source series UIDs, sorted and joined with
    "+"; a caller that gives one (a study-scoped job: ``"study:<Study Instance UID>"``)
    keeps the UIDs the same whichever series of the study the sources come from.
    """

    def __init__(
        self,
        result: PipelineResult,
        sources: list[Dataset],
        device: DeviceIdentity,
        uid_root: str,
        when: datetime,
        source_key: str | None = None,
    ) -> None:
        self.result = result
        self.sources = sources
        self.by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
        self.device = device
        self.uid_root = uid_root
        self.date = DA(when.date())
        self.time = TM(when.time())
        if source_key is None:
            source_key = "+".join(sorted({str(ds.SeriesInstanceUID) for ds in sources}))
        elif not isinstance(source_key, str) or not source_key.strip():
            raise EncodeError(f"source_key {source_key!r} must be non-empty text")
        self.source_key = source_key
        self.model_name = device.model_name or result.pipeline

    # -- UIDs and numbers

    def series_uid(self, kind: OutputKind) -> str:
        r = self.result
        return output_series_uid(self.uid_root, self.source_key, r.pipeline, r.model_version, kind)

    def instance_uid(self, kind: OutputKind, index: int) -> str:
        r = self.result
        return output_instance_uid(
            self.uid_root, self.source_key, r.pipeline, r.model_version, kind, index
        )

    def tracking_uid(self, *parts: str) -> str:
        r = self.result
        return derive_uid(
            self.uid_root, "tracking", self.source_key, r.pipeline, r.model_version, *parts
        )

    @staticmethod
    def series_number(series_uid: str) -> int:
        # Deterministic and out of the way of the usual 1..999 of modalities.
        return 1000 + int(derive_uid("2.25", "series-number", series_uid)[5:]) % 9000

    def common_kwargs(self, what: str, texts: list[str]) -> _CommonAttributes:
        kwargs = _CommonAttributes(
            series_description=series_description(
                self.result.pipeline, self.result.model_version, what
            ),
            manufacturer_model_name=self.model_name[:64],
            software_versions=self.device.software_version[:64],
            content_date=self.date,
            content_time=self.time,
            series_date=self.date,
            series_time=self.time,
        )
        if self.device.institution_name:
            kwargs["institution_name"] = self.device.institution_name[:64]
        texts.extend(v for v in kwargs.values() if isinstance(v, str))
        return kwargs

    def source_for(self, sop_uid: str | None, slice_index: int | None, what: str) -> Dataset | None:
        if sop_uid is not None:
            try:
                return self.by_uid[sop_uid]
            except KeyError:
                raise EncodeError(
                    f"{what} refers to instance {sop_uid}, which is not among the "
                    f"{len(self.sources)} source instance(s)"
                ) from None
        if slice_index is not None:
            if slice_index >= len(self.sources):
                raise EncodeError(
                    f"{what} refers to slice {slice_index}, but there are only "
                    f"{len(self.sources)} source instance(s)"
                )
            return self.sources[slice_index]
        return None

    # -- the node as observer (SR and key object selection)

    def device_observer(self) -> hd.sr.ObserverContext:
        """The observer context (TID 1002/1004) that names this node as the device."""
        return hd.sr.ObserverContext(
            observer_type=codes.coded(codes.OBSERVER_TYPE_DEVICE),
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=self.device.device_uid
                or derive_uid(self.uid_root, "device", self.device.ae_title),
                name=self.device.ae_title,
                manufacturer_name=self.device.manufacturer,
                model_name=self.model_name,
            ),
        )

    # -- all

    def finish(self, ds: hd.SOPClass, reference: Dataset, texts: list[str]) -> None:
        copy_patient_and_study(ds, reference)
        ds.InstanceCreationDate = self.date
        ds.InstanceCreationTime = self.time
        if any(not t.isascii() for t in texts) and ds.get("SpecificCharacterSet") != _CHARSET_UTF8:
            ds.SpecificCharacterSet = _CHARSET_UTF8


__all__ = [
    "MANUFACTURER",
    "DeviceIdentity",
    "EncodedOutput",
    "OutputKind",
    "Run",
    "series_description",
]
