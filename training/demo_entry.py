"""A pipeline's part of ``dicom-node demo``, as its trainer package offers it.

The demo (``dicom_node.demo``) is one loop over entries: each entry says which modalities
its pipeline takes, trains a small model when none is active, writes the synthetic
studies to send (with what is true of them), and prints its table once the results are
back. An entry lives in ``training/<pipeline>/demo.py`` beside the synthetic data and the
trainer it uses; ``training/<pipeline>/cli.py``'s ``demo_entry()`` returns it (None: the
pipeline has no part in the demo).

The node never imports ``training``: it finds entries through ``dicom_node.trainers`` and
uses them by their shape (``dicom_node.demo.entries`` mirrors this protocol), and it
hands an entry a ``DemoRun`` of its own making. So ``DemoRun`` is a protocol here, and
``DemoCase`` and ``DemoModel`` are plain data the node reads and fills in by attribute.

Order of the calls, for every run of the demo:

1. ``add_options`` (when the command line is built), then ``check_options`` and
   ``enabled`` for every entry;
2. ``forget`` for every entry, enabled or not (the node forgets its own earlier studies);
3. for each enabled entry in registry order: ``train`` when its pipeline has no active
   model (the node imports the folder and activates it);
4. for each enabled entry: ``write_cases``; the node sends every case, waits until each
   has its result delivered, and fills in the cases;
5. for each enabled entry: ``finish``, then ``print_report``; then ``report_json`` for
   every entry (a disabled one gets no cases and no model version), merged into the top
   level of ``demo-report.json``.

An entry raises ``ValueError`` for options or data that cannot work; the demo reports
its message as its own error.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class DemoCase:
    """One study the demo sends, and what came back for it (filled in by the demo)."""

    study_instance_uid: str
    pipeline: str
    files: list[Path]
    #: What the entry knows of the study (the true angle, the phantom's zones, ...).
    truth: dict[str, Any] = field(default_factory=dict)
    #: What the pipeline's result summary said (the results log's ``summary``).
    summary: dict[str, Any] = field(default_factory=dict)
    #: Output kinds in the results log, or the modalities the PACS holds for the study.
    outputs: list[str] = field(default_factory=list)
    #: kind → paths of the outputs under the node's outputs_dir.
    output_paths: dict[str, list[str]] = field(default_factory=dict)
    delivered: int = 0
    state: str = "waiting"
    #: Every pipeline with a result for the study (a film routed by image: the classifier
    #: and what its verdict routed the film to), filled in by the demo.
    study_pipelines: list[str] = field(default_factory=list)
    #: What the entry's ``finish`` found or wrote (a plot's paths, ...).
    extras: dict[str, Any] = field(default_factory=dict)


class DemoRun(Protocol):
    """What the demo tells an entry: its work folder, seed and the command's options
    (``options`` holds every ``dicom-node demo`` option, the entry's own among them)."""

    @property
    def workdir(self) -> Path: ...

    @property
    def model_dir(self) -> Path: ...

    @property
    def outputs_dir(self) -> Path: ...

    @property
    def seed(self) -> int: ...

    @property
    def options(self) -> argparse.Namespace: ...


@dataclass(frozen=True)
class DemoModel:
    """The model an entry trained for the demo: its folder and a line on its quality."""

    folder: Path
    quality: str


@runtime_checkable
class DemoEntry(Protocol):
    """A pipeline's part of ``dicom-node demo``: data to send, model to train, report rows.

    The demo routes ``modalities`` to ``pipeline`` (a route named ``route``), trains a
    model with ``train`` when none is active, sends the cases ``write_cases`` made, waits
    for each result to come back, then asks the entry for its table (``print_report``)
    and its part of ``demo-report.json`` (``report_json``, merged into the top level).
    """

    pipeline: str
    route: str
    modalities: tuple[str, ...]
    #: Body Part Examined values the route also requires (empty: any), for entries whose
    #: modalities another entry takes too (hand films and other radiographs).
    body_parts: tuple[str, ...]
    #: Routes (other entries' ``route``) whose films with an unclear Body Part Examined
    #: this entry's pipeline classifies first (``when_headers_unclear``); such an entry has
    #: no route of its own. Empty for the others.
    classifies_for: tuple[str, ...]

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        """Add this entry's ``dicom-node demo`` options (its preset, its data's size)."""
        ...

    def check_options(self, options: argparse.Namespace) -> None:
        """Raise ``ValueError`` for options that cannot work."""
        ...

    def enabled(self, options: argparse.Namespace) -> bool:
        """Whether the options ask for this entry's part (``--ct-slices 0``: no CT)."""
        ...

    def forget(self, run: DemoRun) -> None:
        """Remove what an earlier run of this entry left in the work folder."""
        ...

    def train(self, run: DemoRun, console: Console) -> DemoModel:
        """Train a small model into a folder under ``run.model_dir``; say what it does."""
        ...

    def write_cases(self, run: DemoRun, console: Console) -> list[DemoCase]:
        """Write the synthetic studies to send (under ``run.workdir``), and say so."""
        ...

    def finish(self, run: DemoRun, cases: list[DemoCase]) -> None:
        """After the results came back: anything the entry saves beside the report."""
        ...

    def print_report(
        self, cases: list[DemoCase], model_version: str, run: DemoRun, console: Console
    ) -> None:
        """The entry's table of what came back, beside what is true of its cases."""
        ...

    def report_json(
        self, cases: list[DemoCase], model_version: str | None, trained: bool, run: DemoRun
    ) -> dict[str, Any]:
        """The entry's top-level keys of ``demo-report.json`` (JSON-ready values)."""
        ...
