"""The job queue on SQLite: idempotent keys, atomic claims, leases, retries."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from dicom_node.db.engine import make_engine
from dicom_node.db.models import Job, JobState, Series
from dicom_node.errors import NodeError
from dicom_node.jobs.queue import ClaimedJob, JobKey, JobNotFound, JobQueue, LeaseLost
from dicom_node.settings import QueueSettings

from .conftest import UIDs, add_instance, job_row, make_due, sqlite_url, wait_for


def new_series(engine: Engine, uids: UIDs, count: int = 1) -> list[int]:
    study = uids.next()
    for _ in range(count):
        add_instance(engine, study, uids.next(), uids.next())
    with engine.connect() as conn:
        return list(conn.scalars(select(Series.id).order_by(Series.id)))[-count:]


@pytest.fixture
def series_id(engine: Engine, uids: UIDs) -> int:
    return new_series(engine, uids)[0]


def key(series_id: int, pipeline: str = "p", revision: int = 1, model: str = "none") -> JobKey:
    return JobKey(series_id, pipeline, model, revision)


def queue_with(engine: Engine, **settings: float) -> JobQueue:
    return JobQueue(engine, QueueSettings(**settings))  # type: ignore[arg-type]


def job_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(Job.id).order_by(Job.id)))


def claim_one(queue: JobQueue, owner: str = "w1") -> ClaimedJob:
    job = queue.claim(owner)
    assert job is not None
    return job


# -- enqueue -----------------------------------------------------------------------------------


def test_enqueue_is_idempotent(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine, max_attempts=5)
    assert queue.enqueue(key(series_id), route="ct") is True
    assert queue.enqueue(key(series_id), route="other") is False
    (job_id,) = job_ids(engine)
    row = job_row(engine, job_id)
    assert (row.state, row.attempts, row.max_attempts, row.route) == (JobState.QUEUED, 0, 5, "ct")


def test_each_part_of_the_key_makes_a_new_job(engine: Engine, uids: UIDs) -> None:
    first, second = new_series(engine, uids, 2)
    queue = queue_with(engine)
    assert queue.enqueue(key(first))
    assert queue.enqueue(key(second))
    assert queue.enqueue(key(first, pipeline="q"))
    assert queue.enqueue(key(first, model="v2"))
    assert queue.enqueue(key(first, revision=2))
    assert not queue.enqueue(key(first, revision=2))
    assert len(job_ids(engine)) == 5


# -- claim -----------------------------------------------------------------------------------------


def test_claim_on_an_empty_queue(engine: Engine) -> None:
    assert queue_with(engine).claim("w1") is None


def test_claim_takes_the_oldest_first_and_marks_it_running(engine: Engine, uids: UIDs) -> None:
    series = new_series(engine, uids, 3)
    queue = queue_with(engine, lease_seconds=60)
    for sid in series:
        queue.enqueue(key(sid))
    before = datetime.now(UTC)
    claimed = [claim_one(queue, f"w{i}") for i in range(3)]
    assert [j.series_id for j in claimed] == series
    assert queue.claim("w9") is None

    first = claimed[0]
    assert (first.pipeline, first.model_version, first.attempt, first.lease_owner) == (
        "p",
        "none",
        1,
        "w0",
    )
    row = job_row(engine, first.id)
    assert row.state == JobState.RUNNING
    assert row.attempts == 1
    assert row.lease_owner == "w0"
    assert row.lease_expires_at == first.lease_expires_at
    assert before + timedelta(seconds=59) < first.lease_expires_at
    assert first.lease_expires_at <= datetime.now(UTC) + timedelta(seconds=60)
    assert row.started_at is not None


def test_claim_can_be_limited_to_pipelines(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine)
    queue.enqueue(key(series_id, "a"))
    queue.enqueue(key(series_id, "b"))
    assert claim_one_of(queue, ("b",)).pipeline == "b"
    assert queue.claim("w", ("b",)) is None
    assert queue.claim("w", ("c", "d")) is None
    assert claim_one_of(queue, ("a", "b")).pipeline == "a"


def claim_one_of(queue: JobQueue, pipelines: tuple[str, ...]) -> ClaimedJob:
    job = queue.claim("w", pipelines)
    assert job is not None
    return job


def test_two_queues_never_claim_the_same_job(engine: Engine, db_path: Path, uids: UIDs) -> None:
    for sid in new_series(engine, uids, 2):
        queue_with(engine).enqueue(key(sid))
    other_engine = make_engine(sqlite_url(db_path))
    try:
        a, b = queue_with(engine), queue_with(other_engine)
        first, second = claim_one(a, "a"), claim_one(b, "b")
        assert first.id != second.id
        assert a.claim("a") is None and b.claim("b") is None
    finally:
        other_engine.dispose()


def test_concurrent_claims_take_every_job_exactly_once(db_path: Path, engine: Engine) -> None:
    """4 threads, each with its own engine and queue, drain 100 jobs."""
    rng = random.Random(20260301)
    study = "1.2.826.0.1.3680043.8.498.7"
    for n in range(10):
        add_instance(engine, study, f"{study}.{n}", f"{study}.{n}.1")
    with engine.connect() as conn:
        series = list(conn.scalars(select(Series.id)))
    keys = [key(sid, f"p{p}") for sid in series for p in range(10)]
    rng.shuffle(keys)
    seeding = queue_with(engine)
    for k in keys:
        assert seeding.enqueue(k)
    total = len(keys)
    assert total == 100

    claims: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def drain(owner: str) -> None:
        thread_engine = make_engine(sqlite_url(db_path))
        queue = JobQueue(thread_engine, QueueSettings(lease_seconds=300))
        try:
            start.wait(timeout=10)
            while True:
                job = queue.claim(owner)
                if job is None:
                    with thread_engine.connect() as conn:
                        left = conn.scalar(
                            select(func.count(Job.id)).where(Job.state == JobState.QUEUED)
                        )
                    if not left:
                        return
                    continue  # lost a race for the write lock: poll again
                with lock:
                    claims.append((owner, job.id))
                queue.complete(job)
        finally:
            thread_engine.dispose()

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(drain, f"worker-{i}") for i in range(4)]
        for future in futures:
            future.result(timeout=60)  # re-raises a thread's error here

    counted = Counter(job_id for _, job_id in claims)
    assert len(claims) == total
    assert set(counted) == set(job_ids(engine))
    assert max(counted.values()) == 1
    with engine.connect() as conn:
        states = dict(conn.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        owners = set(conn.scalars(select(Job.lease_owner)))
    assert states == {JobState.DONE: total}
    assert owners <= {f"worker-{i}" for i in range(4)}


# -- leases ------------------------------------------------------------------------------------


def test_expired_lease_lets_another_owner_claim(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine, lease_seconds=0.2)
    queue.enqueue(key(series_id))
    stale = claim_one(queue, "crashed")
    assert queue.claim("rescuer") is None  # the lease still runs

    rescued = wait_for(lambda: queue.claim("rescuer"), timeout=5)

    assert rescued.id == stale.id
    assert rescued.attempt == 2
    assert rescued.lease_owner == "rescuer"
    with pytest.raises(LeaseLost):
        queue.complete(stale)
    with pytest.raises(LeaseLost):
        queue.fail(stale, "late failure", retry=True)
    with pytest.raises(LeaseLost):
        queue.renew(stale)
    queue.complete(rescued)
    row = job_row(engine, stale.id)
    assert (row.state, row.lease_owner, row.last_error) == (JobState.DONE, "rescuer", None)


def test_a_job_whose_worker_died_on_its_last_attempt_fails(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine, lease_seconds=0.2, max_attempts=2)
    queue.enqueue(key(series_id))
    claim_one(queue, "died-once")
    second = wait_for(lambda: queue.claim("died-twice"), timeout=5)
    assert second.attempt == 2

    # The second worker dies too: once its lease runs out the job is failed, not re-run.
    def failed() -> bool:
        assert queue.claim("third") is None
        return job_row(engine, second.id).state == JobState.FAILED

    wait_for(failed, timeout=5)
    row = job_row(engine, second.id)
    assert row.attempts == 2
    assert "lease expired" in row.last_error
    assert row.finished_at is not None


def test_renew_extends_the_lease(engine: Engine, series_id: int) -> None:
    short = queue_with(engine, lease_seconds=0.2)
    long = queue_with(engine, lease_seconds=60)
    short.enqueue(key(series_id))
    job = claim_one(short, "holder")

    renewed = long.renew(job)

    assert renewed.lease_expires_at > job.lease_expires_at + timedelta(seconds=50)
    assert (renewed.id, renewed.attempt, renewed.lease_owner) == (job.id, 1, "holder")
    assert job_row(engine, job.id).lease_expires_at == renewed.lease_expires_at
    wait_for(lambda: datetime.now(UTC) > job.lease_expires_at + timedelta(milliseconds=50))
    assert short.claim("thief") is None  # the original lease is over, the renewed one is not
    long.complete(renewed)
    assert job_row(engine, job.id).state == JobState.DONE


def test_complete_records_the_finish(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine)
    queue.enqueue(key(series_id))
    job = claim_one(queue)
    queue.complete(job)
    row = job_row(engine, job.id)
    assert row.state == JobState.DONE
    assert row.finished_at is not None
    assert row.lease_expires_at is None
    with pytest.raises(LeaseLost):
        queue.complete(job)  # not running any more
    assert queue.claim("w2") is None


# -- failures and retries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 30.0), (1, 30.0), (2, 60.0), (3, 120.0), (4, 240.0), (5, 300.0), (20, 300.0)],
)
def test_backoff_doubles_up_to_the_cap(engine: Engine, attempt: int, expected: float) -> None:
    queue = queue_with(engine, retry_backoff_seconds=30, retry_backoff_max_seconds=300)
    assert queue.backoff_seconds(attempt) == expected


def test_failed_attempts_are_requeued_with_backoff_then_failed(
    engine: Engine, series_id: int
) -> None:
    queue = queue_with(
        engine, max_attempts=4, retry_backoff_seconds=30, retry_backoff_max_seconds=45
    )
    queue.enqueue(key(series_id))
    expected_delays = [30, 45, 45]  # 30, 60 capped at 45, 120 capped at 45
    for attempt, delay in enumerate(expected_delays, start=1):
        job = claim_one(queue)
        assert job.attempt == attempt
        before = datetime.now(UTC)
        assert queue.fail(job, f"boom {attempt}", retry=True) == JobState.QUEUED
        after = datetime.now(UTC)
        row = job_row(engine, job.id)
        assert row.state == JobState.QUEUED
        assert row.last_error == f"boom {attempt}"
        assert row.lease_owner is None and row.lease_expires_at is None
        assert before + timedelta(seconds=delay) <= row.run_after
        assert row.run_after <= after + timedelta(seconds=delay)
        assert queue.claim("w") is None  # not due yet
        make_due(engine, job.id)

    job = claim_one(queue)
    assert job.attempt == 4
    assert queue.fail(job, "boom 4", retry=True) == JobState.FAILED
    row = job_row(engine, job.id)
    assert (row.state, row.attempts, row.last_error) == (JobState.FAILED, 4, "boom 4")
    assert row.finished_at is not None
    make_due(engine, job.id)
    assert queue.claim("w") is None


def test_first_backoff_is_thirty_then_sixty_seconds(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine, max_attempts=3)  # defaults: 30 s doubling
    queue.enqueue(key(series_id))
    delays = []
    for _ in range(2):
        job = claim_one(queue)
        queue.fail(job, "x", retry=True)
        row = job_row(engine, job.id)
        delays.append((row.run_after - datetime.now(UTC)).total_seconds())
        make_due(engine, job.id)
    assert 29 < delays[0] <= 30
    assert 59 < delays[1] <= 60


def test_defer_overrides_the_backoff(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine, retry_backoff_seconds=30)
    queue.enqueue(key(series_id))
    job = claim_one(queue)
    queue.fail(job, "soon", retry=True, defer=0)
    again = claim_one(queue)
    assert (again.id, again.attempt) == (job.id, 2)
    queue.fail(again, "later", retry=True, defer=5)
    delay = (job_row(engine, job.id).run_after - datetime.now(UTC)).total_seconds()
    assert 4 < delay <= 5


def test_fail_without_retry_is_final(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine, max_attempts=5)
    queue.enqueue(key(series_id))
    job = claim_one(queue)
    assert queue.fail(job, "bad input", retry=False) == JobState.FAILED
    row = job_row(engine, job.id)
    assert (row.state, row.attempts, row.last_error) == (JobState.FAILED, 1, "bad input")


def test_retry_requeues_a_failed_job_with_fresh_attempts(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine, max_attempts=1)
    queue.enqueue(key(series_id))
    job = claim_one(queue)
    queue.fail(job, "broken", retry=True)
    assert job_row(engine, job.id).state == JobState.FAILED

    queue.retry(job.id)

    row = job_row(engine, job.id)
    assert (row.state, row.attempts, row.lease_owner, row.finished_at) == (
        JobState.QUEUED,
        0,
        None,
        None,
    )
    again = claim_one(queue)
    assert (again.id, again.attempt) == (job.id, 1)


def test_retry_of_a_done_job(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine)
    queue.enqueue(key(series_id))
    job = claim_one(queue)
    queue.complete(job)
    queue.retry(job.id)
    assert job_row(engine, job.id).state == JobState.QUEUED


def test_retry_of_a_queued_job_is_refused(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine)
    queue.enqueue(key(series_id))
    (job_id,) = job_ids(engine)
    with pytest.raises(NodeError, match=rf"job {job_id} is queued; only failed or done") as info:
        queue.retry(job_id)
    assert not isinstance(info.value, JobNotFound)
    assert job_row(engine, job_id).state == JobState.QUEUED


def test_retry_of_a_running_job_is_refused(engine: Engine, series_id: int) -> None:
    queue = queue_with(engine)
    queue.enqueue(key(series_id))
    job = claim_one(queue)
    with pytest.raises(NodeError, match="is running"):
        queue.retry(job.id)
    queue.complete(job)  # the holder still holds it


def test_retry_of_an_unknown_job(engine: Engine) -> None:
    with pytest.raises(JobNotFound, match="no job 4711"):
        queue_with(engine).retry(4711)
