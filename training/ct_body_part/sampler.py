"""Training samples as the paper draws them (Section 2, "Selection of Training Samples").

Each iteration picks g volumes at random, then m equidistant slices from each: a random
interval k and a random start j, so the slices j, j+k, …, j+(m−1)k all lie inside the
volume. Volumes are in superior → inferior order, so the slice indices rise with the
position the scores should follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SliceGroup:
    volume: int  # index of the volume
    indices: np.ndarray  # m slice indices, equidistant, rising
    interval: int  # k


def usable_volumes(lengths: Sequence[int], m: int) -> list[int]:
    """Volumes with at least m slices (a shorter one cannot give m distinct slices)."""
    return [i for i, n in enumerate(lengths) if n >= m]


def sample_groups(
    lengths: Sequence[int],
    g: int,
    m: int,
    rng: np.random.Generator,
    *,
    max_interval: int | None = None,
) -> list[SliceGroup]:
    """g groups of m equidistant slices; each from a different volume while there are
    enough volumes (then volumes repeat). ``max_interval`` caps k (None: as far as the
    volume allows)."""
    if g < 1 or m < 2:
        raise ValueError("g must be ≥ 1 and m ≥ 2")
    usable = usable_volumes(lengths, m)
    if not usable:
        raise ValueError(f"no volume has the {m} slices a group needs")
    chosen = rng.choice(usable, size=g, replace=len(usable) < g)
    groups = []
    for volume in chosen:
        n = int(lengths[int(volume)])
        widest = (n - 1) // (m - 1)
        if max_interval is not None:
            widest = max(1, min(widest, max_interval))
        k = int(rng.integers(1, widest + 1))
        span = k * (m - 1)
        j = int(rng.integers(0, n - span))
        groups.append(SliceGroup(int(volume), j + k * np.arange(m), k))
    return groups
