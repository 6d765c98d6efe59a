"""The node's flow on one database without its processes: the stable check, the pass that
routes classified films, the release of waiting jobs and one worker, each called by the
test when it wants (an injected clock: the stable check's ``now`` is ``T0 + at_s``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from dicom_node.ingest.route_by_image import ClassifiedReport, route_classified_films
from dicom_node.ingest.stable import promote_stable_studies
from dicom_node.jobs.ordering import release_waiting_jobs
from dicom_node.jobs.queue import JobQueue
from dicom_node.jobs.worker import OutputPlan, Worker
from dicom_node.output.encode import DeviceIdentity
from dicom_node.settings import QueueSettings, RouteRule
from dicom_node.store import DurableStore
from pipelines import PipelineRegistry


class LocalFlow:
    def __init__(
        self,
        engine: Engine,
        store: DurableStore,
        registry: PipelineRegistry,
        outputs_dir: Path,
        routes: tuple[RouteRule, ...],
        *,
        t0: datetime,
        quiet_seconds: float,
    ) -> None:
        self.engine, self.registry, self.routes = engine, registry, routes
        self.t0, self.quiet_seconds = t0, quiet_seconds
        self.queue = JobQueue(engine, QueueSettings(max_attempts=1))
        plan = OutputPlan(
            device=DeviceIdentity(ae_title="NODE", software_version="test"),
            uid_root="1.2.826.0.1.3680043.8.498.99",
            outputs_dir=outputs_dir,
        )
        self.worker = Worker(engine, self.queue, store, registry, "test-worker", plan)

    def promote(self, at_s: float | None = None) -> int:
        """The stable check at ``T0 + at_s`` (default: the quiet period); jobs created."""
        at = self.quiet_seconds if at_s is None else at_s
        return promote_stable_studies(
            self.engine,
            self.queue,
            self.routes,
            self.quiet_seconds,
            now=self.t0 + timedelta(seconds=at),
            scope_of=self.registry.scope,
            runs_after=self.registry.runs_after,
        ).jobs_created

    def settle(self) -> ClassifiedReport:
        return route_classified_films(
            self.engine,
            self.queue,
            self.routes,
            scope_of=self.registry.scope,
            runs_after=self.registry.runs_after,
        )

    def release(self) -> int:
        return release_waiting_jobs(self.engine, self.registry.runs_after)

    def run_jobs(self) -> list[str]:
        """Run every claimable job; their outcomes in order."""
        states = []
        while (job := self.worker.run_once()) is not None:
            states.append(job.state)
        return states
