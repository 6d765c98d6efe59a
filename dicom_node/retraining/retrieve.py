"""Training data from the PACS: C-FIND, then C-MOVE to the node itself or C-GET.

``retrieve_for_training`` queries the PACS of ``[retrieval]`` (``RetrievalSettings``) and
brings the studies that match a ``PacsQuery`` into the node's storage and index, where
a retraining run finds them. It works in two steps, each on its own association:

1. **Select** (C-FIND, Study Root; ``pacs_select``): study level with the date range and
   the modalities (``ModalitiesInStudy``) as matching keys; the answers are checked again,
   since PACSes differ in what they match, and taken newest first (StudyDate, StudyTime). For
   each study in turn, the series level lists its series; Modality and BodyPartExamined
   are filtered here. A study with at least one matching series is selected, until
   ``max_studies`` are (the query's, else ``[retrieval] max_studies``). A series is
   already stored when the index holds as many of its instances as the PACS reports
   (``NumberOfSeriesRelatedInstances``; where the PACS does not say and some are stored,
   an image-level C-FIND counts them): it is not fetched again.
2. **Retrieve** each matching series not yet (completely) stored, at series level
   (the association and requests: ``pacs_link``):

   * ``method = "move"``: C-MOVE to ``move_destination`` (default: the node's AE title),
     which must be the node's receiver, running in ``dicom-node serve`` and known to the
     PACS under that title. The instances arrive through the receiver like any other;
     after each series this waits (at most ``timeout_seconds``) until the instances the
     PACS reports as sent are in the index.
   * ``method = "get"``: C-GET; the PACS sends the instances back on the node's own
     association (SCP role negotiated for the storage SOP classes: those the PACS names
     in ``SOPClassesInStudy`` with every transfer syntax the receiver accepts, else a
     list of common image, SR and presentation-state classes). Each instance goes through
     the receiver's own C-STORE path (spooled, fsynced, renamed into place, indexed,
     answered with the receiver's statuses); no receiver needs to be running. (This is
     the one place where ``net`` reaches into ``ingest``: the receiver's path is reused,
     not copied.)

A study the index does not hold yet gets its ``studies`` row first, with purpose
``training``: the instances then land in a training study, which becomes stable like
any other but is never routed into jobs (``ingest/stable.py``). If none of its
instances arrives, that empty row is removed again. A study already in the index keeps
its purpose: for a clinical study only its missing series (or the series it holds only
in part) are fetched, and the instances that arrive re-open it like any late instance,
so a newly fetched series of a clinical study is routed when the study is stable again.

Errors: ``RetrieveError`` is raised when nothing could be retrieved: no ``[retrieval]``
section, the PACS cannot be reached or refuses the association (``PacsUnavailable``),
or the study-level C-FIND fails. Everything later (a series-level C-FIND, a C-MOVE or
C-GET that fails or fails in part, an association lost on the way, moved instances
that never reach the index) is one line in ``RetrieveReport.failures`` and the call goes
on with the next series. Patient names and IDs are never asked for nor logged: the
identifiers carry UIDs, dates, modalities, body parts and counts only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import build_context, build_role, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import code_to_category
from sqlalchemy import Engine, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from dicom_node.clock import utcnow
from dicom_node.db.engine import write_transaction
from dicom_node.db.models import Series, Study, StudyPurpose, StudyState

# The C-GET sub-operations take the receiver's own C-STORE path (see the module docstring).
from dicom_node.ingest.receive import Receiver, StoreStatus
from dicom_node.ingest.spool import discard_unfinished
from dicom_node.ingest.store_requests import (
    ACCEPTED_TRANSFER_SYNTAXES,
    register_storage_sop_classes,
)
from dicom_node.net.pacs_link import (
    PacsLink,
    PacsUnavailable,
    RetrieveError,
    find_context,
    get_context,
    move_context,
    quiet_identifiers,
    retrieve_series,
    sent_count,
    status_line,
)
from dicom_node.net.pacs_select import (
    PacsQuery,
    SeriesPlan,
    StudyPlan,
    select_studies,
    stored_counts,
)
from dicom_node.settings import NodeSettings, RetrievalSettings
from dicom_node.store import DurableStore

__all__ = [
    "PacsQuery",
    "PacsUnavailable",
    "RetrieveError",
    "RetrieveReport",
    "retrieve_for_training",
]

logger = logging.getLogger(__name__)

#: Presentation contexts one association may propose.
MAX_CONTEXTS = 128
#: How often the index is looked at while moved instances are awaited.
_POLL_SECONDS = 0.1

# C-GET without SOPClassesInStudy from the PACS: the storage SOP classes the node
# negotiates the SCP role for (common images, multi-frame images, SR, presentation
# states, KOS, PDF, segmentations), each with ``_COMMON_TRANSFER_SYNTAXES``; the whole
# list of the receiver's classes and transfer syntaxes would not fit in one association.
_COMMON_STORAGE_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1.3",  # Digital Intra-Oral X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA Image
    "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic Image
    "1.2.840.10008.5.1.4.1.1.12.2.1",  # Enhanced XRF Image
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
)
_COMMON_TRANSFER_SYNTAXES: tuple[str, ...] = (
    str(ExplicitVRLittleEndian),
    str(ImplicitVRLittleEndian),
    str(DeflatedExplicitVRLittleEndian),
    str(JPEGBaseline8Bit),
    str(JPEGExtended12Bit),
    str(JPEGLosslessSV1),
    str(JPEGLSLossless),
    str(JPEGLSNearLossless),
    str(JPEG2000Lossless),
    str(JPEG2000),
    str(RLELossless),
)


@dataclass
class RetrieveReport:
    studies_found: int  # studies the C-FIND matched (after filters)
    study_instance_uids: list[str]  # the studies selected (at most max_studies), in order
    series_found: int
    instances_found: int  # per the series-level NumberOfSeriesRelatedInstances where given
    instances_retrieved: int  # newly stored by this call
    instances_already_stored: int
    failures: list[str]  # one line per failed C-MOVE/C-GET sub-operation or association problem


def retrieve_for_training(
    settings: NodeSettings,
    engine: Engine,
    query: PacsQuery,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> RetrieveReport:
    """Find the studies ``query`` selects at the configured PACS and retrieve what the node
    does not hold yet (module docstring). ``progress(done, total)`` is called with the
    selected studies handled so far, first with 0. Raise ``RetrieveError``
    (``PacsUnavailable``) when nothing could be retrieved."""
    pacs = settings.retrieval
    if pacs is None:
        raise RetrieveError(
            "no [retrieval] section in the settings: the PACS to query is not configured"
        )
    quiet_identifiers()
    limit = query.max_studies if query.max_studies is not None else pacs.max_studies
    with PacsLink(settings, pacs, [find_context()]) as link:
        selection = select_studies(link, engine, query, limit)
    selected = selection.studies
    all_series = [series for study in selected for series in study.series]
    report = RetrieveReport(
        studies_found=selection.studies_found,
        study_instance_uids=[s.uid for s in selected],
        series_found=len(all_series),
        instances_found=sum(s.count or 0 for s in all_series),
        instances_retrieved=0,
        instances_already_stored=sum(
            min(s.stored_before, s.count) if s.count is not None else s.stored_before
            for s in all_series
        ),
        failures=selection.failures,
    )
    to_fetch = [s for s in selected if s.missing()]
    logger.info(
        "PACS %s@%s:%d: %d stud(ies) matched, %d selected, %d series, %d to fetch by C-%s",
        pacs.ae_title,
        pacs.host,
        pacs.port,
        report.studies_found,
        len(selected),
        report.series_found,
        sum(len(s.missing()) for s in to_fetch),
        pacs.method.upper(),
    )
    if progress is not None:
        progress(0, len(selected))
    if to_fetch:
        _retrieve(settings, engine, pacs, to_fetch, report, progress)
    elif progress is not None and selected:
        progress(len(selected), len(selected))
    after = stored_counts(engine, [s.uid for s in all_series])
    report.instances_retrieved = sum(
        max(0, after.get(s.uid, 0) - s.stored_before) for s in all_series
    )
    logger.info(
        "PACS retrieval done: %d instance(s) newly stored, %d already stored, %d failure(s)",
        report.instances_retrieved,
        report.instances_already_stored,
        len(report.failures),
    )
    return report


# -- the study rows --------------------------------------------------------------------------


def _study_row(engine: Engine, study: StudyPlan) -> int | None:
    """Insert the study's row with purpose training unless the index has it; its id when
    inserted here, None when the study was already indexed (its purpose is kept)."""
    now = utcnow()
    try:
        with write_transaction(engine) as conn:
            if conn.scalar(select(Study.id).where(Study.study_instance_uid == study.uid)):
                return None
            return int(
                conn.execute(
                    insert(Study)
                    .values(
                        study_instance_uid=study.uid,
                        study_date=study.study_date,
                        state=StudyState.RECEIVING.value,
                        first_received_at=now,
                        last_received_at=now,
                        times_reopened=0,
                        purpose=StudyPurpose.TRAINING.value,
                    )
                    .returning(Study.id)
                ).scalar_one()
            )
    except IntegrityError:
        return None  # the receiver indexed an instance of it just now: not ours


def _keep_receiving(engine: Engine, study_id: int) -> None:
    """Our training study is not quiet while its series are still being fetched."""
    with write_transaction(engine) as conn:
        conn.execute(
            update(Study)
            .where(Study.id == study_id, Study.state == StudyState.RECEIVING.value)
            .values(last_received_at=utcnow())
        )


def _drop_if_empty(engine: Engine, study_id: int) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            delete(Study).where(
                Study.id == study_id, ~exists(select(Series.id).where(Series.study_id == study_id))
            )
        )


# -- retrieving --------------------------------------------------------------------------------


def _get_contexts(studies: list[StudyPlan]) -> tuple[list[PresentationContext], list[Any]]:
    """The C-GET association's contexts and SCP role items for the storage classes."""
    accepted = set(register_storage_sop_classes())
    classes = list(dict.fromkeys(c for s in studies for c in s.sop_classes if c in accepted))
    syntaxes: Sequence[str] = ACCEPTED_TRANSFER_SYNTAXES
    if not classes or any(not s.sop_classes for s in studies):
        classes = list(dict.fromkeys([*classes, *_COMMON_STORAGE_CLASSES]))
        syntaxes = _COMMON_TRANSFER_SYNTAXES
    classes = classes[: MAX_CONTEXTS - 1]
    contexts = [get_context(), *(build_context(uid, list(syntaxes)) for uid in classes)]
    return contexts, [build_role(uid, scp_role=True) for uid in classes]


