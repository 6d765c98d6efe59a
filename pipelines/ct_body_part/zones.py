"""From slice scores to body zones, coverage and the paper's anomaly checks.

UBR scores rise from head to feet. Two labelled volumes fix thresholds between
neighbouring zones (Section 3.1 of the paper: chest | abdomen | pelvis, the abdomen
running from the upper border of the liver to the upper border of the ilium); a slice
belongs to the zone whose score interval holds its score.

``calibrate`` chooses each threshold where it misclassifies the fewest labelled slices of
the two zones it separates (the midpoint of the best interval of candidate cuts). A
``head_neck`` zone above the chest is used when the labels include it; otherwise slices
above the chest threshold count as chest, as in the paper's three classes.

The anomaly checks follow Section 3.2: the Pearson correlation r between slice index and
score (normal volumes: r ≥ 0.99), and a scan direction that is not monotonic — the scores,
taken in superior → inferior order, fall back by more than a tolerance somewhere (a
reversed stack, or stacks mixed together), or fall overall (``reversed``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Body zones in head → feet order; scores rise along it.
ZONE_ORDER: tuple[str, ...] = ("head_neck", "chest", "abdomen", "pelvis")
#: The paper's three classes.
PAPER_ZONES: tuple[str, ...] = ("chest", "abdomen", "pelvis")
#: Section 3.2: normal volumes have r(slice index, score) ≥ 0.99.
MIN_LINEARITY_R = 0.99
#: A fall of more than this fraction of the series' score range (after a 5-slice running
#: median) makes the direction not monotonic.
MONOTONIC_TOLERANCE = 0.1
RUNNING_MEDIAN = 5


class CalibrationError(ValueError):
    """The labelled slices cannot fix the thresholds."""


@dataclass(frozen=True)
class Calibration:
    """Zones in head → feet order and the score thresholds between neighbours."""

    zones: tuple[str, ...]
    thresholds: tuple[float, ...]
    accuracy_pct: float | None = None  # on the labelled slices it was fitted to
    labelled_slices: int = 0

    def __post_init__(self) -> None:
        if len(self.zones) < 2 or len(self.thresholds) != len(self.zones) - 1:
            raise CalibrationError("a calibration needs n ≥ 2 zones and n − 1 thresholds")
        unknown = [z for z in self.zones if z not in ZONE_ORDER]
        if unknown:
            raise CalibrationError(f"unknown zone(s) {unknown}; known: {', '.join(ZONE_ORDER)}")
        if list(self.zones) != sorted(self.zones, key=ZONE_ORDER.index):
            raise CalibrationError(f"zones {self.zones} are not in head → feet order")
        if any(not np.isfinite(t) for t in self.thresholds) or any(
            b <= a for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)
        ):
            raise CalibrationError(
                f"thresholds {self.thresholds} must rise from head to feet (the scores of the "
                "labelled volumes do not order the zones; is the model trained?)"
            )

    def classify(self, scores: np.ndarray) -> np.ndarray:
        """The zone index of each score."""
        return np.searchsorted(np.asarray(self.thresholds), np.asarray(scores), side="right")

    def zone_names(self, scores: np.ndarray) -> list[str]:
        """The zone of each score, by name."""
        return [self.zones[int(index)] for index in self.classify(scores)]

    def to_json(self) -> dict[str, Any]:
        return {
            "zones": list(self.zones),
            "thresholds": [float(t) for t in self.thresholds],
            "accuracy_pct": self.accuracy_pct,
            "labelled_slices": self.labelled_slices,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        try:
            accuracy = data.get("accuracy_pct")
            return cls(
                zones=tuple(str(z) for z in data["zones"]),
                thresholds=tuple(float(t) for t in data["thresholds"]),
                accuracy_pct=None if accuracy is None else float(accuracy),
                labelled_slices=int(data.get("labelled_slices", 0)),
            )
        except (KeyError, TypeError) as exc:
            raise CalibrationError(f"calibration is malformed: {exc!r}") from exc


def calibrate(scores: Sequence[float] | np.ndarray, labels: Sequence[str]) -> Calibration:
    """Thresholds from labelled slices (``labels[i]`` is the zone of ``scores[i]``)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(labels),):
        raise CalibrationError("one label per score")
    unknown = sorted({z for z in labels if z not in ZONE_ORDER})
    if unknown:
        raise CalibrationError(f"unknown zone(s) {unknown}; known: {', '.join(ZONE_ORDER)}")
    zones = tuple(z for z in ZONE_ORDER if z in set(labels))
    if len(zones) < 2:
        raise CalibrationError(
            f"the labelled slices cover {len(zones)} zone(s); at least two are needed"
        )
    label_array = np.asarray(labels)
    thresholds = []
    for upper, lower in zip(zones, zones[1:], strict=False):
        thresholds.append(_best_cut(values[label_array == upper], values[label_array == lower]))
    calibration = Calibration(zones, tuple(thresholds), labelled_slices=len(labels))
    expected = np.array([zones.index(z) for z in labels])
    accuracy = float(np.mean(calibration.classify(values) == expected) * 100.0)
    return Calibration(zones, tuple(thresholds), round(accuracy, 2), len(labels))


