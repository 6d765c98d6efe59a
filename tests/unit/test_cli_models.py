"""``dicom-node models import | list | activate`` against a SQLite file and a model store."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from dicom_node import cli
from dicom_node.cli import term
from dicom_node.db import migrate
from dicom_node.db.engine import make_engine
from pipelines.model_store import WEIGHTS_FILE, ModelCard, file_sha256, write_model_card

from .conftest import T0, sqlite_url

PIPELINE = "hand_orientation"


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's consoles, writing plain text to the captured streams without wrapping."""
    monkeypatch.setattr(term, "out", Console(width=400, force_terminal=False))
    monkeypatch.setattr(term, "console", Console(stderr=True, width=400, force_terminal=False))


class Node:
    """A config in tmp_path naming a database file, storage and model store beside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.database = root / "var" / "node.sqlite"
        self.model_dir = root / "var" / "models"
        self.config = root / "node.toml"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            'database_url = "sqlite:///var/node.sqlite"\n'
            'storage_dir = "var/storage"\n'
            'model_dir = "var/models"\n',
            encoding="utf-8",
        )

    def migrate(self) -> None:
        self.database.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(sqlite_url(self.database))
        migrate.upgrade(engine)
        engine.dispose()


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path / "site")


def make_model(
    folder: Path,
    version: str,
    *,
    pipeline: str = PIPELINE,
    seed: int = 0,
    created: datetime = T0,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(np.random.default_rng(seed).bytes(1024))
    write_model_card(
        folder,
        ModelCard(
            pipeline=pipeline,
            version=version,
            created=created,
            architecture={"name": "resnet50"},
            input_spec={"size": [224, 224]},
            weights_sha256=file_sha256(weights),
            metrics={"mae_deg": 2.5 + seed},
        ),
    )
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def flat(text: str) -> str:
    return " ".join(text.split())


def listed(capsys: pytest.CaptureFixture[str], node: Node, *extra: str) -> list[dict[str, Any]]:
    code, out, err = run(
        capsys, "models", "list", "--config", str(node.config), "--format", "json", *extra
    )
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


# -- import ---------------------------------------------------------------------------------------


def test_import_on_a_fresh_database_migrates_first(
    node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not node.database.exists()
    source = make_model(tmp_path / "trained", "v1")
    code, out, err = run(capsys, "models", "import", str(source), "--config", str(node.config))
    assert (code, err) == (0, "")
    assert f"{PIPELINE} v1 imported into {node.model_dir}" in flat(out)
    assert "not active: `dicom-node models activate`" in flat(out)
    assert node.database.is_file()
    assert (node.model_dir / PIPELINE / "v1" / WEIGHTS_FILE).read_bytes() == (
        source / WEIGHTS_FILE
    ).read_bytes()
    (row,) = listed(capsys, node)
    assert (row["pipeline"], row["version"], row["active"]) == (PIPELINE, "v1", "")
    assert row["path"] == f"{PIPELINE}/v1"
    assert row["sha256"] == file_sha256(source / WEIGHTS_FILE)
    assert datetime.fromisoformat(row["created_at"]) == T0
    assert row["metrics"] == {"mae_deg": 2.5}


def test_import_with_activate(
    node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_model(tmp_path / "trained", "v1")
    code, out, err = run(
        capsys, "models", "import", str(source), "--activate", "--config", str(node.config)
    )
    assert (code, err) == (0, "")
    assert f"{PIPELINE} v1 imported into {node.model_dir} (active)" in flat(out)
    (row,) = listed(capsys, node)
    assert row["active"] == "yes"


def test_import_twice_is_harmless(
    node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_model(tmp_path / "trained", "v1")
    for _ in range(2):
        code, _, err = run(capsys, "models", "import", str(source), "--config", str(node.config))
        assert (code, err) == (0, "")
    assert [r["version"] for r in listed(capsys, node)] == ["v1"]


def test_import_of_a_corrupt_folder_fails_clearly(
    node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_model(tmp_path / "trained", "v1")
    (source / WEIGHTS_FILE).write_bytes(b"not the weights the card names")
    code, out, err = run(capsys, "models", "import", str(source), "--config", str(node.config))
    assert code == 1
    assert out == ""
    assert "error:" in err and "corrupt or replaced" in flat(err)
    assert not (node.model_dir / PIPELINE / "v1").exists()
    assert listed(capsys, node) == []  # the database exists (migrated) but holds nothing


def test_import_of_a_folder_without_a_card(
    node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run(
        capsys, "models", "import", str(tmp_path / "empty"), "--config", str(node.config)
    )
    assert code == 1
    assert "is not a model folder: it has no model.json" in flat(err)


def test_import_of_other_weights_under_a_known_version(
    node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_model(tmp_path / "first", "v1", seed=1)
    assert run(capsys, "models", "import", str(first), "--config", str(node.config))[0] == 0
    second = make_model(tmp_path / "second", "v1", seed=2)
    code, _, err = run(capsys, "models", "import", str(second), "--config", str(node.config))
    assert code == 1
    assert "give the new model another version" in flat(err)
    (row,) = listed(capsys, node)
    assert row["sha256"] == file_sha256(first / WEIGHTS_FILE)


# -- list ---------------------------------------------------------------------------------------


@pytest.fixture
def three_models(node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Node:
    """hand_orientation v1 (active), v2 (a day later); bone_age b1 (active)."""
    imports = [
        (make_model(tmp_path / "v2", "v2", seed=2, created=T0 + timedelta(days=1)), False),
        (make_model(tmp_path / "v1", "v1", seed=1), True),
        (make_model(tmp_path / "b1", "b1", pipeline="bone_age", seed=3), True),
    ]
    for folder, activate in imports:
        argv = ["models", "import", str(folder), "--config", str(node.config)]
        code, _, err = run(capsys, *argv, *(["--activate"] if activate else []))
        assert (code, err) == (0, "")
    return node


def test_list_json(three_models: Node, capsys: pytest.CaptureFixture[str]) -> None:
    rows = listed(capsys, three_models)
    assert [(r["pipeline"], r["version"], r["active"]) for r in rows] == [
        ("bone_age", "b1", "yes"),
        (PIPELINE, "v1", "yes"),
        (PIPELINE, "v2", ""),
    ]
    assert all(len(r["sha256"]) == 64 for r in rows)  # in full outside the table
    assert rows[2]["metrics"] == {"mae_deg": 4.5}
    assert datetime.fromisoformat(rows[2]["created_at"]) == T0 + timedelta(days=1)


def test_list_filtered_by_pipeline(three_models: Node, capsys: pytest.CaptureFixture[str]) -> None:
    rows = listed(capsys, three_models, "--pipeline", PIPELINE)
    assert [r["version"] for r in rows] == ["v1", "v2"]
    assert listed(capsys, three_models, "--pipeline", "mura_abnormality") == []


def test_list_csv(three_models: Node, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "models", "list", "--config", str(three_models.config), "--format", "csv"
    )
    assert (code, err) == (0, "")
    reader = csv.DictReader(io.StringIO(out))
    assert reader.fieldnames == [
        "pipeline",
        "version",
        "active",
        "created_at",
        "sha256",
        "path",
        "metrics",
    ]
    rows = list(reader)
    assert [r["version"] for r in rows] == ["b1", "v1", "v2"]
    assert json.loads(rows[1]["metrics"]) == {"mae_deg": 3.5}


def test_list_table(three_models: Node, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "models", "list", "--config", str(three_models.config))
    assert (code, err) == (0, "")
    assert "Models" in out
    assert "bone_age" in out and "v1" in out and "v2" in out
    sha = listed(capsys, three_models)[0]["sha256"]
    assert sha[:12] in out and sha not in out  # shortened in the table


def test_list_of_an_empty_store(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    node.migrate()
    assert listed(capsys, node) == []
    code, out, _ = run(capsys, "models", "list", "--config", str(node.config))
    assert code == 0 and "(none)" in out


def test_list_without_a_database(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "models", "list", "--config", str(node.config))
    assert (code, out) == (1, "")
    assert f"no database at {node.database}" in flat(err)


# -- activate -------------------------------------------------------------------------------------


def test_activate_switches_versions(three_models: Node, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "models", "activate", PIPELINE, "v2", "--config", str(three_models.config)
    )
    assert (code, err) == (0, "")
    assert f"{PIPELINE} v2 is active; new jobs use it" in flat(out)
    rows = listed(capsys, three_models)
    assert [(r["version"], r["active"]) for r in rows] == [("b1", "yes"), ("v1", ""), ("v2", "yes")]


def test_activate_an_unknown_version(
    three_models: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "models", "activate", PIPELINE, "v9", "--config", str(three_models.config)
    )
    assert (code, out) == (1, "")
    message = flat(err)
    assert f"no {PIPELINE} model version 'v9'" in message
    assert "known:" in message and "v1" in message and "v2" in message
    active = [r["version"] for r in listed(capsys, three_models) if r["active"]]
    assert active == ["b1", "v1"]  # unchanged


def test_activate_for_a_pipeline_without_models(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    node.migrate()
    code, _, err = run(capsys, "models", "activate", "bone_age", "v1", "--config", str(node.config))
    assert code == 1
    assert "none registered; `dicom-node models import FOLDER`" in flat(err)


def test_models_needs_a_subcommand(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["models"])
    assert info.value.code == 2
    assert "models" in capsys.readouterr().err


# -- train ----------------------------------------------------------------------------------------


def test_train_writes_registers_and_activates_a_loadable_model(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.hand_orientation.model import load_model

    code, out, err = run(
        capsys,
        "train",
        "hand_orientation",
        "--config",
        str(node.config),
        "--synthetic",
        "48",
        "--arch",
        "resnet10",
        "--resize",
        "32",
        "--crop",
        "28",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--version",
        "tiny-1",
        "--activate",
    )
    assert code == 0, err
    assert "registered hand_orientation tiny-1 and active" in flat(out)
    folder = node.model_dir / PIPELINE / "tiny-1"
    for name in ("model.json", WEIGHTS_FILE, "evaluation.json", "error_histogram.png"):
        assert (folder / name).is_file(), name
    (row,) = listed(capsys, node)
    assert (row["version"], row["active"], row["path"]) == ("tiny-1", "yes", f"{PIPELINE}/tiny-1")
    assert set(row["metrics"]) >= {"mae_deg", "within_4deg_pct", "quadrant_accuracy_pct"}
    model = load_model(folder)
    assert model.architecture == "resnet10" and model.spec.crop == 28


def test_train_without_data_is_a_clear_error(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "train", "hand_orientation", "--config", str(node.config))
    assert code == 1
    assert "give exactly one data source" in flat(err)