def _retrieve(
    settings: NodeSettings,
    engine: Engine,
    pacs: RetrievalSettings,
    to_fetch: list[StudyPlan],
    report: RetrieveReport,
    progress: Callable[[int, int], None] | None,
) -> None:
    if pacs.method == "move":
        with PacsLink(settings, pacs, [move_context()]) as link:
            _retrieve_studies(link, engine, pacs, settings, to_fetch, report, progress)
        return

    # C-GET: the instances come back on this association. A receiver that is never
    # started (no port is bound) lends its C-STORE handler: spooled, checked, placed
    # durably, indexed, answered with its named statuses.
    store = DurableStore(settings.storage_dir, min_free_bytes=settings.min_free_bytes)
    receiver = Receiver(settings, store, engine)

    def on_store(event: evt.Event) -> int:
        status = int(receiver._on_store(event))
        if status != StoreStatus.SUCCESS:
            uid = getattr(event.request, "AffectedSOPInstanceUID", None) or "?"
            report.failures.append(f"instance {uid}: not stored, answered 0x{status:04X}")
        return status

    contexts, roles = _get_contexts(to_fetch)
    link = PacsLink(
        settings, pacs, contexts, ae=receiver.ae, ext_neg=roles,
        handlers=[(evt.EVT_C_STORE, on_store)],
    )  # fmt: skip
    receiver.index_writer.start()
    try:
        _retrieve_studies(link, engine, pacs, settings, to_fetch, report, progress)
    finally:
        assoc = link.assoc
        link.close()
        if assoc is not None:
            discard_unfinished(assoc)  # spool files of sub-operations cut short
        receiver.index_writer.stop()


