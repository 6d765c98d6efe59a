"""The hand_orientation pipeline with real model folders whose prediction is known.

The models are real networks loaded from real folders; their fc is set so that they
predict one angle φ for every film (``tests.support.models``). That pins the pipeline's
decisions — the turn α − φ, right angles, GSPS or SC — to exact expected values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from sqlalchemy import Engine, select

from dicom_node.db.models import Job, JobState, Output, Result, Series
from dicom_node.jobs.model_registry import NO_MODEL, activate_model, import_model
from dicom_node.jobs.queue import JobKey, JobQueue
from dicom_node.jobs.worker import OutputPlan, Worker
from dicom_node.output.encode import DeviceIdentity
from dicom_node.settings import QueueSettings
from dicom_node.store import DurableStore
from pipelines import PipelineRegistry, SeriesInput
from pipelines.errors import ModelMissing, PipelineInputError
from pipelines.film_io import read_film
from pipelines.hand_orientation import HandOrientation
from pipelines.model_store import WEIGHTS_FILE
from tests.support.datasets import synthetic_dx
from tests.support.models import write_constant_orientation_model
from tests.unit.conftest import UID_ROOT, ingest


def film_series(tmp_path: Path, model_dir: Path | None, count: int = 1) -> SeriesInput:
    files = []
    for index in range(1, count + 1):
        ds = synthetic_dx(index)
        path = tmp_path / f"film{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return SeriesInput(
        study_instance_uid=str(ds.StudyInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        modality="DX",
        files=tuple(files),
        model_version="const-1",
        model_dir=model_dir,
    )


def model_at(tmp_path: Path, angle: float, version: str = "const-1") -> Path:
    folder = tmp_path / "models" / version
    write_constant_orientation_model(folder, angle, version=version)
    return folder


def values(result: object, name: str) -> list[float]:
    return [m.value for m in result.measurements if m.name == name]  # type: ignore[attr-defined]


def test_fingers_to_the_right_get_a_quarter_turn_left_as_sc_and_gsps(tmp_path: Path) -> None:
    series = film_series(tmp_path, model_at(tmp_path, 0.0))
    result = HandOrientation().run(series)
    display = read_film(series.files[0]).display
    assert values(result, "Orientation angle") == [0.0]
    assert values(result, "Rotation applied") == [90.0]
    (image,) = result.derived_images
    assert np.array_equal(image.pixels, np.rot90(display, 1))  # exact: no interpolation
    assert image.pixel_spacing is not None
    (transform,) = result.presentation_transforms
    assert transform.rotation_deg == 270  # DICOM Image Rotation is clockwise
    assert transform.source_sop_instance_uid == read_film(series.files[0]).sop_instance_uid
    assert result.model_version == "const-1" and result.weights_sha256 is not None
    assert result.summary["films"][0]["right_angle"] == 90  # type: ignore[index]


def test_an_upright_film_is_left_as_it_is(tmp_path: Path) -> None:
    series = film_series(tmp_path, model_at(tmp_path, 90.0))
    result = HandOrientation().run(series)
    assert values(result, "Rotation applied") == [0.0]
    assert np.array_equal(result.derived_images[0].pixels, read_film(series.files[0]).display)
    assert result.presentation_transforms[0].rotation_deg == 0


def test_a_free_angle_is_turned_with_interpolation_and_no_gsps(tmp_path: Path) -> None:
    series = film_series(tmp_path, model_at(tmp_path, 120.0))
    result = HandOrientation().run(series)
    assert values(result, "Orientation angle") == pytest.approx([120.0], abs=0.01)
    assert values(result, "Rotation applied") == pytest.approx([-30.0], abs=0.01)
    assert result.presentation_transforms == ()
    (image,) = result.derived_images
    rows, columns = read_film(series.files[0]).display.shape
    assert image.pixels.shape[0] > rows and image.pixels.shape[1] > columns  # canvas grew


def test_a_turn_near_a_right_angle_is_snapped_within_the_tolerance(tmp_path: Path) -> None:
    folder = model_at(tmp_path, 92.5)
    snapped = HandOrientation().run(film_series(tmp_path, folder))
    assert values(snapped, "Rotation applied") == [0.0]
    assert len(snapped.presentation_transforms) == 1
    exact = HandOrientation(right_angle_tolerance_deg=0.0).run(film_series(tmp_path, folder))
    assert values(exact, "Rotation applied") == pytest.approx([-2.5], abs=0.01)
    assert exact.presentation_transforms == ()


def test_gsps_policy_instead_and_never(tmp_path: Path) -> None:
    folder = model_at(tmp_path, 180.0)
    instead = HandOrientation(gsps="instead").run(film_series(tmp_path, folder))
    assert instead.derived_images == () and instead.presentation_transforms[0].rotation_deg == 90
    never = HandOrientation(gsps="never").run(film_series(tmp_path, folder))
    assert never.presentation_transforms == () and len(never.derived_images) == 1
    # A free angle still gets its SC under "instead": nothing is lost.
    free = HandOrientation(gsps="instead").run(film_series(tmp_path, model_at(tmp_path, 50, "v2")))
    assert len(free.derived_images) == 1 and free.presentation_transforms == ()


def test_preferred_angle_is_configurable(tmp_path: Path) -> None:
    result = HandOrientation(preferred_angle_deg=0.0).run(
        film_series(tmp_path, model_at(tmp_path, 0.0))
    )
    assert values(result, "Rotation applied") == [0.0]
    with pytest.raises(ValueError, match="gsps"):
        HandOrientation(gsps="sometimes")  # type: ignore[arg-type]


def test_no_model_tells_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as caught:
        HandOrientation().run(film_series(tmp_path, None))
    message = str(caught.value)
    assert "dicom-node train hand_orientation" in message
    assert "dicom-node models import" in message and "models activate" in message


def test_a_corrupt_model_is_refused_with_the_same_advice(tmp_path: Path) -> None:
    folder = model_at(tmp_path, 0.0)
    (folder / WEIGHTS_FILE).write_bytes(b"not the weights")
    with pytest.raises(ModelMissing, match="SHA-256.*dicom-node train"):
        HandOrientation().run(film_series(tmp_path, folder))


def test_unreadable_files_are_skipped_and_a_series_of_none_is_refused(tmp_path: Path) -> None:
    series = film_series(tmp_path, model_at(tmp_path, 90.0), count=2)
    series.files[1].write_bytes(b"garbage")
    result = HandOrientation().run(series)
    assert len(result.summary["films"]) == 1 and len(result.summary["skipped"]) == 1  # type: ignore[arg-type]
    series.files[0].write_bytes(b"garbage")
    with pytest.raises(PipelineInputError, match="no film in the series could be read"):
        HandOrientation().run(series)


def test_a_changed_model_folder_is_reloaded(tmp_path: Path) -> None:
    folder = model_at(tmp_path, 0.0)
    pipeline = HandOrientation()
    assert values(pipeline.run(film_series(tmp_path, folder)), "Orientation angle") == [0.0]
    write_constant_orientation_model(folder, 180.0, version="const-1")
    assert values(pipeline.run(film_series(tmp_path, folder)), "Orientation angle") == [180.0]


# -- through the worker, with the model store in the database ------------------------------------


def make_worker(engine: Engine, store: DurableStore, tmp_path: Path) -> Worker:
    plan = OutputPlan(
        device=DeviceIdentity(ae_title="NODE", software_version="test"),
        uid_root=UID_ROOT,
        outputs_dir=tmp_path / "outputs",
    )
    return Worker(
        engine,
        JobQueue(engine, QueueSettings(max_attempts=3)),
        store,
        PipelineRegistry(),
        owner="test-worker",
        outputs=plan,
        model_dir=tmp_path / "store",
    )


def stored_film(engine: Engine, store: DurableStore, index: int) -> int:
    ds = synthetic_dx(index, study_uid=f"{UID_ROOT}.77.{index}")
    ds.SeriesInstanceUID = f"{UID_ROOT}.78.{index}"
    ingest(engine, store, ds)
    with engine.connect() as conn:
        return int(
            conn.scalar(select(Series.id).where(Series.series_instance_uid == ds.SeriesInstanceUID))  # type: ignore[arg-type]
        )


def job(engine: Engine, job_id: int) -> Job:
    with engine.connect() as conn:
        return conn.execute(select(Job).where(Job.id == job_id)).one()  # type: ignore[return-value]


def test_worker_fails_without_a_model_then_runs_the_imported_one(
    engine: Engine, store: DurableStore, tmp_path: Path
) -> None:
    worker = make_worker(engine, store, tmp_path)
    series_id = stored_film(engine, store, 1)
    assert worker.queue.enqueue(JobKey(series_id, "hand_orientation", NO_MODEL, 1), route="hands")
    outcome = worker.run_once()
    assert outcome is not None and outcome.state == JobState.FAILED
    failed = job(engine, outcome.job_id)
    assert failed.attempts == 1  # final at once: retrying cannot help
    assert "no active hand_orientation model" in failed.last_error
    assert "dicom-node train hand_orientation" in failed.last_error

    import_model(engine, model_at(tmp_path, 0.0, "v1"), tmp_path / "store", activate=True)
    worker.queue.retry(outcome.job_id)
    outcome = worker.run_once()
    assert outcome is not None and outcome.state == JobState.DONE, outcome
    with engine.connect() as conn:
        result = conn.execute(select(Result.model_version, Result.summary)).one()
        kinds = sorted(conn.execute(select(Output.kind)).scalars())
    assert result.model_version == "v1"
    assert result.summary["films"][0]["rotation_deg"] == 90.0
    assert kinds == ["gsps", "sc", "sr"]
    for path in (tmp_path / "outputs").rglob("*.dcm"):
        pydicom.dcmread(path)  # every output is a readable Part 10 file


def test_worker_picks_up_a_newly_activated_version_without_restart(
    engine: Engine, store: DurableStore, tmp_path: Path
) -> None:
    worker = make_worker(engine, store, tmp_path)
    import_model(engine, model_at(tmp_path, 0.0, "v1"), tmp_path / "store", activate=True)
    import_model(engine, model_at(tmp_path, 180.0, "v2"), tmp_path / "store")
    first = stored_film(engine, store, 1)
    worker.queue.enqueue(JobKey(first, "hand_orientation", "v1", 1), route="hands")
    assert worker.run_once().state == JobState.DONE  # type: ignore[union-attr]
    activate_model(engine, "hand_orientation", "v2")
    second = stored_film(engine, store, 2)
    worker.queue.enqueue(JobKey(second, "hand_orientation", "v2", 1), route="hands")
    assert worker.run_once().state == JobState.DONE  # type: ignore[union-attr]
    with engine.connect() as conn:
        rows = conn.execute(select(Result.model_version, Result.summary).order_by(Result.id)).all()
    assert [(r.model_version, r.summary["films"][0]["angle_deg"]) for r in rows] == [
        ("v1", 0.0),
        ("v2", 180.0),
    ]
