"""Shared fixtures and builders for the unit tests.

Every database is a real SQLite file in ``tmp_path`` brought to the newest schema by the
project's own Alembic migrations; every DICOM file is a real Part 10 file made with pydicom.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from sqlalchemy import Engine, select, update

from dicom_node.db import migrate
from dicom_node.db.engine import make_engine
from dicom_node.db.models import Job
from dicom_node.ingest.index import IndexOutcome, InstanceHeader, index_instance, read_header
from dicom_node.store import DurableStore, StoredFile
from tests.support.datasets import SOURCE_SETS, new_instance, set_monochrome_pixels

T = TypeVar("T")

# An org root registered for examples (pydicom's); test UIDs hang below it.
UID_ROOT = "1.2.826.0.1.3680043.8.498"
T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative default paths (var/...) land in tmp_path, never in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _no_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """DICOM_NODE_* variables of the shell running the tests must not leak into settings."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("DICOM_NODE_"):
            monkeypatch.delenv(name)


class UIDs:
    """Deterministic, valid UIDs: ``uids.next()`` never repeats within a test."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{UID_ROOT}.{next(self._counter)}"


@pytest.fixture
def uids() -> UIDs:
    return UIDs()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "node.sqlite"


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database file."""
    engine = make_engine(sqlite_url(db_path))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> DurableStore:
    return DurableStore(tmp_path / "storage")


def wait_for(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def header(
    study: str,
    series: str,
    sop: str,
    *,
    modality: str | None = "CT",
    body_part: str | None = None,
    description: str | None = None,
    sop_class: str = CTImageStorage,
    number: int | None = None,
) -> InstanceHeader:
    return InstanceHeader(
        study_uid=study,
        series_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=sop_class,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        modality=modality,
        body_part_examined=body_part,
        series_description=description,
        instance_number=number,
        study_date="20260301",
    )


def add_instance(
    engine: Engine,
    study: str,
    series: str,
    sop: str,
    *,
    at: datetime = T0,
    **fields: Any,
) -> IndexOutcome:
    """Index an instance row without a file (for stable/queue/route tests)."""
    return index_instance(
        engine,
        header(study, series, sop, **fields),
        relative_path=f"{study}/{series}/{sop}.dcm",
        size_bytes=100,
        calling_ae_title="TEST_SCU",
        received_at=at,
    )


def make_dataset(
    study: str,
    series: str,
    sop: str,
    *,
    modality: str = "CT",
    sop_class: str = CTImageStorage,
    rows: int = 4,
    columns: int = 4,
    number: int | None = 1,
    **attributes: Any,
) -> Dataset:
    """A small but complete Part 10 dataset with pixel data (no patient identifiers)."""
    ds = new_instance(sop_class, sop, study_uid=study, series_uid=series, modality=modality)
    ds.StudyDate = "20260301"
    if number is not None:
        ds.InstanceNumber = number
    pixels = np.arange(rows * columns, dtype=np.uint16)
    set_monochrome_pixels(ds, rows, columns, bits_stored=12, pixels=pixels)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def write_dataset(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass(frozen=True)
class Ingested:
    stored: StoredFile
    header: InstanceHeader
    outcome: IndexOutcome


def ingest(
    engine: Engine, store: DurableStore, ds: Dataset, *, at: datetime | None = None
) -> Ingested:
    """The receiver's fast path without the network: spool, place, index."""
    spooled = write_dataset(ds, store.spool_dir / f"{ds.SOPInstanceUID}.part")
    parsed = read_header(spooled)
    relative = store.relative_path_for(parsed.study_uid, parsed.series_uid, parsed.sop_instance_uid)
    stored = store.place(spooled, relative, overwrite=False)
    outcome = index_instance(
        engine,
        parsed,
        relative_path=stored.relative_path,
        size_bytes=stored.size_bytes,
        calling_ae_title="TEST_SCU",
        received_at=at or T0,
    )
    return Ingested(stored, parsed, outcome)


def job_row(engine: Engine, job_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Job).where(Job.id == job_id)).one()


def make_due(engine: Engine, job_id: int) -> None:
    """Move a job's run_after into the past, as if its backoff had elapsed."""
    with engine.begin() as conn:
        conn.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(run_after=datetime.now(UTC) - timedelta(seconds=1))
        )


@pytest.fixture(params=sorted(SOURCE_SETS))
def sources(request: pytest.FixtureRequest) -> list[Dataset]:
    """Each set of source instances an output can be made from (``dicom_node.output``)."""
    return SOURCE_SETS[request.param]()
