"""``dicom-node demo``: the whole node on one machine, with synthetic hand films and a CT.

1. writes a few synthetic hand studies (``training.synthetic.hand_films``) at known angles,
   and one synthetic CT series of a chest–abdomen–pelvis phantom
   (``training.synthetic.ct_phantoms``) whose zones are known (``--ct-slices 0``: none);
2. trains a small model for each pipeline that has no active one — an orientation model
   on synthetic films, a body part regressor (AlexNet variant) on synthetic CT phantoms;
   a few minutes each on two CPU cores; the papers' networks stay the defaults for real
   use — and activates it;
3. starts a local Orthanc as the PACS when ``/usr/sbin/Orthanc`` is installed, otherwise
   a second receiving SCP standing in for it, and the node itself (receiver, scheduler,
   one worker process) with routes DX/CR → ``hand_orientation`` and CT →
   ``ct_body_part``, both → that PACS;
4. sends the studies (from Orthanc with its REST ``/modalities/{id}/store``, or with the
   node's own C-STORE SCU), waits for the results to be delivered back;
5. prints a table: study, predicted angle, true angle, error, and where the SC / SR /
   GSPS went; and one for the CT: the zones found (z extent in mm, slices) beside the
   phantom's true ones, r, the anomaly flags, the score range and where the SR and SC
   went. The SC's score plot is also written as ``ct_body_part_plot.png`` in the work
   folder, to open with any image viewer.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, delete, func, select

from dicom_node.db import migrate
from dicom_node.db.engine import make_engine, write_transaction
from dicom_node.db.models import Delivery, DeliveryState, Job, JobState, Output, Result, Study
from dicom_node.errors import NodeError
from dicom_node.jobs.model_registry import NO_MODEL, active_model_version, import_model
from dicom_node.net.netutil import free_port
from dicom_node.settings import NodeSettings

logger = logging.getLogger(__name__)

ORTHANC = Path("/usr/sbin/Orthanc")
PIPELINE = "hand_orientation"
CT_PIPELINE = "ct_body_part"
CT_REGION = "chest_abdomen_pelvis"
PLOT_PNG = "ct_body_part_plot.png"
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
    ct_slices: int = 120  # 0: no CT series
    ct_size: int = 512  # rows and columns of the CT slices
    ct_training_preset: str = "demo"
    keep_running: bool = False
    timeout_seconds: float = 900.0


@dataclass
class DemoRow:
    study_instance_uid: str
    true_angle_deg: float
    predicted_angle_deg: float | None = None
    rotation_deg: float | None = None
    outputs: list[str] = field(default_factory=list)
    output_paths: dict[str, list[str]] = field(default_factory=dict)  # kind → outputs_dir/...
    delivered: int = 0
    state: str = "waiting"
    pipeline: str = PIPELINE

    @property
    def error_deg(self) -> float | None:
        if self.predicted_angle_deg is None:
            return None
        difference = (self.predicted_angle_deg - self.true_angle_deg) % 360.0
        return difference - 360.0 if difference > 180.0 else difference

    def take(self, summary: dict[str, Any]) -> None:
        film = (summary.get("films") or [{}])[0]
        self.predicted_angle_deg = film.get("angle_deg")
        self.rotation_deg = film.get("rotation_deg")


@dataclass
class CtRow:
    """The demo's CT series: what was written, and what ``ct_body_part`` made of it."""

    study_instance_uid: str
    series_instance_uid: str
    region: str
    size: int
    spacing_mm: float
    z_positions: list[float]  # of the slices as written
    true_zones: dict[str, tuple[float, float]]  # the phantom's: zone → (z top, z bottom)
    summary: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    output_paths: dict[str, list[str]] = field(default_factory=dict)
    delivered: int = 0
    state: str = "waiting"
    plot_dicom: Path | None = None
    plot_png: Path | None = None
    pipeline: str = CT_PIPELINE

    @property
    def slices(self) -> int:
        return len(self.z_positions)

    def take(self, summary: dict[str, Any]) -> None:
        self.summary = dict(summary)

    def true_zone_of(self, z_mm: float) -> str | None:
        """The phantom's zone at ``z_mm``; a boundary belongs to the zone above it."""
        for name, (top, bottom) in sorted(self.true_zones.items(), key=lambda i: -i[1][0]):
            if bottom <= z_mm <= top:
                return name
        return None

    def true_extent(self, zone: str) -> tuple[float, float, int] | None:
        """(z of the first, z of the last, count) of the slices in the phantom's ``zone``."""
        inside = [z for z in self.z_positions if self.true_zone_of(z) == zone]
        if not inside:
            return None
        return max(inside), min(inside), len(inside)


