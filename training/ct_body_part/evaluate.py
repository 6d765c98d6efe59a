"""How good a body part regressor is: order, zones and anomalies on held-out volumes.

* **Order**: Spearman's ρ between slice index (superior → inferior) and score, per
  normal volume — 1 when the scores rise strictly from head to feet.
* **Zones**: the paper's three-class accuracy (Table 1: 95.99 % for UBR with two
  labelled volumes): the slices that lie in the chest, abdomen or pelvis are classified
  by the calibrated thresholds alone and compared with their true zone.
* **Anomalies**: the share of reversed or mixed volumes the pipeline's checks flag, and
  of normal volumes they flag wrongly.
* **Calibration pairs**: the zone accuracy with every pair of labelled volumes in turn as
  the paper's two calibration volumes, next to all of them at once and to the ceiling
  (thresholds fitted on the test slices themselves), since one pair's figure depends on
  which two volumes were labelled.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.ct_body_part.model import UbrModel
from pipelines.ct_body_part.zones import PAPER_ZONES, Calibration, calibrate, check_anomalies
from training.ct_body_part.calibration import fit_thresholds
from training.ct_body_part.data import TrainingVolume
from training.runs import Advance

#: Table 1 of the paper: UBR (VGG-16) with two labelled volumes.
PAPER_ZONE_ACCURACY_PCT = 95.99


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ (ranks by order of appearance for ties, which scores rarely have)."""
    if len(x) < 2:
        return 1.0
    rank_x = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)
    rank_y = np.argsort(np.argsort(y, kind="stable"), kind="stable").astype(np.float64)
    rank_x -= rank_x.mean()
    rank_y -= rank_y.mean()
    denominator = float(np.sqrt((rank_x**2).sum() * (rank_y**2).sum()))
    return float((rank_x * rank_y).sum() / denominator) if denominator else 0.0


