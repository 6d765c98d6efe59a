"""Soak test: the real node under steady load and periodic trouble, for a bounded time.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--senders 4] [--report-every 30]
                                        [--series-size 4] [--workers 1]
                                        [--kill-every 45] [--destination-every 30]
                                        [--hostile-every 20] [--drain 60]
                                        [--workdir DIR] [--keep] [--json FILE]

Not run in CI. Everything lives in a temporary folder (or ``--workdir``):

- the node: ``python -m dicom_node serve --config node.toml`` as a separate process (its
  own process group), SQLite, ``--workers`` worker processes, a short stable period, and
  one route: every CT series to ``soak_stats`` -- a pipeline defined in this file and
  registered through the node's ``extra_pipelines`` setting. It only counts the series'
  instances (no model, no pixels), so its one SR per series is cheap and the soak tests
  the node, not inference. Its results go to the destination ``pacs``;
- the destination PACS: ``benchmarks/_bare_pynetdicom_scp.py`` as a subprocess (a bare
  pynetdicom storage SCP writing ``SOPINSTANCEUID.dcm`` files). Every
  ``--destination-every`` seconds it goes down (SIGKILL) or comes back on the same port;
  the node's delivery retries (kept short here) must get every result through;
- ``--senders`` threads, each sending in a loop: one association per series of
  ``--series-size`` small synthetic CT instances (16 x 16 pixels, no patient data), a
  new study every series;
- every ``--kill-every`` seconds one worker process of ``serve`` gets SIGKILL; ``serve``
  starts another (its supervisor checks every 5 s) and the dead worker's job is claimed
  again after its lease (5 s here);
- every ``--hostile-every`` seconds one hostile connection, in turn: an idle socket,
  4 KiB of (seeded) garbage bytes, an A-ASSOCIATE-RQ header claiming a ~4 GiB length
  with a few bytes behind it. Each is held up to 15 s, counting whether the node closes
  it in that time; after each, a C-ECHO checks that the node still answers.

Every ``--report-every`` seconds, and at the end, a table (rich): instances sent,
acknowledged (Success), stored (files in the node's storage folder), indexed (rows in
``instances``), results delivered (deliveries ``sent`` in the node's database, files
received by the destination), and memory: RSS of the ``serve`` process and of its child
processes (from /proc), sampled every 2 s. At the end the senders stop and, with the
destination up, the run waits for the backlog (studies not yet stable, queued or running
jobs, pending deliveries) to reach zero -- giving up when it has not moved for
``--drain`` seconds; the node is then stopped with SIGTERM, and the checks are:

- every acknowledged SOP Instance UID is on disk and in the index (the missing ones are
  counted, and the first few are listed);
- memory flat after warm-up: the least-squares slope of RSS over the second half of the
  run, in MiB per minute, for ``serve`` and for ``serve`` with its child processes. The
  latter uses only the samples taken while every worker had run for 20 s or more: a
  worker started after a kill grows while it imports, which is start-up, not a leak.

Exit status 1 when something acknowledged is missing (or the node could not be started),
0 otherwise. ``--json FILE`` writes every figure and the RSS samples.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

from pipelines.contract import Measurement, PipelineResult, SeriesInput  # noqa: E402

LOCALHOST = "127.0.0.1"
NODE_AE = "SOAK_NODE"
DESTINATION_AE = "SOAK_PACS"
SENDER_AE = "SOAK_SENDER"
STORAGE_SUFFIX = ".dcm"
SPOOL_DIR_NAME = ".incoming"
SAMPLE_SECONDS = 2.0
HOSTILE_KINDS = ("idle", "garbage", "huge_pdu")
HOSTILE_HOLD_SECONDS = 15.0  # a hostile connection is held open (idle) this long at most
WORKER_SETTLE_SECONDS = 20.0  # a respawned worker's start-up is left out of the slope
MIB = 1024 * 1024


# -- the pipeline the route runs (imported by the node's worker processes) ----------------


class SoakStats:
    """Counts a series' instances: one measurement, so one SR per series, and no model."""

    name = "soak_stats"

    def run(self, series: SeriesInput) -> PipelineResult:
        return PipelineResult(
            pipeline=self.name,
            model_version=series.model_version,
            summary={"instances": len(series.files)},
            measurements=(Measurement("instance count", float(len(series.files)), "{instances}"),),
        )


