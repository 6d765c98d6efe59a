"""``dicom-node serve`` / ``dicom-node worker`` as real subprocesses, for process-level tests.

``NodeProcess`` writes a TOML configuration into its own folder (SQLite database, storage,
a free port on 127.0.0.1, a short stable period) and runs ``python -m dicom_node serve``
in its own process group, so that ``kill9()`` takes down the receiver *and* the worker
processes it spawned, as a power cut or the OOM killer would. The log goes to a file that
is printed when the ``with`` block fails.

    with NodeProcess(tmp_path, routes=[CT_STATS_ROUTE], workers=1) as node:
        storescu(node.port, files, aec=node.ae_title)
        wait_until(lambda: node.scalar("select count(*) from jobs where state='done'"), 30)

``make_series`` writes small synthetic Part 10 files (seeded) for the tests to send.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid
from sqlalchemy import Engine, text

from dicom_node.db.engine import make_engine
from tests.peers import free_port, wait_for_port, wait_until
from tests.support.datasets import new_instance, set_monochrome_pixels

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCALHOST = "127.0.0.1"

#: The test-only pipelines of ``tests/support/pipelines.py``, as ``extra_pipelines``.
TEST_PIPELINES: dict[str, str] = {
    "series_stats": "tests.support.pipelines:SeriesStats",
    "sleepy": "tests.support.pipelines:Sleepy",
    "always_retry": "tests.support.pipelines:AlwaysRetry",
    "broken": "tests.support.pipelines:Broken",
}


# -- TOML -----------------------------------------------------------------------------------
# The standard library reads TOML but does not write it; the settings only need strings,
# numbers, booleans, lists of those, tables and arrays of tables.


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    raise TypeError(f"cannot write {value!r} as TOML")


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML text for ``data``: scalars first, then ``[table]`` and ``[[array]]`` sections."""
    lines: list[str] = []
    sections: list[str] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            sections.append(f"\n[{key}]")
            sections += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()]
        elif _is_table_array(value):
            for item in value:
                sections.append(f"\n[[{key}]]")
                sections += [f"{k} = {_toml_value(v)}" for k, v in item.items() if v is not None]
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines + sections) + "\n"