@dataclass
class UbrEvaluation:
    volumes: int
    spearman_mean: float
    spearman_min: float
    zone_accuracy_pct: float | None
    zone_slices: int
    zone_accuracy_by_zone: dict[str, float] = field(default_factory=dict)
    normal_flagged: int = 0  # normal volumes the anomaly checks flagged
    abnormal_volumes: int = 0
    abnormal_flagged: int = 0
    r_mean: float = 0.0
    paper_zone_accuracy_pct: float = PAPER_ZONE_ACCURACY_PCT

    def metrics(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def evaluate_volumes(
    model: UbrModel,
    volumes: Sequence[TrainingVolume],
    *,
    calibration: Calibration | None = None,
    abnormal: Sequence[TrainingVolume] = (),
) -> UbrEvaluation:
    """Score every slice of every volume and measure order, zones and anomaly flags."""
    if not volumes:
        raise ValueError("evaluation needs at least one volume")
    calibration = calibration or model.calibration
    rhos, rs = [], []
    flagged_normal = 0
    correct: dict[str, int] = {zone: 0 for zone in PAPER_ZONES}
    total: dict[str, int] = {zone: 0 for zone in PAPER_ZONES}
    for volume in volumes:
        scores = model.scores(volume.images)
        rhos.append(spearman(np.arange(len(scores)), scores))
        anomalies = check_anomalies(scores)
        rs.append(anomalies.r)
        flagged_normal += int(anomalies.flagged)
        if calibration is None or volume.zones is None:
            continue
        predicted = calibration.zone_names(scores)
        for label, guess in zip(volume.zone_labels(), predicted, strict=True):
            if label not in PAPER_ZONES:
                continue
            total[label] += 1
            correct[label] += int(guess == label)
    flagged_abnormal = sum(int(check_anomalies(model.scores(v.images)).flagged) for v in abnormal)
    slices = sum(total.values())
    return UbrEvaluation(
        volumes=len(volumes),
        spearman_mean=float(np.mean(rhos)),
        spearman_min=float(np.min(rhos)),
        zone_accuracy_pct=(100.0 * sum(correct.values()) / slices) if slices else None,
        zone_slices=slices,
        zone_accuracy_by_zone={
            zone: round(100.0 * correct[zone] / total[zone], 2)
            for zone in PAPER_ZONES
            if total[zone]
        },
        normal_flagged=flagged_normal,
        abnormal_volumes=len(abnormal),
        abnormal_flagged=flagged_abnormal,
        r_mean=float(np.mean(rs)),
    )


def write_evaluation(evaluation: UbrEvaluation, folder: Path, extra: dict[str, Any]) -> Path:
    path = Path(folder) / "evaluation.json"
    path.write_text(
        json.dumps({**evaluation.metrics(), **extra}, indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return path


@dataclass(frozen=True)
class CalibrationPairStudy:
    """Three-zone accuracy on the test slices for each pair of labelled volumes as the
    calibration (``itertools.combinations`` order), for all labelled volumes at once, and
    for thresholds fitted on the test slices (the ceiling no calibration can pass)."""

    labelled_volumes: int
    test_volumes: int
    test_slices: int
    pair_accuracy_pct: tuple[float, ...]
    all_labelled_pct: float
    ceiling_pct: float

    def metrics(self) -> dict[str, Any]:
        pairs = np.asarray(self.pair_accuracy_pct)
        return {
            "labelled_volumes": self.labelled_volumes,
            "test_volumes": self.test_volumes,
            "test_slices": self.test_slices,
            "pairs": len(pairs),
            "pair_mean_pct": round(float(pairs.mean()), 2),
            "pair_median_pct": round(float(np.median(pairs)), 2),
            "pair_min_pct": round(float(pairs.min()), 2),
            "pair_max_pct": round(float(pairs.max()), 2),
            "all_labelled_pct": round(self.all_labelled_pct, 2),
            "ceiling_pct": round(self.ceiling_pct, 2),
            "paper_zone_accuracy_pct": PAPER_ZONE_ACCURACY_PCT,
        }


def _zone_slices(model: UbrModel, volume: TrainingVolume) -> tuple[np.ndarray, list[str]]:
    """The scores and true zones of the volume's slices in the paper's three zones."""
    if volume.zones is None:
        raise ValueError(f"{volume.name} has no true zones")
    labels = volume.zone_labels()
    keep = [index for index, label in enumerate(labels) if label in PAPER_ZONES]
    return model.scores(volume.images[keep]), [str(labels[index]) for index in keep]


def calibration_pair_study(
    model: UbrModel,
    test: Sequence[TrainingVolume],
    labelled: Sequence[TrainingVolume],
    *,
    advance: Advance | None = None,
) -> CalibrationPairStudy:
    """Score ``test`` and ``labelled`` once, then calibrate on every pair of ``labelled``.

    Each labelled volume must hold slices of all three zones (chest–abdomen–pelvis
    scans), as the paper's two did; ``advance(done, total)`` follows the scoring."""
    if len(labelled) < 2:
        raise ValueError("the study needs at least two labelled volumes")
    if not test:
        raise ValueError("the study needs at least one test volume")
    volumes = [*labelled, *test]
    scored = []
    for index, volume in enumerate(volumes):
        scored.append(_zone_slices(model, volume))
        if advance is not None:
            advance(index + 1, len(volumes))
    for volume, (_, labels) in zip(labelled, scored, strict=False):
        missing = [zone for zone in PAPER_ZONES if zone not in labels]
        if missing:
            raise ValueError(
                f"labelled volume {volume.name} has no {', '.join(missing)} slices; "
                "use chest–abdomen–pelvis scans"
            )
    cal, tests = scored[: len(labelled)], scored[len(labelled) :]
    test_scores = np.concatenate([scores for scores, _ in tests])
    test_labels = [label for _, labels in tests for label in labels]
    if not test_labels:
        raise ValueError("the test volumes have no slices in the chest, abdomen or pelvis")

    def accuracy(calibration: Calibration) -> float:
        guesses = calibration.zone_names(test_scores)
        right = sum(guess == label for guess, label in zip(guesses, test_labels, strict=True))
        return 100.0 * right / len(test_labels)

    pairs = tuple(
        accuracy(fit_thresholds([cal[a], cal[b]]))
        for a, b in itertools.combinations(range(len(cal)), 2)
    )
    return CalibrationPairStudy(
        labelled_volumes=len(labelled),
        test_volumes=len(test),
        test_slices=len(test_labels),
        pair_accuracy_pct=pairs,
        all_labelled_pct=accuracy(fit_thresholds(cal)),
        ceiling_pct=accuracy(calibrate(test_scores, test_labels)),
    )
