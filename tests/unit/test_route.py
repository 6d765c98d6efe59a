"""Routing rules: header conditions, several rules, pipeline de-duplication."""

from __future__ import annotations

import pytest
from pydicom.uid import CTImageStorage, DigitalXRayImageStorageForPresentation, MRImageStorage

from dicom_node.ingest.route import RouteMatch, SeriesHeader, route_series, rule_matches
from dicom_node.settings import RouteRule


def series(
    modality: str | None = "CT",
    body_part: str | None = None,
    description: str | None = None,
    sop_class: str | None = CTImageStorage,
) -> SeriesHeader:
    return SeriesHeader(modality, body_part, description, sop_class)


def rule(name: str = "r", pipelines: tuple[str, ...] = ("p",), **conditions: object) -> RouteRule:
    return RouteRule(name=name, pipelines=pipelines, **conditions)  # type: ignore[arg-type]


@pytest.mark.parametrize("modality", ["CT", "ct", " Ct ", "cT"])
def test_modality_ignores_case_and_padding(modality: str) -> None:
    assert rule_matches(rule(modality=("ct",)), series(modality=modality))


@pytest.mark.parametrize("modality", ["MR", "CTX", "", None])
def test_modality_mismatch(modality: str | None) -> None:
    assert not rule_matches(rule(modality=("CT",)), series(modality=modality))


def test_modality_list_is_any_of() -> None:
    hand = rule(modality=("CR", "dx"))
    assert rule_matches(hand, series(modality="DX"))
    assert rule_matches(hand, series(modality="cr"))
    assert not rule_matches(hand, series(modality="MG"))


@pytest.mark.parametrize(
    ("body_part", "expected"),
    [("HAND", True), ("hand", True), ("Wrist", True), ("CHEST", False), (None, False)],
)
def test_body_part_list(body_part: str | None, expected: bool) -> None:
    assert rule_matches(rule(body_part=("hand", "WRIST")), series(body_part=body_part)) is expected


def test_a_rule_without_conditions_matches_everything() -> None:
    assert rule_matches(rule(), series(modality=None, sop_class=None))


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("AX T1 Bone", True),
        ("axial 2.5mm", True),
        ("sag bone", False),
        ("", False),
        (None, False),
    ],
)
def test_series_description_regex_is_searched_ignoring_case(
    description: str | None, expected: bool
) -> None:
    assert (
        rule_matches(rule(series_description=r"^ax(ial)?\b"), series(description=description))
        is expected
    )


def test_series_description_search_is_not_anchored() -> None:
    assert rule_matches(rule(series_description="hand"), series(description="Left HAND PA"))


def test_sop_class_exact() -> None:
    ct_only = rule(sop_class_uid=(CTImageStorage,))
    assert rule_matches(ct_only, series(sop_class=CTImageStorage))
    assert not rule_matches(ct_only, series(sop_class=MRImageStorage))
    assert not rule_matches(ct_only, series(sop_class=None))
    assert not rule_matches(ct_only, series(sop_class=CTImageStorage + ".1"))


def test_all_conditions_must_match() -> None:
    hand = rule(modality=("CR", "DX"), body_part=("HAND",), series_description="pa")
    assert rule_matches(hand, series("DX", "HAND", "Hand PA"))
    assert not rule_matches(hand, series("DX", "CHEST", "Hand PA"))
    assert not rule_matches(hand, series("CT", "HAND", "Hand PA"))
    assert not rule_matches(hand, series("DX", "HAND", "lateral"))


def test_several_rules_in_configuration_order() -> None:
    rules = (
        rule("hands", ("hand_orientation", "bone_age"), modality=("DX",), body_part=("HAND",)),
        rule("all-dx", ("mura_abnormality",), modality=("DX",), destinations=("pacs",)),
        rule("ct", ("ct_body_part",), modality=("CT",)),
    )
    matches = route_series(
        rules, series("DX", "HAND", None, DigitalXRayImageStorageForPresentation)
    )
    assert matches == [
        RouteMatch("hands", "hand_orientation", ()),
        RouteMatch("hands", "bone_age", ()),
        RouteMatch("all-dx", "mura_abnormality", ("pacs",)),
    ]
    assert route_series(rules, series("CT")) == [RouteMatch("ct", "ct_body_part", ())]


def test_a_pipeline_runs_once_per_series() -> None:
    rules = (
        rule("first", ("a", "b"), modality=("CR",)),
        rule("second", ("b", "c"), body_part=("HAND",)),
        rule("third", ("a",)),
    )
    matches = route_series(rules, series("CR", "HAND"))
    assert [(m.route, m.pipeline) for m in matches] == [
        ("first", "a"),
        ("first", "b"),
        ("second", "c"),
    ]


def test_a_pipeline_listed_twice_in_one_rule_runs_once() -> None:
    assert route_series((rule("r", ("a", "a")),), series()) == [RouteMatch("r", "a", ())]


def test_no_match() -> None:
    rules = (rule("ct", ("ct_body_part",), modality=("CT",)),)
    assert route_series(rules, series("MR", sop_class=MRImageStorage)) == []
    assert route_series((), series()) == []
