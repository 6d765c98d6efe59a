"""The demo's entries: found through the trainers, in registry order, and the node's view
of the entry contract (``dicom_node.demo.entries``) kept equal to the one the entries are
written against (``training.demo_entry``): the node may not import ``training``, so the
protocol stands in both places and this test keeps them from drifting apart."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from dicom_node import trainers
from dicom_node.demo import entries as node_view
from training import demo_entry as contract


def _members(protocol: type) -> set[str]:
    names = {name for name in vars(protocol) if not name.startswith("_")}
    return names | set(getattr(protocol, "__annotations__", {}))


@pytest.mark.parametrize(
    ("node_side", "training_side"),
    [
        (node_view.DemoEntry, contract.DemoEntry),
        (node_view.DemoRun, contract.DemoRun),
        (node_view.DemoModel, contract.DemoModel),
        (node_view.DemoCase, contract.DemoCase),
    ],
)
def test_the_node_view_has_the_members_of_the_contract(
    node_side: type, training_side: type
) -> None:
    node_members, contract_members = _members(node_side), _members(training_side)
    # The contract's DemoCase has the entry's own fields too (truth, extras), which the
    # node never reads; everything the node reads is in the contract.
    assert node_members <= contract_members
    if node_side is not node_view.DemoCase:
        assert node_members == contract_members


def test_every_builtin_entry_meets_both_views_in_registry_order() -> None:
    found, problems = node_view.load_demo_entries()
    assert problems == []
    # A trainer may have no part in the demo (its demo_entry() gives None).
    with_entries = [
        name
        for name in trainers.trainer_names()
        if trainers.trainer_module(name).demo_entry() is not None
    ]
    assert [entry.pipeline for entry in found] == with_entries
    assert {"hand_orientation", "ct_body_part", "mura_abnormality"} <= set(with_entries)
    for entry in found:
        assert isinstance(entry, node_view.DemoEntry)
        assert isinstance(entry, contract.DemoEntry)
        assert entry.modalities and entry.route


def test_entries_sharing_a_modality_are_told_apart_by_body_part(tmp_path: Path) -> None:
    """Hand films and the other radiographs are both DX/CR: the demo's routes send a
    hand film to hand_orientation alone and a wrist study to mura_abnormality alone."""
    from dicom_node.demo.run import demo_settings
    from dicom_node.ingest.route import SeriesHeader, route_series

    settings = demo_settings(tmp_path, 11112, 11113, node_view.demo_entries())
    pipelines = {
        body_part: [m.pipeline for m in route_series(settings.routes, SeriesHeader(
            "DX", body_part, None, None))]
        for body_part in ("HAND", "WRIST", "ELBOW", None)
    }  # fmt: skip
    assert pipelines == {
        "HAND": ["hand_orientation"],
        "WRIST": ["mura_abnormality"],
        "ELBOW": ["mura_abnormality"],
        None: [],
    }
    ct = route_series(settings.routes, SeriesHeader("CT", None, None, None))
    assert [m.pipeline for m in ct] == ["ct_body_part"]


def test_options_missing_from_a_caller_get_the_entries_defaults() -> None:
    found = node_view.demo_entries()
    options = node_view.with_defaults(found, argparse.Namespace(ct_slices=0))
    assert options.ct_slices == 0 and options.ct_size == 512 and options.preset == "demo"


def test_a_trainer_whose_demo_entry_is_not_one_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class NotAnEntry:
        pipeline = "ct_body_part"

    module: Any = trainers.trainer_module("ct_body_part")
    monkeypatch.setattr(module, "demo_entry", NotAnEntry)
    found, problems = node_view.load_demo_entries()
    others = [n for n in trainers.trainer_names() if n != "ct_body_part"]
    assert [entry.pipeline for entry in found] == [
        n for n in others if trainers.trainer_module(n).demo_entry() is not None
    ]
    assert "ct_body_part" not in [entry.pipeline for entry in found]
    (problem,) = problems
    assert problem.startswith("trainer 'ct_body_part': demo_entry() gave")
    with pytest.raises(trainers.TrainerUnavailable, match="ct_body_part"):
        node_view.demo_entries()