@dataclass
class DemoReport:
    rows: list[DemoRow]
    pacs: str
    outputs_dir: Path
    model_version: str
    trained: bool
    ct: CtRow | None = None
    ct_model_version: str | None = None
    ct_trained: bool = False


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


def demo_settings(
    workdir: Path, node_port: int, pacs_port: int, *, ct: bool = True
) -> NodeSettings:
    """The node's settings for the demo: everything under ``workdir``, short quiet periods;
    routes DX/CR → ``hand_orientation`` and (with ``ct``) CT → ``ct_body_part``."""
    routes: list[dict[str, Any]] = [
        {
            "name": "hands",
            "modality": ["DX", "CR"],
            "pipelines": [PIPELINE],
            "destinations": ["pacs"],
        }
    ]
    if ct:
        routes.append(
            {
                "name": "ct",
                "modality": ["CT"],
                "pipelines": [CT_PIPELINE],
                "destinations": ["pacs"],
            }
        )
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
    options: DemoOptions,
    console: Console,
    pipeline: str = PIPELINE,
) -> tuple[str, bool]:
    """The active ``pipeline`` model's version; trains and activates a small one if there
    is none. Returns (version, whether it was trained now)."""
    trainers = {PIPELINE: _train_hand_model, CT_PIPELINE: _train_ct_model}
    if pipeline not in trainers:
        raise DemoError(f"the demo cannot train a {pipeline} model")
    with engine.connect() as conn:
        version = active_model_version(conn, pipeline)
    if version != NO_MODEL:
        console.print(
            f"model: {pipeline} {version} (active; delete {settings.model_dir} to retrain)"
        )
        return version, False
    folder, quality = trainers[pipeline](settings, options, console)
    card = import_model(engine, folder, settings.model_dir, activate=True)
    console.print(f"model {pipeline} {card.version}: {quality}")
    return card.version, True


def _train_hand_model(
    settings: NodeSettings, options: DemoOptions, console: Console
) -> tuple[Path, str]:
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
    report = trained.report
    return trained.folder, (
        f"on held-out synthetic films MAE {report.mae_deg:.2f}°, "
        f"{report.within_4deg_pct:.1f} % within ±4°, four-way accuracy "
        f"{report.quadrant_accuracy_pct:.1f} %"
    )


def _train_ct_model(
    settings: NodeSettings, options: DemoOptions, console: Console
) -> tuple[Path, str]:
    from pipelines.ct_body_part.vgg16_init import default_init_path
    from training.ct_body_part.train import CROSS_CHECK_WARNING_PCT, preset, train_ubr

    config = preset(
        # Phantoms of other seeds than the demo's CT series.
        options.ct_training_preset,
        out_dir=settings.model_dir / CT_PIPELINE,
        seed=options.seed + 2000,
    )
    if config.init == "imagenet":  # the paper preset: VGG16 from the converted weights
        init = config.init_path or default_init_path(settings.model_dir)
        if not Path(init).is_file():
            raise DemoError(
                f"the {options.ct_training_preset!r} preset starts from the ImageNet VGG16 "
                f"weights, which are not at {init}: run `dicom-node models vgg16-init "
                "--config ...` with the demo's model store, or use --ct-preset demo"
            )
        config = replace(config, init_path=Path(init))
    start = "from scratch" if config.init == "scratch" else "from ImageNet weights"
    console.print(
        f"training a small {CT_PIPELINE} model ({config.architecture} {start}, "
        f"{config.size} px, {config.synthetic_volumes} synthetic CT phantoms, "
        f"{config.iterations} iterations, no labels); the paper's VGG16 stays the default "
        "of `dicom-node train ct_body_part`"
    )
    trained = train_ubr(config)
    evaluation = trained.evaluation
    zones = (
        "—"
        if evaluation.zone_accuracy_pct is None
        else f"{evaluation.zone_accuracy_pct:.1f} % (paper, on real CT: "
        f"{evaluation.paper_zone_accuracy_pct} %)"
    )
    cross_check = trained.card.metrics.get("calibration_cross_check_pct")
    # The demo's lever is the preset: its short ones always cross-check low.
    longer = (
        " (a demo-sized model; `--ct-preset cpu` trains the README's, about half an hour)"
        if cross_check is not None and cross_check < CROSS_CHECK_WARNING_PCT
        else ""
    )
    return trained.folder, (
        f"on {evaluation.volumes} held-out phantoms Spearman ρ {evaluation.spearman_mean:.3f}, "
        f"three-zone accuracy {zones}, anomalies flagged in {evaluation.abnormal_flagged} of "
        f"{evaluation.abnormal_volumes} reversed or mixed series; calibration cross-check "
        + ("—" if cross_check is None else f"{cross_check:.1f} %")
        + longer
    )


