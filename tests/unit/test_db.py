"""The results database: migrations equal the models, SQLite pragmas, transactions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from dicom_node.db import migrate
from dicom_node.db.engine import make_engine, write_transaction
from dicom_node.db.models import Base, Instance, Series, Study, StudyState

from .conftest import add_instance, sqlite_url


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrations_reach_head(engine: Engine) -> None:
    assert migrate.current_revision(engine) == migrate.head_revision(engine) == "0006"


def test_migrated_schema_equals_the_models(engine: Engine) -> None:
    assert schema_differences(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_schema_comparison_notices_a_difference(engine: Engine) -> None:
    """The comparison above can fail: a missing index shows up as a difference."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_jobs_claim")
    differences = schema_differences(engine)
    assert len(differences) == 1
    assert differences[0][0] == "add_index"  # type: ignore[index]


def test_upgrade_twice_is_harmless(engine: Engine) -> None:
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == "0006"


def test_fresh_database_has_no_revision(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "new" / "empty.sqlite"))
    try:
        assert (tmp_path / "new").is_dir()  # make_engine creates the folder
        assert migrate.current_revision(engine) is None
    finally:
        engine.dispose()


def test_downgrade_then_upgrade(engine: Engine) -> None:
    from alembic import command

    config = migrate._config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert migrate.current_revision(engine) is None
    assert "studies" not in inspect(engine).get_table_names()
    migrate.upgrade(engine)
    assert schema_differences(engine) == []


def _alembic(engine: Engine, verb: str, revision: str) -> None:
    from alembic import command

    config = migrate._config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, verb)(config, revision)


def _measurement_rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.exec_driver_sql(
                "SELECT result_id, name, value, unit, concept_code, tracking_uid, slice_index "
                "FROM measurements ORDER BY id"
            )
        ]


def test_0002_adds_frame_number_and_keeps_the_measurements_already_logged(
    db_path: Path,
) -> None:
    """A results log from before 0002 (measurements of single-frame series) upgrades in
    place: every row stays as it was, with frame_number NULL; a downgrade keeps them too."""
    engine = make_engine(sqlite_url(db_path))
    try:
        migrate.upgrade(engine, "0001")
        add_instance(engine, "1.2.3", "1.2.3.4", "1.2.3.4.5")
        with engine.begin() as conn:
            series_id = conn.exec_driver_sql("SELECT id FROM series").scalar_one()
            conn.exec_driver_sql(
                "INSERT INTO jobs (id, series_id, pipeline, model_version, series_revision, "
                "state, attempts, max_attempts, run_after, created_at) VALUES (1, ?, "
                "'ct_body_part', 'v1', 1, 'done', 1, 3, '2026-03-01 00:00:00.000000', "
                "'2026-03-01 00:00:00.000000')",
                (series_id,),
            )
            conn.exec_driver_sql(
                "INSERT INTO results (id, job_id, pipeline, model_version, study_instance_uid, "
                "series_instance_uid, created_at, summary) VALUES (1, 1, 'ct_body_part', 'v1', "
                "'1.2.3', '1.2.3.4', '2026-03-01 00:00:00.000000', '{}')"
            )
            conn.exec_driver_sql(
                "INSERT INTO measurements (result_id, name, value, unit, concept_code, "
                "tracking_uid, slice_index) VALUES "
                "(1, 'Body part score', 1.5, '{score}', '99DCMNODE:UBR-SCORE', '1.2.3.4.5', 0), "
                "(1, 'Correlation r', 0.999, '1', '99DCMNODE:UBR-R', NULL, NULL)"
            )
        before = _measurement_rows(engine)
        assert len(before) == 2

        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == "0006"
        assert _measurement_rows(engine) == before
        with engine.connect() as conn:
            frames = conn.exec_driver_sql("SELECT frame_number FROM measurements").all()
        assert [row[0] for row in frames] == [None, None]
        assert schema_differences(engine) == []

        _alembic(engine, "downgrade", "0001")
        assert migrate.current_revision(engine) == "0001"
        columns = {c["name"] for c in inspect(engine).get_columns("measurements")}
        assert "frame_number" not in columns and "slice_index" in columns
        assert _measurement_rows(engine) == before
    finally:
        engine.dispose()


def test_sqlite_pragmas_on_a_fresh_connection(db_path: Path) -> None:
    engine = make_engine(sqlite_url(db_path))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    finally:
        engine.dispose()


def test_busy_timeout_is_configurable(db_path: Path) -> None:
    engine = make_engine(sqlite_url(db_path), busy_timeout_ms=250)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 250
    finally:
        engine.dispose()


def _add_study(conn: object, uid: str = "1.2.3") -> int:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    return conn.execute(  # type: ignore[attr-defined,no-any-return]
        insert(Study)
        .values(
            study_instance_uid=uid,
            state=StudyState.RECEIVING,
            first_received_at=now,
            last_received_at=now,
            times_reopened=0,
        )
        .returning(Study.id)
    ).scalar_one()


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    add_instance(engine, "1.2.3", "1.2.3.4", "1.2.3.4.5")
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), engine.begin() as conn:
        conn.execute(update(Series).values(study_id=999))


def test_deleting_a_study_cascades_to_series_and_instances(engine: Engine) -> None:
    add_instance(engine, "1.2.3", "1.2.3.4", "1.2.3.4.5")
    add_instance(engine, "1.2.3", "1.2.3.4", "1.2.3.4.6")
    with engine.begin() as conn:
        conn.execute(delete(Study).where(Study.study_instance_uid == "1.2.3"))
    with engine.connect() as conn:
        assert conn.scalar(select(func.count(Series.id))) == 0
        assert conn.scalar(select(func.count(Instance.id))) == 0


