"""Trainers plug in like pipelines: the node finds them by import string
(``dicom_node.trainers``), builds their commands without importing torch, and a trainer
that cannot be loaded breaks only its own command."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from dicom_node import cli, trainers
from dicom_node.cli import term
from training.contract import Presets, Trainer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(term, "out", Console(width=400, force_terminal=False))
    monkeypatch.setattr(term, "console", Console(stderr=True, width=400, force_terminal=False))


@pytest.mark.parametrize("name", trainers.trainer_names())
def test_every_builtin_trainer_meets_the_contract(name: str) -> None:
    module = trainers.trainer_module(name)
    trainer = module.trainer()
    assert isinstance(trainer, Trainer) and trainer.pipeline == name
    assert isinstance(trainer.presets, Presets)
    for preset in ("demo", "smoke"):
        config = trainer.presets.build(preset, seed=7)
        assert isinstance(config, trainer.config_type) and config.seed == 7
        config.validate()
    assert callable(trainer.train)


def test_the_command_line_is_built_without_torch() -> None:
    code = (
        "import sys; from dicom_node.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'monai', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_an_unknown_trainer_is_named() -> None:
    with pytest.raises(trainers.TrainerUnavailable, match="no trainer for pipeline 'chest_xray14'"):
        trainers.trainer_module("chest_xray14")


def test_a_broken_trainer_fails_its_own_command_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(trainers.BUILTIN_TRAINERS, "broken", "tests.no_such_trainer.cli")
    monkeypatch.setitem(trainers.BUILTIN_TRAINERS, "partial", "tests.support")
    assert cli.main(["train", "broken"]) == 1
    err = capsys.readouterr().err
    assert "trainer 'broken': cannot import tests.no_such_trainer.cli" in err
    assert cli.main(["train", "partial"]) == 1
    assert "has no register, trainer, demo_entry" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--help"])
    assert exited.value.code == 0
    listed = capsys.readouterr().out
    assert "hand_orientation" in listed and "ct_body_part" in listed
    assert "cannot run here" in listed


@dataclass(frozen=True)
class _Config:
    out_dir: Path = Path("out")
    seed: int = 0
    version: str | None = None
    size: int = 64
    films: int = 0
    data_dir: Path | None = None

    def validate(self) -> None:
        if self.size < 8:
            raise ValueError("size must be at least 8")

    def summary(self) -> dict[str, object]:
        return {"size": self.size}


def _drop_films_for_real_data(config: _Config, overrides: object) -> _Config:
    assert isinstance(overrides, dict)
    return config if overrides.get("data_dir") is None else _Config(size=config.size)


def test_presets_build_checks_names_and_settings() -> None:
    presets = Presets({"small": _Config(size=32, films=10)}, adjust=_drop_films_for_real_data)
    assert presets.names() == ["small"] and "small" in presets and len(presets) == 1
    assert presets.build("small") == _Config(size=32, films=10)
    # None keeps the preset's value (the CLI passes every flag, given or not).
    assert presets.build("small", size=None, seed=3) == _Config(size=32, films=10, seed=3)
    assert presets.build("small", data_dir=Path("films")).films == 0
    with pytest.raises(ValueError, match=r"unknown preset 'large' \(known: small\)"):
        presets.build("large")
    with pytest.raises(ValueError, match="unknown settings: colour"):
        presets.build("small", colour="blue")


def test_a_trainer_builds_the_config_a_command_line_asks_for() -> None:
    """The flags not given (None) keep the preset's values, or the defaults without one."""
    presets = Presets({"small": _Config(size=32, films=10)}, adjust=_drop_films_for_real_data)
    trainer: Trainer[_Config] = Trainer("demo", _Config, presets, lambda config: None)  # type: ignore[arg-type,return-value]
    assert trainer.config(None, size=None, seed=3) == _Config(seed=3)
    assert trainer.config("small", size=None, seed=3) == _Config(size=32, films=10, seed=3)
    assert trainer.config("small", data_dir=Path("films")).films == 0
    with pytest.raises(ValueError, match="unknown preset 'large'"):
        trainer.config("large", seed=3)
