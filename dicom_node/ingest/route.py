"""Routing: match a series' header to the pipelines configured for it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dicom_node.settings import RouteRule


@dataclass(frozen=True)
class SeriesHeader:
    """What routing looks at; read from the ``series`` table."""

    modality: str | None
    body_part_examined: str | None
    series_description: str | None
    sop_class_uid: str | None


@dataclass(frozen=True)
class RouteMatch:
    route: str
    pipeline: str
    destinations: tuple[str, ...]


def _matches_any(value: str | None, allowed: tuple[str, ...]) -> bool:
    if not allowed:
        return True
    if value is None:
        return False
    return value.strip().upper() in {a.strip().upper() for a in allowed}


def rule_matches(rule: RouteRule, series: SeriesHeader) -> bool:
    if not _matches_any(series.modality, rule.modality):
        return False
    if not _matches_any(series.body_part_examined, rule.body_part):
        return False
    if rule.sop_class_uid and series.sop_class_uid not in rule.sop_class_uid:
        return False
    if rule.series_description is not None:
        description = series.series_description or ""
        if re.search(rule.series_description, description, flags=re.IGNORECASE) is None:
            return False
    return True


def route_series(rules: tuple[RouteRule, ...], series: SeriesHeader) -> list[RouteMatch]:
    """Every (route, pipeline) whose rule matches, in configuration order, each pipeline once."""
    matches: list[RouteMatch] = []
    seen: set[str] = set()
    for rule in rules:
        if not rule_matches(rule, series):
            continue
        for pipeline in rule.pipelines:
            if pipeline in seen:
                continue
            seen.add(pipeline)
            matches.append(RouteMatch(rule.name, pipeline, rule.destinations))
    return matches