def run_demo(
    options: DemoOptions, console: Console, spawn_worker: Callable[..., Any]
) -> DemoReport:
    """Run the demo; ``spawn_worker(settings)`` makes the worker process (the CLI's)."""
    from dicom_node.flow import Node
    from training.synthetic.hand_films import write_hand_studies

    if options.ct_slices < 0 or options.ct_slices == 1:
        raise DemoError("--ct-slices must be 0 (no CT) or at least 2")
    with_ct = options.ct_slices > 0
    workdir = options.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    use_orthanc = ORTHANC.exists() if options.use_orthanc is None else options.use_orthanc
    if use_orthanc and not ORTHANC.exists():
        raise DemoError(f"{ORTHANC} is not installed (apt-get install orthanc)")

    node_port = free_port()
    orthanc = LocalOrthanc(workdir / "orthanc", node_port) if use_orthanc else None
    pacs_receiver: Any = None
    pacs_port = orthanc.dicom_port if orthanc is not None else free_port()
    settings = demo_settings(workdir, node_port, pacs_port, ct=with_ct)

    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    _forget_earlier_runs(engine, workdir, settings)
    version, trained = ensure_model(engine, settings, options, console)
    ct_version: str | None = None
    ct_trained = False
    if with_ct:
        ct_version, ct_trained = ensure_model(engine, settings, options, console, CT_PIPELINE)

    films_dir = workdir / "films"
    shutil.rmtree(films_dir, ignore_errors=True)
    with console.status("writing synthetic hand studies"):
        films = write_hand_studies(
            films_dir, options.studies, seed=options.seed, scale=options.film_scale
        )
    console.print(f"{len(films)} synthetic hand studies in {films_dir}")
    rows = {f.study_instance_uid: DemoRow(f.study_instance_uid, f.angle_deg) for f in films}
    studies: list[list[Path]] = [[film.path] for film in films]
    ct_row: CtRow | None = None
    if with_ct:
        ct_row, ct_files = _write_ct_series(workdir / "ct", options, console)
        studies.append(ct_files)
    tracked: list[DemoRow | CtRow] = [*rows.values(), *([ct_row] if ct_row else [])]

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
        _send(studies, orthanc, settings, console)
        _wait_for_results(engine, tracked, options.timeout_seconds, console)
        if orthanc is not None:
            for item in tracked:
                item.outputs = orthanc.series_modalities(item.study_instance_uid) or item.outputs
        if ct_row is not None:
            _save_plot(ct_row, settings.outputs_dir, workdir / PLOT_PNG)
        report = DemoReport(
            list(rows.values()),
            pacs,
            settings.outputs_dir,
            version,
            trained,
            ct=ct_row,
            ct_model_version=ct_version,
            ct_trained=ct_trained,
        )
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


