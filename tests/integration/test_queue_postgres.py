"""Two worker processes drain one queue: every job is claimed and done exactly once.

Run against SQLite (claims inside ``BEGIN IMMEDIATE``) and a real PostgreSQL
(``SELECT ... FOR UPDATE SKIP LOCKED``). Each worker is a separate Python process that
loops ``JobQueue.claim`` / ``complete`` and appends the ids it claimed to its own file;
both start claiming at the same moment (a start file), so their claims race.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, select

from dicom_node.db import migrate
from dicom_node.db.engine import make_engine
from dicom_node.db.models import Job, JobState, Series, Study, StudyState
from dicom_node.jobs.queue import JobKey, JobQueue
from dicom_node.settings import QueueSettings
from tests.integration.node_process import REPO_ROOT
from tests.peers import PostgresProcess, wait_until

pytestmark = pytest.mark.timeout(120)

JOBS = 200
WORKERS = 2

WORKER_SCRIPT = """
import sys, time
from pathlib import Path

from sqlalchemy import func, select

from dicom_node.db.engine import make_engine
from dicom_node.db.models import Job, JobState
from dicom_node.jobs.queue import JobQueue
from dicom_node.settings import QueueSettings

url, out, ready, go, owner = sys.argv[1:6]
engine = make_engine(url)
queue = JobQueue(engine, QueueSettings(lease_seconds=300, poll_seconds=0.01))
with engine.connect() as conn:
    conn.execute(select(1))
Path(ready).touch()
deadline = time.monotonic() + 60
while not Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.005)
unfinished = select(func.count()).select_from(Job).where(
    Job.state.in_([JobState.QUEUED, JobState.RUNNING])
)
with open(out, "a") as claimed:
    while True:
        job = queue.claim(owner)
        if job is None:
            with engine.connect() as conn:
                if not conn.scalar(unfinished):
                    break
            time.sleep(0.005)
            continue
        claimed.write(f"{job.id}\\n")
        claimed.flush()
        queue.complete(job)
engine.dispose()
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.sqlite'}"
        return
    pytest.importorskip("psycopg", reason="psycopg (the postgres extra) is not installed")
    with PostgresProcess(dbname="queue_test") as pg:
        yield pg.url


def enqueue_jobs(engine: Engine, queue: JobQueue, count: int) -> set[int]:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        study_id = conn.execute(
            insert(Study)
            .values(
                study_instance_uid="1.2.3.4",
                state=StudyState.STABLE,
                first_received_at=now,
                last_received_at=now,
                stable_at=now,
                times_reopened=0,
            )
            .returning(Study.id)
        ).scalar_one()
        series_ids = [
            conn.execute(
                insert(Series)
                .values(
                    study_id=study_id,
                    series_instance_uid=f"1.2.3.4.{n}",
                    modality="CT",
                )
                .returning(Series.id)
            ).scalar_one()
            for n in range(4)
        ]
    for n in range(count):
        key = JobKey(series_ids[n % 4], f"pipeline_{n % 5}", "none", n)
        assert queue.enqueue(key, route="test")
    assert not queue.enqueue(JobKey(series_ids[0], "pipeline_0", "none", 0)), "key not idempotent"
    with engine.connect() as conn:
        return set(conn.execute(select(Job.id)).scalars())


def claim_sql(engine: Engine, queue: JobQueue) -> list[str]:
    """The SQL one claim sends (on a pipeline with no jobs, so nothing is taken)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert queue.claim("probe", pipelines=("no_such_pipeline",)) is None
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return statements


def test_two_worker_processes_claim_every_job_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        queue = JobQueue(engine, QueueSettings(lease_seconds=300))
        all_ids = enqueue_jobs(engine, queue, JOBS)
        assert len(all_ids) == JOBS

        sql = claim_sql(engine, queue)
        selects = [s for s in sql if s.upper().startswith("SELECT") and "FROM JOBS" in s.upper()]
        assert selects, sql
        if engine.dialect.name == "postgresql":
            assert all(s.upper().endswith("FOR UPDATE SKIP LOCKED") for s in selects), selects
        else:
            assert "BEGIN IMMEDIATE" in sql, sql

        script = tmp_path / "claim_worker.py"
        script.write_text(WORKER_SCRIPT)
        go = tmp_path / "go"
        outs = [tmp_path / f"claimed-{i}.txt" for i in range(WORKERS)]
        readies = [tmp_path / f"ready-{i}" for i in range(WORKERS)]
        env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), database_url, str(out), str(ready), str(go), f"w{i}"],
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i, (out, ready) in enumerate(zip(outs, readies, strict=True))
        ]
        try:
            wait_until(
                lambda: (
                    all(r.exists() for r in readies) or any(p.poll() is not None for p in procs)
                ),
                timeout=60,
                message="the worker processes did not start",
            )
            go.touch()
            for proc in procs:
                output, _ = proc.communicate(timeout=90)
                assert proc.returncode == 0, output
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

        claimed = [[int(line) for line in out.read_text().split()] for out in outs]
        for ids in claimed:
            duplicates = [i for i, n in Counter(ids).items() if n > 1]
            assert not duplicates, f"one worker claimed a job twice: {duplicates[:5]}"
        first, second = (set(ids) for ids in claimed)
        assert not first & second, f"jobs claimed by both workers: {sorted(first & second)[:5]}"
        assert first | second == all_ids
        # On SQLite one process can starve the other (its busy handler sleeps while the
        # winner takes the write lock again), so only PostgreSQL must show both working.
        if engine.dialect.name == "postgresql":
            assert first and second, f"one worker did all the work: {len(first)} / {len(second)}"

        with engine.connect() as conn:
            rows = conn.execute(select(Job.state, Job.attempts, Job.lease_owner)).all()
        assert Counter(r.state for r in rows) == {JobState.DONE: JOBS}
        assert all(r.attempts == 1 for r in rows)
        owners = Counter(r.lease_owner for r in rows)
        assert owners == Counter({"w0": len(claimed[0]), "w1": len(claimed[1])})
    finally:
        engine.dispose()
