"""The model store's database side (``dicom_node.jobs.model_registry``) on a real SQLite file."""

from __future__ import annotations

import filecmp
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, delete, select, update

from dicom_node.db.models import ModelVersion
from dicom_node.jobs.model_registry import (
    MODEL_FIELDS,
    NO_MODEL,
    ModelRegistryError,
    activate_model,
    active_model_version,
    import_model,
    list_models,
    resolve_model,
)
from pipelines.model_store import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    file_sha256,
    read_model_card,
    write_model_card,
)

from .conftest import T0

PIPELINE = "hand_orientation"


def make_model(
    folder: Path,
    version: str,
    *,
    pipeline: str = PIPELINE,
    seed: int = 0,
    created: datetime = T0,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """A model folder: seeded random weights, a card with their checksum, a report beside."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(np.random.default_rng(seed).bytes(2048))
    (folder / "report.txt").write_text(f"evaluation of {version}\n", encoding="utf-8")
    card = ModelCard(
        pipeline=pipeline,
        version=version,
        created=created,
        architecture={"name": "resnet50"},
        input_spec={"size": [224, 224]},
        weights_sha256=file_sha256(weights),
        metrics={"mae_deg": 2.79} if metrics is None else metrics,
    )
    write_model_card(folder, card)
    return folder


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(ModelVersion).order_by(ModelVersion.id)).all())


def active(engine: Engine, pipeline: str = PIPELINE) -> str:
    with engine.connect() as conn:
        return active_model_version(conn, pipeline)


def same_tree(left: Path, right: Path) -> bool:
    comparison = filecmp.dircmp(left, right)
    if comparison.left_only or comparison.right_only or comparison.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, comparison.common_files, shallow=False)
    return not mismatch and not errors


# -- import --------------------------------------------------------------------------------------


def test_import_copies_the_folder_and_registers_it(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    source = make_model(tmp_path / "trained", "v1", metrics={"mae_deg": 3.1, "n": 50})
    card = import_model(engine, source, model_dir)
    target = model_dir / PIPELINE / "v1"
    assert target.is_dir()
    assert same_tree(source, target)
    assert read_model_card(target) == card
    assert not [p for p in (model_dir / PIPELINE).iterdir() if p.name.startswith(".")]
    (row,) = rows(engine)
    assert (row.pipeline, row.version) == (PIPELINE, "v1")
    assert row.path == f"{PIPELINE}/v1"  # relative to model_dir
    assert row.sha256 == file_sha256(source / WEIGHTS_FILE) == card.weights_sha256
    assert row.created_at == T0
    assert row.metrics == {"mae_deg": 3.1, "n": 50}
    assert row.active is False
    assert active(engine) == NO_MODEL


def test_import_with_activate(engine: Engine, tmp_path: Path, model_dir: Path) -> None:
    import_model(engine, make_model(tmp_path / "a", "v1"), model_dir, activate=True)
    assert active(engine) == "v1"
    assert active(engine, "bone_age") == NO_MODEL


def test_import_leaves_the_source_alone(engine: Engine, tmp_path: Path, model_dir: Path) -> None:
    source = make_model(tmp_path / "trained", "v1")
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    import_model(engine, source, model_dir)
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before


def test_importing_again_is_harmless(engine: Engine, tmp_path: Path, model_dir: Path) -> None:
    source = make_model(tmp_path / "trained", "v1")
    import_model(engine, source, model_dir)
    import_model(engine, source, model_dir)
    # A second copy of the same model, from elsewhere, is the same model too.
    import_model(engine, make_model(tmp_path / "copy", "v1"), model_dir, activate=True)
    assert len(rows(engine)) == 1
    assert same_tree(source, model_dir / PIPELINE / "v1")
    assert active(engine) == "v1"


def test_a_folder_already_in_the_store_is_registered_in_place(
    engine: Engine, model_dir: Path
) -> None:
    target = make_model(model_dir / PIPELINE / "v1", "v1")
    import_model(engine, target, model_dir)
    (row,) = rows(engine)
    assert row.path == f"{PIPELINE}/v1"
    assert sorted(p.name for p in (model_dir / PIPELINE).iterdir()) == ["v1"]


def test_same_version_other_weights_refused_when_registered(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    first = make_model(tmp_path / "first", "v1", seed=1)
    import_model(engine, first, model_dir)
    stored = (model_dir / PIPELINE / "v1" / WEIGHTS_FILE).read_bytes()
    with pytest.raises(ModelRegistryError, match="registered with other weights") as info:
        import_model(engine, make_model(tmp_path / "second", "v1", seed=2), model_dir)
    assert "give the new model another version" in str(info.value)
    assert (model_dir / PIPELINE / "v1" / WEIGHTS_FILE).read_bytes() == stored
    (row,) = rows(engine)
    assert row.sha256 == file_sha256(first / WEIGHTS_FILE)


def test_same_version_other_weights_refused_when_only_the_folder_exists(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    make_model(model_dir / PIPELINE / "v1", "v1", seed=1)  # in the store, not registered
    stored = (model_dir / PIPELINE / "v1" / WEIGHTS_FILE).read_bytes()
    with pytest.raises(ModelRegistryError, match="already holds another hand_orientation v1"):
        import_model(engine, make_model(tmp_path / "second", "v1", seed=2), model_dir)
    assert (model_dir / PIPELINE / "v1" / WEIGHTS_FILE).read_bytes() == stored
    assert rows(engine) == []


def test_same_version_other_weights_refused_when_only_the_row_exists(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    first = make_model(tmp_path / "first", "v1", seed=1)
    import_model(engine, first, model_dir, activate=True)
    shutil.rmtree(model_dir / PIPELINE / "v1")  # the folder is lost, the row remains
    second = make_model(tmp_path / "second", "v1", seed=2)
    with pytest.raises(ModelRegistryError, match="registered with other weights") as info:
        import_model(engine, second, model_dir)
    assert file_sha256(first / WEIGHTS_FILE)[:12] in str(info.value)
    (row,) = rows(engine)
    assert row.sha256 == file_sha256(first / WEIGHTS_FILE)
    # The refused weights must not be left in the store under the registered version.
    assert not (model_dir / PIPELINE / "v1").exists()
    # The right model can be put back.
    import_model(engine, first, model_dir)
    assert same_tree(first, model_dir / PIPELINE / "v1")


def test_a_folder_in_the_store_with_a_corrupt_card_blocks_the_version(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    make_model(model_dir / PIPELINE / "v1", "v1")
    (model_dir / PIPELINE / "v1" / WEIGHTS_FILE).write_bytes(b"truncated")
    with pytest.raises(ModelRegistryError, match="already holds another"):
        import_model(engine, make_model(tmp_path / "new", "v1"), model_dir)
    assert rows(engine) == []


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: (f / WEIGHTS_FILE).write_bytes(b"other"), "corrupt or replaced"),
        (lambda f: (f / WEIGHTS_FILE).unlink(), "is missing"),
        (lambda f: (f / CARD_FILE).unlink(), "is not a model folder"),
        (lambda f: (f / CARD_FILE).write_text("{", encoding="utf-8"), "cannot be read"),
    ],
    ids=["changed-weights", "no-weights", "no-card", "bad-json"],
)
def test_a_corrupt_folder_is_refused(
    engine: Engine, tmp_path: Path, model_dir: Path, spoil: Any, message: str
) -> None:
    source = make_model(tmp_path / "trained", "v1")
    spoil(source)
    with pytest.raises(ModelRegistryError, match=message):
        import_model(engine, source, model_dir, activate=True)
    assert rows(engine) == []
    assert not (model_dir / PIPELINE / "v1").exists()


# -- activate ------------------------------------------------------------------------------------


def test_activate_switches_the_single_active_version(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    import_model(engine, make_model(tmp_path / "1", "v1", seed=1), model_dir, activate=True)
    import_model(engine, make_model(tmp_path / "2", "v2", seed=2), model_dir)
    import_model(
        engine,
        make_model(tmp_path / "b", "b1", pipeline="bone_age", seed=3),
        model_dir,
        activate=True,
    )
    assert (active(engine), active(engine, "bone_age")) == ("v1", "b1")
    activate_model(engine, PIPELINE, "v2")
    assert active(engine) == "v2"
    activate_model(engine, PIPELINE, "v1")
    assert active(engine) == "v1"
    activate_model(engine, PIPELINE, "v1")  # again: no change
    actives = [(r.pipeline, r.version) for r in rows(engine) if r.active]
    assert sorted(actives) == [("bone_age", "b1"), (PIPELINE, "v1")]


def test_importing_with_activate_moves_the_active_version(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    import_model(engine, make_model(tmp_path / "1", "v1", seed=1), model_dir, activate=True)
    import_model(engine, make_model(tmp_path / "2", "v2", seed=2), model_dir, activate=True)
    assert [r.version for r in rows(engine) if r.active] == ["v2"]
    import_model(engine, make_model(tmp_path / "3", "v3", seed=3), model_dir)
    assert active(engine) == "v2"


def test_activate_an_unknown_version_lists_the_known_ones(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    import_model(engine, make_model(tmp_path / "1", "v1", seed=1), model_dir, activate=True)
    import_model(engine, make_model(tmp_path / "2", "v2", seed=2), model_dir)
    with pytest.raises(ModelRegistryError) as info:
        activate_model(engine, PIPELINE, "v9")
    message = str(info.value)
    assert f"no {PIPELINE} model version 'v9'" in message
    assert "known: " in message and "v1" in message and "v2" in message
    assert active(engine) == "v1"  # unchanged


def test_activate_for_a_pipeline_without_models(engine: Engine) -> None:
    with pytest.raises(ModelRegistryError, match="none registered; `dicom-node models import"):
        activate_model(engine, "bone_age", "v1")


def test_activate_does_not_take_another_pipelines_version(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    import_model(engine, make_model(tmp_path / "b", "shared", pipeline="bone_age"), model_dir)
    with pytest.raises(ModelRegistryError, match="none registered"):
        activate_model(engine, PIPELINE, "shared")


# -- resolve ------------------------------------------------------------------------------------


@pytest.fixture
def two_versions(engine: Engine, tmp_path: Path, model_dir: Path) -> None:
    """v1 (active) and v2 of hand_orientation."""
    import_model(engine, make_model(tmp_path / "1", "v1", seed=1), model_dir, activate=True)
    import_model(engine, make_model(tmp_path / "2", "v2", seed=2), model_dir)


def resolve(engine: Engine, version: str, model_dir: Path, pipeline: str = PIPELINE) -> Any:
    with engine.connect() as conn:
        return resolve_model(conn, pipeline, version, model_dir)


@pytest.mark.usefixtures("two_versions")
def test_resolve_the_jobs_own_version(engine: Engine, model_dir: Path) -> None:
    resolved = resolve(engine, "v2", model_dir)
    assert (resolved.version, resolved.folder) == ("v2", model_dir / PIPELINE / "v2")
    assert read_model_card(resolved.folder).version == "v2"


@pytest.mark.usefixtures("two_versions")
@pytest.mark.parametrize("version", [NO_MODEL, "v7"])
def test_resolve_falls_back_to_the_active_version(
    engine: Engine, model_dir: Path, version: str
) -> None:
    resolved = resolve(engine, version, model_dir)
    assert (resolved.version, resolved.folder) == ("v1", model_dir / PIPELINE / "v1")
    activate_model(engine, PIPELINE, "v2")
    assert resolve(engine, version, model_dir).version == "v2"


@pytest.mark.usefixtures("two_versions")
def test_resolve_follows_model_dir(engine: Engine, tmp_path: Path) -> None:
    """Relative paths: the store can move with its settings."""
    moved = tmp_path / "elsewhere"
    assert resolve(engine, "v1", moved).folder == moved / PIPELINE / "v1"


def test_resolve_with_nothing_registered_or_active(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    assert resolve(engine, NO_MODEL, model_dir) is None
    import_model(engine, make_model(tmp_path / "1", "v1"), model_dir)  # registered, not active
    assert resolve(engine, NO_MODEL, model_dir) is None
    assert resolve(engine, "v1", model_dir).version == "v1"
    assert resolve(engine, "v1", model_dir, pipeline="bone_age") is None


def test_resolve_an_absolute_path(engine: Engine, tmp_path: Path, model_dir: Path) -> None:
    import_model(engine, make_model(tmp_path / "1", "v1"), model_dir, activate=True)
    absolute = tmp_path / "pinned" / "v1"
    with engine.begin() as conn:
        conn.execute(update(ModelVersion).values(path=str(absolute)))
    assert resolve(engine, "v1", model_dir).folder == absolute


# -- list ----------------------------------------------------------------------------------------


def test_list_models_ordering_and_filter(engine: Engine, tmp_path: Path, model_dir: Path) -> None:
    later, earlier = T0 + timedelta(days=2), T0 - timedelta(days=2)
    import_model(engine, make_model(tmp_path / "h2", "v2", seed=2, created=later), model_dir)
    import_model(engine, make_model(tmp_path / "h1", "v1", seed=1, created=earlier), model_dir)
    import_model(
        engine, make_model(tmp_path / "h0", "a0", seed=5, created=later), model_dir, activate=True
    )
    import_model(
        engine,
        make_model(tmp_path / "b", "b1", pipeline="bone_age", seed=3),
        model_dir,
        activate=True,
    )
    listed = list_models(engine)
    assert [(r["pipeline"], r["version"]) for r in listed] == [
        ("bone_age", "b1"),
        (PIPELINE, "v1"),  # oldest first
        (PIPELINE, "a0"),  # same time as v2: by version
        (PIPELINE, "v2"),
    ]
    assert all(set(r) == set(MODEL_FIELDS) for r in listed)
    first_hand = listed[1]
    assert first_hand["created_at"] == earlier
    assert first_hand["active"] is False
    assert first_hand["path"] == f"{PIPELINE}/v1"
    assert first_hand["sha256"] == file_sha256(tmp_path / "h1" / WEIGHTS_FILE)
    assert first_hand["metrics"] == {"mae_deg": 2.79}
    assert [r["version"] for r in listed if r["active"]] == ["b1", "a0"]
    only = list_models(engine, PIPELINE)
    assert [r["version"] for r in only] == ["v1", "a0", "v2"]
    assert list_models(engine, "mura_abnormality") == []


def test_list_models_empty(engine: Engine) -> None:
    assert list_models(engine) == []


def test_rows_deleted_by_hand_are_gone_from_the_list(
    engine: Engine, tmp_path: Path, model_dir: Path
) -> None:
    import_model(engine, make_model(tmp_path / "1", "v1"), model_dir, activate=True)
    with engine.begin() as conn:
        conn.execute(delete(ModelVersion))
    assert list_models(engine) == []
    assert active(engine) == NO_MODEL
    # And the folder, still in the store, is registered again in place.
    import_model(engine, model_dir / PIPELINE / "v1", model_dir)
    assert [r["version"] for r in list_models(engine)] == ["v1"]


def test_created_is_kept_as_an_instant(engine: Engine, tmp_path: Path, model_dir: Path) -> None:
    from datetime import timezone

    created = datetime(2026, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    import_model(engine, make_model(tmp_path / "1", "v1", created=created), model_dir)
    (row,) = list_models(engine)
    assert row["created_at"] == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
