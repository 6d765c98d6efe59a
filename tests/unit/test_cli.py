"""The results-log CLI (`studies`, `jobs`, `jobs retry`, `results`) on a populated database."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import Engine, insert, select, update

from dicom_node import cli
from dicom_node.cli import term
from dicom_node.db import migrate
from dicom_node.db.engine import make_engine
from dicom_node.db.models import Job, JobState, Measurement, Result, Series, Study, StudyState

from .conftest import T0, UIDs, add_instance, job_row, sqlite_url

STUDY_A = "1.2.826.0.1.3680043.8.498.100"
STUDY_B = "1.2.826.0.1.3680043.8.498.200"
BRACKETED_ERROR = "ValueError: expected [b, c, h, w], got [bold] and [/]"


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's consoles, writing plain text to the captured streams without wrapping."""
    monkeypatch.setattr(term, "out", Console(width=400, force_terminal=False))
    monkeypatch.setattr(term, "console", Console(stderr=True, width=400, force_terminal=False))


def write_config(folder: Path, database: str) -> Path:
    path = folder / "node.toml"
    path.write_text(
        f'database_url = "sqlite:///{database}"\nstorage_dir = "storage"\n', encoding="utf-8"
    )
    return path


def add_job(engine: Engine, series_id: int, pipeline: str, state: str, **values: Any) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(Job)
                .values(
                    series_id=series_id,
                    pipeline=pipeline,
                    model_version="none",
                    series_revision=1,
                    route="r",
                    state=state,
                    attempts=1 if state != JobState.QUEUED else 0,
                    max_attempts=3,
                    run_after=T0,
                    created_at=T0,
                    **values,
                )
                .returning(Job.id)
            ).scalar_one()
        )


def add_result(
    engine: Engine,
    job_id: int,
    pipeline: str,
    study: str,
    series: str,
    created_at: datetime,
    measurements: list[tuple[str, float, str]],
    summary: dict[str, object],
) -> int:
    with engine.begin() as conn:
        result_id = conn.execute(
            insert(Result)
            .values(
                job_id=job_id,
                pipeline=pipeline,
                model_version="none",
                study_instance_uid=study,
                series_instance_uid=series,
                created_at=created_at,
                summary=summary,
            )
            .returning(Result.id)
        ).scalar_one()
        for name, value, unit in measurements:
            conn.execute(
                insert(Measurement).values(result_id=result_id, name=name, value=value, unit=unit)
            )
    return int(result_id)


class Populated:
    def __init__(self, config: Path, engine: Engine, ids: dict[str, int], series: dict[str, str]):
        self.config = str(config)
        self.engine = engine
        self.ids = ids
        self.series = series


