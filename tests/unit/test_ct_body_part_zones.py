"""Zone calibration, extents and the paper's anomaly checks."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.ct_body_part.zones import (
    Calibration,
    CalibrationError,
    calibrate,
    check_anomalies,
    pearson_r,
    zone_extents,
)


def _labelled(rng: np.random.Generator, noise: float = 0.0) -> tuple[np.ndarray, list[str]]:
    # Chest scores around −8..−3, abdomen −3..2, pelvis 2..6: thresholds near −3 and 2.
    scores = np.concatenate(
        [np.linspace(-8, -3.05, 50), np.linspace(-2.95, 1.95, 40), np.linspace(2.05, 6, 30)]
    )
    labels = ["chest"] * 50 + ["abdomen"] * 40 + ["pelvis"] * 30
    return scores + rng.normal(0, noise, scores.size), labels


def test_calibration_finds_the_boundaries_between_zones() -> None:
    scores, labels = _labelled(np.random.default_rng(0))
    calibration = calibrate(scores, labels)
    assert calibration.zones == ("chest", "abdomen", "pelvis")
    assert calibration.thresholds[0] == pytest.approx(-3.0, abs=0.06)
    assert calibration.thresholds[1] == pytest.approx(2.0, abs=0.06)
    assert calibration.accuracy_pct == 100.0
    assert list(calibration.classify(np.array([-10, -3.1, -2.9, 1.9, 2.1, 50]))) == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]


def test_calibration_with_overlapping_zones_minimises_errors() -> None:
    scores = np.array([0.0, 1.0, 2.0, 3.0, 2.5, 4.0, 5.0, 6.0])
    labels = ["chest"] * 4 + ["abdomen"] * 4  # chest 3.0 overlaps abdomen 2.5
    calibration = calibrate(scores, labels)
    (threshold,) = calibration.thresholds
    errors = int(np.sum(scores[:4] >= threshold) + np.sum(scores[4:] < threshold))
    assert errors == 1
    assert calibration.accuracy_pct == pytest.approx(87.5)


def test_calibration_round_trips_and_refuses_nonsense() -> None:
    scores, labels = _labelled(np.random.default_rng(1), noise=0.2)
    calibration = calibrate(scores, labels)
    assert Calibration.from_json(calibration.to_json()) == calibration
    with pytest.raises(CalibrationError, match="two"):
        calibrate(np.array([1.0, 2.0]), ["chest", "chest"])
    with pytest.raises(CalibrationError, match="unknown"):
        calibrate(np.array([1.0, 2.0]), ["chest", "legs"])
    # A model whose scores fall from head to feet gives falling thresholds: refused.
    with pytest.raises(CalibrationError, match="rise"):
        calibrate(-scores, labels)


def test_zone_extents_report_slices_and_z() -> None:
    calibration = Calibration(("chest", "abdomen", "pelvis"), (-3.0, 2.0))
    z = np.arange(0.0, -100.0, -5.0)  # 20 slices, superior first
    scores = np.linspace(-6, 5, 20)
    extents = zone_extents(scores, z, calibration)
    assert [e.zone for e in extents] == ["chest", "abdomen", "pelvis"]
    classes = calibration.classify(scores)
    for number, extent in enumerate(extents):
        members = np.flatnonzero(classes == number)
        assert (extent.first_index, extent.last_index) == (members[0], members[-1])
        assert extent.z_top_mm == z[members[0]] and extent.z_bottom_mm == z[members[-1]]
        assert extent.slices == members.size
    assert sum(e.slices for e in extents) == 20
    only_chest = zone_extents(np.full(5, -9.0), z[:5], calibration)
    assert [e.zone for e in only_chest] == ["chest"]


def test_linear_rising_curve_is_not_flagged() -> None:
    rng = np.random.default_rng(2)
    scores = np.linspace(-10, 10, 200) + rng.normal(0, 0.1, 200)
    result = check_anomalies(scores)
    assert result.r > 0.99 and result.monotonic and not result.reversed
    assert not result.flagged and result.notes() == []


def test_reversed_and_mixed_curves_are_flagged() -> None:
    scores = np.linspace(-10, 10, 120)
    reversed_ = check_anomalies(scores[::-1])
    assert reversed_.reversed and not reversed_.monotonic and reversed_.flagged
    mixed = scores.copy()
    mixed[40:80] = mixed[40:80][::-1]
    result = check_anomalies(mixed)
    assert not result.monotonic and not result.reversed and result.flagged
    assert any("not monotonic" in note for note in result.notes())


def test_nonlinear_but_monotonic_curve_is_flagged_by_r() -> None:
    x = np.linspace(0, 1, 100)
    scores = np.where(x < 0.5, x * 0.2, 0.1 + (x - 0.5) * 20)  # a sharp turn, still rising
    result = check_anomalies(scores)
    assert result.monotonic and result.r < 0.99 and result.nonlinear and result.flagged


def test_pearson_r_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert pearson_r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
