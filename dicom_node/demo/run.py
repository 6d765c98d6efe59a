"""The demo's loop over its entries: settings, models, data, the node and the PACS, results."""

from __future__ import annotations

import argparse
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, delete

from dicom_node.db import migrate
from dicom_node.db.engine import make_engine, write_transaction
from dicom_node.db.models import Study
from dicom_node.demo.entries import DemoCase, DemoEntry, DemoRun, demo_entries, with_defaults
from dicom_node.demo.orthanc import ORTHANC, OrthancProcess, find_orthanc, free_ports
from dicom_node.demo.report import DemoReport, ModelState, print_report, write_report
from dicom_node.demo.results import DemoError, wait_for_results
from dicom_node.jobs.model_registry import NO_MODEL, active_model_version, import_model
from dicom_node.settings import NodeSettings
from dicom_node.trainers import TrainerUnavailable
from pipelines.shipped import shipped_model

NODE_AET = "DICOM_NODE"
PACS_AET = "DEMO_PACS"


@dataclass(frozen=True)
class DemoOptions:
    """The command's own options; ``entry_options`` has the entries' (all of
    ``dicom-node demo``'s, as parsed; an option missing there takes its default)."""

    workdir: Path = Path("var/demo")
    seed: int = 2026
    use_orthanc: bool | None = None  # None: when installed
    keep_running: bool = False
    timeout_seconds: float = 900.0
    #: Train a demo-sized model for each pipeline without an active one, instead of
    #: importing the model shipped with the project (``pipelines/shipped``).
    train: bool = False
    entry_options: argparse.Namespace = field(default_factory=argparse.Namespace)


def demo_settings(
    workdir: Path, node_port: int, pacs_port: int, entries: Sequence[DemoEntry]
) -> NodeSettings:
    """The node's settings for the demo: everything under ``workdir``, short quiet periods;
    one route per entry, its modalities (and body parts) → its pipeline → the PACS; an
    entry that classifies films (``classifies_for``) has the routes it names send it their
    films with an unclear Body Part Examined first."""
    classifier = {route: entry.pipeline for entry in entries for route in entry.classifies_for}
    routes: list[dict[str, Any]] = [
        {
            "name": entry.route,
            "modality": list(entry.modalities),
            "body_part": list(entry.body_parts),
            "pipelines": [entry.pipeline],
            "destinations": ["pacs"],
            "when_headers_unclear": classifier.get(entry.route),
        }
        for entry in entries
        if not entry.classifies_for
    ]
    return NodeSettings.model_validate(
        {
            "ae_title": NODE_AET,
            "bind_address": "127.0.0.1",
            "port": node_port,
            "storage_dir": workdir / "storage",
            "outputs_dir": workdir / "outputs",
            "database_url": f"sqlite:///{workdir / 'dicom-node.sqlite'}",
            "model_dir": workdir / "models",
            "stable_after_seconds": 2.0,
            "stable_check_seconds": 0.5,
            "workers": 1,
            "queue": {"poll_seconds": 0.2, "retry_backoff_seconds": 1.0},
            "delivery": {"check_seconds": 0.5, "first_retry_seconds": 1.0},
            "routes": routes,
            "destinations": [
                {"name": "pacs", "host": "127.0.0.1", "port": pacs_port, "ae_title": PACS_AET}
            ],
        }
    )


def ensure_model(
    engine: Engine,
    settings: NodeSettings,
    entry: DemoEntry,
    run: DemoRun,
    console: Console,
    *,
    train: bool = False,
) -> ModelState:
    """The entry's active model. When there is none, the model shipped with the project is
    imported and activated, or (``train``, or none shipped) the entry trains a small one,
    which is imported and activated."""
    with engine.connect() as conn:
        version = active_model_version(conn, entry.pipeline)
    if version != NO_MODEL:
        console.print(
            f"model: {entry.pipeline} {version} (active; delete {settings.model_dir} to retrain)"
        )
        return ModelState(version, False)
    shipped = None if train else shipped_model(entry.pipeline)
    if shipped is not None:
        card = import_model(engine, shipped, settings.model_dir, activate=True)
        console.print(
            f"model: {entry.pipeline} {card.version} (shipped with dicom-node; `--train` "
            "trains a demo-sized one instead)"
        )
        return ModelState(card.version, False)
    model = entry.train(run, console)
    card = import_model(engine, model.folder, settings.model_dir, activate=True)
    console.print(f"model {entry.pipeline} {card.version}: {model.quality}")
    return ModelState(card.version, True)


