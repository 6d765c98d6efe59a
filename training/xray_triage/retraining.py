"""xray_triage's part in a retraining run of the node (``training.contract.Retraining``).

Labels: with the site's ``labels_file`` (a CSV of path or file name and label, as
``dicom-node train xray_triage --labels``), those; without one, **weak labels from the
archive's own headers**: a film's Body Part Examined names its type
(``body_parts.type_named_by_header``), a modality that is no radiograph (MR, US, a
camera's photo ...) makes it ``not_xray``, and films with neither are left out. Headers
are wrong often enough that this is why the pipeline exists, so the active model (when
there is one) filters them first: a film it calls another label with at least
``min_confidence`` (0.9 unless the entry says) is left out of training, and of the
held-out evaluation alike (the site's pinned folder counts as it is: the node passes no
active model there). An archive rarely holds non-radiographs, and module I needs both
classes: ``synthetic_not_xray`` synthetic non-X-ray images (300 unless the entry says; 0
for none) are added to the training data.

The gate's figure is the whole triage's accuracy (one label of fifteen per image:
``not_xray`` when module I says so, else module II's type) on the held-out images, higher
is better. Sanity: that accuracy is a number and at least ``min_accuracy_pct`` (50 unless
the entry says).

``trainer_options``: ``min_confidence``, ``synthetic_not_xray``, ``min_accuracy_pct``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.contract import CannotRetrain, Retraining, RetrainInputs

DEFAULT_MIN_CONFIDENCE = 0.9
DEFAULT_SYNTHETIC_NOT_XRAY = 300
DEFAULT_MIN_ACCURACY_PCT = 50.0
OPTIONS = ("min_confidence", "synthetic_not_xray", "min_accuracy_pct")


def _options(inputs: RetrainInputs) -> Mapping[str, Any]:
    unknown = sorted(set(inputs.options) - set(OPTIONS))
    if unknown:
        raise CannotRetrain(
            f"xray_triage has no trainer option {', '.join(unknown)} (known: {', '.join(OPTIONS)})"
        )
    return inputs.options


def _number(
    options: Mapping[str, Any], name: str, default: float, low: float, high: float
) -> float:
    value = options.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise CannotRetrain(
            f"trainer option {name} must be a number in [{low:g}, {high:g}], not {value!r}"
        )
    return float(value)


def _min_confidence(options: Mapping[str, Any]) -> float:
    value = _number(options, "min_confidence", DEFAULT_MIN_CONFIDENCE, 0.0, 1.0)
    if value <= 0:
        raise CannotRetrain("trainer option min_confidence must be above 0 (1: keep all)")
    return value


def _synthetic_not_xray(options: Mapping[str, Any]) -> int:
    value = _number(options, "synthetic_not_xray", DEFAULT_SYNTHETIC_NOT_XRAY, 0, 100_000)
    if value != int(value):
        raise CannotRetrain("trainer option synthetic_not_xray must be a whole number")
    return int(value)


def train_arguments(data_dir: Path, inputs: RetrainInputs) -> list[str]:
    """``--data DIR`` with ``--labels FILE`` or ``--weak-labels`` (filtered by the active
    model), plus synthetic non-X-rays for module I."""
    options = _options(inputs)
    confidence = _min_confidence(options)
    _number(options, "min_accuracy_pct", DEFAULT_MIN_ACCURACY_PCT, 0.0, 100.0)  # checked early
    arguments = ["--data", str(data_dir)]
    if inputs.labels_file is not None:
        arguments += ["--labels", str(inputs.labels_file)]
    else:
        arguments.append("--weak-labels")
    if inputs.active_model is not None and confidence < 1.0:
        arguments += [
            "--filter-model",
            str(inputs.active_model),
            "--filter-confidence",
            f"{confidence:g}",
        ]
    count = _synthetic_not_xray(options)
    if count > 0:
        arguments += [
            "--synthetic",
            "1",
            "--synthetic-labels",
            "not_xray",
            "--synthetic-not-xray",
            str(count),
        ]
    return [*arguments, "--no-progress"]


def evaluate(model_folder: Path, data_folder: Path, inputs: RetrainInputs) -> dict[str, Any]:
    """The figures of the model in ``model_folder`` on the labelled images of
    ``data_folder`` (labels file, else weak labels filtered by the active model)."""
    from pipelines.xray_triage.model import load_model
    from training.xray_triage.data import (
        confidence_filter,
        load_labelled_folder,
        load_weak_labels,
    )
    from training.xray_triage.evaluate import evaluate_model

    options = _options(inputs)
    confidence = _min_confidence(options)
    model = load_model(Path(model_folder))
    check = None
    if inputs.active_model is not None and confidence < 1.0:
        check = confidence_filter(inputs.active_model, confidence)
    size = model.spec.size
    if inputs.labels_file is not None:
        loaded = load_labelled_folder(Path(data_folder), inputs.labels_file, size=size, check=check)
    else:
        loaded = load_weak_labels(Path(data_folder), size=size, check=check)
    report = evaluate_model(model, loaded.samples)
    metrics = report.metrics()
    return {
        "accuracy_pct": metrics["accuracy_pct"],
        "module_1_accuracy_pct": metrics["module_1"]["accuracy_pct"],
        "module_2_accuracy_pct": metrics["module_2"]["accuracy_pct"],
        "module_2_per_class_pct": metrics["module_2"]["per_class_pct"],
        "images": len(loaded.samples),
        "labels": loaded.source,
        "files_skipped": len(loaded.skipped),
    }


def sanity(
    card_metrics: Mapping[str, Any], evaluation: Mapping[str, Any], inputs: RetrainInputs
) -> list[str]:
    """The candidate's whole-triage accuracy must be a number of at least
    ``min_accuracy_pct``."""
    least = _number(_options(inputs), "min_accuracy_pct", DEFAULT_MIN_ACCURACY_PCT, 0.0, 100.0)
    accuracy = evaluation.get("accuracy_pct")
    if not isinstance(accuracy, int | float) or not math.isfinite(accuracy):
        return ["its accuracy on the held-out images is not a number (no labelled image)"]
    if accuracy < least:
        return [f"its accuracy {accuracy:.1f} % on the held-out images is below {least:g} %"]
    return []


RETRAINING = Retraining(
    labels="the site's labels CSV, else weak labels from each film's Body Part Examined "
    "(and Modality), filtered by the active model's confident calls; synthetic non-X-rays "
    "added for module I",
    metric="accuracy_pct",
    higher_is_better=True,
    train_arguments=train_arguments,
    evaluate=evaluate,
    sanity=sanity,
)
