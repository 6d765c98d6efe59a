"""Routing: match a series' header to the pipelines configured for it.

A rule with ``when_headers_unclear`` routes by image too: ``triage_rule`` says whether a
series must be classified first (its Body Part Examined names none of the X-ray types the
classifier knows, or the rule checks every header); ``route_by_image`` does the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dicom_node.settings import RouteRule
from pipelines.xray_triage.body_parts import type_named_by_header


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


def rule_matches(rule: RouteRule, series: SeriesHeader, *, body_part: bool = True) -> bool:
    """Whether every condition of ``rule`` holds (but Body Part Examined's, if not ``body_part``)."""
    if not _matches_any(series.modality, rule.modality):
        return False
    if body_part and not _matches_any(series.body_part_examined, rule.body_part):
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


def header_is_unclear(series: SeriesHeader) -> bool:
    """Body Part Examined missing, empty, or naming none of the X-ray types triage knows."""
    return type_named_by_header(series.body_part_examined) is None


def triage_rule(rules: tuple[RouteRule, ...], series: SeriesHeader) -> RouteRule | None:
    """The first rule that has this series classified by image before it is routed: it
    names a classifier (``when_headers_unclear``), its other conditions hold, and the
    header is unclear or the rule checks every header."""
    unclear = header_is_unclear(series)
    for rule in rules:
        if rule.when_headers_unclear is None or not (unclear or rule.check_headers):
            continue
        if rule_matches(rule, series, body_part=False):
            return rule
    return None


def waits_for_triage(rule: RouteRule, series: SeriesHeader) -> bool:
    """Whether the series' routing waits for its classification: the header is unclear,
    or the image decides when the two disagree."""
    return header_is_unclear(series) or rule.when_headers_disagree == "image"
