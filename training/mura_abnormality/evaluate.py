"""The evaluation of a MURA model on held-out studies: the paper's figures and MURA's.

Ghalyan et al. report accuracy and F1 overall and per region (their Fig. 4) and compare
with MURA's Cohen's kappa (0.778) and AUROC (0.929, DenseNet-169). Here, at the study
level (a study's probability is the mean over its views, abnormal at or above the
threshold), for every region and overall:

* accuracy, F1 of the abnormal class, Cohen's kappa, sensitivity and specificity at the
  threshold;
* AUROC (the Mann–Whitney statistic, ties counted one half), which needs no threshold;
* the number of studies, abnormal and normal.

``choose_threshold`` picks the threshold on validation studies: the one with the highest
Cohen's kappa (MURA's figure of agreement), halfway between the two study probabilities
that it separates; ties go to the one nearest 0.5. Figures that a set cannot have (AUROC
with one class only) are NaN, written as null.

``write_evaluation`` saves ``evaluation.json``, the table as ``evaluation.md`` and the ROC
curves (overall and per region) as ``roc.png``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pipelines.mura_abnormality.model import MuraModel
    from training.mura_abnormality.data import MuraView

EVALUATION_FILE = "evaluation.json"
TABLE_FILE = "evaluation.md"
ROC_FILE = "roc.png"
OVERALL = "overall"
#: Published figures to compare with (on MURA): the paper's, and MURA's baseline.
PAPER_FIGURES = {"accuracy_pct": 78.57, "f1_pct": 78.43, "kappa": 0.778, "auroc": 0.929}
TABLE_COLUMNS = (
    "region",
    "studies",
    "abnormal",
    "accuracy_pct",
    "f1_pct",
    "kappa",
    "auroc",
    "sensitivity_pct",
    "specificity_pct",
)


def _labels(values: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(values).astype(np.int64)
    if array.ndim != 1 or not np.isin(array, (0, 1)).all():
        raise ValueError("labels must be a 1-D sequence of 0 (normal) and 1 (abnormal)")
    return array


def _scores(values: Sequence[float] | np.ndarray, count: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (count,):
        raise ValueError(f"need {count} scores, one per label, not {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("scores must be finite")
    return array


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve: P(score of an abnormal > score of a normal), ties ½; NaN
    with one class only."""
    y = _labels(labels)
    s = _scores(scores, len(y))
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_scores = s[order]
    start = 0
    while start < len(s):  # average ranks of ties
        end = start
        while end + 1 < len(s) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    rank_sum = float(ranks[y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def roc_curve(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) from (0, 0) to (1, 1), one point per
    distinct score (abnormal when score ≥ it)."""
    y = _labels(labels)
    s = _scores(scores, len(y))
    positives, negatives = max(1, int(y.sum())), max(1, int(len(y) - y.sum()))
    fpr, tpr = [0.0], [0.0]
    for cut in np.unique(s)[::-1]:
        called = s >= cut
        tpr.append(float((called & (y == 1)).sum()) / positives)
        fpr.append(float((called & (y == 0)).sum()) / negatives)
    if fpr[-1] != 1.0 or tpr[-1] != 1.0:
        fpr.append(1.0)
        tpr.append(1.0)
    return np.asarray(fpr), np.asarray(tpr)


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    tn: int
    fn: int

    @classmethod
    def of(cls, labels: np.ndarray, predicted: np.ndarray) -> Counts:
        return cls(
            tp=int(((predicted == 1) & (labels == 1)).sum()),
            fp=int(((predicted == 1) & (labels == 0)).sum()),
            tn=int(((predicted == 0) & (labels == 0)).sum()),
            fn=int(((predicted == 0) & (labels == 1)).sum()),
        )

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


def cohen_kappa(counts: Counts) -> float:
    """Cohen's kappa of prediction and truth; NaN when chance agreement is certain."""
    n = counts.total
    if n == 0:
        return math.nan
    observed = (counts.tp + counts.tn) / n
    true_yes, said_yes = (counts.tp + counts.fn) / n, (counts.tp + counts.fp) / n
    expected = true_yes * said_yes + (1 - true_yes) * (1 - said_yes)
    if expected >= 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def _ratio(numerator: int, denominator: int) -> float:
    return math.nan if denominator == 0 else numerator / denominator


@dataclass(frozen=True)
class Metrics:
    """The figures of one set of studies at one threshold."""

    studies: int
    abnormal: int
    accuracy_pct: float
    f1_pct: float
    kappa: float
    auroc: float
    sensitivity_pct: float
    specificity_pct: float
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    def rounded(self) -> dict[str, Any]:
        return {
            key: (None if isinstance(v, float) and not math.isfinite(v) else round(v, 4))
            if isinstance(v, float)
            else v
            for key, v in asdict(self).items()
        }


def study_metrics(
    labels: Sequence[int] | np.ndarray,
    probabilities: Sequence[float] | np.ndarray,
    threshold: float,
) -> Metrics:
    """Accuracy, F1, kappa, AUROC, sensitivity and specificity of study ``probabilities``
    against ``labels`` (1 abnormal), abnormal at ``probability ≥ threshold``."""
    y = _labels(labels)
    p = _scores(probabilities, len(y))
    if len(y) == 0:
        raise ValueError("no studies to evaluate")
    counts = Counts.of(y, (p >= threshold).astype(np.int64))
    f1 = _ratio(2 * counts.tp, 2 * counts.tp + counts.fp + counts.fn)
    return Metrics(
        studies=len(y),
        abnormal=int(y.sum()),
        accuracy_pct=100.0 * (counts.tp + counts.tn) / len(y),
        f1_pct=100.0 * (0.0 if math.isnan(f1) else f1),
        kappa=cohen_kappa(counts),
        auroc=auroc(y, p),
        sensitivity_pct=100.0 * _ratio(counts.tp, counts.tp + counts.fn),
        specificity_pct=100.0 * _ratio(counts.tn, counts.tn + counts.fp),
        threshold=float(threshold),
        tp=counts.tp,
        fp=counts.fp,
        tn=counts.tn,
        fn=counts.fn,
    )


def choose_threshold(
    labels: Sequence[int] | np.ndarray, probabilities: Sequence[float] | np.ndarray
) -> float:
    """The threshold with the highest Cohen's kappa on these (validation) studies, halfway
    between the probabilities it separates; ties nearest 0.5; 0.5 for a set with one class."""
    y = _labels(labels)
    p = _scores(probabilities, len(y))
    if len(y) == 0 or y.min() == y.max():
        return 0.5
    levels = np.unique(p)  # ascending
    candidates = [(levels[i - 1] + levels[i]) / 2.0 for i in range(1, len(levels))]
    candidates += [levels[0] / 2.0, (levels[-1] + 1.0) / 2.0]
    best, best_kappa = 0.5, -math.inf
    for cut in candidates:
        kappa = cohen_kappa(Counts.of(y, (p >= cut).astype(np.int64)))
        kappa = -math.inf if math.isnan(kappa) else kappa
        if kappa > best_kappa + 1e-12 or (
            abs(kappa - best_kappa) <= 1e-12 and abs(cut - 0.5) < abs(best - 0.5)
        ):
            best, best_kappa = float(cut), kappa
    return best


@dataclass(frozen=True)
class StudyPrediction:
    study: str
    region: str
    label: int
    probability: float
    views: int


@dataclass(frozen=True)
class EvaluationReport:
    """Study-level figures overall and per region at one threshold."""

    threshold: float
    overall: Metrics
    by_region: dict[str, Metrics]
    predictions: tuple[StudyPrediction, ...]

    def table(self) -> dict[str, Any]:
        """The per-region table: columns and one row per region, then the overall row."""
        rows = []
        for name, figures in [*sorted(self.by_region.items()), (OVERALL, self.overall)]:
            values = figures.rounded()
            rows.append([name, *(values[column] for column in TABLE_COLUMNS[1:])])
        return {"columns": list(TABLE_COLUMNS), "rows": rows}

    def markdown(self) -> str:
        table = self.table()
        lines = [
            "| " + " | ".join(table["columns"]) + " |",
            "|" + "---|" * len(table["columns"]),
        ]
        for row in table["rows"]:
            lines.append("| " + " | ".join("—" if v is None else str(v) for v in row) + " |")
        return "\n".join(lines) + "\n"

    def metrics(self) -> dict[str, Any]:
        """What the model card keeps: the overall figures, each region's and the table."""
        return {
            **{key: value for key, value in self.overall.rounded().items()},
            "by_region": {name: m.rounded() for name, m in sorted(self.by_region.items())},
            "table": self.table(),
            "paper": PAPER_FIGURES,
        }


def evaluate_studies(predictions: Sequence[StudyPrediction], threshold: float) -> EvaluationReport:
    """The report for known study predictions."""
    if not predictions:
        raise ValueError("no studies to evaluate")
    labels = np.array([p.label for p in predictions])
    probabilities = np.array([p.probability for p in predictions])
    regions = sorted({p.region for p in predictions})
    by_region = {}
    for region in regions:
        chosen = np.array([p.region == region for p in predictions])
        by_region[region] = study_metrics(labels[chosen], probabilities[chosen], threshold)
    return EvaluationReport(
        threshold=threshold,
        overall=study_metrics(labels, probabilities, threshold),
        by_region=by_region,
        predictions=tuple(predictions),
    )


def plot_roc(report: EvaluationReport, path: Path, *, title: str = "") -> Path:
    """ROC curves, overall (thick) and per region, with the operating point; PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = np.array([p.label for p in report.predictions])
    scores = np.array([p.probability for p in report.predictions])
    figure = Figure(figsize=(6.0, 6.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, ls="--")
    for region in sorted(report.by_region):
        chosen = np.array([p.region == region for p in report.predictions])
        if labels[chosen].min() == labels[chosen].max():
            continue
        fpr, tpr = roc_curve(labels[chosen], scores[chosen])
        auc = report.by_region[region].auroc
        axes.plot(fpr, tpr, lw=1, label=f"{region} (AUROC {auc:.3f})")
    if labels.min() != labels.max():
        fpr, tpr = roc_curve(labels, scores)
        axes.plot(
            fpr, tpr, color="black", lw=2.5, label=f"overall (AUROC {report.overall.auroc:.3f})"
        )
    overall = report.overall
    if math.isfinite(overall.sensitivity_pct) and math.isfinite(overall.specificity_pct):
        axes.plot(
            [1 - overall.specificity_pct / 100.0],
            [overall.sensitivity_pct / 100.0],
            "o",
            color="#cc3311",
            label=f"threshold {report.threshold:.3f}",
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("1 - specificity (false positive rate)")
    axes.set_ylabel("sensitivity (true positive rate)")
    axes.set_title(title or "ROC, study level", fontsize=9)
    axes.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def write_evaluation(
    report: EvaluationReport, folder: Path, *, extra: dict[str, Any] | None = None, title: str = ""
) -> tuple[Path, Path, Path]:
    """``evaluation.json`` (figures, predictions, ``extra``), ``evaluation.md`` (the table)
    and ``roc.png`` in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "threshold": report.threshold,
        "metrics": report.metrics(),
        "studies": [asdict(p) for p in report.predictions],
        **(extra or {}),
    }
    json_path = folder / EVALUATION_FILE
    json_path.write_text(json.dumps(_finite(data), indent=2) + "\n", encoding="utf-8")
    table_path = folder / TABLE_FILE
    heading = f"# {title}\n\n" if title else ""
    table_path.write_text(
        f"{heading}Study level, threshold {report.threshold:.4f}.\n\n{report.markdown()}",
        encoding="utf-8",
    )
    return json_path, table_path, plot_roc(report, folder / ROC_FILE, title=title)


#: The pointing game's tolerance (Zhang et al., 2016, "Top-down neural attention by
#: excitation backprop"): a hit when the maximum lies within 15 pixels of the object in a
#: 224 × 224 input, i.e. within 15/224 of the image's side.
POINTING_TOLERANCE = 15.0 / 224.0


def gradcam_lesion_check(
    model: MuraModel, views: Sequence[MuraView], *, batch_size: int = 16
) -> dict[str, Any] | None:
    """Where the Grad-CAM maximum of an abnormal view falls, over the views of abnormal
    studies that show a lesion (synthetic views know its box): the share whose maximum
    lies inside the box (``peak_on_lesion_pct``), the pointing game's share (within
    ``POINTING_TOLERANCE`` of the box, ``pointing_game_pct``), and what a point placed at
    random would hit inside the box (``chance_pct``, the boxes' mean area). None when no
    view has a lesion box."""
    from pipelines.mura_abnormality.heatmap import heat_peak
    from pipelines.mura_abnormality.preprocess import from_8bit

    chosen = [v for v in views if v.label == 1 and v.lesion_box is not None]
    if not chosen:
        return None
    inside = pointed = 0
    areas = []
    for start in range(0, len(chosen), batch_size):
        part = chosen[start : start + batch_size]
        images = np.stack([v.image for v in part])
        maps, _ = model.heat_maps(from_8bit(images, model.spec))
        for heat, view in zip(maps, part, strict=True):
            assert view.lesion_box is not None
            row, column = heat_peak(heat, (1.0, 1.0))
            top, left, bottom, right = view.lesion_box
            areas.append((bottom - top) * (right - left))
            inside += int(top <= row <= bottom and left <= column <= right)
            slack = POINTING_TOLERANCE
            pointed += int(
                top - slack <= row <= bottom + slack and left - slack <= column <= right + slack
            )
    return {
        "views": len(chosen),
        "peak_on_lesion": inside,
        "peak_on_lesion_pct": round(100.0 * inside / len(chosen), 2),
        "pointing_game": pointed,
        "pointing_game_pct": round(100.0 * pointed / len(chosen), 2),
        "chance_pct": round(100.0 * float(np.mean(areas)), 2),
        "layer": model.heat.layer,
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


__all__ = [
    "OVERALL",
    "POINTING_TOLERANCE",
    "PAPER_FIGURES",
    "ROC_FILE",
    "TABLE_COLUMNS",
    "Counts",
    "EvaluationReport",
    "Metrics",
    "StudyPrediction",
    "auroc",
    "choose_threshold",
    "cohen_kappa",
    "evaluate_studies",
    "gradcam_lesion_check",
    "plot_roc",
    "roc_curve",
    "study_metrics",
    "write_evaluation",
]
