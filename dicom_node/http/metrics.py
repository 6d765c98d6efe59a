"""``/metrics``: a Prometheus collector that reads everything at scrape time.

Receiver counters come from the receiver's own counts (``NodeAE.counts``,
``ingest/receiver_counts.py``): the whole node's, every receiver process's when there are
several. Everything else comes from the results log: instances and
bytes received, studies, jobs and deliveries by state, the oldest pending delivery, the
active model per pipeline. Jobs run in worker processes (possibly on other hosts), so
their durations cannot be observed in this process: the collector reads the jobs that
finished since its last scrape (by ``finished_at, id``) and adds them to its histograms,
which therefore count every job in the log since this process started scraping, also
those of workers elsewhere, and survive worker restarts.

``dicom_node_job_duration_seconds``: claim to finish (``started_at`` → ``finished_at``).
``dicom_node_inference_seconds``: claim to the result row (``started_at`` → the result's
``created_at``): reading the inputs, the pipeline's run and encoding its outputs; the
results log keeps no finer timing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.orm import Session

from dicom_node.clock import utcnow
from dicom_node.db.models import (
    Delivery,
    DeliveryState,
    Instance,
    Job,
    ModelVersion,
    Output,
    Result,
    Study,
)
from dicom_node.ingest.receive import Receiver

#: C-STORE answers that stored the instance: success and the storage warnings (PS3.4 B.2.3).
_WARNING_OR_SUCCESS = (0x0000, 0x0001, 0xB000, 0xB006, 0xB007)

BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: int = 0
    sum: float = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for index, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[index] += 1

    def buckets(self) -> list[tuple[str, float]]:
        return [
            *((str(b), float(c)) for b, c in zip(BUCKETS, self.counts, strict=True)),
            ("+Inf", float(self.total)),
        ]


class NodeCollector(Collector):
    """One collector for the whole node; ``collect`` runs at each scrape."""

    def __init__(self, engine: Engine, receiver: Receiver) -> None:
        self.engine = engine
        self.receiver = receiver
        self._lock = threading.Lock()
        self._seen: tuple[datetime, int] | None = None
        self._durations: dict[tuple[str, str], _Histogram] = {}
        self._inference: dict[str, _Histogram] = {}

    def collect(self) -> Iterator[Metric]:
        yield from self._receiver_metrics()
        with Session(self.engine) as session:
            yield from self._log_metrics(session)
            with self._lock:
                self._read_finished_jobs(session)
                yield from self._histograms()

    def _receiver_metrics(self) -> Iterator[Metric]:
        totals = self.receiver.ae.counts.node_totals()
        yield CounterMetricFamily(
            "dicom_node_associations_accepted",
            "Associations the receiver accepted",
            totals.accepted,
        )
        family = CounterMetricFamily(
            "dicom_node_associations_rejected",
            "Associations refused, by reason (before association: admission; "
            "association_rejected: A-ASSOCIATE-RJ, e.g. a calling AE not allowed)",
            labels=["reason"],
        )
        for reason, count in sorted(totals.refusals.items()):
            family.add_metric([reason], count)
        family.add_metric(["association_rejected"], totals.rejected)
        yield family
        family = CounterMetricFamily(
            "dicom_node_stores_refused", "C-STORE requests refused, by status", labels=["status"]
        )
        for status, count in sorted(totals.statuses.items()):
            if status not in _WARNING_OR_SUCCESS:  # a failure: the instance was not stored
                family.add_metric([f"0x{status:04X}"], count)
        yield family

    def _log_metrics(self, session: Session) -> Iterator[Metric]:
        count, size = session.execute(
            select(func.count(Instance.id), func.coalesce(func.sum(Instance.size_bytes), 0))
        ).one()
        yield CounterMetricFamily(
            "dicom_node_instances_received", "Instances received and stored", count
        )
        yield CounterMetricFamily(
            "dicom_node_received_bytes", "Bytes of the instances received and stored", size
        )
        family = GaugeMetricFamily("dicom_node_studies", "Studies by state", labels=["state"])
        for state, n in session.execute(select(Study.state, func.count()).group_by(Study.state)):
            family.add_metric([state], n)
        yield family
        family = GaugeMetricFamily(
            "dicom_node_jobs",
            "Jobs by state and pipeline (queue depth)",
            labels=["state", "pipeline"],
        )
        rows = session.execute(
            select(Job.state, Job.pipeline, func.count()).group_by(Job.state, Job.pipeline)
        )
        for state, pipeline, n in rows:
            family.add_metric([state, pipeline], n)
        yield family
        family = GaugeMetricFamily(
            "dicom_node_deliveries",
            "Deliveries by state (outcome) and destination",
            labels=["state", "destination"],
        )
        rows = session.execute(
            select(Delivery.state, Delivery.destination, func.count()).group_by(
                Delivery.state, Delivery.destination
            )
        )
        for state, destination, n in rows:
            family.add_metric([state, destination], n)
        yield family
        oldest = session.execute(
            select(func.min(Result.created_at))
            .join(Output, Output.result_id == Result.id)
            .join(Delivery, Delivery.output_id == Output.id)
            .where(Delivery.state == DeliveryState.PENDING)
        ).scalar()
        age = (utcnow() - oldest).total_seconds() if isinstance(oldest, datetime) else 0.0
        yield GaugeMetricFamily(
            "dicom_node_oldest_pending_delivery_age_seconds",
            "Age of the result of the oldest pending delivery (0: none pending)",
            max(age, 0.0),
        )
        family = GaugeMetricFamily(
            "dicom_node_model_active",
            "1 for the active model version of each pipeline",
            labels=["pipeline", "version"],
        )
        active = session.execute(
            select(ModelVersion.pipeline, ModelVersion.version).where(ModelVersion.active)
        )
        for pipeline, version in active:
            family.add_metric([pipeline, version], 1)
        yield family

    def _read_finished_jobs(self, session: Session) -> None:
        query = (
            select(Job.id, Job.pipeline, Job.state, Job.started_at, Job.finished_at)
            .where(Job.finished_at.is_not(None), Job.started_at.is_not(None))
            .order_by(Job.finished_at, Job.id)
        )
        if self._seen is not None:
            when, last_id = self._seen
            query = query.where(
                or_(Job.finished_at > when, and_(Job.finished_at == when, Job.id > last_id))
            )
        jobs = session.execute(query).all()
        if not jobs:
            return
        results = dict(
            session.execute(
                select(Result.job_id, func.max(Result.created_at))
                .where(Result.job_id.in_([j.id for j in jobs]))
                .group_by(Result.job_id)
            ).all()
        )
        for job in jobs:
            duration = (job.finished_at - job.started_at).total_seconds()
            key = (job.pipeline, job.state)
            self._durations.setdefault(key, _Histogram()).observe(max(duration, 0.0))
            created = results.get(job.id)
            if job.state == "done" and created is not None and created >= job.started_at:
                seconds = (created - job.started_at).total_seconds()
                self._inference.setdefault(job.pipeline, _Histogram()).observe(seconds)
        self._seen = (jobs[-1].finished_at, jobs[-1].id)

    def _histograms(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "dicom_node_job_duration_seconds",
            "Jobs from claim to finish, by pipeline and outcome",
            labels=["pipeline", "state"],
        )
        for (pipeline, state), hist in sorted(self._durations.items()):
            family.add_metric([pipeline, state], hist.buckets(), hist.sum)
        yield family
        family = HistogramMetricFamily(
            "dicom_node_inference_seconds",
            "Done jobs from claim to their result row (inputs, pipeline run, encoding)",
            labels=["pipeline"],
        )
        for pipeline, hist in sorted(self._inference.items()):
            family.add_metric([pipeline], hist.buckets(), hist.sum)
        yield family
