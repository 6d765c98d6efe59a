"""``dicom-node demo``: the whole node on one machine, with synthetic hand films.

1. writes a few synthetic hand studies (``training.synthetic.hand_films``) at known angles;
2. trains a small orientation model on synthetic films if no ``hand_orientation`` model
   is active (a few minutes on two CPU cores; the paper's ResNet-50 stays the default for
   real use) and activates it;
3. starts a local Orthanc as the PACS when ``/usr/sbin/Orthanc`` is installed, otherwise
   a second receiving SCP standing in for it, and the node itself (receiver, scheduler,
   one worker process) with a route DX/CR → ``hand_orientation`` → that PACS;
4. sends the studies (from Orthanc with its REST ``/modalities/{id}/store``, or with the
   node's own C-STORE SCU), waits for the results to be delivered back;
5. prints a table: study, predicted angle, true angle, error, and where the SC / SR /
   GSPS went.

Everything lives under one work folder (``var/demo`` by default) with its own config,
database and model store, so the demo never touches a real installation.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, delete, func, select

from dicom_node.db import migrate
from dicom_node.db.engine import make_engine, write_transaction
from dicom_node.db.models import Delivery, DeliveryState, Job, JobState, Output, Result, Study
from dicom_node.errors import NodeError
from dicom_node.model_registry import NO_MODEL, active_model_version, import_model
from dicom_node.netutil import free_port
from dicom_node.settings import NodeSettings

logger = logging.getLogger(__name__)

ORTHANC = Path("/usr/sbin/Orthanc")
PIPELINE = "hand_orientation"
NODE_AET = "DICOM_NODE"
PACS_AET = "DEMO_PACS"


class DemoError(NodeError):
    """The demo could not run to the end; the message says where it stopped."""


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = Path("var/demo")
    studies: int = 4
    seed: int = 2026
    film_scale: float = 1.0  # 1.0: the paper's detector sizes (3000 × 3000 and others)
    use_orthanc: bool | None = None  # None: when installed
    training_preset: str = "demo"
    keep_running: bool = False
    timeout_seconds: float = 900.0


@dataclass
class DemoRow:
    study_instance_uid: str
    true_angle_deg: float
    predicted_angle_deg: float | None = None
    rotation_deg: float | None = None
    outputs: list[str] = field(default_factory=list)
    delivered: int = 0
    state: str = "waiting"

    @property
    def error_deg(self) -> float | None:
        if self.predicted_angle_deg is None:
            return None
        difference = (self.predicted_angle_deg - self.true_angle_deg) % 360.0
        return difference - 360.0 if difference > 180.0 else difference


@dataclass
class DemoReport:
    rows: list[DemoRow]
    pacs: str
    outputs_dir: Path
    model_version: str
    trained: bool


# -- the PACS -------------------------------------------------------------------------------------


class LocalOrthanc:
    """A private Orthanc for the demo: its own folder, free ports, REST on localhost only."""

    def __init__(self, workdir: Path, node_port: int) -> None:
        self.workdir = workdir
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.node_port = node_port
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "dicom-node demo PACS",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "Plugins": [],
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "OrthancExplorerEnabled": True,
            "DicomAet": PACS_AET,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomModalities": {"node": [NODE_AET, "127.0.0.1", self.node_port]},
            "DicomModalitiesInDatabase": False,
            "SaveJobs": False,
        }
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        self._log = open(self.workdir / "orthanc.log", "ab")
        self.process = subprocess.Popen(
            [str(ORTHANC), str(config_path)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(f"Orthanc exited at start; see {self.workdir / 'orthanc.log'}")
            try:
                self.rest("GET", "/system")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise DemoError(f"Orthanc did not answer within {timeout:.0f} s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rest(self, method: str, path: str, body: bytes | None = None, **kw: Any) -> Any:
        headers = {"Content-Type": kw.get("content_type", "application/json")}
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def upload(self, path: Path) -> str:
        answer = self.rest(
            "POST", "/instances", path.read_bytes(), content_type="application/dicom"
        )
        return str(answer["ParentStudy"])

    def send_study_to_node(self, orthanc_study_id: str) -> None:
        body = json.dumps({"Resources": [orthanc_study_id], "Synchronous": True}).encode()
        self.rest("POST", "/modalities/node/store", body)

    def series_modalities(self, study_uid: str) -> list[str]:
        body = json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}).encode()
        found = self.rest("POST", "/tools/find", body)
        if not found:
            return []
        series = self.rest("GET", f"/studies/{found[0]}/series")
        return sorted(str(s["MainDicomTags"].get("Modality", "")) for s in series)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


# -- the demo -----------------------------------------------------------------------------------


def demo_settings(workdir: Path, node_port: int, pacs_port: int) -> NodeSettings:
    """The node's settings for the demo: everything under ``workdir``, short quiet periods."""
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
            "routes": [
                {
                    "name": "hands",
                    "modality": ["DX", "CR"],
                    "pipelines": [PIPELINE],
                    "destinations": ["pacs"],
                }
            ],
            "destinations": [
                {"name": "pacs", "host": "127.0.0.1", "port": pacs_port, "ae_title": PACS_AET}
            ],
        }
    )