def _write_ct_series(
    folder: Path, options: DemoOptions, console: Console
) -> tuple[CtRow, list[Path]]:
    """One synthetic chest–abdomen–pelvis CT series of about ``options.ct_slices`` slices."""
    from training.synthetic.ct_phantoms import write_ct_study

    shutil.rmtree(folder, ignore_errors=True)
    with console.status(f"writing a synthetic CT series ({options.ct_size}² pixels)"):
        # 1 mm asked for, then widened so that the region fits in ct_slices slices.
        series = write_ct_study(
            folder,
            options.seed + 3000,  # a phantom that is in no training set
            size=options.ct_size,
            region=CT_REGION,
            spacing_mm=1.0,
            max_slices=options.ct_slices,
        )
    z = [float(v) for v in series.z_positions]
    spacing = abs(z[0] - z[1]) if len(z) > 1 else 0.0
    console.print(
        f"a synthetic CT series in {folder}: {len(z)} slices of {options.ct_size}² pixels, "
        f"{spacing:.2f} mm apart, {CT_REGION.replace('_', '–')} of phantom {series.phantom_seed}"
    )
    row = CtRow(
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
        region=series.region,
        size=options.ct_size,
        spacing_mm=round(spacing, 3),
        z_positions=z,
        true_zones={k: (float(v[0]), float(v[1])) for k, v in series.zones.items()},
    )
    return row, list(series.files)


def _save_plot(row: CtRow, outputs_dir: Path, png: Path) -> None:
    """Find the SC of the score plot among the outputs and write its pixels as a PNG."""
    import pydicom
    from matplotlib.image import imsave

    paths = row.output_paths.get("sc") or []
    if not paths:
        logger.warning("the CT result has no SC image: no plot to save")
        return
    row.plot_dicom = outputs_dir / paths[0]
    pixels = pydicom.dcmread(row.plot_dicom).pixel_array
    png.parent.mkdir(parents=True, exist_ok=True)
    imsave(png, pixels)  # RGB, 8 bits: written as they are
    row.plot_png = png


def write_report(report: DemoReport, path: Path) -> None:
    """The tables as JSON, for scripts (and the demo's own test)."""
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
        "ct": _ct_json(report) if report.ct is not None else None,
    }
    path.write_text(json.dumps(body, indent=2) + "\n")


def _ct_json(report: DemoReport) -> dict[str, Any]:
    row = report.ct
    assert row is not None
    summary = row.summary
    zones = []
    for zone in summary.get("zones") or []:
        true = row.true_extent(str(zone.get("zone")))
        zones.append(
            {
                **zone,
                "true_z_top_mm": None if true is None else true[0],
                "true_z_bottom_mm": None if true is None else true[1],
                "true_slices": None if true is None else true[2],
            }
        )
    return {
        "model_version": report.ct_model_version,
        "trained": report.ct_trained,
        "study_instance_uid": row.study_instance_uid,
        "series_instance_uid": row.series_instance_uid,
        "region": row.region,
        "slices": row.slices,
        "size": row.size,
        "spacing_mm": row.spacing_mm,
        "zones": zones,
        "true_zones": {
            zone: {"z_top_mm": e[0], "z_bottom_mm": e[1], "slices": e[2]}
            for zone in row.true_zones
            if (e := row.true_extent(zone)) is not None
        },
        "r": summary.get("r"),
        "monotonic": summary.get("monotonic"),
        "reversed": summary.get("reversed"),
        "anomaly": summary.get("anomaly"),
        "notes": summary.get("notes", []),
        "score_range": summary.get("score_range"),
        "in_pacs": row.outputs,
        "state": row.state,
        "plot_dicom": None if row.plot_dicom is None else str(row.plot_dicom),
        "plot_png": None if row.plot_png is None else str(row.plot_png),
    }


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
        workdir / "ct",
    ):
        shutil.rmtree(folder, ignore_errors=True)
    (workdir / PLOT_PNG).unlink(missing_ok=True)


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
    orthanc: LocalOrthanc | None,
    settings: NodeSettings,
    console: Console,
) -> None:
    """Send each study (its files) to the node: from Orthanc, or with the node's SCU."""
    from dicom_node.net.scu import SendReport, inspect_files, send_files

    if orthanc is not None:
        with console.status("uploading the studies to Orthanc and sending them to the node"):
            for files in studies:
                uploaded = {orthanc.upload(path) for path in files}
                for orthanc_study in sorted(uploaded):
                    orthanc.send_study_to_node(orthanc_study)
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


