"""bone_age's part in a retraining run of the node (``training.contract.Retraining``).

Bone age needs labels: a retraining entry for this pipeline must name a ``labels_file``,
a CSV with ``sop_instance_uid`` (or ``file``), ``boneage`` (months) and ``male``; without
one the run is refused (``CannotRetrain``). The node links the archive's films into a
folder; the trainer reads them with those labels (``--data DIR --labels CSV``). The gate's
figure is the MAE in months on the held-out folder (lower is better), the same call for
the candidate and the active model. A candidate whose MAE is not a number, or is not
below ``max_mae_fraction`` (0.8 unless the entry says) of the MAE of guessing the held-out
labels' mean, fails the sanity check whatever the active model scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.contract import CannotRetrain, Retraining, RetrainInputs

OPTIONS = ("max_mae_fraction",)
DEFAULT_MAX_MAE_FRACTION = 0.8


def _limit(inputs: RetrainInputs) -> float:
    unknown = sorted(set(inputs.options) - set(OPTIONS))
    if unknown:
        raise CannotRetrain(
            f"bone_age has no trainer option {', '.join(unknown)} (known: {', '.join(OPTIONS)})"
        )
    value = inputs.options.get("max_mae_fraction", DEFAULT_MAX_MAE_FRACTION)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise CannotRetrain(f"trainer option max_mae_fraction must be in (0, 1], not {value!r}")
    return float(value)


def _labels(inputs: RetrainInputs) -> Path:
    if inputs.labels_file is None:
        raise CannotRetrain(
            "bone_age learns from labelled films: give the entry a labels_file (CSV: "
            "sop_instance_uid or file, boneage in months, male)"
        )
    return Path(inputs.labels_file)


def train_arguments(data_dir: Path, inputs: RetrainInputs) -> list[str]:
    _limit(inputs)
    return ["--data", str(data_dir), "--labels", str(_labels(inputs))]


def evaluate(model_folder: Path, data_folder: Path, inputs: RetrainInputs) -> dict[str, Any]:
    """MAE overall and by sex of the model in ``model_folder`` on the labelled films of
    ``data_folder``."""
    from pipelines.bone_age.model import load_model
    from training.bone_age.data import load_labelled, prepare
    from training.bone_age.evaluate import evaluate_predictions
    from training.bone_age.train import predict

    model = load_model(Path(model_folder))
    data = prepare(load_labelled(Path(data_folder), _labels(inputs)), model.spec)
    report = evaluate_predictions(predict(model.network, data), data.ages, data.sexes)
    return report.metrics()


def sanity(
    card_metrics: Mapping[str, Any], evaluation: Mapping[str, Any], inputs: RetrainInputs
) -> list[str]:
    limit = _limit(inputs)
    mae, guess = evaluation.get("mae_months"), evaluation.get("mean_guess_mae_months")
    if not isinstance(mae, int | float) or not math.isfinite(mae):
        return [f"the held-out MAE is not a number ({mae!r})"]
    if isinstance(guess, int | float) and guess > 0 and mae >= limit * guess:
        return [
            f"held-out MAE {mae:.1f} months is not below {limit:g} x the {guess:.1f} months "
            "of guessing the labels' mean"
        ]
    return []


RETRAINING = Retraining(
    labels="a labels_file CSV: sop_instance_uid (or file), boneage in months, male",
    metric="mae_months",
    higher_is_better=False,
    train_arguments=train_arguments,
    evaluate=evaluate,
    sanity=sanity,
)
