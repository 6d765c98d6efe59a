"""The paper's two inter-slice losses (Section 2, Eqs. 1–3).

``scores`` is a (g, m) tensor: row i holds the scores S(i, 1..m) of m equidistant slices
of volume i, in superior → inferior order.

* ``order_loss`` (Eq. 1): −Σ_i Σ_j log h(S(i, j+1) − S(i, j)), h the sigmoid — later slices
  should score higher.
* ``distance_loss`` (Eq. 2): Σ_i Σ_j f(Δ_{i,j+2} − Δ_{i,j+1}) with Δ_{i,j} = S(i, j) −
  S(i, j−1) and f the smooth L1 loss — equidistant slices should have equidistant scores.
* ``ubr_loss`` (Eq. 3): their sum.

Both are sums, as the paper writes them (not means), so the gradient grows with g and m
as it did for the paper's learning rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(scores: torch.Tensor, minimum: int) -> None:
    if scores.ndim != 2 or scores.shape[1] < minimum:
        raise ValueError(
            f"scores must be (g volumes, m ≥ {minimum} slices), not shape {tuple(scores.shape)}"
        )


def order_loss(scores: torch.Tensor) -> torch.Tensor:
    """Eq. 1. ``log h(x)`` is computed as ``logsigmoid(x)``, stable for large |x|."""
    _check(scores, 2)
    return -F.logsigmoid(scores[:, 1:] - scores[:, :-1]).sum()


def distance_loss(scores: torch.Tensor, *, beta: float = 1.0) -> torch.Tensor:
    """Eq. 2 (smooth L1 with transition point ``beta``, 1 as in Fast/Faster R-CNN)."""
    _check(scores, 2)
    if scores.shape[1] < 3:
        return scores.new_zeros(())  # m = 2: no pair of differences (the paper's note)
    steps = scores[:, 1:] - scores[:, :-1]
    change = steps[:, 1:] - steps[:, :-1]
    return F.smooth_l1_loss(change, torch.zeros_like(change), beta=beta, reduction="sum")


def ubr_loss(scores: torch.Tensor, *, use_distance: bool = True) -> torch.Tensor:
    """Eq. 3: L = L_order + L_dist (``use_distance=False`` leaves L_dist out, for ablation)."""
    loss = order_loss(scores)
    if use_distance:
        loss = loss + distance_loss(scores)
    return loss
