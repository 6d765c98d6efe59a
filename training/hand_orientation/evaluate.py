"""The paper's evaluation (Section 4, Fig. 5) of an orientation model on held-out films.

For each film the error e is the signed smallest difference predicted − true on the
circle, in (−180°, 180°]. Reported: the mean absolute error (MAE), the share of films
with |e| ≤ 4° (the paper's [−4°, 4°]), the four-way accuracy (predicted and true angle
in the same ``quadrant``, the classes earlier methods predict), the standard deviation σ
of e (population, as the spread of the histogram), its mean (a bias), and the number of
films. ``write_evaluation`` saves them as ``evaluation.json`` and draws the error
histogram as ``error_histogram.png``: one-degree bins on [−20°, 20°] and a single bin
each for the outliers below and above, as the paper's Fig. 5.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.hand_orientation.angles import angular_error, output_to_degrees, quadrant
from pipelines.hand_orientation.model import OrientationModel
from pipelines.hand_orientation.preprocess import InputSpec
from training.hand_orientation.augment import evaluation_batch
from training.hand_orientation.data import OrientationSample

EVALUATION_FILE = "evaluation.json"
HISTOGRAM_FILE = "error_histogram.png"
WITHIN_DEG = 4.0
HISTOGRAM_LIMIT_DEG = 20


@dataclass(frozen=True)
class EvaluationReport:
    """Errors of one model on one set of films, and the paper's figures of them."""

    films: int
    samples: int
    mae_deg: float
    within_4deg_pct: float
    quadrant_accuracy_pct: float
    error_std_deg: float
    error_mean_deg: float
    median_abs_error_deg: float
    max_abs_error_deg: float
    beyond_20deg_pct: float
    errors_deg: tuple[float, ...]
    predicted_deg: tuple[float, ...]
    true_deg: tuple[float, ...]
    names: tuple[str, ...]

    def metrics(self) -> dict[str, float | int]:
        """The summary figures (for the model card), rounded to 1e-4."""
        return {
            "films": self.films,
            "samples": self.samples,
            "mae_deg": round(self.mae_deg, 4),
            "within_4deg_pct": round(self.within_4deg_pct, 4),
            "quadrant_accuracy_pct": round(self.quadrant_accuracy_pct, 4),
            "error_std_deg": round(self.error_std_deg, 4),
            "error_mean_deg": round(self.error_mean_deg, 4),
            "median_abs_error_deg": round(self.median_abs_error_deg, 4),
            "max_abs_error_deg": round(self.max_abs_error_deg, 4),
            "beyond_20deg_pct": round(self.beyond_20deg_pct, 4),
        }

    def to_json(self) -> dict[str, Any]:
        labels, counts = histogram_counts(self.errors_deg)
        return {
            "metrics": self.metrics(),
            "histogram": {"bins": labels, "counts": counts},
            "samples": [
                {"film": name, "true_deg": t, "predicted_deg": p, "error_deg": e}
                for name, t, p, e in zip(
                    self.names, self.true_deg, self.predicted_deg, self.errors_deg, strict=True
                )
            ],
        }


def report_from_predictions(
    predicted_deg: Sequence[float],
    true_deg: Sequence[float],
    names: Sequence[str] | None = None,
) -> EvaluationReport:
    """The report for known predictions; ``names`` (one per sample) count the films."""
    if len(predicted_deg) != len(true_deg) or not predicted_deg:
        raise ValueError("need as many predictions as true angles, at least one")
    names = list(names) if names is not None else [str(i) for i in range(len(true_deg))]
    if len(names) != len(true_deg):
        raise ValueError("need one name per sample")
    predicted = torch.tensor([float(v) for v in predicted_deg], dtype=torch.float64)
    true = torch.tensor([float(v) for v in true_deg], dtype=torch.float64)
    errors = angular_error(predicted, true)
    absolute = errors.abs()
    same_bin = [
        quadrant(float(p)) == quadrant(float(t)) for p, t in zip(predicted, true, strict=True)
    ]
    n = len(errors)
    return EvaluationReport(
        films=len(set(names)),
        samples=n,
        mae_deg=float(absolute.mean()),
        within_4deg_pct=100.0 * float((absolute <= WITHIN_DEG).sum()) / n,
        quadrant_accuracy_pct=100.0 * sum(same_bin) / n,
        error_std_deg=float(errors.std(correction=0)),
        error_mean_deg=float(errors.mean()),
        median_abs_error_deg=float(absolute.quantile(0.5)),
        max_abs_error_deg=float(absolute.max()),
        beyond_20deg_pct=100.0 * float((absolute > HISTOGRAM_LIMIT_DEG).sum()) / n,
        errors_deg=tuple(float(e) for e in errors),
        predicted_deg=tuple(float(p) for p in predicted),
        true_deg=tuple(float(t) for t in true),
        names=tuple(names),
    )


