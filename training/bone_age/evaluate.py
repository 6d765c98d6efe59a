"""The paper's figures for a bone-age model: MAE in months, overall and by sex (Table I),
and the predicted-against-true plot (Fig. 9), written beside the model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.bone_age.network import SEX_FEMALE, SEX_MALE

PLOT_FILE = "predicted_vs_true.png"
EVALUATION_FILE = "evaluation.json"
#: The paper's model 2 on its RSNA validation split (Table I / conclusion), for comparison.
PAPER_MAE_MONTHS = {"male": 9.82, "female": 10.75}


@dataclass(frozen=True)
class BoneAgeReport:
    films: int
    mae_months: float
    mae_male_months: float | None
    mae_female_months: float | None
    films_male: int
    films_female: int
    bias_months: float  # mean of predicted − true
    label_sd_months: float  # the held-out labels' standard deviation: a guess's scale
    mean_guess_mae_months: float  # MAE of predicting the held-out labels' mean

    def metrics(self) -> dict[str, Any]:
        return {
            key: (round(v, 3) if isinstance(v, float) else v) for key, v in asdict(self).items()
        }


def _mae(error: np.ndarray) -> float | None:
    return float(np.abs(error).mean()) if error.size else None


def evaluate_predictions(
    predicted: np.ndarray, true: np.ndarray, sexes: np.ndarray
) -> BoneAgeReport:
    predicted = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    sexes = np.asarray(sexes)
    if predicted.shape != true.shape or true.shape != sexes.shape or true.ndim != 1:
        raise ValueError("predictions, labels and sexes must be 1-D and of one length")
    if not true.size:
        raise ValueError("nothing to evaluate")
    error = predicted - true
    male, female = sexes == SEX_MALE, sexes == SEX_FEMALE
    mae = _mae(error)
    assert mae is not None
    return BoneAgeReport(
        films=int(true.size),
        mae_months=mae,
        mae_male_months=_mae(error[male]),
        mae_female_months=_mae(error[female]),
        films_male=int(male.sum()),
        films_female=int(female.sum()),
        bias_months=float(error.mean()),
        label_sd_months=float(true.std()),
        mean_guess_mae_months=float(np.abs(true - true.mean()).mean()),
    )


def write_plot(
    folder: Path, predicted: np.ndarray, true: np.ndarray, sexes: np.ndarray, title: str
) -> Path:
    """Predicted against true bone age, boys and girls in two colours, the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 5.0), dpi=100)
    top = float(max(np.max(true), np.max(predicted), 1.0)) * 1.05
    axes.plot([0, top], [0, top], color="tab:blue", linewidth=1, label="true = predicted")
    for index, label, colour in (
        (SEX_MALE, "male", "tab:red"),
        (SEX_FEMALE, "female", "tab:orange"),
    ):
        pick = sexes == index
        if pick.any():
            axes.scatter(true[pick], predicted[pick], s=10, alpha=0.7, color=colour, label=label)
    other = (sexes != SEX_MALE) & (sexes != SEX_FEMALE)
    if other.any():
        axes.scatter(true[other], predicted[other], s=10, alpha=0.7, color="grey", label="unknown")
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_xlabel("true bone age (months)")
    axes.set_ylabel("predicted bone age (months)")
    axes.set_title(title, fontsize=9)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path = Path(folder) / PLOT_FILE
    figure.savefig(path)
    plt.close(figure)
    return path


def write_evaluation(folder: Path, report: BoneAgeReport, extra: dict[str, Any]) -> Path:
    path = Path(folder) / EVALUATION_FILE
    payload = {**report.metrics(), "paper_mae_months": PAPER_MAE_MONTHS, **extra}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


__all__ = [
    "EVALUATION_FILE",
    "PAPER_MAE_MONTHS",
    "PLOT_FILE",
    "BoneAgeReport",
    "evaluate_predictions",
    "write_evaluation",
    "write_plot",
]
