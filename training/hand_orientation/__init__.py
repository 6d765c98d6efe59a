"""Training the ``hand_orientation`` pipeline's network (paper 000, Baltruschat et al.).

Public API:

* ``TrainConfig`` / ``preset(name, **overrides)`` / ``PRESETS`` — the settings of a run,
  and ``TRAINER`` (``training.contract.Trainer``);
* ``train_orientation(config) -> TrainedModel`` — data, training, a complete model folder
  (``weights.pt``, ``model.json``, ``evaluation.json``, ``error_histogram.png``);
* ``evaluate_model(model, samples) -> EvaluationReport`` and ``report_from_predictions``
  — the paper's figures (MAE, share within ±4°, four-way accuracy, σ);
* the sample sources ``load_labelled_films``, ``load_upright_films`` and
  ``render_synthetic_films`` (``data``), and the augmentation (``augment``).

Angles follow ``pipelines.hand_orientation``: θ counter-clockwise as displayed from the
image's +x axis to the wrist → middle-finger axis, upright = 90°. Imports ``pipelines``,
never ``dicom_node``.

The names load on first use (PEP 562), so that importing ``training.hand_orientation.cli``
(the node does, to build its command line) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.hand_orientation.augment import augmented_angle, training_batch
    from training.hand_orientation.data import (
        LabelsError,
        LoadReport,
        OrientationSample,
        SampleSet,
        TrainingDataError,
        display_from_raw,
        load_labelled_films,
        load_upright_films,
        render_synthetic_films,
        rotate_within_frame,
        split_by_film,
    )
    from training.hand_orientation.evaluate import (
        EvaluationReport,
        evaluate_model,
        report_from_predictions,
        write_evaluation,
    )
    from training.hand_orientation.train import (
        PRESETS,
        TRAINER,
        EpochStats,
        TrainConfig,
        TrainedModel,
        initialise_from_file,
        preset,
        train_orientation,
    )

#: Each public name and the submodule it comes from.
_SOURCES = {
    **dict.fromkeys(["augmented_angle", "training_batch"], "augment"),
    **dict.fromkeys(
        [
            "LabelsError",
            "LoadReport",
            "OrientationSample",
            "SampleSet",
            "TrainingDataError",
            "display_from_raw",
            "load_labelled_films",
            "load_upright_films",
            "render_synthetic_films",
            "rotate_within_frame",
            "split_by_film",
        ],
        "data",
    ),
    **dict.fromkeys(
        ["EvaluationReport", "evaluate_model", "report_from_predictions", "write_evaluation"],
        "evaluate",
    ),
    **dict.fromkeys(
        [
            "PRESETS",
            "TRAINER",
            "EpochStats",
            "TrainConfig",
            "TrainedModel",
            "initialise_from_file",
            "preset",
            "train_orientation",
        ],
        "train",
    ),
}

__all__ = [
    "PRESETS",
    "TRAINER",
    "EpochStats",
    "EvaluationReport",
    "LabelsError",
    "LoadReport",
    "OrientationSample",
    "SampleSet",
    "TrainConfig",
    "TrainedModel",
    "TrainingDataError",
    "augmented_angle",
    "display_from_raw",
    "evaluate_model",
    "initialise_from_file",
    "load_labelled_films",
    "load_upright_films",
    "preset",
    "render_synthetic_films",
    "report_from_predictions",
    "rotate_within_frame",
    "split_by_film",
    "train_orientation",
    "training_batch",
    "write_evaluation",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{source}"), name)
    globals()[name] = value  # once loaded, found without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})