def _wait_for_results(
    engine: Engine, rows: Iterable[DemoRow | CtRow], timeout: float, console: Console
) -> None:
    tracked = list(rows)
    deadline = time.monotonic() + timeout
    with console.status("waiting for the results to come back") as status:
        while True:
            pending = _refresh(engine, tracked)
            status.update(f"waiting for the results: {pending} of {len(tracked)} studies to go")
            if pending == 0:
                return
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{pending} studies had no delivered result after {timeout:.0f} s; "
                    "see `dicom-node jobs` and `dicom-node deliveries` with the demo's config"
                )
            time.sleep(0.5)


def _refresh(engine: Engine, rows: Iterable[DemoRow | CtRow]) -> int:
    """Update the rows from the results log; the number of studies still in flight."""
    pending = 0
    with engine.connect() as conn:
        for row in rows:
            result = conn.execute(
                select(Result.id, Result.summary).where(
                    Result.study_instance_uid == row.study_instance_uid,
                    Result.pipeline == row.pipeline,
                )
            ).first()
            if result is None:
                failed = conn.scalar(
                    select(Job.last_error).where(Job.state == JobState.FAILED).limit(1)
                )
                if failed is not None:
                    raise DemoError(f"a job failed: {failed}")
                pending += 1
                continue
            row.take(dict(result.summary or {}))
            outputs = conn.execute(
                select(Output.kind, Output.path)
                .where(Output.result_id == result.id)
                .order_by(Output.path)
            ).all()
            row.outputs = sorted(kind for kind, _ in outputs)
            row.output_paths = {}
            for kind, path in outputs:
                row.output_paths.setdefault(kind, []).append(path)
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
    if report.ct is not None:
        print_ct_report(report, console)
    console.print(f"results were sent to {report.pacs}; copies are in {report.outputs_dir}")


def print_ct_report(report: DemoReport, console: Console) -> None:
    """The CT table: zones found beside the phantom's, then r, flags, scores and outputs."""
    from pipelines.ct_body_part.zones import MIN_LINEARITY_R

    row = report.ct
    assert row is not None
    summary = row.summary
    table = Table(
        title=f"ct_body_part {report.ct_model_version}: zones of the synthetic CT "
        f"(…{row.series_instance_uid[-12:]}, {row.slices} slices {row.spacing_mm:g} mm apart)",
        caption="z: first…last slice of the zone (patient z, the head is +); phantom's: the "
        "slices in its true zone",
    )
    for column in ("zone", "z (mm)", "length", "slices", "phantom's z (mm)", "slices"):
        table.add_column(column, justify="left" if column == "zone" else "right")
    found = {str(zone.get("zone")): zone for zone in summary.get("zones") or []}
    # Head to feet: the phantom's zones in the scan or found, then any other zone found.
    names = [z for z in row.true_zones if z in found or row.true_extent(z) is not None]
    names += [z for z in found if z not in names]
    for name in names:
        zone = found.get(name)
        true = row.true_extent(name)
        table.add_row(
            name.replace("_", "/"),
            "not found" if zone is None else f"{zone['z_top_mm']:.1f}…{zone['z_bottom_mm']:.1f}",
            "—" if zone is None else f"{zone['length_mm']:.0f} mm",
            "—" if zone is None else str(zone["slices"]),
            "—" if true is None else f"{true[0]:.1f}…{true[1]:.1f}",
            "—" if true is None else str(true[2]),
        )
    console.print(table)
    r = summary.get("r")
    low, high = (summary.get("score_range") or [None, None])[:2]
    flags = [
        f"r below {MIN_LINEARITY_R:g}" if r is not None and r < MIN_LINEARITY_R else None,
        "scan direction not monotonic" if summary.get("monotonic") is False else None,
        "stack reversed" if summary.get("reversed") else None,
    ]
    raised = [flag for flag in flags if flag]
    console.print(
        f"r(slice, score) = {'—' if r is None else f'{r:.4f}'} (flagged below "
        f"{MIN_LINEARITY_R:g}); scores {'—' if low is None else f'{low:.2f} … {high:.2f}'}; "
        f"anomaly flags: {', '.join(raised) if raised else 'none'}"
    )
    console.print(
        f"SR and SC (score plot) {row.state} to the PACS; there now: "
        f"{', '.join(row.outputs) or '—'}"
    )
    if row.plot_dicom is not None:
        console.print(f"score plot: {row.plot_dicom} (DICOM SC)")
    if row.plot_png is not None:
        console.print(f"score plot as PNG: {row.plot_png}")