@pytest.fixture
def db(tmp_path: Path, uids: UIDs) -> Any:
    """Study A (stable, CT x2) and B (receiving, CR x1), five jobs, three results."""
    database = tmp_path / "node.sqlite"
    engine = make_engine(sqlite_url(database))
    migrate.upgrade(engine)
    ct, cr = uids.next(), uids.next()
    add_instance(engine, STUDY_A, ct, uids.next(), at=T0)
    add_instance(engine, STUDY_A, ct, uids.next(), at=T0 + timedelta(seconds=1))
    add_instance(engine, STUDY_B, cr, uids.next(), at=T0 + timedelta(hours=1), modality="CR")
    with engine.begin() as conn:
        conn.execute(
            update(Study)
            .where(Study.study_instance_uid == STUDY_A)
            .values(state=StudyState.STABLE, stable_at=T0 + timedelta(minutes=1))
        )
        series_ids = dict(conn.execute(select(Series.series_instance_uid, Series.id)).all())
    ids = {
        "stats_a": add_job(engine, series_ids[ct], "series_stats", JobState.DONE),
        "hand_b": add_job(engine, series_ids[cr], "hand", JobState.DONE),
        "bone_b": add_job(
            engine, series_ids[cr], "bone_age", JobState.FAILED, last_error=BRACKETED_ERROR
        ),
        "other_a": add_job(engine, series_ids[ct], "other", JobState.QUEUED),
        "stats_b": add_job(engine, series_ids[cr], "series_stats", JobState.DONE),
    }
    ids["r1"] = add_result(
        engine,
        ids["stats_a"],
        "series_stats",
        STUDY_A,
        ct,
        datetime(2026, 2, 15, 10, 0, tzinfo=UTC),
        [("instance count", 2.0, "{instances}"), ("max rows", 16.0, "{pixels}")],
        {"instances": 2, "modality": "CT"},
    )
    ids["r2"] = add_result(
        engine,
        ids["hand_b"],
        "hand",
        STUDY_B,
        cr,
        datetime(2026, 3, 10, 9, 0, tzinfo=UTC),
        [("angle", 12.5, "deg")],
        {"upright": False},
    )
    ids["r3"] = add_result(
        engine,
        ids["stats_b"],
        "series_stats",
        STUDY_B,
        cr,
        datetime(2026, 3, 12, 18, 30, tzinfo=UTC),
        [("instance count", 1.0, "{instances}")],
        {"instances": 1, "modality": "CR"},
    )
    yield Populated(write_config(tmp_path, "node.sqlite"), engine, ids, {"ct": ct, "cr": cr})
    engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    code, out, err = run(capsys, *argv, "--format", "json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


def flat(text: str) -> str:
    return " ".join(text.split())


# -- studies ---------------------------------------------------------------------------------


def test_studies_json(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "studies", "--config", db.config)
    assert [r["study_instance_uid"] for r in rows] == [STUDY_B, STUDY_A]  # newest first
    b, a = rows
    assert (a["state"], a["series"], a["instances"]) == ("stable", 1, 2)
    assert (b["state"], b["series"], b["instances"]) == ("receiving", 1, 1)
    assert a["first_received_at"] == "2026-03-01T08:00:00+00:00"
    assert a["last_received_at"] == "2026-03-01T08:00:01+00:00"
    assert a["stable_at"] == "2026-03-01T08:01:00+00:00"
    assert b["stable_at"] is None
    assert a["times_reopened"] == 0


def test_studies_by_state(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    stable = run_json(capsys, "studies", "--config", db.config, "--state", "stable")
    assert [r["study_instance_uid"] for r in stable] == [STUDY_A]
    receiving = run_json(capsys, "studies", "--config", db.config, "--state", "receiving")
    assert [r["study_instance_uid"] for r in receiving] == [STUDY_B]


def test_studies_table(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "studies", "--config", db.config)
    assert code == 0
    assert "Studies" in out
    assert STUDY_A in out and STUDY_B in out
    assert "stable" in out and "receiving" in out


# -- jobs ------------------------------------------------------------------------------------


def test_jobs_failed_json(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "jobs", "--config", db.config, "--state", "failed")
    assert len(rows) == 1
    (row,) = rows
    assert row["id"] == db.ids["bone_b"]
    assert (row["state"], row["pipeline"], row["attempts"]) == ("failed", "bone_age", 1)
    assert row["series_instance_uid"] == db.series["cr"]
    assert row["last_error"] == BRACKETED_ERROR


def test_jobs_all_json_in_id_order(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "jobs", "--config", db.config)
    assert [r["id"] for r in rows] == sorted(
        db.ids[k] for k in ("stats_a", "hand_b", "bone_b", "other_a", "stats_b")
    )


def test_jobs_failed_table_shows_the_error_literally(
    db: Populated, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "jobs", "--config", db.config, "--state", "failed")
    assert (code, err) == (0, "")
    assert "bone_age" in out
    assert BRACKETED_ERROR in out
    assert "series_stats" not in out


def test_jobs_csv(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "jobs", "--config", db.config, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 5
    assert {r["state"] for r in rows} == {"done", "failed", "queued"}
    failed = [r for r in rows if r["state"] == "failed"]
    assert failed[0]["last_error"] == BRACKETED_ERROR


def test_jobs_empty_table(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "jobs", "--config", db.config, "--state", "running")
    assert code == 0
    assert "(none)" in out


@pytest.mark.parametrize("config_first", [False, True], ids=["config-after", "config-before"])
def test_jobs_retry(db: Populated, capsys: pytest.CaptureFixture[str], config_first: bool) -> None:
    job_id = str(db.ids["bone_b"])
    argv = (
        ["jobs", "--config", db.config, "retry", job_id]
        if config_first
        else ["jobs", "retry", job_id, "--config", db.config]
    )
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert f"job {job_id} queued again" in out
    row = job_row(db.engine, db.ids["bone_b"])
    assert (row.state, row.attempts) == (JobState.QUEUED, 0)
    failed = run_json(capsys, "jobs", "--config", db.config, "--state", "failed")
    assert failed == []


def test_jobs_retry_of_a_queued_job(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = db.ids["other_a"]
    code, out, err = run(capsys, "jobs", "retry", str(job_id), "--config", db.config)
    assert code == 1
    assert f"job {job_id} is queued; only failed or done jobs can be re-run" in flat(err)
    assert job_row(db.engine, job_id).state == JobState.QUEUED


def test_jobs_retry_of_an_unknown_job(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "jobs", "retry", "999", "--config", db.config)
    assert code == 1
    assert "no job 999" in err


def test_jobs_retry_needs_a_number(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["jobs", "retry", "seven", "--config", db.config])
    assert info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


# -- results -----------------------------------------------------------------------------------


def test_results_json(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "results", "--config", db.config)
    assert [r["id"] for r in rows] == [db.ids["r1"], db.ids["r2"], db.ids["r3"]]
    first = rows[0]
    assert first == {
        "id": db.ids["r1"],
        "created_at": "2026-02-15T10:00:00+00:00",
        "pipeline": "series_stats",
        "model_version": "none",
        "study_instance_uid": STUDY_A,
        "series_instance_uid": db.series["ct"],
        "measurements": "instance count=2 {instances}; max rows=16 {pixels}",
        "outputs": "",
        "deliveries": "",
        "summary": {"instances": 2, "modality": "CT"},
    }


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--study", STUDY_B], ["r2", "r3"]),
        (["--pipeline", "series_stats"], ["r1", "r3"]),
        (["--since", "2026-03-01"], ["r2", "r3"]),
        (["--since", "2026-03-10T09:00"], ["r2", "r3"]),
        (["--since", "2026-03-10T09:00:01"], ["r3"]),
        (["--since", "2026-03-10T10:00+01:00"], ["r2", "r3"]),
        (["--study", STUDY_B, "--pipeline", "series_stats", "--since", "2026-03-11"], ["r3"]),
        (["--study", STUDY_A, "--pipeline", "hand"], []),
        (["--since", "2027-01-01"], []),
        (["--study", "1.2.3.4"], []),
    ],
)
def test_results_filters(
    db: Populated, capsys: pytest.CaptureFixture[str], filters: list[str], expected: list[str]
) -> None:
    rows = run_json(capsys, "results", "--config", db.config, *filters)
    assert [r["id"] for r in rows] == [db.ids[name] for name in expected]


def test_results_csv(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "results", "--config", db.config, "--pipeline", "series_stats", "--format", "csv"
    )
    assert (code, err) == (0, "")
    reader = csv.DictReader(io.StringIO(out))
    assert reader.fieldnames == [
        "id",
        "created_at",
        "pipeline",
        "model_version",
        "study_instance_uid",
        "series_instance_uid",
        "measurements",
        "outputs",
        "deliveries",
        "summary",
    ]
    rows = list(reader)
    assert [int(r["id"]) for r in rows] == [db.ids["r1"], db.ids["r3"]]
    assert rows[0]["study_instance_uid"] == STUDY_A
    assert rows[0]["measurements"] == "instance count=2 {instances}; max rows=16 {pixels}"
    assert json.loads(rows[1]["summary"]) == {"instances": 1, "modality": "CR"}


def test_results_csv_without_rows_has_a_header(
    db: Populated, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "results", "--config", db.config, "--since", "2030-01-01", "--format", "csv"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines == [
        "id,created_at,pipeline,model_version,study_instance_uid,series_instance_uid,"
        "measurements,outputs,deliveries,summary"
    ]


def test_results_table(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "results", "--config", db.config, "--study", STUDY_B)
    assert code == 0
    assert "Results" in out
    assert "hand" in out and "angle=12.5 deg" in out
    assert "2026-02-15" not in out  # study A's result is filtered out


def test_results_since_must_be_a_date(db: Populated, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["results", "--config", db.config, "--since", "last tuesday"])
    assert info.value.code == 2
    assert "is not an ISO date" in capsys.readouterr().err


# -- databases and configurations that cannot be used -------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["studies"], ["jobs"], ["jobs", "retry", "1"], ["results", "--format", "json"]],
    ids=["studies", "jobs", "retry", "results"],
)
def test_database_without_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    config = write_config(tmp_path, "empty.sqlite")
    (tmp_path / "empty.sqlite").touch()
    code, out, err = run(capsys, *argv, "--config", str(config))
    assert code == 1
    assert out == ""
    assert "the database has no schema yet" in flat(err)
    assert "dicom-node db upgrade" in flat(err)


@pytest.mark.parametrize(
    "argv",
    [["studies"], ["jobs"], ["results"]],
    ids=["studies", "jobs", "results"],
)
def test_missing_database_is_reported_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    config = write_config(tmp_path, "missing/none.sqlite")
    code, out, err = run(capsys, *argv, "--config", str(config))
    assert code == 1
    assert "no database at" in flat(err)
    assert not (tmp_path / "missing").exists()


def test_db_upgrade_then_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, "fresh.sqlite"))
    code, out, _ = run(capsys, "db", "upgrade", "--config", config)
    assert code == 0
    assert "database at revision 0006" in out
    assert (tmp_path / "fresh.sqlite").is_file()
    assert run_json(capsys, "studies", "--config", config) == []


def test_unusable_config_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('database_url = "sqlite:///x.sqlite"\nworkerz = 2\n', encoding="utf-8")
    code, out, err = run(capsys, "studies", "--config", str(config))
    assert code == 2
    assert out == ""
    assert f"configuration error in {config}" in err
    assert "  - workerz: Extra inputs are not permitted" in err
