"""The ``retraining_runs`` rows: one per run, from ``running`` to ``done`` or ``failed``.

A run's ``pid`` is the process working on it now: the training or evaluation process
while one runs, else the process that started the run. A run left ``running`` whose
process is gone (the node was killed, the machine rebooted) is set ``failed`` ("process
died") at the node's start and before any new run; one pipeline has at most one run
``running`` (a second is refused with ``RunRefused``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from dicom_node.clock import utcnow
from dicom_node.db.engine import write_transaction
from dicom_node.db.models import RetrainingRun, RunState
from dicom_node.errors import NodeError

logger = logging.getLogger(__name__)

RUN_FIELDS = (
    "id",
    "pipeline",
    "source",
    "trigger",
    "state",
    "started_at",
    "ended_at",
    "pid",
    "selection",
    "studies",
    "instances",
    "active_version",
    "active_metrics",
    "candidate_version",
    "candidate_metrics",
    "decision",
    "reason",
    "error",
)
PROCESS_DIED = "process died"


class RunRefused(NodeError):
    """A run cannot start: another runs for the pipeline, or its trainer cannot retrain."""


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: os.kill's answer stands
    return state not in ("Z", "X")


def reap_dead_runs(engine: Engine) -> list[int]:
    """Set every ``running`` run whose process is gone ``failed``; their ids."""
    with engine.connect() as conn:
        running = conn.execute(
            select(RetrainingRun.id, RetrainingRun.pid).where(
                RetrainingRun.state == RunState.RUNNING.value
            )
        ).all()
    dead = [row.id for row in running if row.pid is None or not pid_alive(row.pid)]
    for run_id in dead:
        logger.warning("retraining run %d: its process is gone; set failed", run_id)
        fail_run(engine, run_id, PROCESS_DIED)
    return dead


def start_run(
    engine: Engine,
    *,
    pipeline: str,
    source: str,
    trigger: str,
    selection: dict[str, Any],
    pid: int | None = None,
) -> int:
    """Insert a ``running`` run; ``RunRefused`` when ``pipeline`` has one running already."""
    with write_transaction(engine) as conn:
        other = conn.execute(
            select(RetrainingRun.id, RetrainingRun.started_at, RetrainingRun.pid).where(
                RetrainingRun.pipeline == pipeline, RetrainingRun.state == RunState.RUNNING.value
            )
        ).first()
        if other is not None:
            raise RunRefused(
                f"{pipeline} is being retrained already: run {other.id}, started "
                f"{other.started_at:%Y-%m-%d %H:%M:%S} UTC (process {other.pid}); one run "
                "per pipeline at a time"
            )
        run_id = conn.scalar(
            insert(RetrainingRun)
            .values(
                pipeline=pipeline,
                source=source,
                trigger=trigger,
                state=RunState.RUNNING.value,
                started_at=utcnow(),
                pid=os.getpid() if pid is None else pid,
                selection=selection,
            )
            .returning(RetrainingRun.id)
        )
    assert run_id is not None
    logger.info("retraining run %d of %s started (%s, %s)", run_id, pipeline, source, trigger)
    return int(run_id)


def update_run(engine: Engine, run_id: int, **values: Any) -> None:
    """Set columns of a run that is still ``running`` (a run set failed meanwhile stays so)."""
    with write_transaction(engine) as conn:
        conn.execute(
            update(RetrainingRun)
            .where(RetrainingRun.id == run_id, RetrainingRun.state == RunState.RUNNING.value)
            .values(**values)
        )


def finish_run(engine: Engine, run_id: int, **values: Any) -> None:
    """The run is ``done``: the decision and its reason, with any other columns."""
    update_run(engine, run_id, **values, state=RunState.DONE.value, ended_at=utcnow(), pid=None)
    logger.info("retraining run %d done: %s", run_id, values.get("decision"))


def fail_run(engine: Engine, run_id: int, error: str) -> None:
    """The run is ``failed`` with ``error`` (a run already ended keeps its state)."""
    update_run(
        engine, run_id, state=RunState.FAILED.value, ended_at=utcnow(), pid=None, error=error
    )
    logger.error("retraining run %d failed: %s", run_id, error)


def get_run(engine: Engine, run_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(_LISTING.where(RetrainingRun.id == run_id)).one()
    return dict(row._mapping)


def list_runs(engine: Engine, pipeline: str | None = None) -> list[dict[str, Any]]:
    """Every run, newest first (of ``pipeline`` only, when given)."""
    query = _LISTING.order_by(RetrainingRun.id.desc())
    if pipeline is not None:
        query = query.where(RetrainingRun.pipeline == pipeline)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


_LISTING = select(*(getattr(RetrainingRun, name) for name in RUN_FIELDS))
