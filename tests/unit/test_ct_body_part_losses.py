"""The paper's losses (Eqs. 1–3) against hand computations, and the slice sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.ct_body_part.losses import distance_loss, order_loss, ubr_loss
from training.ct_body_part.sampler import sample_groups, usable_volumes


def _smooth_l1(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1.0 else abs(x) - 0.5


def test_order_loss_matches_eq1_by_hand() -> None:
    scores = torch.tensor([[0.0, 1.0, 0.5], [2.0, 2.0, 5.0]])
    expected = 0.0
    for row in scores.tolist():
        for a, b in zip(row, row[1:], strict=False):
            expected -= math.log(1.0 / (1.0 + math.exp(-(b - a))))
    assert float(order_loss(scores)) == pytest.approx(expected, rel=1e-6)


def test_order_loss_prefers_rising_scores_and_is_stable() -> None:
    rising = torch.tensor([[0.0, 10.0, 20.0]])
    falling = torch.tensor([[20.0, 10.0, 0.0]])
    assert float(order_loss(rising)) < 1e-3
    assert float(order_loss(falling)) == pytest.approx(20.0, rel=1e-3)
    huge = torch.tensor([[1e4, -1e4]])  # log h(−2e4) must not be −inf
    assert math.isfinite(float(order_loss(huge)))


def test_distance_loss_matches_eq2_by_hand() -> None:
    scores = torch.tensor([[0.0, 1.0, 3.0, 3.5], [1.0, 1.2, 1.4, 4.0]])
    expected = 0.0
    for row in scores.tolist():
        steps = [b - a for a, b in zip(row, row[1:], strict=False)]
        for d1, d2 in zip(steps, steps[1:], strict=False):
            expected += _smooth_l1(d2 - d1)
    assert float(distance_loss(scores)) == pytest.approx(expected, rel=1e-6)


def test_distance_loss_is_zero_for_equidistant_scores_and_for_two_slices() -> None:
    assert float(distance_loss(torch.tensor([[1.0, 3.0, 5.0, 7.0]]))) == 0.0
    assert float(distance_loss(torch.tensor([[1.0, 9.0]]))) == 0.0


def test_total_loss_is_the_sum_and_has_gradients() -> None:
    scores = torch.tensor([[0.3, -0.2, 1.5, 0.1]], requires_grad=True)
    total = ubr_loss(scores)
    parts = order_loss(scores) + distance_loss(scores)
    assert float(total.detach()) == pytest.approx(float(parts.detach()))
    total.backward()
    assert scores.grad is not None and torch.count_nonzero(scores.grad) > 0
    without = ubr_loss(scores, use_distance=False).detach()
    assert float(without) == pytest.approx(float(order_loss(scores).detach()))


def test_losses_refuse_wrong_shapes() -> None:
    with pytest.raises(ValueError):
        order_loss(torch.zeros(5))
    with pytest.raises(ValueError):
        distance_loss(torch.zeros(3, 1))


def test_sampler_gives_equidistant_slices_inside_each_volume() -> None:
    rng = np.random.default_rng(3)
    lengths = [40, 9, 300, 12]
    seen_intervals = set()
    for _ in range(300):
        for group in sample_groups(lengths, g=3, m=8, rng=rng):
            n = lengths[group.volume]
            assert group.indices.shape == (8,)
            assert group.indices[0] >= 0 and group.indices[-1] <= n - 1
            steps = np.diff(group.indices)
            assert np.all(steps == group.interval) and group.interval >= 1
            seen_intervals.add(group.interval)
    assert max(seen_intervals) > 20  # long volumes give long intervals, not always k = 1


def test_sampler_picks_distinct_volumes_when_it_can_and_skips_short_ones() -> None:
    rng = np.random.default_rng(0)
    lengths = [5, 50, 60, 70, 80]
    assert usable_volumes(lengths, 8) == [1, 2, 3, 4]
    for _ in range(50):
        groups = sample_groups(lengths, g=4, m=8, rng=rng)
        volumes = [group.volume for group in groups]
        assert sorted(volumes) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="no volume"):
        sample_groups([3, 4], g=2, m=8, rng=rng)


def test_sampler_caps_the_interval() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        (group,) = sample_groups([500], g=1, m=4, rng=rng, max_interval=5)
        assert 1 <= group.interval <= 5