# -- pure parts (unit-tested) ----------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def positive_float(text: str) -> float:
        value = float(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text}")
        return value

    def positive_int(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1: {text}")
        return value

    parser.add_argument("--minutes", type=positive_float, default=10.0, help="run time")
    parser.add_argument("--senders", type=positive_int, default=4, help="parallel associations")
    parser.add_argument(
        "--report-every", type=positive_float, default=30.0, help="seconds between tables"
    )
    parser.add_argument("--series-size", type=positive_int, default=4, help="instances a series")
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes")
    parser.add_argument(
        "--kill-every", type=positive_float, default=45.0, help="seconds between worker kills"
    )
    parser.add_argument(
        "--destination-every",
        type=positive_float,
        default=30.0,
        help="seconds the destination stays up, then down, in turn",
    )
    parser.add_argument(
        "--hostile-every",
        type=positive_float,
        default=20.0,
        help="seconds between hostile connections",
    )
    parser.add_argument(
        "--drain",
        type=positive_float,
        default=60.0,
        help="at the end, stop waiting for jobs and deliveries after this long without progress",
    )
    parser.add_argument("--workdir", type=Path, help="folder for everything (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class MissingReport:
    """Acknowledged instances that are not on disk, not in the index, or neither."""

    acknowledged: int
    missing_on_disk: tuple[str, ...]
    missing_in_index: tuple[str, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        """Acknowledged UIDs missing anywhere (on disk or in the index), sorted."""
        return tuple(sorted(set(self.missing_on_disk) | set(self.missing_in_index)))

    @property
    def ok(self) -> bool:
        return not self.missing


def missing_instances(
    acknowledged: Iterable[str], on_disk: Iterable[str], indexed: Iterable[str]
) -> MissingReport:
    """Compare the SOP Instance UIDs answered Success with those stored and indexed.

    Extra instances on disk or in the index (a store whose answer was lost) are not
    missing: only an acknowledged instance must be there.
    """
    acked = set(acknowledged)
    disk = set(on_disk)
    index = set(indexed)
    return MissingReport(
        acknowledged=len(acked),
        missing_on_disk=tuple(sorted(acked - disk)),
        missing_in_index=tuple(sorted(acked - index)),
    )


def rss_slope(samples: Sequence[tuple[float, float]], from_fraction: float = 0.5) -> float | None:
    """Least-squares slope, in MiB per minute, of (seconds, MiB) samples after warm-up.

    Warm-up is the first ``from_fraction`` of the sampled time span; the slope is fitted
    to the samples from there on. None when fewer than 3 samples remain or they span no
    time.
    """
    if not samples:
        return None
    first, last = samples[0][0], samples[-1][0]
    start = first + (last - first) * from_fraction
    tail = [(t, m) for t, m in samples if t >= start]
    if len(tail) < 3:
        return None
    times = np.array([t for t, _ in tail], dtype=float) / 60.0
    values = np.array([m for _, m in tail], dtype=float)
    if float(np.ptp(times)) == 0.0:
        return None
    slope, _intercept = np.polyfit(times, values, 1)
    return float(slope)


def settled(
    samples: Sequence[Mapping[str, float]], workers: int, settle_s: float
) -> list[Mapping[str, float]]:
    """The samples taken while all ``workers`` worker processes ran, each for at least
    ``settle_s`` seconds: a worker just started after a kill is still importing, and its
    growth is start-up, not a leak."""
    return [s for s in samples if s["workers"] == workers and s["youngest_worker_s"] >= settle_s]


# -- /proc ------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()  # comm may hold spaces and parentheses


def _closed_by_peer(sock: socket.socket, hold_s: float) -> bool:
    """Read (and drop) what the peer sends for up to ``hold_s`` seconds; True when it
    closes the connection (EOF or reset) in that time."""
    deadline = time.monotonic() + hold_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and len(fields) > 1 and fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def is_worker(pid: int) -> bool:
    """A worker process of ``serve``: a spawned multiprocessing child."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in cmdline


def process_age_s(pid: int) -> float:
    """Seconds since ``pid`` started (0 when it is gone)."""
    fields = _stat_fields(pid)
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    if not fields or len(fields) < 20:
        return 0.0
    return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


# -- synthetic instances -----------------------------------------------------------------


def synthetic_ct(study_uid: str, series_uid: str, index: int, rng: np.random.Generator) -> Dataset:
    """A 16 x 16 CT slice with seeded noise; made-up, non-identifying patient fields."""
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = series_uid + ".1" if len(series_uid) < 62 else generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "Soak^Synthetic"
    ds.PatientID = "SOAK-0001"
    ds.StudyDate = ds.SeriesDate = "20240101"
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.AccessionNumber = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.SeriesDescription = "soak"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [0.0, 0.0, float(index)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    ds.RescaleIntercept = -1024.0
    ds.RescaleSlope = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = rng.integers(0, 2000, size=(16, 16), dtype=np.uint16).tobytes()
    return ds


# -- the node and the destination as processes -----------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((LOCALHOST, port), 0.5):
            return True
        time.sleep(0.1)
    return False


def _toml_string(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def node_config(workdir: Path, port: int, destination_port: int, workers: int) -> str:
    """The node's TOML: SQLite, one CT route to ``soak_stats``, short retries and leases."""
    return "\n".join(
        [
            f"ae_title = {_toml_string(NODE_AE)}",
            f"bind_address = {_toml_string(LOCALHOST)}",
            f"port = {port}",
            f"storage_dir = {_toml_string(workdir / 'storage')}",
            f"database_url = {_toml_string('sqlite:///' + str(workdir / 'node.sqlite'))}",
            f"model_dir = {_toml_string(workdir / 'models')}",
            "stable_after_seconds = 2.0",
            "stable_check_seconds = 0.5",
            "min_free_bytes = 0",
            f"workers = {workers}",
            "",
            "[extra_pipelines]",
            f"soak_stats = {_toml_string('benchmarks.soak:SoakStats')}",
            "",
            "[queue]",
            "lease_seconds = 5.0",
            "poll_seconds = 0.2",
            "retry_backoff_seconds = 1.0",
            "retry_backoff_max_seconds = 5.0",
            "",
            "[delivery]",
            "max_attempts = 1000",
            "first_retry_seconds = 2.0",
            "max_retry_seconds = 10.0",
            "check_seconds = 1.0",
            "timeout_seconds = 5.0",
            "",
            "[[destinations]]",
            'name = "pacs"',
            f"host = {_toml_string(LOCALHOST)}",
            f"port = {destination_port}",
            f"ae_title = {_toml_string(DESTINATION_AE)}",
            "",
            "[[routes]]",
            'name = "soak"',
            'pipelines = ["soak_stats"]',
            'modality = ["CT"]',
            'destinations = ["pacs"]',
            "",
        ]
    )


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_NODE_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Managed:
    """A subprocess in its own process group, logging to a file."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_child_env(),
                cwd=REPO,
                start_new_session=True,
            )
        return self.process

    def kill9(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL the group when it does not end. The exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # orphans of the group, if any
        return self.process.returncode


# -- the run ---------------------------------------------------------------------------


@dataclass
class Counters:
    sent: int = 0
    acknowledged: int = 0
    refused: int = 0  # answered with a non-Success status
    no_answer: int = 0  # association lost or no status came back
    associations_failed: int = 0
    worker_kills: int = 0
    destination_downs: int = 0
    hostile: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOSTILE_KINDS, 0))
    # hostile connections the node closed (EOF or reset) within HOSTILE_HOLD_SECONDS
    hostile_closed_by_node: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(HOSTILE_KINDS, 0)
    )
    echo_failures_after_hostile: int = 0
    serve_exits: int = 0  # serve found dead during the run (then restarted)


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.port = free_port()
        self.destination_port = free_port()
        self.storage_dir = workdir / "storage"
        self.database = workdir / "node.sqlite"
        self.destination_dir = workdir / "destination"
        self.config = workdir / "node.toml"
        self.config.write_text(node_config(workdir, self.port, self.destination_port, args.workers))
        self.node = Managed(
            [sys.executable, "-m", "dicom_node", "serve", "--config", str(self.config)],
            workdir / "node.log",
        )
        self.destination = Managed(
            [
                sys.executable,
                str(REPO / "benchmarks" / "_bare_pynetdicom_scp.py"),
                str(self.destination_port),
                str(self.destination_dir),
                "--ae-title",
                DESTINATION_AE,
            ],
            workdir / "destination.log",
        )
        self.counters = Counters()
        self.acked_uids: set[str] = set()
        self.lock = threading.Lock()
        self.stop_sending = threading.Event()
        self.stop_all = threading.Event()
        self.t0 = time.monotonic()
        self.samples: list[dict[str, float]] = []  # t, serve, children, total (MiB)
        self.reports: list[dict[str, Any]] = []

    # -- node life --

    def start_node(self) -> bool:
        process = self.node.start()
        return wait_for_port(self.port, 60, process)

    def start_destination(self) -> bool:
        process = self.destination.start()
        return wait_for_port(self.destination_port, 30, process)

    # -- senders --

    def sender(self, index: int) -> None:
        from pynetdicom import AE

        rng = np.random.default_rng(1000 + index)
        ae = AE(ae_title=SENDER_AE)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        ae.acse_timeout = 30
        ae.dimse_timeout = 30
        ae.network_timeout = 30
        try:
            while not self.stop_sending.is_set():
                study_uid, series_uid = generate_uid(), generate_uid()
                datasets = [
                    synthetic_ct(study_uid, series_uid, i, rng)
                    for i in range(self.args.series_size)
                ]
                assoc = ae.associate(LOCALHOST, self.port, ae_title=NODE_AE)
                if not assoc.is_established:
                    with self.lock:
                        self.counters.associations_failed += 1
                    self.stop_sending.wait(1.0)
                    continue
                try:
                    for ds in datasets:
                        if not assoc.is_established:
                            break
                        with self.lock:
                            self.counters.sent += 1
                        status = assoc.send_c_store(ds)
                        code = getattr(status, "Status", None)
                        with self.lock:
                            if code == 0x0000:
                                self.counters.acknowledged += 1
                                self.acked_uids.add(str(ds.SOPInstanceUID))
                            elif code is None:
                                self.counters.no_answer += 1
                            else:
                                self.counters.refused += 1
                finally:
                    if assoc.is_established:
                        assoc.release()
        finally:
            ae.shutdown()

    # -- trouble --

    def kill_a_worker(self) -> None:
        pid = self.node.pid
        if pid is None:
            return
        workers = [p for p in children_of(pid) if is_worker(p)]
        if not workers:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(workers[0], signal.SIGKILL)
            with self.lock:
                self.counters.worker_kills += 1

    def toggle_destination(self) -> None:
        if self.destination.running:
            self.destination.kill9()
            with self.lock:
                self.counters.destination_downs += 1
        else:
            self.start_destination()

    def hostile(self, kind: str) -> None:
        """One hostile connection of ``kind``; then whether the node closed it, and a
        C-ECHO to see that the node still answers."""
        with self.lock:
            seed = sum(self.counters.hostile.values())
        closed = False
        try:
            with socket.create_connection((LOCALHOST, self.port), 5) as sock:
                if kind == "garbage":
                    sock.sendall(np.random.default_rng(seed).bytes(4096))
                elif kind == "huge_pdu":  # an A-ASSOCIATE-RQ header claiming 0xFFFFFFF0 bytes
                    sock.sendall(b"\x01\x00" + (0xFFFFFFF0).to_bytes(4, "big") + b"\x00" * 64)
                closed = _closed_by_peer(sock, HOSTILE_HOLD_SECONDS)
        except OSError:
            closed = True  # refused or reset
        with self.lock:
            self.counters.hostile[kind] += 1
            if closed:
                self.counters.hostile_closed_by_node[kind] += 1
        if not self.echo():
            with self.lock:
                self.counters.echo_failures_after_hostile += 1

    def echo(self) -> bool:
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae = AE(ae_title=SENDER_AE)
        ae.add_requested_context(Verification)
        ae.acse_timeout = 10
        try:
            assoc = ae.associate(LOCALHOST, self.port, ae_title=NODE_AE)
            if not assoc.is_established:
                return False
            status = assoc.send_c_echo()
            assoc.release()
            return getattr(status, "Status", None) == 0x0000
        finally:
            ae.shutdown()

    def trouble(self) -> None:
        """Worker kills, destination down/up and hostile connections on their clocks."""
        hostile_kinds = itertools.cycle(HOSTILE_KINDS)
        now = time.monotonic()
        next_kill = now + self.args.kill_every
        next_toggle = now + self.args.destination_every
        next_hostile = now + self.args.hostile_every
        while not self.stop_sending.wait(0.5):
            now = time.monotonic()
            if now >= next_kill:
                self.kill_a_worker()
                next_kill = now + self.args.kill_every
            if now >= next_toggle:
                self.toggle_destination()
                next_toggle = now + self.args.destination_every
            if now >= next_hostile:
                kind = next(hostile_kinds)
                threading.Thread(target=self.hostile, args=(kind,), daemon=True).start()
                next_hostile = now + self.args.hostile_every
            if not self.node.running:
                with self.lock:
                    self.counters.serve_exits += 1
                print(
                    f"serve exited ({self.node.process and self.node.process.returncode}); "
                    "restarting it",
                    flush=True,
                )
                self.start_node()

    # -- measuring --

    def sample_memory(self) -> None:
        while not self.stop_all.wait(SAMPLE_SECONDS):
            pid = self.node.pid
            if pid is None:
                continue
            serve = rss_mib(pid)
            children = children_of(pid)
            children_mib = sum(rss_mib(c) for c in children)
            ages = [process_age_s(c) for c in children if is_worker(c)]
            with self.lock:
                self.samples.append(
                    {
                        "t": time.monotonic() - self.t0,
                        "serve_mib": serve,
                        "children_mib": children_mib,
                        "total_mib": serve + children_mib,
                        "workers": float(len(ages)),
                        "youngest_worker_s": min(ages, default=0.0),
                    }
                )

    def stored_uids(self) -> set[str]:
        found: set[str] = set()
        if not self.storage_dir.exists():
            return found
        for study in self.storage_dir.iterdir():
            if not study.is_dir() or study.name == SPOOL_DIR_NAME:
                continue
            for series in study.iterdir():
                if series.is_dir():
                    found.update(
                        f.name[: -len(STORAGE_SUFFIX)]
                        for f in series.iterdir()
                        if f.name.endswith(STORAGE_SUFFIX)
                    )
        return found

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.database.exists():
            return []
        try:
            with contextlib.closing(sqlite3.connect(self.database, timeout=10)) as conn:
                return list(conn.execute(sql))
        except sqlite3.Error:
            return []

    def indexed_uids(self) -> set[str]:
        return {row[0] for row in self.query("select sop_instance_uid from instances")}

    def figures(self) -> dict[str, Any]:
        jobs = dict(self.query("select state, count(*) from jobs group by state"))
        deliveries = dict(self.query("select state, count(*) from deliveries group by state"))
        received = (
            sum(1 for _ in self.destination_dir.glob("*.dcm"))
            if self.destination_dir.exists()
            else 0
        )
        with self.lock:
            counters = asdict(self.counters)
            last = dict(self.samples[-1]) if self.samples else {}
        return {
            "elapsed_s": round(time.monotonic() - self.t0, 1),
            **counters,
            "stored": len(self.stored_uids()),
            "indexed": len(self.indexed_uids()),
            "jobs": jobs,
            "outputs": (self.query("select count(*) from outputs") or [(0,)])[0][0],
            "deliveries": deliveries,
            "received_by_destination": received,
            "serve_mib": round(last.get("serve_mib", 0.0), 1),
            "children_mib": round(last.get("children_mib", 0.0), 1),
            "total_mib": round(last.get("total_mib", 0.0), 1),
        }

    def report(self, everything: bool = False) -> None:
        self.reports.append(self.figures())
        print_table(self.reports if everything else self.reports[-1:])

    # -- the whole run --

    def run(self) -> dict[str, Any]:
        if not self.start_destination():
            raise SystemExit("the destination SCP did not start; see destination.log")
        if not self.start_node():
            raise SystemExit(f"the node did not start; see {self.node.log_path}")
        self.t0 = time.monotonic()
        threads = [
            threading.Thread(target=self.sender, args=(i,), daemon=True)
            for i in range(self.args.senders)
        ]
        threads.append(threading.Thread(target=self.trouble, daemon=True))
        sampler = threading.Thread(target=self.sample_memory, daemon=True)
        for thread in [*threads, sampler]:
            thread.start()
        end = self.t0 + self.args.minutes * 60
        next_report = self.t0 + self.args.report_every
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if time.monotonic() >= next_report:
                self.report()
                next_report += self.args.report_every
        self.stop_sending.set()
        for thread in threads:
            thread.join(timeout=60)
        run_seconds = time.monotonic() - self.t0
        with self.lock:
            run_samples = list(self.samples)
        drain = self.drain()
        self.report(everything=True)
        self.stop_all.set()
        sampler.join(timeout=10)
        serve_exit = self.node.stop()
        self.destination.stop()
        return self.summary(run_seconds, run_samples, drain, serve_exit)

    def drain(self) -> dict[str, Any]:
        """Destination up; wait until no study, job or delivery is left to do, giving up
        when none of them moved for ``--drain`` seconds."""
        if not self.destination.running:
            self.start_destination()
        start = last_move = time.monotonic()
        last_left: int | None = None
        while time.monotonic() - last_move < self.args.drain:
            rows = self.query(
                "select (select count(*) from studies where state = 'receiving')"
                " + (select count(*) from jobs where state in ('queued', 'running'))"
                " + (select count(*) from deliveries where state = 'pending')"
            )
            left = int(rows[0][0]) if rows else None
            if left == 0:
                return {"drained": True, "seconds": round(time.monotonic() - start, 1)}
            if left != last_left:
                last_left, last_move = left, time.monotonic()
            time.sleep(1.0)
        return {
            "drained": False,
            "seconds": round(time.monotonic() - start, 1),
            "left": last_left,
        }

    def result_check(self) -> dict[str, int]:
        """Outputs made, deliveries by state, and outputs the destination does not hold."""
        made = {row[0] for row in self.query("select sop_instance_uid from outputs")}
        received = (
            {p.stem for p in self.destination_dir.glob("*.dcm")}
            if self.destination_dir.exists()
            else set()
        )
        deliveries = dict(self.query("select state, count(*) from deliveries group by state"))
        failed = self.query("select count(*) from jobs where state = 'failed'")
        return {
            "outputs": len(made),
            "deliveries_sent": int(deliveries.get("sent", 0)),
            "deliveries_pending": int(deliveries.get("pending", 0)),
            "deliveries_dead": int(deliveries.get("dead", 0)),
            "outputs_not_at_destination": len(made - received),
            "jobs_failed": int(failed[0][0]) if failed else 0,
        }

    def summary(
        self,
        run_seconds: float,
        run_samples: list[dict[str, float]],
        drain: dict[str, Any],
        serve_exit: int | None,
    ) -> dict[str, Any]:
        with self.lock:
            acked = set(self.acked_uids)
        missing = missing_instances(acked, self.stored_uids(), self.indexed_uids())
        serve_series = [(s["t"], s["serve_mib"]) for s in run_samples]
        half = run_samples[-1]["t"] / 2 if run_samples else 0.0
        steady = settled(
            [s for s in run_samples if s["t"] >= half], self.args.workers, WORKER_SETTLE_SECONDS
        )
        total_series = [(s["t"], s["total_mib"]) for s in steady]
        return {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "arguments": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.args).items()
            },
            "run_seconds": round(run_seconds, 1),
            "drain": drain,
            "final": self.reports[-1] if self.reports else {},
            "serve_exit_status": serve_exit,
            "results": self.result_check(),
            "missing": {
                "acknowledged": missing.acknowledged,
                "missing_on_disk": len(missing.missing_on_disk),
                "missing_in_index": len(missing.missing_in_index),
                "missing": len(missing.missing),
                "first_missing_uids": list(missing.missing[:20]),
            },
            "rss_slope_mib_per_min": {
                "serve": rss_slope(serve_series),
                "serve_and_workers": rss_slope(total_series, from_fraction=0.0),
                "serve_and_workers_samples": len(total_series),
            },
            "rss_samples": run_samples,
            "reports": self.reports,
        }


def print_table(reports: Sequence[Mapping[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="soak: the node over time", title_justify="left")
    columns = [
        ("t (s)", "elapsed_s"),
        ("sent", "sent"),
        ("acked", "acknowledged"),
        ("refused", "refused"),
        ("no answer", "no_answer"),
        ("stored", "stored"),
        ("indexed", "indexed"),
        ("jobs done", None),
        ("deliv. sent", None),
        ("deliv. pending", None),
        ("dest. received", "received_by_destination"),
        ("kills", "worker_kills"),
        ("serve MiB", "serve_mib"),
        ("children MiB", "children_mib"),
    ]
    for title, _ in columns:
        table.add_column(title, justify="right")
    for report in reports:
        cells = []
        for title, key in columns:
            if key is not None:
                cells.append(str(report.get(key, "")))
            elif title == "jobs done":
                cells.append(str(report["jobs"].get("done", 0)))
            elif title == "deliv. sent":
                cells.append(str(report["deliveries"].get("sent", 0)))
            else:
                cells.append(str(report["deliveries"].get("pending", 0)))
        table.add_row(*cells)
    Console(width=200).print(table)


def print_summary(summary: Mapping[str, Any]) -> None:
    final = summary["final"]
    missing = summary["missing"]
    slopes = summary["rss_slope_mib_per_min"]

    def slope(value: float | None) -> str:
        return "n/a (too few samples)" if value is None else f"{value:+.2f} MiB/min"

    lines = [
        f"run: {summary['run_seconds']} s of sending, drain {summary['drain']}",
        f"sent {final.get('sent')}, acknowledged {final.get('acknowledged')}, "
        f"refused {final.get('refused')}, no answer {final.get('no_answer')}, "
        f"associations failed {final.get('associations_failed')}",
        f"stored {final.get('stored')}, indexed {final.get('indexed')}; jobs {final.get('jobs')}",
        f"outputs {final.get('outputs')}, deliveries {final.get('deliveries')}, "
        f"received by the destination {final.get('received_by_destination')}",
        f"worker kills {final.get('worker_kills')}, destination downs "
        f"{final.get('destination_downs')}, hostile {final.get('hostile')} "
        f"(closed by the node within {HOSTILE_HOLD_SECONDS:.0f} s: "
        f"{final.get('hostile_closed_by_node')}), "
        f"echo failures after hostile {final.get('echo_failures_after_hostile')}, "
        f"serve exits {final.get('serve_exits')}, serve exit status "
        f"{summary['serve_exit_status']}",
        f"results: {summary['results']}",
        f"acknowledged but missing: {missing['missing']} "
        f"(on disk {missing['missing_on_disk']}, in the index {missing['missing_in_index']})"
        + (
            f"; first: {', '.join(missing['first_missing_uids'][:5])}" if missing["missing"] else ""
        ),
        f"RSS slope over the second half: serve {slope(slopes['serve'])}, "
        f"serve + workers {slope(slopes['serve_and_workers'])} "
        f"({slopes['serve_and_workers_samples']} samples with every worker up >= "
        f"{WORKER_SETTLE_SECONDS:.0f} s)",
    ]
    print("\n".join(lines), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="dicom-node-soak-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.minutes} min, {args.senders} senders, workdir {workdir}", flush=True)
    soak = Soak(args, workdir)
    try:
        summary = soak.run()
    finally:
        soak.stop_sending.set()
        soak.stop_all.set()
        soak.node.stop()
        soak.destination.stop()
    print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if temporary and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if summary["missing"]["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
