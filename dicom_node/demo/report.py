"""The demo's report: each entry's table on the console, and ``demo-report.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from dicom_node.demo.entries import DemoCase, DemoEntry, DemoRun
from dicom_node.demo.results import DemoError

#: The report's own top-level keys; every other one comes from an entry.
GENERIC_KEYS = ("pacs", "outputs_dir")


@dataclass(frozen=True)
class ModelState:
    """An entry's model in this run: its version (None: the entry was off) and whether
    the demo trained it now."""

    version: str | None = None
    trained: bool = False


@dataclass
class DemoReport:
    """What a run of the demo did: where the results went, and each entry's part."""

    entries: list[DemoEntry]
    run: DemoRun
    pacs: str
    outputs_dir: Path
    models: dict[str, ModelState] = field(default_factory=dict)  # pipeline → its model
    cases: dict[str, list[DemoCase]] = field(default_factory=dict)  # pipeline → its cases

    def enabled(self) -> list[DemoEntry]:
        """The entries that took part (those with a model in this run)."""
        return [e for e in self.entries if self.models.get(e.pipeline, ModelState()).version]

    def as_json(self) -> dict[str, Any]:
        """Every entry's keys (a disabled entry's with no cases and no model), and
        ``pacs`` and ``outputs_dir``."""
        body: dict[str, Any] = {}
        for entry in self.entries:
            model = self.models.get(entry.pipeline, ModelState())
            part = entry.report_json(
                self.cases.get(entry.pipeline, []), model.version, model.trained, self.run
            )
            clash = sorted(set(part) & (set(body) | set(GENERIC_KEYS)))
            if clash:
                raise DemoError(f"the {entry.pipeline} demo entry reports {clash} again")
            body.update(part)
        body["pacs"] = self.pacs
        body["outputs_dir"] = str(self.outputs_dir)
        return body


def print_report(report: DemoReport, console: Console) -> None:
    """Each entry's table, in registry order, then where the results went."""
    for entry in report.enabled():
        version = report.models[entry.pipeline].version
        assert version is not None
        entry.print_report(report.cases.get(entry.pipeline, []), version, report.run, console)
    console.print(f"results were sent to {report.pacs}; copies are in {report.outputs_dir}")


def write_report(report: DemoReport, path: Path) -> None:
    """The tables as JSON, for scripts (and the demo's own test)."""
    path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