def ensure_model(
    engine: Engine, settings: NodeSettings, options: DemoOptions, console: Console
) -> tuple[str, bool]:
    """The active model's version; trains and activates a small one if there is none."""
    with engine.connect() as conn:
        version = active_model_version(conn, PIPELINE)
    if version != NO_MODEL:
        console.print(
            f"model: {PIPELINE} {version} (active; delete {settings.model_dir} to retrain)"
        )
        return version, False
    from training.hand_orientation import preset, train_orientation

    config = preset(
        # Another seed than the demo's studies: the model never sees them in training.
        options.training_preset,
        out_dir=settings.model_dir / PIPELINE,
        seed=options.seed + 1000,
    )
    console.print(
        f"training a small {PIPELINE} model ({config.architecture}, "
        f"{config.resize}→{config.crop} px, {config.synthetic_films} synthetic films); the "
        "paper's ResNet-50 stays the default of `dicom-node train`"
    )
    trained = train_orientation(config)
    card = import_model(engine, trained.folder, settings.model_dir, activate=True)
    report = trained.report
    console.print(
        f"model {card.version}: on held-out synthetic films MAE {report.mae_deg:.2f}°, "
        f"{report.within_4deg_pct:.1f} % within ±4°, four-way accuracy "
        f"{report.quadrant_accuracy_pct:.1f} %"
    )
    return card.version, True


def run_demo(
    options: DemoOptions, console: Console, spawn_worker: Callable[..., Any]
) -> DemoReport:
    """Run the demo; ``spawn_worker(settings)`` makes the worker process (the CLI's)."""
    from dicom_node.flow import Node
    from training.synthetic.hand_films import write_hand_studies

    workdir = options.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    use_orthanc = ORTHANC.exists() if options.use_orthanc is None else options.use_orthanc
    if use_orthanc and not ORTHANC.exists():
        raise DemoError(f"{ORTHANC} is not installed (apt-get install orthanc)")

    node_port = free_port()
    orthanc = LocalOrthanc(workdir / "orthanc", node_port) if use_orthanc else None
    pacs_receiver: Any = None
    pacs_port = orthanc.dicom_port if orthanc is not None else free_port()
    settings = demo_settings(workdir, node_port, pacs_port)

    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    _forget_earlier_runs(engine, workdir, settings)
    version, trained = ensure_model(engine, settings, options, console)

    films_dir = workdir / "films"
    shutil.rmtree(films_dir, ignore_errors=True)
    with console.status("writing synthetic hand studies"):
        films = write_hand_studies(
            films_dir, options.studies, seed=options.seed, scale=options.film_scale
        )
    console.print(f"{len(films)} synthetic hand studies in {films_dir}")
    rows = {f.study_instance_uid: DemoRow(f.study_instance_uid, f.angle_deg) for f in films}

    node = Node(settings, spawn_worker=lambda: spawn_worker(settings))
    try:
        if orthanc is not None:
            with console.status("starting Orthanc"):
                orthanc.start()
            pacs = f"Orthanc {orthanc.url} (AE {PACS_AET}, port {orthanc.dicom_port})"
        else:
            pacs_receiver = _results_receiver(workdir, pacs_port)
            pacs = (
                f"a receiving SCP (AE {PACS_AET}, port {pacs_port}) storing to {workdir / 'pacs'}"
            )
        node.start()
        console.print(f"node: AE {NODE_AET} on 127.0.0.1:{node.receiver.port}; PACS: {pacs}")
        _send(films, orthanc, settings, console)
        _wait_for_results(engine, rows, options.timeout_seconds, console)
        if orthanc is not None:
            for row in rows.values():
                row.outputs = orthanc.series_modalities(row.study_instance_uid) or row.outputs
        report = DemoReport(list(rows.values()), pacs, settings.outputs_dir, version, trained)
        print_report(report, console)
        write_report(report, workdir / "demo-report.json")
        if options.keep_running:
            if orthanc is not None:
                console.print(f"Orthanc Explorer: {orthanc.url}/app/explorer.html")
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