def _retrieve_studies(
    link: PacsLink,
    engine: Engine,
    pacs: RetrievalSettings,
    settings: NodeSettings,
    to_fetch: list[StudyPlan],
    report: RetrieveReport,
    progress: Callable[[int, int], None] | None,
) -> None:
    destination = pacs.move_destination or settings.ae_title
    total = len(report.study_instance_uids)
    done = total - len(to_fetch)
    remaining = sum(len(study.missing()) for study in to_fetch)
    what = f"C-MOVE to {destination}" if pacs.method == "move" else "C-GET"
    for study in to_fetch:
        study_id = _study_row(engine, study)
        sent_any = False  # did the PACS report an instance sent (it may still arrive)?
        try:
            for series in study.missing():
                if study_id is not None:
                    _keep_receiving(engine, study_id)
                try:
                    final, problem = retrieve_series(
                        link, pacs.method, destination, study.uid, series.uid
                    )
                except PacsUnavailable as exc:
                    report.failures.append(f"{exc}; {remaining} series not retrieved")
                    return
                remaining -= 1
                if final is None:
                    report.failures.append(f"series {series.uid}: {what} failed: {problem}")
                    continue
                if code_to_category(int(final.Status)) != "Success":
                    report.failures.append(f"series {series.uid}: {what} {status_line(final)}")
                sent = sent_count(final)
                sent_any = sent_any or bool(sent)
                if pacs.method == "move":
                    _await_moved(engine, pacs, destination, series, sent, report)
        finally:
            # A study row made here that nothing arrived for goes again; after a C-MOVE
            # only when the PACS sent nothing, so that a late instance still lands in it.
            if study_id is not None and (pacs.method == "get" or not sent_any):
                _drop_if_empty(engine, study_id)
        done += 1
        if progress is not None:
            progress(done, total)


def _await_moved(
    engine: Engine,
    pacs: RetrievalSettings,
    destination: str,
    series: SeriesPlan,
    sent: int | None,
    report: RetrieveReport,
) -> None:
    """Wait until the instances the PACS moved are in the index (the receiver commits each
    row before it answers, so normally they already are)."""
    expected = sent if sent is not None else series.count
    if not expected:
        return
    deadline = time.monotonic() + pacs.timeout_seconds
    while True:
        indexed = stored_counts(engine, [series.uid]).get(series.uid, 0)
        if indexed >= expected:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
    report.failures.append(
        f"series {series.uid}: the PACS sent {expected} instance(s) to {destination}, "
        f"{indexed} are indexed after {pacs.timeout_seconds:g} s (is the node's receiver "
        f"running, and is {destination} its AE title?)"
    )