def test_write_transaction_takes_the_write_lock_at_once(engine: Engine, db_path: Path) -> None:
    impatient = make_engine(sqlite_url(db_path), busy_timeout_ms=50)
    try:
        with write_transaction(engine):
            # Nothing written yet: only BEGIN IMMEDIATE holds the lock here.
            with pytest.raises(OperationalError, match="locked"), write_transaction(impatient):
                pass
        with write_transaction(impatient) as conn:  # free again afterwards
            _add_study(conn)
    finally:
        impatient.dispose()


def test_write_transaction_rolls_back_on_error(engine: Engine) -> None:
    with pytest.raises(RuntimeError), write_transaction(engine) as conn:
        _add_study(conn)
        raise RuntimeError("abort")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count(Study.id))) == 0


def test_utc_datetimes_round_trip_aware(engine: Engine) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=plus_two)
    with engine.begin() as conn:
        conn.execute(
            insert(Study).values(
                study_instance_uid="1.2.3",
                state=StudyState.RECEIVING,
                first_received_at=local,
                last_received_at=local,
                times_reopened=0,
            )
        )
    with engine.connect() as conn:
        stored = conn.scalar(select(Study.first_received_at))
        raw = conn.execute(text("SELECT first_received_at FROM studies")).scalar()
    assert stored == local
    assert stored.tzinfo == UTC
    assert raw.startswith("2026-03-01 08:30:15")


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(
            insert(Study).values(
                study_instance_uid="1.2.3",
                state=StudyState.RECEIVING,
                first_received_at=datetime(2026, 3, 1),
                last_received_at=datetime(2026, 3, 1),
                times_reopened=0,
            )
        )


def test_0003_makes_old_jobs_series_scoped_and_its_downgrade_keeps_the_log(
    db_path: Path,
) -> None:
    """Jobs from before 0003 become series-scoped; going back to 0002 drops the columns in
    place, without rebuilding ``jobs`` (which would cascade to the results)."""
    engine = make_engine(sqlite_url(db_path))
    try:
        migrate.upgrade(engine, "0002")
        add_instance(engine, "1.2.3", "1.2.3.4", "1.2.3.4.5")
        with engine.begin() as conn:
            series_id = conn.exec_driver_sql("SELECT id FROM series").scalar_one()
            conn.exec_driver_sql(
                "INSERT INTO jobs (id, series_id, pipeline, model_version, series_revision, "
                "state, attempts, max_attempts, run_after, created_at) VALUES (1, ?, "
                "'ct_body_part', 'v1', 1, 'done', 1, 3, '2026-03-01 00:00:00.000000', "
                "'2026-03-01 00:00:00.000000')",
                (series_id,),
            )
            conn.exec_driver_sql(
                "INSERT INTO results (id, job_id, pipeline, model_version, study_instance_uid, "
                "series_instance_uid, created_at, summary) VALUES (1, 1, 'ct_body_part', 'v1', "
                "'1.2.3', '1.2.3.4', '2026-03-01 00:00:00.000000', '{}')"
            )

        migrate.upgrade(engine)
        with engine.connect() as conn:
            job = conn.exec_driver_sql("SELECT scope, input_series FROM jobs").one()
        assert tuple(job) == ("series", None)
        assert schema_differences(engine) == []

        _alembic(engine, "downgrade", "0002")
        columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
        assert "scope" not in columns and "input_series" not in columns
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM results").scalar_one() == 1
            assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar_one() == 1
    finally:
        engine.dispose()


def test_0004_makes_old_studies_clinical_and_its_downgrade_keeps_the_log(db_path: Path) -> None:
    """Studies from before 0004 are clinical (routed as before); retraining_runs is new;
    going back to 0003 drops both in place, the studies and their series kept."""
    engine = make_engine(sqlite_url(db_path))
    try:
        migrate.upgrade(engine, "0003")
        add_instance(engine, "1.2.3", "1.2.3.4", "1.2.3.4.5")
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT purpose FROM studies").scalar_one() == "clinical"
            assert conn.exec_driver_sql("SELECT count(*) FROM retraining_runs").scalar_one() == 0
        assert schema_differences(engine) == []

        _alembic(engine, "downgrade", "0003")
        assert "retraining_runs" not in inspect(engine).get_table_names()
        assert "purpose" not in {c["name"] for c in inspect(engine).get_columns("studies")}
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM series").scalar_one() == 1
    finally:
        engine.dispose()


def test_0006_leaves_old_series_routed_by_header_and_its_downgrade_keeps_the_log(
    db_path: Path,
) -> None:
    """Series from before 0006 have no triage state (routed by their header, as before);
    downgrading drops the two columns in place and keeps every row."""
    engine = make_engine(sqlite_url(db_path))
    try:
        migrate.upgrade(engine, "0005")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO studies (study_instance_uid, state, first_received_at, "
                "last_received_at, times_reopened) VALUES "
                "('1.2.3', 'stable', '2026-03-01 00:00:00.000000', "
                "'2026-03-01 00:00:00.000000', 0)"
            )
            conn.exec_driver_sql(
                "INSERT INTO series (study_id, series_instance_uid, modality, "
                "body_part_examined) VALUES (1, '1.2.3.4', 'CR', 'HAND')"
            )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT body_part_examined, triage_state, routing_body_part FROM series"
            ).one()
        assert tuple(row) == ("HAND", None, None)

        _alembic(engine, "downgrade", "0005")
        assert migrate.current_revision(engine) == "0005"
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(engine).get_columns("series")}
            count = conn.exec_driver_sql("SELECT count(*) FROM series").scalar()
        assert "triage_state" not in columns and count == 1
    finally:
        engine.dispose()
