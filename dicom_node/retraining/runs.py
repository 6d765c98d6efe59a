"""The ``retraining_runs`` rows: one per run, from ``running`` to ``done`` or ``failed``.

A run's ``pid`` is the process working on it now: the training or evaluation process
while one runs, else the process that started the run; ``host`` is the machine that
process runs on (``socket.gethostname()``). A run left ``running`` whose process is gone
(the node was killed, the machine rebooted) is set ``failed`` ("process died") at the
node's start and before any new run; one pipeline has at most one run ``running`` (a
second is refused with ``RunRefused``), whichever host runs it.

A pid says something only on its own machine, and nodes of several hosts may share one
PostgreSQL database: a node judges by pid only the runs of its own host (and those
recorded before the ``host`` column, which have none). A run of another host is left to
that host, unless it has been ``running`` for more than ``OTHER_HOST_LIMIT`` (48 hours:
far beyond any preset's training, a paper run on a GPU included, so such a run's host is
taken to have gone away without reaping it); then it is failed with ``OTHER_HOST_GONE``.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
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
    "host",
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
#: How long a run of another host may stay ``running`` before this host fails it.
OTHER_HOST_LIMIT = timedelta(hours=48)
OTHER_HOST_GONE = "its host {host} left it running for more than {hours:g} hours"


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


def this_host() -> str:
    """The name a run's ``host`` records for this machine."""
    return socket.gethostname()


def reap_dead_runs(
    engine: Engine, *, host: str | None = None, now: datetime | None = None
) -> list[int]:
    """Set ``failed`` every ``running`` run of this host (``host``: this machine's name)
    whose process is gone, and every run of another host older than ``OTHER_HOST_LIMIT``;
    their ids."""
    host = this_host() if host is None else host
    now = utcnow() if now is None else now
    with engine.connect() as conn:
        running = conn.execute(
            select(
                RetrainingRun.id, RetrainingRun.pid, RetrainingRun.host, RetrainingRun.started_at
            ).where(RetrainingRun.state == RunState.RUNNING.value)
        ).all()
    dead: list[int] = []
    for row in running:
        if row.host is None or row.host == host:
            if row.pid is not None and pid_alive(row.pid):
                continue
            logger.warning("retraining run %d: its process is gone; set failed", row.id)
            fail_run(engine, row.id, PROCESS_DIED)
        elif now - row.started_at > OTHER_HOST_LIMIT:
            hours = OTHER_HOST_LIMIT.total_seconds() / 3600
            logger.warning(
                "retraining run %d of host %s: running for more than %g hours; set failed",
                row.id,
                row.host,
                hours,
            )
            fail_run(engine, row.id, OTHER_HOST_GONE.format(host=row.host, hours=hours))
        else:
            continue
        dead.append(row.id)
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
    """Insert a ``running`` run of this host; ``RunRefused`` when ``pipeline`` has one
    running already (on any host)."""
    with write_transaction(engine) as conn:
        other = conn.execute(
            select(
                RetrainingRun.id, RetrainingRun.started_at, RetrainingRun.pid, RetrainingRun.host
            ).where(
                RetrainingRun.pipeline == pipeline, RetrainingRun.state == RunState.RUNNING.value
            )
        ).first()
        if other is not None:
            raise RunRefused(
                f"{pipeline} is being retrained already: run {other.id}, started "
                f"{other.started_at:%Y-%m-%d %H:%M:%S} UTC (process {other.pid} on "
                f"{other.host or 'an unrecorded host'}); one run per pipeline at a time"
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
                host=this_host(),
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
