"""A pipeline's part of ``dicom-node demo``, as its trainer package offers it.

The demo (``dicom_node.demo``) is one loop over entries: each entry says which modalities
its pipeline takes, trains a small model when none is active, writes the synthetic
studies to send (with what is true of them), and prints its table once the results are
back. An entry lives in ``training/<pipeline>/demo.py`` beside the synthetic data and the
trainer it uses; ``training/<pipeline>/cli.py``'s ``demo_entry()`` returns it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
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
    #: What the pipeline's result summary said (the results log's ``summary``).
    summary: dict[str, Any] | None = None
    #: Output kinds in the results log, or the modalities the PACS holds for the study.
    outputs: list[str] | None = None
    #: kind → paths of the outputs under the node's outputs_dir.
    output_paths: dict[str, list[str]] | None = None
    delivered: int = 0
    state: str = "waiting"
    #: What the entry knows of the study (the true angle, the phantom's zones, ...).
    truth: dict[str, Any] | None = None


@dataclass(frozen=True)
class DemoRun:
    """What the demo tells an entry: its work folder, seed and the entry's own options."""

    workdir: Path
    model_dir: Path
    outputs_dir: Path
    seed: int
    options: argparse.Namespace


@dataclass(frozen=True)
class DemoModel:
    """The model an entry trained for the demo: its folder and a line on its quality."""

    folder: Path
    quality: str


@runtime_checkable
class DemoEntry(Protocol):
    """A pipeline's part of ``dicom-node demo``: data to send, model to train, report rows.

    The demo routes ``modalities`` to ``pipeline``, trains a model with ``train`` when none
    is active, sends the cases ``write_cases`` made, waits for each result to come back,
    then asks the entry for its table (``print_report``) and its part of
    ``demo-report.json`` (``report_json``, merged into the top level).
    """

    pipeline: str
    modalities: tuple[str, ...]

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        """Add this entry's ``dicom-node demo`` options (its preset, its data's size)."""
        ...

    def enabled(self, options: argparse.Namespace) -> bool:
        """Whether the options ask for this entry's part (``--ct-slices 0``: no CT)."""
        ...

    def check_options(self, options: argparse.Namespace) -> None:
        """Raise ``ValueError`` for options that cannot work."""
        ...

    def train(self, run: DemoRun, console: Console) -> DemoModel: ...

    def write_cases(self, run: DemoRun, console: Console) -> list[DemoCase]: ...

    def finish(self, run: DemoRun, cases: list[DemoCase]) -> None:
        """After the results came back: anything the entry saves beside the report."""
        ...

    def print_report(
        self, cases: list[DemoCase], model_version: str, run: DemoRun, console: Console
    ) -> None: ...

    def report_json(
        self, cases: list[DemoCase], model_version: str | None, trained: bool, run: DemoRun
    ) -> dict[str, Any]: ...
