"""The ``[[retraining]]`` entries' schedules in ``serve``.

``RetrainingSchedule.start(scheduler)`` reaps the runs a previous node left ``running``
(their process is gone: ``failed``) and adds one job per entry with a ``cron`` to the
node's APScheduler, a cron trigger in UTC, at most one instance at a time. A job runs the
whole run in a scheduler thread; the training and evaluation run in child processes, so
the receiver and the workers go on. ``stop()`` ends a run in progress (its child process
is ended, the run set ``failed``) so that the node stops without waiting for it.
"""

from __future__ import annotations

import logging
import threading

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine

from dicom_node.errors import NodeError
from dicom_node.retraining.runner import Retrainer
from dicom_node.retraining.runs import reap_dead_runs
from dicom_node.settings import NodeSettings, RetrainingEntry

logger = logging.getLogger(__name__)


def trigger_for(entry: RetrainingEntry) -> BaseTrigger:
    """When ``entry`` runs: its crontab expression, in UTC."""
    assert entry.cron is not None
    return CronTrigger.from_crontab(entry.cron, timezone="UTC")


class RetrainingSchedule:
    def __init__(self, settings: NodeSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._stopping = threading.Event()

    def start(self, scheduler: BaseScheduler) -> None:
        for run_id in reap_dead_runs(self.engine):
            logger.warning("retraining run %d was left running by a process now gone", run_id)
        for entry in self.settings.retraining:
            if entry.cron is None:
                continue
            scheduler.add_job(
                self.run_scheduled,
                trigger_for(entry),
                args=[entry],
                id=f"retrain-{entry.pipeline}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=3600,
            )
            logger.info("retraining of %s scheduled: %s (UTC)", entry.pipeline, entry.cron)

    def run_scheduled(self, entry: RetrainingEntry) -> None:
        """One scheduled run; its outcome is in its row (and the log)."""
        if self._stopping.is_set():
            return
        retrainer = Retrainer(self.settings, self.engine, cancel=self._stopping)
        try:
            outcome = retrainer.run(entry, trigger="schedule")
        except NodeError as exc:  # refused (no row) or failed (recorded in its row)
            logger.error("scheduled retraining of %s: %s", entry.pipeline, exc)
            return
        logger.info(
            "scheduled retraining of %s: run %d %s (%s)",
            entry.pipeline,
            outcome.run_id,
            outcome.decision,
            outcome.reason,
        )

    def stop(self) -> None:
        """End a run in progress (it is recorded ``failed``) and start no other."""
        self._stopping.set()
