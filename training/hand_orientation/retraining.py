"""hand_orientation's part in a retraining run of the node (``training.contract.Retraining``).

Labels are self-supervised (paper 000): the archive's films are taken as upright, as
radiographers leave them, and each is turned by known random angles. Films stored askew
would teach a wrong label, so the pipeline's active model reads every film first and
those it finds more than ``max_tilt_deg`` (20° unless the entry says) from upright are
left out (``data.not_upright_check``), in training and in the held-out split alike (the
site's pinned evaluation folder counts as it is: the node passes no active model there).

The gate's figure is the MAE in degrees on held-out films, each turned by
``evaluation_rotations`` known angles drawn from a fixed seed: the candidate and the active
model see the same films at the same angles, each through its own input size. A candidate
whose MAE is above ``max_mae_deg`` (30° unless the entry says: a quarter turn wrong on a
third of the films) fails the sanity check whatever the active model scores.

``trainer_options`` of a ``[[retraining]]`` entry for this pipeline: ``max_tilt_deg``,
``rotations_per_film`` (training; default the preset's), ``evaluation_rotations``,
``max_mae_deg``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.contract import CannotRetrain, Retraining, RetrainInputs

DEFAULT_MAX_TILT_DEG = 20.0
DEFAULT_EVALUATION_ROTATIONS = 4
DEFAULT_MAX_MAE_DEG = 30.0
#: The seed of the evaluation's turns: fixed, so that every model is scored on the same ones.
EVALUATION_SEED = 26_000
OPTIONS = ("max_tilt_deg", "rotations_per_film", "evaluation_rotations", "max_mae_deg")


def _options(inputs: RetrainInputs) -> Mapping[str, Any]:
    unknown = sorted(set(inputs.options) - set(OPTIONS))
    if unknown:
        raise CannotRetrain(
            f"hand_orientation has no trainer option {', '.join(unknown)} "
            f"(known: {', '.join(OPTIONS)})"
        )
    return inputs.options


def _number(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CannotRetrain(f"trainer option {name} must be a number, not {value!r}")
    return float(value)


def _max_tilt(options: Mapping[str, Any]) -> float:
    tilt = _number(options, "max_tilt_deg", DEFAULT_MAX_TILT_DEG)
    if not 0 < tilt <= 180:
        raise CannotRetrain("trainer option max_tilt_deg must be in (0, 180] (180: keep all)")
    return tilt


def _count(options: Mapping[str, Any], name: str, default: int) -> int:
    value = _number(options, name, default)
    if value != int(value) or value < 1:
        raise CannotRetrain(f"trainer option {name} must be a whole number of at least 1")
    return int(value)


def train_arguments(data_dir: Path, inputs: RetrainInputs) -> list[str]:
    """``--data DIR`` (upright films), the films' turns, and the upright check."""
    options = _options(inputs)
    if inputs.labels_file is not None:
        raise CannotRetrain(
            "hand_orientation learns from films assumed upright and takes no labels_file"
        )
    arguments = ["--data", str(data_dir)]
    if "rotations_per_film" in options:
        arguments += ["--rotations", str(_count(options, "rotations_per_film", 1))]
    tilt = _max_tilt(options)
    if inputs.active_model is not None and tilt < 180:
        arguments += ["--upright-check", str(inputs.active_model), "--max-tilt", f"{tilt:g}"]
    _count(options, "evaluation_rotations", DEFAULT_EVALUATION_ROTATIONS)  # checked early
    _number(options, "max_mae_deg", DEFAULT_MAX_MAE_DEG)
    return arguments


def evaluate(model_folder: Path, data_folder: Path, inputs: RetrainInputs) -> dict[str, Any]:
    """The paper's figures of the model in ``model_folder`` on the upright films of
    ``data_folder``, each turned by ``evaluation_rotations`` known angles."""
    from pipelines.hand_orientation.model import load_model
    from training.hand_orientation.data import load_upright_films, not_upright_check
    from training.hand_orientation.evaluate import evaluate_model

    options = _options(inputs)
    tilt = _max_tilt(options)
    rotations = _count(options, "evaluation_rotations", DEFAULT_EVALUATION_ROTATIONS)
    model = load_model(Path(model_folder))
    check = None
    if inputs.active_model is not None and tilt < 180:
        check = not_upright_check(inputs.active_model, tilt)
    loaded = load_upright_films(
        Path(data_folder),
        model.spec,
        rotations_per_film=rotations,
        seed=EVALUATION_SEED,
        accept=check,
    )
    report = evaluate_model(model, loaded.samples)
    return {
        **report.metrics(),
        "rotations_per_film": rotations,
        "films_left_out": len(loaded.report.left_out),
        "files_skipped": loaded.report.skipped_count,
    }


def sanity(
    card_metrics: Mapping[str, Any], evaluation: Mapping[str, Any], inputs: RetrainInputs
) -> list[str]:
    """The candidate's MAE on the held-out films must be a number below ``max_mae_deg``."""
    limit = _number(_options(inputs), "max_mae_deg", DEFAULT_MAX_MAE_DEG)
    mae = evaluation.get("mae_deg")
    if not isinstance(mae, int | float) or not math.isfinite(mae):
        return ["its MAE on the held-out films is not a number"]
    if mae > limit:
        return [f"its MAE {mae:.2f}° on the held-out films is above the sanity limit {limit:g}°"]
    return []


RETRAINING = Retraining(
    labels="self-supervised: films assumed upright, turned by known angles; films the "
    "active model finds askew are left out",
    metric="mae_deg",
    higher_is_better=False,
    train_arguments=train_arguments,
    evaluate=evaluate,
    sanity=sanity,
)