def _best_cut(above: np.ndarray, below: np.ndarray) -> float:
    """The threshold t (above < t ≤ below) with the fewest errors; the middle of the best."""
    if above.size == 0 or below.size == 0:
        raise CalibrationError("each zone needs labelled slices")
    candidates = np.unique(np.concatenate([above, below]))
    cuts = np.concatenate(
        [[candidates[0] - 1.0], (candidates[:-1] + candidates[1:]) / 2.0, [candidates[-1] + 1.0]]
    )
    above_sorted, below_sorted = np.sort(above), np.sort(below)
    # errors(t) = #above ≥ t + #below < t
    errors = (above.size - np.searchsorted(above_sorted, cuts, side="left")) + np.searchsorted(
        below_sorted, cuts, side="left"
    )
    best = np.flatnonzero(errors == errors.min())
    # The best cuts may form several runs of neighbours; the middle of the widest run.
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    widest = max(runs, key=lambda run: cuts[run[-1]] - cuts[run[0]])
    return float((cuts[widest[0]] + cuts[widest[-1]]) / 2.0)


@dataclass(frozen=True)
class ZoneExtent:
    """Where one zone lies in the series: slice indices (superior → inferior) and z in mm."""

    zone: str
    first_index: int
    last_index: int
    z_top_mm: float
    z_bottom_mm: float
    slices: int  # slices classified as this zone

    @property
    def length_mm(self) -> float:
        return abs(self.z_top_mm - self.z_bottom_mm)


def zone_extents(
    scores: np.ndarray, z_mm: np.ndarray, calibration: Calibration
) -> list[ZoneExtent]:
    """Each zone found, from its first to its last slice, in head → feet order."""
    classes = calibration.classify(scores)
    extents = []
    for number, zone in enumerate(calibration.zones):
        members = np.flatnonzero(classes == number)
        if members.size == 0:
            continue
        first, last = int(members[0]), int(members[-1])
        extents.append(
            ZoneExtent(
                zone=zone,
                first_index=first,
                last_index=last,
                z_top_mm=float(z_mm[first]),
                z_bottom_mm=float(z_mm[last]),
                slices=int(members.size),
            )
        )
    return extents


@dataclass(frozen=True)
class Anomalies:
    """Section 3.2's checks of one series' score curve."""

    r: float  # Pearson r of (slice index, score)
    min_r: float
    monotonic: bool
    reversed: bool
    largest_fall: float  # the largest fall of the smoothed scores, head → feet

    @property
    def nonlinear(self) -> bool:
        return self.r < self.min_r

    @property
    def flagged(self) -> bool:
        return self.nonlinear or not self.monotonic

    def notes(self) -> list[str]:
        out = []
        if self.reversed:
            out.append("scores fall from head to feet: stack reversed against its geometry")
        elif not self.monotonic:
            out.append("scan direction not monotonic (mixed or repeated anatomy)")
        if self.nonlinear:
            out.append(f"r = {self.r:.3f} < {self.min_r:.2f}: abnormal score curve")
        return out


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    denominator = float(np.sqrt(np.sum(x * x) * np.sum(y * y)))
    return float(np.sum(x * y) / denominator) if denominator > 0 else 0.0


def running_median(values: np.ndarray, width: int = RUNNING_MEDIAN) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.size < width or width < 2:
        return values.copy()
    half = width // 2
    padded = np.pad(values, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    return np.median(windows, axis=1)


def check_anomalies(
    scores: np.ndarray,
    *,
    min_r: float = MIN_LINEARITY_R,
    tolerance: float = MONOTONIC_TOLERANCE,
    index: np.ndarray | None = None,
) -> Anomalies:
    """The checks for ``scores`` in superior → inferior order (``index``: their slice
    indices when only some slices were scored)."""
    scores = np.asarray(scores, dtype=np.float64)
    positions = np.arange(scores.size) if index is None else np.asarray(index, dtype=np.float64)
    r = pearson_r(positions, scores) if scores.size >= 2 else 1.0
    smooth = running_median(scores)
    span = float(np.percentile(scores, 95) - np.percentile(scores, 5)) if scores.size else 0.0
    # The largest fall: max over i < j of smooth[i] − smooth[j].
    falls = np.maximum.accumulate(smooth) - smooth
    largest_fall = float(falls.max()) if falls.size else 0.0
    monotonic = largest_fall <= tolerance * max(span, 1e-9)
    return Anomalies(
        r=round(r, 4),
        min_r=min_r,
        monotonic=bool(monotonic),
        reversed=bool(r < 0.0),
        largest_fall=largest_fall,
    )
