"""The promotion gate: candidate against active model, scored on the same held-out set.

The candidate is activated only if its figure (the trainer's ``metric``) is not worse than
the active model's by more than ``margin`` (in the metric's unit) and it passes the
pipeline's sanity checks. With no active model (or one that could not be scored) the
sanity checks alone decide. A candidate that passes while ``auto_activate`` is off is
``passed``: registered, inactive, for a person to activate. The reason names the metric,
both figures and the margin, or the failed check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dicom_node.db.models import RunDecision


@dataclass(frozen=True)
class GateDecision:
    decision: RunDecision
    reason: str

    @property
    def activate(self) -> bool:
        return self.decision is RunDecision.PROMOTED


def _figure(metrics: Mapping[str, Any] | None, metric: str) -> float | None:
    value = None if metrics is None else metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def decide(
    *,
    pipeline: str,
    metric: str,
    higher_is_better: bool,
    candidate_version: str,
    candidate: Mapping[str, Any],
    active_version: str | None,
    active: Mapping[str, Any] | None,
    margin: float,
    problems: Sequence[str],
    auto_activate: bool,
) -> GateDecision:
    """The gate's decision and its reason in words."""
    better = "higher" if higher_is_better else "lower"
    mine = _figure(candidate, metric)
    if mine is None:
        error = candidate.get("error")
        why = f": {error}" if error else ""
        return GateDecision(
            RunDecision.REJECTED, f"the candidate's {metric} could not be measured{why}"
        )
    theirs = _figure(active, metric)
    if active_version is None:
        comparison = f"{metric} {mine:.4g} ({better} is better); no active model to compare with"
    elif theirs is None:
        error = (active or {}).get("error")
        comparison = (
            f"{metric} {mine:.4g} ({better} is better); the active model {active_version} "
            f"could not be scored{f' ({error})' if error else ''}, so the sanity checks decide"
        )
    else:
        worse_by = (theirs - mine) if higher_is_better else (mine - theirs)
        comparison = (
            f"{metric} {mine:.4g} (candidate {candidate_version}) against {theirs:.4g} "
            f"(active {active_version}), {better} is better, margin {margin:g}"
        )
        if worse_by > margin:
            return GateDecision(
                RunDecision.REJECTED,
                f"worse than the active model by {worse_by:.4g}, more than the margin: "
                f"{comparison}",
            )
    if problems:
        return GateDecision(
            RunDecision.REJECTED,
            f"failed the sanity check: {'; '.join(problems)} ({comparison})",
        )
    if not auto_activate:
        return GateDecision(
            RunDecision.PASSED,
            f"passed the gate, not activated (auto_activate is off; `dicom-node models "
            f"activate {pipeline} {candidate_version}` activates it): {comparison}",
        )
    return GateDecision(RunDecision.PROMOTED, f"passed the gate and is active: {comparison}")
