"""The evaluation of a triage model on held-out images: the paper's figures.

Urinbayev et al. report, on their 10 % test split, module I's accuracy (98.7 %) with its
2 × 2 confusion matrix (Table II) and module II's accuracy (97.6 %) with its 14 × 14
confusion matrix (Fig. 3). Here, on the held-out part:

* module I on every image: X-ray when P(X-ray) reaches the model's ``xray_threshold``;
  accuracy, accuracy per class (the share of each true class called right) and the
  confusion matrix;
* module II on the X-ray images only (as the paper evaluates it): the type with the
  largest probability; the same figures over the fourteen types (a type without held-out
  images has no figure: null);
* the whole triage, one label per image out of fifteen: ``not_xray`` when module I says
  so, else module II's type: its accuracy, the figure the retraining gate compares.

``write_evaluation`` saves ``evaluation.json``, the tables as ``evaluation.md`` and both
confusion matrices as ``confusion_matrix.png``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.xray_triage.network import MODULE_1_CLASSES, MODULE_2_CLASSES
from training.xray_triage.data import LABELS

if TYPE_CHECKING:
    from pipelines.xray_triage.model import TriageModel
    from training.xray_triage.data import TriageSample

EVALUATION_FILE = "evaluation.json"
TABLE_FILE = "evaluation.md"
CONFUSION_FILE = "confusion_matrix.png"
#: The paper's test accuracies (on its data).
PAPER_FIGURES = {"module_1_accuracy_pct": 98.7, "module_2_accuracy_pct": 97.6}


@dataclass(frozen=True)
class ModuleReport:
    """One classifier's figures: ``matrix[actual][predicted]`` counts over ``classes``."""

    classes: tuple[str, ...]
    matrix: np.ndarray

    @property
    def images(self) -> int:
        return int(self.matrix.sum())

    @property
    def accuracy_pct(self) -> float:
        total = self.images
        return math.nan if total == 0 else 100.0 * float(np.trace(self.matrix)) / total

    def per_class_pct(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for index, name in enumerate(self.classes):
            row = int(self.matrix[index].sum())
            out[name] = None if row == 0 else round(100.0 * int(self.matrix[index, index]) / row, 2)
        return out

    def to_json(self) -> dict[str, Any]:
        accuracy = self.accuracy_pct
        return {
            "images": self.images,
            "accuracy_pct": None if math.isnan(accuracy) else round(accuracy, 2),
            "per_class_pct": self.per_class_pct(),
            "confusion": {
                "classes": list(self.classes),
                "rows": "actual",
                "columns": "predicted",
                "matrix": self.matrix.astype(int).tolist(),
            },
        }


def confusion(
    classes: Sequence[str], actual: Sequence[int], predicted: Sequence[int]
) -> ModuleReport:
    """The ``ModuleReport`` of class indices ``actual`` against ``predicted``."""
    if len(actual) != len(predicted):
        raise ValueError(f"{len(actual)} true labels but {len(predicted)} predictions")
    size = len(classes)
    matrix = np.zeros((size, size), dtype=np.int64)
    for a, p in zip(actual, predicted, strict=True):
        if not (0 <= a < size and 0 <= p < size):
            raise ValueError(f"class index {a} or {p} is not one of {size} classes")
        matrix[a, p] += 1
    return ModuleReport(tuple(classes), matrix)


@dataclass(frozen=True)
class TriageReport:
    module_1: ModuleReport
    module_2: ModuleReport
    whole: ModuleReport
    xray_threshold: float

    def metrics(self) -> dict[str, Any]:
        """What the model card's ``metrics`` hold."""
        whole = self.whole.accuracy_pct
        return {
            "accuracy_pct": None if math.isnan(whole) else round(whole, 2),
            "module_1": self.module_1.to_json(),
            "module_2": self.module_2.to_json(),
            "xray_threshold": self.xray_threshold,
            "paper": dict(PAPER_FIGURES),
            "confusion_matrix_png": CONFUSION_FILE,
        }


def predictions(
    model: TriageModel, samples: Sequence[TriageSample], *, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """P(X-ray) (N,) and module II's softmax (N, 14) of every sample."""
    from pipelines.xray_triage.preprocess import from_8bit

    xray, types = [], []
    for start in range(0, len(samples), batch_size):
        part = samples[start : start + batch_size]
        batch = from_8bit(np.stack([s.image for s in part]), model.spec)
        xray.append(model.xray_probabilities(batch, batch_size=batch_size))
        types.append(model.type_probabilities(batch, batch_size=batch_size))
    if not xray:
        return np.zeros(0), np.zeros((0, len(MODULE_2_CLASSES)))
    return np.concatenate(xray), np.concatenate(types)


def report_of(
    labels: Sequence[str], xray: np.ndarray, types: np.ndarray, threshold: float
) -> TriageReport:
    """The figures of predictions ``xray`` (P(X-ray)) and ``types`` against ``labels``."""
    is_xray = [label in MODULE_2_CLASSES for label in labels]
    called_xray = np.asarray(xray) >= threshold
    module_1 = confusion(MODULE_1_CLASSES, [int(x) for x in is_xray], [int(c) for c in called_xray])
    chosen = [i for i, x in enumerate(is_xray) if x]
    best = np.argmax(types, axis=1) if len(types) else np.zeros(0, dtype=int)
    module_2 = confusion(
        MODULE_2_CLASSES,
        [MODULE_2_CLASSES.index(labels[i]) for i in chosen],
        [int(best[i]) for i in chosen],
    )
    whole_labels = [LABELS.index(label) for label in labels]
    not_xray = LABELS.index(MODULE_1_CLASSES[0])
    whole_called = [int(best[i]) if called_xray[i] else not_xray for i in range(len(labels))]
    return TriageReport(
        module_1, module_2, confusion(LABELS, whole_labels, whole_called), threshold
    )


def evaluate_model(model: TriageModel, samples: Sequence[TriageSample]) -> TriageReport:
    xray, types = predictions(model, samples)
    return report_of([s.label for s in samples], xray, types, model.xray_threshold)


def _markdown_matrix(report: ModuleReport) -> list[str]:
    lines = [
        "| actual \\ predicted | " + " | ".join(report.classes) + " | accuracy % |",
        "|---" * (len(report.classes) + 2) + "|",
    ]
    per_class = report.per_class_pct()
    for index, name in enumerate(report.classes):
        cells = " | ".join(str(int(v)) for v in report.matrix[index])
        shown = per_class[name]
        lines.append(f"| {name} | {cells} | {'–' if shown is None else f'{shown:.1f}'} |")
    return lines


def table(report: TriageReport, title: str) -> str:
    def pct(value: float) -> str:
        return "–" if math.isnan(value) else f"{value:.1f} %"

    lines = [
        f"# {title}",
        "",
        f"Module I (X-ray or not): accuracy {pct(report.module_1.accuracy_pct)} on "
        f"{report.module_1.images} images (paper: {PAPER_FIGURES['module_1_accuracy_pct']} %), "
        f"threshold {report.xray_threshold:g}.",
        "",
        *_markdown_matrix(report.module_1),
        "",
        f"Module II (X-ray type): accuracy {pct(report.module_2.accuracy_pct)} on "
        f"{report.module_2.images} X-ray images (paper: {PAPER_FIGURES['module_2_accuracy_pct']} %).",
        "",
        *_markdown_matrix(report.module_2),
        "",
        f"Whole triage (15 labels): accuracy {pct(report.whole.accuracy_pct)}.",
        "",
    ]
    return "\n".join(lines)


def plot_confusion(report: TriageReport, path: Path, title: str) -> Path:
    """Both confusion matrices side by side (counts, rows actual), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        1, 2, figsize=(14, 6.5), gridspec_kw={"width_ratios": [1, 2.6]}, layout="constrained"
    )
    for axis, module, name in (
        (axes[0], report.module_1, "Module I: X-ray or not"),
        (axes[1], report.module_2, "Module II: X-ray type"),
    ):
        matrix = module.matrix
        rows = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
        axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ticks = range(len(module.classes))
        axis.set_xticks(ticks, module.classes, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(ticks, module.classes, fontsize=8)
        axis.set_xlabel("predicted")
        axis.set_ylabel("actual")
        accuracy = module.accuracy_pct
        shown = "–" if math.isnan(accuracy) else f"{accuracy:.1f} %"
        axis.set_title(f"{name} ({shown}, {module.images} images)", fontsize=10)
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if shares[i, j] > 0.6 else "black"
                axis.text(j, i, str(int(count)), ha="center", va="center", fontsize=7, color=colour)
    figure.suptitle(title, fontsize=11)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def write_evaluation(
    report: TriageReport, folder: Path, *, title: str, extra: dict[str, Any] | None = None
) -> None:
    folder = Path(folder)
    data = {**report.metrics(), "whole": report.whole.to_json(), **(extra or {})}
    (folder / EVALUATION_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (folder / TABLE_FILE).write_text(table(report, title), encoding="utf-8")
    plot_confusion(report, folder / CONFUSION_FILE, title)


__all__ = [
    "CONFUSION_FILE",
    "EVALUATION_FILE",
    "PAPER_FIGURES",
    "TABLE_FILE",
    "ModuleReport",
    "TriageReport",
    "confusion",
    "evaluate_model",
    "plot_confusion",
    "predictions",
    "report_of",
    "table",
    "write_evaluation",
]
