"""ct_body_part's part in a retraining run of the node (``training.contract.Retraining``).

Labels: none for training (paper 003: L_order + L_dist on unlabelled CT series), plus the
site's calibration file (``labels_file`` of the ``[[retraining]]`` entry: zone ranges in
two labelled series, ``training/ct_body_part/README.md``) for the zone thresholds. Without
that file a run is refused: thresholds calibrated on synthetic phantoms mean nothing on
the site's scanners.

The gate's figure is Spearman's ρ of slice index and score, averaged over the held-out
series (higher is better; a held-out series of the archive has no zone labels, so the
three-zone accuracy cannot be measured there). Sanity: the candidate's calibration
cross-check (its card's ``calibration_cross_check_pct``) is at least
``min_cross_check_pct`` (90 % unless the entry says: the figure below which training
warns that the zones are unreliable) and its mean ρ at least ``min_spearman`` (0.9 unless
the entry says).

``trainer_options``: ``min_spearman``, ``min_cross_check_pct``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.contract import CannotRetrain, Retraining, RetrainInputs

DEFAULT_MIN_SPEARMAN = 0.9
#: ``train.CROSS_CHECK_WARNING_PCT``, kept here so that the node's side imports no torch.
MIN_CROSS_CHECK_PCT = 90.0
OPTIONS = ("min_spearman", "min_cross_check_pct")


def _option(inputs: RetrainInputs, name: str, default: float, low: float, high: float) -> float:
    unknown = sorted(set(inputs.options) - set(OPTIONS))
    if unknown:
        raise CannotRetrain(
            f"ct_body_part has no trainer option {', '.join(unknown)} (known: {', '.join(OPTIONS)})"
        )
    value = inputs.options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise CannotRetrain(f"trainer option {name} must be in [{low:g}, {high:g}], not {value!r}")
    return float(value)


def _min_spearman(inputs: RetrainInputs) -> float:
    return _option(inputs, "min_spearman", DEFAULT_MIN_SPEARMAN, -1, 1)


def _min_cross_check(inputs: RetrainInputs) -> float:
    return _option(inputs, "min_cross_check_pct", MIN_CROSS_CHECK_PCT, 0, 100)


def train_arguments(data_dir: Path, inputs: RetrainInputs) -> list[str]:
    _min_spearman(inputs)
    _min_cross_check(inputs)
    if inputs.labels_file is None:
        raise CannotRetrain(
            "ct_body_part retrains without labels but calibrates its zones on the site's "
            "calibration file: set labels_file (zone ranges in two labelled series, see "
            "training/ct_body_part/README.md) in its [[retraining]] entry"
        )
    return ["--data", str(data_dir), "--calibration", str(inputs.labels_file), "--no-progress"]


def evaluate(model_folder: Path, data_folder: Path, inputs: RetrainInputs) -> dict[str, Any]:
    """Order and anomaly figures of the model on every CT series under ``data_folder``."""
    from pipelines.ct_body_part.model import load_model
    from training.ct_body_part.data import load_ct_volumes
    from training.ct_body_part.evaluate import evaluate_volumes

    model = load_model(Path(model_folder))
    volumes, report = load_ct_volumes(Path(data_folder), model.spec)
    evaluation = evaluate_volumes(model, volumes)
    return {**evaluation.metrics(), "series_skipped": len(report.skipped)}


def sanity(
    card_metrics: Mapping[str, Any], evaluation: Mapping[str, Any], inputs: RetrainInputs
) -> list[str]:
    problems = []
    cross_check = card_metrics.get("calibration_cross_check_pct")
    lowest = _min_cross_check(inputs)
    if not isinstance(cross_check, int | float):
        problems.append("its card has no calibration cross-check")
    elif cross_check < lowest:
        problems.append(f"its calibration cross-check {cross_check:.1f} % is below {lowest:g} %")
    rho = evaluation.get("spearman_mean")
    least = _min_spearman(inputs)
    if not isinstance(rho, int | float) or not math.isfinite(rho) or rho < least:
        problems.append(f"its mean ρ {rho} on the held-out series is below {least:g}")
    return problems


RETRAINING = Retraining(
    labels="unsupervised (slice order) plus the site's calibration file for the zones",
    metric="spearman_mean",
    higher_is_better=True,
    train_arguments=train_arguments,
    evaluate=evaluate,
    sanity=sanity,
)