@torch.inference_mode()
def predict_network(
    network: torch.nn.Module,
    samples: Sequence[OrientationSample],
    spec: InputSpec,
    *,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's raw (cos, sin) outputs (N, 2) for the centre crops, and the labels (N,)."""
    outputs, labels = [], []
    for start in range(0, len(samples), batch_size):
        batch, angles = evaluation_batch(samples[start : start + batch_size], spec)
        outputs.append(network(batch.contiguous(memory_format=torch.channels_last)).float())
        labels.append(angles)
    return torch.cat(outputs), torch.cat(labels)


def evaluate_model(
    model: OrientationModel, samples: Sequence[OrientationSample], *, batch_size: int = 64
) -> EvaluationReport:
    """Run a loaded model (``pipelines.hand_orientation.model``) on ``samples``, as deployed.

    The samples are centre-cropped and normalised as the pipeline's ``finishing_transform``
    does and fed through the model's own ``predict_batch``.
    """
    if not samples:
        raise ValueError("no samples to evaluate")
    predicted: list[float] = []
    for start in range(0, len(samples), batch_size):
        batch, _ = evaluation_batch(samples[start : start + batch_size], model.spec)
        predicted.extend(model.predict_batch(batch))
    return report_from_predictions(
        predicted, [s.angle_deg for s in samples], [s.film for s in samples]
    )


def outputs_to_errors(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Signed errors (degrees) of raw network outputs against the labels."""
    return angular_error(output_to_degrees(outputs.double()), labels.double())


def histogram_counts(errors_deg: Sequence[float]) -> tuple[list[str], list[int]]:
    """Fig. 5's bins: below −20°, one per degree on [−20°, 20°] (the last closed), above 20°."""
    errors = np.asarray(errors_deg, dtype=np.float64)
    limit = HISTOGRAM_LIMIT_DEG
    inside = errors[(errors >= -limit) & (errors <= limit)]
    counts, _ = np.histogram(inside, bins=np.arange(-limit, limit + 1))
    labels = [f"[{-180}, {-limit})"]
    labels += [f"[{lo}, {lo + 1}{']' if lo + 1 == limit else ')'}" for lo in range(-limit, limit)]
    labels.append(f"({limit}, 180]")
    return labels, [int((errors < -limit).sum()), *map(int, counts), int((errors > limit).sum())]


def plot_error_histogram(report: EvaluationReport, path: Path, *, title: str = "") -> Path:
    """Draw the error histogram (PNG) with matplotlib's Agg canvas; no global state touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _, counts = histogram_counts(report.errors_deg)
    limit = HISTOGRAM_LIMIT_DEG
    total = max(1, report.samples)
    shares = [100.0 * c / total for c in counts]
    figure = Figure(figsize=(8.0, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    centres = np.arange(-limit, limit) + 0.5
    axes.bar(centres, shares[1:-1], width=1.0, color="#4477aa", edgecolor="white", linewidth=0.5)
    outlier_x = [-limit - 4.0, limit + 4.0]
    axes.bar(outlier_x, [shares[0], shares[-1]], width=2.0, color="#cc6677")
    for x, count in zip(outlier_x, (counts[0], counts[-1]), strict=True):
        axes.annotate(f"{count}", (x, shares[0 if x < 0 else -1]), ha="center", va="bottom")
    axes.axvspan(-WITHIN_DEG, WITHIN_DEG, color="#dddddd", zorder=0)
    ticks = [-limit - 4.0, -limit, -10, -WITHIN_DEG, 0, WITHIN_DEG, 10, limit, limit + 4.0]
    axes.set_xticks(ticks)
    axes.set_xticklabels(
        [f"< -{limit}", f"-{limit}", "-10", "-4", "0", "4", "10", f"{limit}", f"> {limit}"]
    )
    axes.set_xlim(-limit - 6.0, limit + 6.0)
    axes.set_xlabel("error e = predicted - true (degrees)")
    axes.set_ylabel("share of films (%)")
    summary = (
        f"n = {report.samples}, MAE {report.mae_deg:.2f} deg, "
        f"{report.within_4deg_pct:.1f} % within ±4 deg, σ {report.error_std_deg:.2f} deg, "
        f"four-way {report.quadrant_accuracy_pct:.1f} %"
    )
    axes.set_title(f"{title}\n{summary}" if title else summary, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def write_evaluation(
    report: EvaluationReport,
    folder: Path,
    *,
    extra: dict[str, Any] | None = None,
    title: str = "",
) -> tuple[Path, Path]:
    """Write ``evaluation.json`` (metrics, histogram, per-sample errors, ``extra``) and the PNG."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = report.to_json()
    if extra:
        data.update(extra)
    json_path = folder / EVALUATION_FILE
    json_path.write_text(json.dumps(_finite(data), indent=2) + "\n", encoding="utf-8")
    png_path = plot_error_histogram(report, folder / HISTOGRAM_FILE, title=title)
    return json_path, png_path


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
