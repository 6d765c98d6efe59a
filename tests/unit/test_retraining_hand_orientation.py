"""hand_orientation's side of a retraining run: the upright check leaves a film out
without moving the other films' known turns, and every model is scored on the same turns
whatever its input size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.hand_orientation.preprocess import input_spec
from training.hand_orientation.data import load_upright_films
from training.synthetic.hand_films import write_hand_study


def _films(folder: Path, count: int) -> list[Path]:
    return [
        write_hand_study(folder, angle_deg=90.0, seed=300 + i, scale=0.05).path
        for i in range(count)
    ]


def test_a_film_left_out_changes_no_other_films_turns(tmp_path: Path) -> None:
    paths = _films(tmp_path, 5)
    spec = input_spec("resnet10", 32, 28)
    every = load_upright_films(tmp_path, spec, rotations_per_film=3, seed=9)
    dropped = paths[2].name

    def accept(path: Path, display: np.ndarray) -> str | None:
        assert display.ndim == 2
        return "askew" if path.name == dropped else None

    some = load_upright_films(tmp_path, spec, rotations_per_film=3, seed=9, accept=accept)
    assert some.report.left_out == (f"{dropped}: askew",) and some.report.films == 4
    kept = [(s.film, s.angle_deg) for s in every.samples if s.film != dropped]
    assert [(s.film, s.angle_deg) for s in some.samples] == kept


def test_models_of_other_input_sizes_see_the_same_turns(tmp_path: Path) -> None:
    _films(tmp_path, 3)
    small = load_upright_films(
        tmp_path, input_spec("resnet10", 32, 28), rotations_per_film=4, seed=1
    )
    large = load_upright_films(
        tmp_path, input_spec("resnet10", 64, 56), rotations_per_film=4, seed=1
    )
    assert [s.angle_deg for s in small.samples] == [s.angle_deg for s in large.samples]
    assert small.samples[0].image.shape != large.samples[0].image.shape
