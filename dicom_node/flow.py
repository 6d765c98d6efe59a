"""The flow: the one module that knows the order of the stages and wires them.

receive → store → index → (study stable) → job → route → pipeline → encode → deliver → log

``Node`` is what ``dicom-node serve`` runs: migrations, storage recovery, the receiver,
the scheduler that promotes stable studies (and starts scheduled retraining runs, beside
the flow), and worker processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

from dicom_node import __version__
from dicom_node.db import migrate
from dicom_node.db.engine import make_engine
from dicom_node.db.models import Instance
from dicom_node.errors import (
    InvalidUID,
    NodeError,
    OutOfResources,
    UnreadableDataset,
    UnsafePath,
)
from dicom_node.ingest.index import index_instance, read_header
from dicom_node.ingest.receive import Receiver
from dicom_node.ingest.receiver_pool import ReceiverPool
from dicom_node.ingest.route_by_image import route_classified_films
from dicom_node.ingest.stable import promote_stable_studies
from dicom_node.jobs.ordering import release_waiting_jobs
from dicom_node.jobs.queue import JobQueue
from dicom_node.jobs.worker import OutputPlan, Worker
from dicom_node.output.deliver import Deliverer
from dicom_node.output.encode import DeviceIdentity
from dicom_node.retraining.schedule import RetrainingSchedule
from dicom_node.settings import NodeSettings
from dicom_node.store import DurableStore
from pipelines import PipelineRegistry, PipelineUnavailable

if TYPE_CHECKING:
    from dicom_node.http.server import HttpServer

logger = logging.getLogger(__name__)


@dataclass
class NodeParts:
    """The shared parts every command builds from the settings."""

    settings: NodeSettings
    engine: Engine
    store: DurableStore
    queue: JobQueue

    @classmethod
    def open(cls, settings: NodeSettings) -> NodeParts:
        engine = make_engine(settings.database_url)
        store = DurableStore(settings.storage_dir, min_free_bytes=settings.min_free_bytes)
        return cls(settings, engine, store, JobQueue(engine, settings.queue))

    def deliverer(self) -> Deliverer:
        return Deliverer(
            self.engine,
            self.settings.delivery,
            self.settings.destinations,
            self.settings.outputs_dir,
            self.settings.ae_title,
        )

    def output_plan(self) -> OutputPlan:
        settings = self.settings
        return OutputPlan(
            device=DeviceIdentity(
                ae_title=settings.ae_title,
                software_version=__version__,
                manufacturer=settings.output.manufacturer,
                institution_name=settings.output.institution_name,
            ),
            uid_root=settings.output.uid_root,
            outputs_dir=settings.outputs_dir,
            outbox_dir=settings.outbox_dir,
            route_destinations={route.name: route.destinations for route in settings.routes},
        )

    def worker(self) -> Worker:
        registry = PipelineRegistry(self.settings.extra_pipelines, self.settings.pipeline_options)
        return Worker(
            self.engine,
            self.queue,
            self.store,
            registry,
            outputs=self.output_plan(),
            model_dir=self.settings.model_dir,
        )


@dataclass
class RecoveryReport:
    spool_files_removed: int = 0
    files_indexed: int = 0
    files_skipped: int = 0


def recover_storage(store: DurableStore, engine: Engine) -> RecoveryReport:
    """Clear the spool and index every complete stored file that has no row.

    A file is in place only after it was fsynced, so a file with no row is one whose
    index commit was cut off (a crash between rename and commit): it is complete.
    """
    report = RecoveryReport(spool_files_removed=store.clear_spool())
    with engine.connect() as conn:
        known = set(conn.execute(select(Instance.path)).scalars())
    for relative in store.iter_stored():
        if relative in known:
            continue
        path = store.resolve(relative)
        try:
            header = read_header(path)
            expected = store.relative_path_for(
                header.study_uid, header.series_uid, header.sop_instance_uid
            )
        except (UnreadableDataset, InvalidUID, UnsafePath) as exc:
            logger.warning("not indexing %s: %s", relative, exc)
            report.files_skipped += 1
            continue
        if expected != relative:
            logger.warning("not indexing %s: its UIDs say it belongs at %s", relative, expected)
            report.files_skipped += 1
            continue
        index_instance(
            engine,
            header,
            relative_path=relative,
            size_bytes=path.stat().st_size,
            calling_ae_title=None,
        )
        report.files_indexed += 1
    return report


WorkerFactory = Callable[[], BaseProcess]


class Node:
    """Receiver, scheduler and worker processes on one machine."""

    def __init__(self, settings: NodeSettings, spawn_worker: WorkerFactory | None = None) -> None:
        self.settings = settings
        # Only asked for scopes and orders: a built-in's are declared, nothing is imported.
        self.pipelines = PipelineRegistry(settings.extra_pipelines, settings.pipeline_options)
        routed = {name for route in settings.routes for name in route.pipelines}
        if problems := self.pipelines.order_problems(routed):
            raise NodeError("; ".join(problems))
        self.parts = NodeParts.open(settings)
        # receiver_processes > 1: child receivers on the same port share max_associations.
        self.receivers = ReceiverPool(settings, self.parts.store)
        self.receiver = Receiver(
            settings, self.parts.store, self.parts.engine, self.receivers.main_slots()
        )
        self.deliverer = self.parts.deliverer()
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.retraining = RetrainingSchedule(settings, self.parts.engine)
        self.http: HttpServer | None = None
        if settings.http.enabled:  # imported only when on: uvicorn, Starlette, Jinja2
            from dicom_node.http.server import HttpServer

            self.http = HttpServer(settings, self.parts.engine, self.receiver)
        self._spawn_worker = spawn_worker
        self.workers: list[BaseProcess] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        migrate.upgrade(self.parts.engine)
        recovery = recover_storage(self.parts.store, self.parts.engine)
        logger.info(
            "storage recovery: %d spool file(s) removed, %d file(s) indexed, %d skipped",
            recovery.spool_files_removed,
            recovery.files_indexed,
            recovery.files_skipped,
        )
        self.receiver.start()
        self.receivers.start(self.receiver.port)
        if self.http is not None:
            self.http.start()
        self.scheduler.add_job(
            self.promote_stable,
            "interval",
            seconds=self.settings.stable_check_seconds,
            id="stable",
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self.deliver_due,
            "interval",
            seconds=self.settings.delivery.check_seconds,
            id="deliver",
            max_instances=1,
            coalesce=True,
        )
        if self._spawn_worker is not None and self.settings.workers:
            for _ in range(self.settings.workers):
                self.workers.append(self._start_worker())
            self.scheduler.add_job(
                self.supervise_workers, "interval", seconds=5, id="workers", max_instances=1
            )
        self.retraining.start(self.scheduler)
        self.scheduler.start()

    def promote_stable(self) -> None:
        try:
            promote_stable_studies(
                self.parts.engine,
                self.parts.queue,
                self.settings.routes,
                self.settings.stable_after_seconds,
                scope_of=self.pipeline_scope,
                runs_after=self.pipeline_runs_after,
            )
            # Films classified first (routes that route by image) whose verdict is in.
            route_classified_films(
                self.parts.engine,
                self.parts.queue,
                self.settings.routes,
                scope_of=self.pipeline_scope,
                runs_after=self.pipeline_runs_after,
            )
            # Jobs that run after another pipeline's job on their series, which has ended.
            release_waiting_jobs(self.parts.engine, self.pipeline_runs_after)
        except OutOfResources as exc:
            logger.warning("stable check postponed: %s", exc)

    def pipeline_scope(self, name: str) -> str:
        """A routed pipeline's scope; "series" for one that cannot be loaded (its job then
        fails with the reason, as any job of a missing pipeline does)."""
        try:
            return self.pipelines.scope(name)
        except PipelineUnavailable:
            return "series"

    def pipeline_runs_after(self, name: str) -> str | None:
        """The pipeline ``name`` runs after on a series; None for one that cannot be
        loaded (its job then fails with the reason)."""
        try:
            return self.pipelines.runs_after(name)
        except PipelineUnavailable:
            return None

    def deliver_due(self) -> None:
        try:
            self.deliverer.run_once()
        except OperationalError as exc:  # database locked or unreachable: next round
            logger.warning("deliveries postponed: %s", exc.orig)

    def _start_worker(self) -> BaseProcess:
        assert self._spawn_worker is not None
        process = self._spawn_worker()
        process.start()
        logger.info("worker process %s started", process.pid)
        return process

    def supervise_workers(self) -> None:
        """Restart a worker process that died; its job is claimed again after the lease."""
        with self._lock:
            for index, process in enumerate(self.workers):
                if not process.is_alive():
                    logger.error(
                        "worker process %s exited (%s); starting another",
                        process.pid,
                        process.exitcode,
                    )
                    self.workers[index] = self._start_worker()

    def stop(self) -> None:
        self.retraining.stop()  # a run in progress ends (failed) instead of holding the stop
        if self.http is not None:
            self.http.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.receivers.stop()
        self.receiver.stop()
        with self._lock:
            for process in self.workers:
                process.terminate()
            for process in self.workers:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
            self.workers.clear()
        self.parts.engine.dispose()


def spawn_context() -> multiprocessing.context.SpawnContext:
    """Workers start fresh (spawn): no receiver threads or sockets are inherited."""
    return multiprocessing.get_context("spawn")
