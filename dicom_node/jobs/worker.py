"""The worker: claims jobs, runs the pipeline on the series (or, for a study-scoped job,
on every routed series of the study), records the result.

Runs in its own process (``serve`` starts one; ``dicom-node worker`` starts more, on
this host or others against PostgreSQL), so inference never stalls the receiver.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import socket
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from dicom_node.clock import utcnow
from dicom_node.db.engine import write_transaction
from dicom_node.db.models import Instance, Measurement, Output, Result, Series, Study
from dicom_node.errors import Retry
from dicom_node.jobs.model_registry import resolve_model
from dicom_node.jobs.ordering import upstream_result
from dicom_node.jobs.queue import ClaimedJob, JobQueue, LeaseLost
from dicom_node.output.deliver import schedule_delivery_in
from dicom_node.output.encode import (
    DeviceIdentity,
    EncodedOutput,
    EncodeError,
    encode_result,
    source_headers_for,
    write_output,
)
from dicom_node.store import DurableStore
from pipelines import (
    PipelineRegistry,
    PipelineResult,
    PipelineUnavailable,
    SeriesInput,
    StudyInput,
    pipeline_scope,
)
from pipelines.errors import ModelMissing, PipelineInputError

logger = logging.getLogger(__name__)

#: glibc's ``mallopt`` parameters (<malloc.h>).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap once a worker keeps freed memory: a film's
#: bytes, its decoded pixels, Pillow's images and the Pixel Data of an SC are 18–70 MB.
KEEP_FREED_BLOCKS_UP_TO_MB = 128


def keep_freed_memory(megabytes: int) -> bool:
    """Let glibc's malloc keep up to ``megabytes`` of freed heap for the next job.

    By default glibc maps every block over 32 MB afresh and unmaps it when freed, so each
    film's large arrays are faulted in page by page again — about 0.6 ms per MB on some
    virtual machines, a quarter of a free-angle hand film's time. With blocks up to
    ``KEEP_FREED_BLOCKS_UP_TO_MB`` served from the heap and the heap trimmed only above
    ``megabytes`` of free memory at its top, the next film reuses those pages. The same as
    the environment variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``,
    which win where they are set. 0 leaves malloc as it is. Returns whether it applied.
    """
    if megabytes <= 0 or {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"} & set(os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    mmap_threshold = min(megabytes, KEEP_FREED_BLOCKS_UP_TO_MB) << 20
    return bool(
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and mallopt(_M_TRIM_THRESHOLD, megabytes << 20)
    )


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class OutputPlan:
    """How results become DICOM objects and where they go."""

    device: DeviceIdentity
    uid_root: str
    outputs_dir: Path
    outbox_dir: Path | None = None
    route_destinations: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class WrittenOutput:
    output: EncodedOutput
    relative_path: str  # under OutputPlan.outputs_dir


@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    state: str
    error: str | None = None


class _LeaseKeeper(threading.Thread):
    """Renews a job's lease while the pipeline runs; notes when the lease is lost."""

    def __init__(self, queue: JobQueue, job: ClaimedJob) -> None:
        super().__init__(name=f"lease-{job.id}", daemon=True)
        self.queue = queue
        self.job = job
        self.lost = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = max(self.queue.settings.lease_seconds / 3, 0.05)
        while not self._stop_event.wait(interval):
            try:
                self.job = self.queue.renew(self.job)
            except LeaseLost:
                self.lost = True
                return
            except Exception:  # a database hiccup: keep trying until the lease runs out
                logger.exception("could not renew the lease of job %d", self.job.id)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class Worker:
    def __init__(
        self,
        engine: Engine,
        queue: JobQueue,
        store: DurableStore,
        registry: PipelineRegistry,
        owner: str | None = None,
        outputs: OutputPlan | None = None,
        model_dir: Path | None = None,
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.store = store
        self.registry = registry
        self.owner = owner or default_owner()
        self.outputs = outputs
        self.model_dir = model_dir

    def run_forever(self, stop: threading.Event) -> None:
        logger.info("worker %s polling for jobs", self.owner)
        while not stop.is_set():
            if self.run_once() is None:
                stop.wait(self.queue.settings.poll_seconds)

    def run_once(self) -> JobOutcome | None:
        """Claim and run one job; None when there was nothing to do."""
        job = self.queue.claim(self.owner)
        if job is None:
            return None
        logger.info(
            "job %d: %s on series %d, attempt %d", job.id, job.pipeline, job.series_id, job.attempt
        )
        keeper = _LeaseKeeper(self.queue, job)
        keeper.start()
        # (error text, retry, defer) when the attempt failed
        failure: tuple[str, bool, float | None] | None = None
        try:
            series = self._input(job)
            pipeline = self.registry.get(job.pipeline)
            if pipeline_scope(pipeline) != job.scope:
                raise PipelineUnavailable(
                    f"pipeline {job.pipeline!r} decides per {pipeline_scope(pipeline)}; the job "
                    f"was made per {job.scope} (its scope changed since: re-route the study)"
                )
            result = pipeline.run(series)  # type: ignore[arg-type]  # the scope says which
            written = self._write_outputs(result, series)
        except (PipelineUnavailable, EncodeError, ModelMissing, PipelineInputError) as exc:
            # A setup problem, a pipeline bug or an unusable series: retrying changes nothing.
            failure = (str(exc), False, None)
        except Retry as exc:
            failure = (str(exc), True, exc.defer)
        except Exception as exc:  # recorded on the job and retried with backoff
            logger.exception("job %d failed", job.id)
            failure = ("".join(traceback.format_exception_only(exc)).strip(), True, None)
        finally:
            keeper.stop()
        if failure is not None:
            error, retry, defer = failure
            return self._failed(keeper.job, error, retry=retry, defer=defer)
        if keeper.lost:
            logger.warning("job %d: lease lost while running; result dropped", job.id)
            return JobOutcome(job.id, "lease_lost")
        try:
            self._record(keeper.job, series, result, written)
        except LeaseLost:
            logger.warning("job %d: lease lost before the result was recorded", job.id)
            return JobOutcome(job.id, "lease_lost")
        logger.info("job %d done", job.id)
        return JobOutcome(job.id, "done")

    def _failed(
        self, job: ClaimedJob, error: str, *, retry: bool, defer: float | None = None
    ) -> JobOutcome:
        try:
            state = self.queue.fail(job, error, retry=retry, defer=defer)
        except LeaseLost:
            return JobOutcome(job.id, "lease_lost", error)
        logger.warning("job %d: %s (now %s)", job.id, error, state)
        return JobOutcome(job.id, state, error)

    def _input(self, job: ClaimedJob) -> SeriesInput | StudyInput:
        """The job's series, or for a study-scoped job every series it was made for."""
        with self.engine.connect() as conn:
            model = (
                None
                if self.model_dir is None
                else resolve_model(conn, job.pipeline, job.model_version, self.model_dir)
            )
            version = job.model_version if model is None else model.version
            folder = None if model is None else model.folder
            if job.scope != "study":
                series_input = self._series_input(conn, job.series_id, version, folder)
                after = self.registry.runs_after(job.pipeline)
                if after is None:
                    return series_input
                outputs_dir = Path() if self.outputs is None else self.outputs.outputs_dir
                upstream = upstream_result(conn, job.id, after, outputs_dir)
                return dataclasses.replace(series_input, after=upstream)
            series = tuple(
                self._series_input(conn, series_id, version, folder)
                for series_id in job.input_series
            )
        return StudyInput(series[0].study_instance_uid, series, version, folder)

    def _series_input(
        self, conn: Connection, series_id: int, model_version: str, model_dir: Path | None
    ) -> SeriesInput:
        series = conn.execute(
            select(Series.series_instance_uid, Series.modality, Study.study_instance_uid)
            .join(Study, Study.id == Series.study_id)
            .where(Series.id == series_id)
        ).one()
        paths = (
            conn.execute(
                select(Instance.path)
                .where(Instance.series_id == series_id)
                .order_by(Instance.instance_number, Instance.id)
            )
            .scalars()
            .all()
        )
        return SeriesInput(
            study_instance_uid=series.study_instance_uid,
            series_instance_uid=series.series_instance_uid,
            modality=series.modality,
            files=tuple(self.store.resolve(p) for p in paths),
            model_version=model_version,
            model_dir=model_dir,
        )

    def _write_outputs(
        self, result: PipelineResult, source: SeriesInput | StudyInput
    ) -> list[WrittenOutput]:
        """Encode the result as SR / SC / GSPS / KOS and write them (and their outbox
        copies) durably. A study-scoped result's UIDs derive from the study, so a late view
        in a new series gives the same objects again, not new ones."""
        if self.outputs is None:
            return []
        plan = self.outputs
        study_key = isinstance(source, StudyInput)
        encoded = encode_result(
            result,
            source_headers_for(result, source.files),
            device=plan.device,
            uid_root=plan.uid_root,
            source_key=f"study:{source.study_instance_uid}" if study_key else None,
        )
        written = []
        for output in encoded:
            folder = Path(source.study_instance_uid, output.series_instance_uid)
            path = write_output(output, plan.outputs_dir / folder)
            if plan.outbox_dir is not None:
                write_output(output, plan.outbox_dir / folder)
            written.append(WrittenOutput(output, str(folder / path.name)))
        return written

    def _record(
        self,
        job: ClaimedJob,
        source: SeriesInput | StudyInput,
        result: PipelineResult,
        written: list[WrittenOutput],
    ) -> None:
        """Write the result, its measurements (reported and results-log-only), outputs and
        deliveries, and finish the job, in one transaction. A study-scoped result's
        series is the job's anchor (its first series)."""
        series = source.series[0] if isinstance(source, StudyInput) else source
        summary = dict(result.summary)
        if isinstance(source, StudyInput):
            summary.setdefault("input_series", [s.series_instance_uid for s in source.series])
        with write_transaction(self.engine) as conn:
            result_id = conn.execute(
                insert(Result)
                .values(
                    job_id=job.id,
                    pipeline=result.pipeline,
                    model_version=result.model_version,
                    study_instance_uid=series.study_instance_uid,
                    series_instance_uid=series.series_instance_uid,
                    created_at=utcnow(),
                    summary=summary,
                )
                .returning(Result.id)
            ).scalar_one()
            # The reported measurements first, then the results-log-only ones (e.g. one
            # score per CT slice), stored alike (docs/results-log.md, `measurements`).
            logged = (*result.measurements, *result.log_measurements)
            if logged:
                conn.execute(
                    insert(Measurement),
                    [
                        dict(
                            result_id=result_id,
                            name=m.name,
                            value=m.value,
                            unit=m.unit,
                            concept_code=m.concept_code,
                            tracking_uid=m.tracking_uid,
                            slice_index=m.slice_index,
                            frame_number=m.frame_number,
                        )
                        for m in logged
                    ],
                )
            destinations: tuple[str, ...] = ()
            if self.outputs is not None and job.route is not None:
                destinations = self.outputs.route_destinations.get(job.route, ())
            for item in written:
                output_id = _record_output_in(conn, result_id, item)
                for destination in destinations:
                    schedule_delivery_in(conn, output_id, destination)
            self.queue.complete_in(conn, job)


def _record_output_in(conn: Connection, result_id: int, item: WrittenOutput) -> int:
    """Insert the output row; a rerun (same deterministic SOP Instance UID) takes it over."""
    insert_ = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    values = dict(
        result_id=result_id,
        kind=item.output.kind,
        sop_class_uid=item.output.sop_class_uid,
        sop_instance_uid=item.output.sop_instance_uid,
        series_instance_uid=item.output.series_instance_uid,
        path=item.relative_path,
    )
    upsert = (
        insert_(Output)
        .values(**values)
        .on_conflict_do_update(
            index_elements=["sop_instance_uid"],
            set_={k: v for k, v in values.items() if k != "sop_instance_uid"},
        )
        .returning(Output.id)
    )
    return int(conn.execute(upsert).scalar_one())
