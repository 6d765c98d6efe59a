"""mura_abnormality's part in a retraining run of the node (``training.contract.Retraining``).

Labels: the paper's are a radiologist's normal/abnormal per study, which no archive holds
in its headers, so a run needs the site's labels CSV (``labels_file`` of the
``[[retraining]]`` entry: ``study_instance_uid`` or ``accession_number``, and ``label``;
``training/mura_abnormality/README.md``). Studies of the selection without a label are
left out by the trainer; a run without the file is refused.

The gate's figure is the study-level AUROC on the held-out studies that have a label
(higher is better), read through the same labels CSV. Sanity: the AUROC is a number (the
held-out studies hold both classes) and above ``min_auroc`` (0.6 unless the entry says).

``trainer_options``: ``min_auroc``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.contract import CannotRetrain, Retraining, RetrainInputs

DEFAULT_MIN_AUROC = 0.6
OPTIONS = ("min_auroc",)


def _min_auroc(inputs: RetrainInputs) -> float:
    unknown = sorted(set(inputs.options) - set(OPTIONS))
    if unknown:
        raise CannotRetrain(
            f"mura_abnormality has no trainer option {', '.join(unknown)} "
            f"(known: {', '.join(OPTIONS)})"
        )
    value = inputs.options.get("min_auroc", DEFAULT_MIN_AUROC)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise CannotRetrain(f"trainer option min_auroc must be in [0, 1], not {value!r}")
    return float(value)


def _labels_file(inputs: RetrainInputs) -> Path:
    if inputs.labels_file is None:
        raise CannotRetrain(
            "mura_abnormality needs a normal/abnormal label per study, which the archive "
            "does not hold: set labels_file (a CSV of study_instance_uid or "
            "accession_number, label) in its [[retraining]] entry"
        )
    return inputs.labels_file


def train_arguments(data_dir: Path, inputs: RetrainInputs) -> list[str]:
    _min_auroc(inputs)
    labels = _labels_file(inputs)
    return ["--data", str(data_dir), "--labels", str(labels), "--no-progress"]


def evaluate(model_folder: Path, data_folder: Path, inputs: RetrainInputs) -> dict[str, Any]:
    """Study-level figures of the model on the labelled studies under ``data_folder``."""
    import numpy as np

    from pipelines.mura_abnormality.model import load_model
    from pipelines.mura_abnormality.preprocess import from_8bit
    from training.mura_abnormality.data import load_dicom_studies
    from training.mura_abnormality.evaluate import evaluate_studies
    from training.mura_abnormality.train import study_predictions

    model = load_model(Path(model_folder))
    views = load_dicom_studies(Path(data_folder), _labels_file(inputs), size=model.spec.size)
    images = np.stack([view.image for view in views.views])
    probabilities = model.probabilities(from_8bit(images, model.spec))
    report = evaluate_studies(study_predictions(views.views, probabilities), model.threshold)
    metrics = {key: value for key, value in report.metrics().items() if key != "table"}
    return {**metrics, "threshold": model.threshold}


def sanity(
    card_metrics: Mapping[str, Any], evaluation: Mapping[str, Any], inputs: RetrainInputs
) -> list[str]:
    auroc = evaluation.get("auroc")
    least = _min_auroc(inputs)
    if not isinstance(auroc, int | float) or not math.isfinite(auroc):
        return ["its AUROC cannot be measured: the held-out studies hold one class only"]
    if auroc < least:
        return [f"its AUROC {auroc:.3f} on the held-out studies is below {least:g}"]
    return []


RETRAINING = Retraining(
    labels="the site's labels CSV (normal/abnormal per study UID or accession number)",
    metric="auroc",
    higher_is_better=True,
    train_arguments=train_arguments,
    evaluate=evaluate,
    sanity=sanity,
)