def write_report(report: DemoReport, path: Path) -> None:
    """The table as JSON, for scripts (and the demo's own test)."""
    rows = [
        {
            "study_instance_uid": row.study_instance_uid,
            "true_angle_deg": row.true_angle_deg,
            "predicted_angle_deg": row.predicted_angle_deg,
            "error_deg": row.error_deg,
            "rotation_deg": row.rotation_deg,
            "in_pacs": row.outputs,
            "state": row.state,
        }
        for row in report.rows
    ]
    body = {
        "model_version": report.model_version,
        "trained": report.trained,
        "pacs": report.pacs,
        "outputs_dir": str(report.outputs_dir),
        "studies": rows,
    }
    path.write_text(json.dumps(body, indent=2) + "\n")


def _forget_earlier_runs(engine: Engine, workdir: Path, settings: NodeSettings) -> None:
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


def _results_receiver(workdir: Path, port: int) -> Any:
    """A second dicom-node receiver standing in for the PACS (no routes, its own store)."""
    from dicom_node.flow import NodeParts
    from dicom_node.receive import Receiver

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
    films: list[Any], orthanc: LocalOrthanc | None, settings: NodeSettings, console: Console
) -> None:
    from dicom_node.scu import SendReport, inspect_files, send_files

    if orthanc is not None:
        with console.status("uploading the studies to Orthanc and sending them to the node"):
            for film in films:
                orthanc.send_study_to_node(orthanc.upload(film.path))
        return
    with console.status("sending the studies to the node"):
        report = SendReport()
        sendable = inspect_files([film.path for film in films], report)
        send_files(
            sendable,
            "127.0.0.1",
            settings.port,
            calling_aet="DEMO_MODALITY",
            called_aet=NODE_AET,
            report=report,
        )
    if report.failed or report.skipped:
        raise DemoError(f"{len(report.failed)} film(s) were not accepted by the node")


def _wait_for_results(
    engine: Engine, rows: dict[str, DemoRow], timeout: float, console: Console
) -> None:
    deadline = time.monotonic() + timeout
    with console.status("waiting for the results to come back") as status:
        while True:
            pending = _refresh(engine, rows)
            status.update(f"waiting for the results: {pending} of {len(rows)} studies to go")
            if pending == 0:
                return
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{pending} studies had no delivered result after {timeout:.0f} s; "
                    "see `dicom-node jobs` and `dicom-node deliveries` with the demo's config"
                )
            time.sleep(0.5)


def _refresh(engine: Engine, rows: dict[str, DemoRow]) -> int:
    """Update the rows from the results log; the number of studies still in flight."""
    pending = 0
    with engine.connect() as conn:
        for uid, row in rows.items():
            result = conn.execute(
                select(Result.id, Result.summary).where(Result.study_instance_uid == uid)
            ).first()
            if result is None:
                failed = conn.scalar(
                    select(Job.last_error).where(Job.state == JobState.FAILED).limit(1)
                )
                if failed is not None:
                    raise DemoError(f"a job failed: {failed}")
                pending += 1
                continue
            film = (result.summary.get("films") or [{}])[0]
            row.predicted_angle_deg = film.get("angle_deg")
            row.rotation_deg = film.get("rotation_deg")
            row.outputs = sorted(
                conn.execute(select(Output.kind).where(Output.result_id == result.id)).scalars()
            )
            states = conn.execute(
                select(Delivery.state, func.count())
                .join(Output, Output.id == Delivery.output_id)
                .where(Output.result_id == result.id)
                .group_by(Delivery.state)
            ).all()
            counts = {state: count for state, count in states}
            row.delivered = counts.get(DeliveryState.SENT, 0)
            if counts.get(DeliveryState.DEAD):
                raise DemoError("a result could not be delivered; see `dicom-node deliveries`")
            if counts.get(DeliveryState.PENDING) or not counts:
                row.state = "delivering"
                pending += 1
            else:
                row.state = "delivered"
    return pending


def print_report(report: DemoReport, console: Console) -> None:
    table = Table(title=f"hand_orientation {report.model_version}: results back in the PACS")
    for column in ("study", "true angle", "predicted", "error", "turned", "in the PACS"):
        table.add_column(column, justify="right" if column != "study" else "left")
    errors = []
    for row in report.rows:
        error = row.error_deg
        if error is not None:
            errors.append(abs(error))
        table.add_row(
            "…" + row.study_instance_uid[-12:],
            f"{row.true_angle_deg:.1f}°",
            "—" if row.predicted_angle_deg is None else f"{row.predicted_angle_deg:.1f}°",
            "—" if error is None else f"{error:+.1f}°",
            "—" if row.rotation_deg is None else f"{row.rotation_deg:+.1f}°",
            ", ".join(row.outputs),
        )
    console.print(table)
    if errors:
        console.print(
            f"mean absolute error {sum(errors) / len(errors):.2f}° over {len(errors)} films"
        )
    console.print(f"results were sent to {report.pacs}; copies are in {report.outputs_dir}")