def run_demo(
    options: DemoOptions,
    console: Console,
    spawn_worker: Callable[..., Any],
    entries: Sequence[DemoEntry] | None = None,
) -> DemoReport:
    """Run the demo; ``spawn_worker(settings)`` makes the worker process (the CLI's).
    ``entries``: the pipelines' parts (default: those of the registered trainers)."""
    from dicom_node.flow import Node

    try:
        every = list(demo_entries() if entries is None else entries)
    except TrainerUnavailable as exc:
        raise DemoError(f"the demo cannot have every pipeline's part: {exc}") from exc
    entry_options = with_defaults(every, options.entry_options)
    for entry in every:
        try:
            entry.check_options(entry_options)
        except ValueError as exc:
            raise DemoError(str(exc)) from exc
    enabled = [entry for entry in every if entry.enabled(entry_options)]
    workdir = options.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    installed = find_orthanc() is not None
    use_orthanc = installed if options.use_orthanc is None else options.use_orthanc
    if use_orthanc and not installed:
        raise DemoError(f"{ORTHANC} is not installed (apt-get install orthanc)")

    node_port, http_port, pacs_port = free_ports(3)
    orthanc = (
        OrthancProcess(
            PACS_AET,
            name="dicom-node demo PACS",
            modalities={"node": [NODE_AET, "127.0.0.1", node_port]},
            workdir=workdir / "orthanc",
            extra_config={"OrthancExplorerEnabled": True},
            startup_timeout=60,
        )
        if use_orthanc
        else None
    )
    pacs_receiver: Any = None
    settings = demo_settings(workdir, node_port, pacs_port, enabled)
    run = DemoRun(workdir, settings.model_dir, settings.outputs_dir, options.seed, entry_options)

    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    _forget_earlier_runs(engine, workdir, settings, every, run)
    models = {
        entry.pipeline: ensure_model(engine, settings, entry, run, console, train=options.train)
        for entry in enabled
    }
    cases: dict[str, list[DemoCase]] = {
        entry.pipeline: list(entry.write_cases(run, console)) for entry in enabled
    }
    tracked = [case for entry in enabled for case in cases[entry.pipeline]]

    node = Node(settings, spawn_worker=lambda: spawn_worker(settings))
    try:
        if orthanc is not None:
            with console.status("starting Orthanc"):
                orthanc.start(ports=(http_port, pacs_port))
            pacs = f"Orthanc {orthanc.base_url} (AE {PACS_AET}, port {orthanc.dicom_port})"
        else:
            pacs_receiver = _results_receiver(workdir, pacs_port)
            pacs = (
                f"a receiving SCP (AE {PACS_AET}, port {pacs_port}) storing to {workdir / 'pacs'}"
            )
        node.start()
        console.print(f"node: AE {NODE_AET} on 127.0.0.1:{node.receiver.port}; PACS: {pacs}")
        _send([case.files for case in tracked], orthanc, settings, console)
        wait_for_results(engine, tracked, options.timeout_seconds, console)
        if orthanc is not None:
            for case in tracked:
                case.outputs = orthanc.study_modalities(case.study_instance_uid) or case.outputs
        for entry in enabled:
            entry.finish(run, cases[entry.pipeline])
        report = DemoReport(every, run, pacs, settings.outputs_dir, models, cases)
        print_report(report, console)
        write_report(report, workdir / "demo-report.json")
        if options.keep_running:
            if orthanc is not None:
                console.print(f"Orthanc Explorer: {orthanc.base_url}/app/explorer.html")
            console.print(
                f"Running: send more with `dicom-node send FILES --to 127.0.0.1:{node_port} "
                f"--aec {NODE_AET}`; Ctrl-C stops the node and the PACS."
            )
            threading.Event().wait()
    finally:
        node.stop()
        if orthanc is not None:
            orthanc.stop()
        if pacs_receiver is not None:
            pacs_receiver.stop()
        engine.dispose()
    return report


def _forget_earlier_runs(
    engine: Engine,
    workdir: Path,
    settings: NodeSettings,
    entries: Sequence[DemoEntry],
    run: DemoRun,
) -> None:
    """Start from an empty node and PACS; only the model store is kept between runs.

    The studies are made from the same seed each time, so without this a second run would
    find them already received and processed (duplicates get no second job).
    """
    with write_transaction(engine) as conn:
        conn.execute(delete(Study))  # cascades to series, instances, jobs, results, outputs
    for folder in (
        settings.storage_dir,
        settings.outputs_dir,
        workdir / "orthanc",
        workdir / "pacs",
    ):
        shutil.rmtree(folder, ignore_errors=True)
    for entry in entries:  # enabled or not: an earlier run may have had it on
        entry.forget(run)


def _results_receiver(workdir: Path, port: int) -> Any:
    """A second dicom-node receiver standing in for the PACS (no routes, its own store)."""
    from dicom_node.flow import NodeParts
    from dicom_node.ingest.receive import Receiver

    pacs_dir = workdir / "pacs"
    settings = NodeSettings.model_validate(
        {
            "ae_title": PACS_AET,
            "bind_address": "127.0.0.1",
            "port": port,
            "storage_dir": pacs_dir / "storage",
            "database_url": f"sqlite:///{pacs_dir / 'pacs.sqlite'}",
        }
    )
    parts = NodeParts.open(settings)
    migrate.upgrade(parts.engine)
    receiver = Receiver(settings, parts.store, parts.engine)
    receiver.start()
    return receiver


def _send(
    studies: list[list[Path]],
    orthanc: OrthancProcess | None,
    settings: NodeSettings,
    console: Console,
) -> None:
    """Send each study (its files) to the node: from Orthanc, or with the node's SCU."""
    from dicom_node.net.scu import SendReport, inspect_files, send_files

    if orthanc is not None:
        with console.status("uploading the studies to Orthanc and sending them to the node"):
            for files in studies:
                uploaded = {str(orthanc.upload(path)["ParentStudy"]) for path in files}
                for orthanc_study in sorted(uploaded):
                    orthanc.store_to_modality("node", [orthanc_study])
        return
    with console.status("sending the studies to the node"):
        report = SendReport()
        sendable = inspect_files([path for files in studies for path in files], report)
        send_files(
            sendable,
            "127.0.0.1",
            settings.port,
            calling_aet="DEMO_MODALITY",
            called_aet=NODE_AET,
            report=report,
        )
    if report.failed or report.skipped:
        raise DemoError(f"{len(report.failed)} file(s) were not accepted by the node")