# -- process groups -------------------------------------------------------------------------


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        text_lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text_lines[-lines:])


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # Outer DICOM_NODE_* variables would override the generated file: leave them out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_NODE_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class _Subprocess:
    """A ``python -m dicom_node ...`` subprocess in its own session, logging to a file."""

    def __init__(self, args: Sequence[str], log_path: Path, env: Mapping[str, str]) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(self.args)} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dicom_node", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,  # own process group: kill9() reaches the children
            )

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait; SIGKILL the group if it does not end. Returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._reap_group(signal.SIGKILL)
        return self.process.returncode

    def kill9(self) -> None:
        """SIGKILL the whole process group (the main process and its children) and wait."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)
        self._reap_group(signal.SIGKILL)

    def _reap_group(self, sig: signal.Signals) -> None:
        """Make sure nothing of the group is still running (orphans are reparented)."""
        assert self.process is not None
        pgid = self.process.pid
        if not _group_members(pgid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        wait_until(
            lambda: not _group_members(pgid),
            timeout=20,
            message=f"processes of group {pgid} survive SIGKILL",
        )


class NodeProcess:
    """``dicom-node serve`` with a generated configuration, in a subprocess.

    ``routes`` are dicts with the keys of ``RouteRule`` (name, pipelines, modality, ...).
    ``overrides`` are added to (or replace) top-level keys of the settings file, e.g.
    ``{"max_associations": 2}``; ``queue`` entries are merged into the queue table.
    ``env`` is added to the environment of the node (and so of its worker processes).
    The port is chosen once: ``restart()`` listens on the same one.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str = "DICOM_NODE",
        workers: int = 0,
        lease_seconds: float = 30.0,
        routes: Sequence[Mapping[str, Any]] = (),
        extra_pipelines: Mapping[str, str] | None = None,
        stable_after_seconds: float = 1.0,
        stable_check_seconds: float = 0.2,
        queue: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 30,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ae_title = ae_title
        self.port = free_port()
        self.storage_dir = self.workdir / "storage"
        self.database_path = self.workdir / "node.sqlite"
        self.config_path = self.workdir / "node.toml"
        self.log_path = self.workdir / "node.log"
        self.startup_timeout = startup_timeout
        self.env = _child_env(env)
        queue_table: dict[str, Any] = {"poll_seconds": 0.1, "lease_seconds": lease_seconds}
        queue_table.update(queue or {})
        self.settings: dict[str, Any] = {
            "ae_title": ae_title,
            "bind_address": LOCALHOST,
            "port": self.port,
            "storage_dir": str(self.storage_dir),
            "database_url": self.db_url,
            "model_dir": str(self.workdir / "models"),
            "stable_after_seconds": stable_after_seconds,
            "stable_check_seconds": stable_check_seconds,
            "min_free_bytes": 0,
            "workers": workers,
            "routes": [dict(r) for r in routes],
            "extra_pipelines": dict(TEST_PIPELINES if extra_pipelines is None else extra_pipelines),
            "queue": queue_table,
        }
        self.settings.update(overrides or {})
        self.config_path.write_text(to_toml(self.settings))
        self._serve = _Subprocess(
            ["serve", "--config", str(self.config_path)], self.log_path, self.env
        )
        self._engine: Engine | None = None
        self._workers: list[_Subprocess] = []

    # -- life cycle --

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.database_path}"

    @property
    def pid(self) -> int:
        return self._serve.pid

    @property
    def running(self) -> bool:
        return self._serve.running

    def start(self) -> Self:
        self._serve.start()
        try:
            wait_for_port(
                LOCALHOST,
                self.port,
                self.startup_timeout,
                process=self._serve.process,
                log=self.log_path,
            )
        except BaseException:
            self._serve.kill9()
            raise
        return self

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM the node (it stops its workers) and wait; returns the exit status."""
        return self._serve.stop(timeout)

    def kill9(self) -> None:
        """SIGKILL the receiver and its worker children at once (the process group)."""
        self._serve.kill9()

    def restart(self) -> Self:
        if self._serve.running:
            self.stop()
        return self.start()

    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes ``serve`` spawned (its children running Python)."""
        if not self._serve.running:
            return []
        pids = []
        for pid in _group_members(self._serve.pid):
            if pid == self._serve.pid:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # spawn children run "python -c 'from multiprocessing.spawn import spawn_main...'"
            if any(b"spawn_main" in part for part in cmdline):
                pids.append(pid)
        return pids

    def start_worker(self, env: Mapping[str, str] | None = None) -> _Subprocess:
        """Start a separate ``dicom-node worker --config`` process on this node's config."""
        index = len(self._workers)
        worker = _Subprocess(
            ["worker", "--config", str(self.config_path)],
            self.workdir / f"worker-{index}.log",
            {**self.env, **(env or {})},
        )
        worker.start()
        self._workers.append(worker)
        return worker

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for worker in self._workers:
            worker.stop()
        self.stop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if exc_type is not None:
            # pytest shows the captured output of a failed test.
            print(self.describe_logs())

    def describe_logs(self) -> str:
        parts = [f"--- {self.log_path} ---\n{_log_tail(self.log_path, 120)}"]
        for worker in self._workers:
            parts.append(f"--- {worker.log_path} ---\n{_log_tail(worker.log_path, 60)}")
        return "\n".join(parts)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the database and the CLI --

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.db_url)
        return self._engine

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine().connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine().connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]

    def table_exists(self, name: str) -> bool:
        if not self.database_path.exists():
            return False
        return bool(
            self.scalar("select count(*) from sqlite_master where type='table' and name=:n", n=name)
        )

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``dicom-node ARGS --config <this config>`` and return its output."""
        return subprocess.run(
            [sys.executable, "-m", "dicom_node", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO_ROOT,
            timeout=timeout,
            check=False,
        )

    def cli_json(self, *args: str) -> Any:
        """``dicom-node ARGS --format json``, parsed."""
        result = self.cli(*args, "--format", "json")
        if result.returncode != 0:
            raise AssertionError(
                f"dicom-node {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"dicom-node {' '.join(args)} --format json printed no JSON ({exc}):\n"
                f"{result.stdout}"
            ) from exc


# -- synthetic series ----------------------------------------------------------------------


def make_series(
    folder: Path,
    count: int,
    *,
    size: int = 64,
    study_uid: str | None = None,
    series_uid: str | None = None,
    modality: str = "CT",
    series_description: str = "synthetic",
    seed: int = 0,
) -> list[Path]:
    """Write ``count`` small uncompressed CT (or MR) slices of one series; return the paths.

    Pixel data is seeded noise; geometry is an axial stack 1 mm apart. No patient data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    sop_class = MRImageStorage if modality == "MR" else CTImageStorage
    paths = []
    for index in range(count):
        path = folder / f"{modality.lower()}-{index:04d}.dcm"
        ds = new_instance(
            sop_class,
            generate_uid(),
            study_uid=study_uid,
            series_uid=series_uid,
            modality=modality,
            filename=path,
        )
        ds.FrameOfReferenceUID = series_uid + ".1" if len(series_uid) < 62 else generate_uid()
        ds.PatientName = "Test^Synthetic"
        ds.PatientID = "SYNTH-0001"
        ds.StudyDate = ds.SeriesDate = "20240101"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.AccessionNumber = ""
        ds.StudyID = "1"
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1 if modality == "CT" else 2
        ds.InstanceNumber = index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [0.0, 0.0, float(index)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = 1.0
        if modality == "CT":
            ds.RescaleIntercept = -1024.0
            ds.RescaleSlope = 1.0
            ds.KVP = 120.0
        else:
            ds.ScanningSequence = "SE"
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.EchoTime = 10.0
            ds.RepetitionTime = 500.0
            ds.MagneticFieldStrength = 1.5
        set_monochrome_pixels(ds, size, size, seed=rng, high=2000, dtype=np.int16)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def wait_for_log(node: NodeProcess, needle: str, timeout: float = 30) -> None:
    """Wait until ``needle`` appears in the node's log."""
    wait_until(
        lambda: needle in node.log_text(),
        timeout,
        interval=0.1,
        message=lambda: f"{needle!r} not in the node's log\n{node.describe_logs()}",
    )
