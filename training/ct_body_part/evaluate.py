"""How good a body part regressor is: order, zones and anomalies on held-out volumes.

* **Order**: Spearman's ρ between slice index (superior → inferior) and score, per
  normal volume — 1 when the scores rise strictly from head to feet.
* **Zones**: the paper's three-class accuracy (Table 1: 95.99 % for UBR with two
  labelled volumes): the slices that lie in the chest, abdomen or pelvis are classified
  by the calibrated thresholds alone and compared with their true zone.
* **Anomalies**: the share of reversed or mixed volumes the pipeline's checks flag, and
  of normal volumes they flag wrongly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.ct_body_part.model import UbrModel
from pipelines.ct_body_part.zones import PAPER_ZONES, Calibration, check_anomalies
from training.ct_body_part.data import TrainingVolume

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
        predicted = calibration.classify(scores)
        for label, guess in zip(volume.zone_labels(), predicted, strict=True):
            if label not in PAPER_ZONES:
                continue
            total[label] += 1
            correct[label] += int(calibration.zones[int(guess)] == label)
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
