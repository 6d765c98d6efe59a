"""The demo's entries: each pipeline's part of ``dicom-node demo``, found through the trainers.

An entry is what ``training/<pipeline>/cli.py``'s ``demo_entry()`` returns (None: no part
in the demo); the node reaches it through ``dicom_node.trainers`` and never imports
``training``. The protocols here are the node's view of ``training.demo_entry`` (the
contract the entries are written against): the same members, used by shape.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from dicom_node.trainers import TrainerUnavailable, trainer_module, trainer_names

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class DemoRun:
    """What the demo tells its entries (``training.demo_entry.DemoRun``): the work folder,
    the node's model store and outputs folder, the seed and every ``dicom-node demo``
    option."""

    workdir: Path
    model_dir: Path
    outputs_dir: Path
    seed: int
    options: argparse.Namespace


class DemoCase(Protocol):
    """One study the demo sends (``training.demo_entry.DemoCase``); the demo fills in what
    came back for it."""

    study_instance_uid: str
    pipeline: str
    files: list[Path]
    summary: dict[str, Any]
    outputs: list[str]
    output_paths: dict[str, list[str]]
    delivered: int
    state: str
    study_pipelines: list[str]


class DemoModel(Protocol):
    """A model an entry trained: its folder and a line on its quality."""

    @property
    def folder(self) -> Path: ...

    @property
    def quality(self) -> str: ...


@runtime_checkable
class DemoEntry(Protocol):
    """A pipeline's part of the demo (``training.demo_entry.DemoEntry``). The cases handed
    back to an entry are its own, as ``write_cases`` made them (hence ``list[Any]``: an
    entry's methods take its concrete case type)."""

    pipeline: str
    route: str
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    classifies_for: tuple[str, ...]

    def add_options(self, parser: argparse.ArgumentParser) -> None: ...

    def check_options(self, options: argparse.Namespace) -> None: ...

    def enabled(self, options: argparse.Namespace) -> bool: ...

    def forget(self, run: DemoRun) -> None: ...

    def train(self, run: DemoRun, console: Console) -> DemoModel: ...

    def write_cases(self, run: DemoRun, console: Console) -> Sequence[DemoCase]: ...

    def finish(self, run: DemoRun, cases: list[Any]) -> None: ...

    def print_report(
        self, cases: list[Any], model_version: str, run: DemoRun, console: Console
    ) -> None: ...

    def report_json(
        self, cases: list[Any], model_version: str | None, trained: bool, run: DemoRun
    ) -> dict[str, Any]: ...


def load_demo_entries() -> tuple[list[DemoEntry], list[str]]:
    """The entries of the registered trainers that have a part in the demo, in registry
    order (which is the order of the routes, the models, the data and the tables), and a
    line for each trainer whose entry cannot be had."""
    entries: list[DemoEntry] = []
    problems: list[str] = []
    for name in trainer_names():
        try:
            entry = trainer_module(name).demo_entry()
        except (TrainerUnavailable, ImportError) as exc:
            problems.append(str(exc))
            continue
        if entry is None:
            continue
        if not isinstance(entry, DemoEntry) or entry.pipeline != name:
            problems.append(f"trainer {name!r}: demo_entry() gave {entry!r}, not its demo entry")
            continue
        entries.append(entry)
    return entries, problems


def with_defaults(entries: Sequence[DemoEntry], given: argparse.Namespace) -> argparse.Namespace:
    """``given`` with the defaults of the entries' options it lacks (for a caller that
    does not come through ``dicom-node demo``'s parser)."""
    parser = argparse.ArgumentParser(add_help=False)
    for entry in entries:
        entry.add_options(parser)
    return argparse.Namespace(**{**vars(parser.parse_args([])), **vars(given)})


def demo_entries() -> list[DemoEntry]:
    """``load_demo_entries``'s entries; ``TrainerUnavailable`` if one cannot be had."""
    entries, problems = load_demo_entries()
    if problems:
        raise TrainerUnavailable("; ".join(problems))
    return entries
