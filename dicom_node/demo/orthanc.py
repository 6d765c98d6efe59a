"""A private Orthanc: its own folder, free ports, REST on localhost only, no plugins.

The one Orthanc process manager of the project: ``dicom-node demo`` runs its PACS with it,
and the integration tests' ``tests.peers.OrthancProcess`` is this class (skipping the test
when Orthanc is not installed)::

    with OrthancProcess(modalities={"node": ["DICOM_NODE", "127.0.0.1", port]}) as orthanc:
        study = orthanc.upload(path)["ParentStudy"]
        orthanc.store_to_modality("node", [study])

Orthanc needs about 3.5 s to shut down on SIGTERM; ``graceful_stop=False`` makes
``__exit__`` kill it instead (for a storage that is thrown away anyway). Modality ports
must be real (1..65534) when Orthanc starts: it refuses port 0.
"""

from __future__ import annotations

import json as jsonlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from dicom_node.errors import NodeError
from dicom_node.net.netutil import free_port

#: Where Debian's ``orthanc`` package installs the server.
ORTHANC = Path("/usr/sbin/Orthanc")
LOCALHOST = "127.0.0.1"


class OrthancError(NodeError):
    """Orthanc's REST API answered with an error (or an unexpected answer)."""


class OrthancStartError(OrthancError):
    """Orthanc did not come up; the message carries the end of its log."""


def find_orthanc() -> Path | None:
    """The Orthanc server program: on PATH, else in ``/usr/sbin``; None when not installed."""
    found = shutil.which("Orthanc")
    if found is not None:
        return Path(found)
    return ORTHANC if ORTHANC.exists() else None


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that were free a moment ago."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(LOCALHOST)
        if port not in ports:
            ports.append(port)
    return ports


def log_tail(log: Path | None, lines: int = 40) -> str:
    """The end of a log file, as a paragraph to append to an error message."""
    if log is None:
        return ""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"\n(no log at {log})"
    tail = "\n".join(text[-lines:])
    return f"\n--- last lines of {log} ---\n{tail}"


def stop_process(process: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """SIGTERM, wait, then SIGKILL; safe to call twice (and for a process never started)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class OrthancProcess:
    """A private Orthanc with its own storage (``workdir``), HTTP port and DICOM port.

    ``modalities`` is Orthanc's ``DicomModalities``: ``{"node": ["DICOM_NODE",
    "127.0.0.1", port]}`` lets Orthanc C-STORE to the node as modality ``node``.
    ``extra_config`` entries override the generated configuration. Without ``workdir``
    it works in a temporary folder, removed by ``__exit__``.
    """

    def __init__(
        self,
        aet: str = "ORTHANC",
        *,
        modalities: Mapping[str, Sequence[Any] | Mapping[str, Any]] | None = None,
        tcp_nodelay: bool = False,
        workdir: Path | None = None,
        concurrent_jobs: int = 2,
        extra_config: Mapping[str, Any] | None = None,
        startup_timeout: float = 30,
        graceful_stop: bool = True,
        name: str | None = None,
    ) -> None:
        self.aet = aet
        self.name = name or f"dicom-node {aet}"
        self.graceful_stop = graceful_stop
        self.modalities = dict(modalities or {})
        self.tcp_nodelay = tcp_nodelay
        self.concurrent_jobs = concurrent_jobs
        self.extra_config = dict(extra_config or {})
        self.startup_timeout = startup_timeout
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="orthanc-")
            workdir = Path(self._own_dir.name)
        self.workdir = workdir
        self.storage_dir = workdir / "storage"
        self.config_path = workdir / "orthanc.json"
        self.log_path = workdir / "orthanc.log"
        self.http_port = 0
        self.dicom_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # -- life cycle --

    def executable(self) -> str:
        """The server program to run; ``OrthancStartError`` when it is not installed."""
        found = find_orthanc()
        if found is None:
            raise OrthancStartError(f"{ORTHANC} is not installed (apt-get install orthanc)")
        return str(found)

    def config(self) -> dict[str, Any]:
        """The configuration written for Orthanc (keys checked against Orthanc 1.10)."""
        config: dict[str, Any] = {
            "Name": self.name,
            "StorageDirectory": str(self.storage_dir),
            "IndexDirectory": str(self.storage_dir),
            "StorageCompression": False,
            "Plugins": [],
            "LuaScripts": [],
            "ConcurrentJobs": self.concurrent_jobs,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "RegisteredUsers": {},
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": self.modalities,
            "DicomModalitiesInDatabase": False,
            "OrthancPeersInDatabase": False,
            "SaveJobs": False,  # never resume jobs of an earlier run
            "MetricsEnabled": False,
            "HttpDescribeErrors": True,
        }
        config.update(self.extra_config)
        return config

    def start(self, *, ports: tuple[int, int] | None = None) -> Self:
        """Start Orthanc on free ports, or on ``ports`` = (HTTP, DICOM), e.g. where its peers
        expect it (its storage folder is kept between starts)."""
        exe = self.executable()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        last_error: OrthancStartError | None = None
        for _attempt in range(1 if ports else 3):  # a free port can be taken before bind
            self.http_port, self.dicom_port = ports or free_ports(2)
            self.config_path.write_text(jsonlib.dumps(self.config(), indent=2))
            env = dict(os.environ)
            if self.tcp_nodelay:
                env["TCP_NODELAY"] = "1"
            self._log = open(self.log_path, "ab")  # closed by stop()
            self.process = subprocess.Popen(
                [exe, "--no-jobs", str(self.config_path)],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
            )
            try:
                self._wait_ready()
                return self
            except OrthancStartError as exc:
                self.stop()
                if "already in use" not in str(exc).lower():
                    raise
                last_error = exc  # another process took a port after we probed it: retry
            except BaseException:
                self.stop()
                raise
        assert last_error is not None
        raise last_error

    def _wait_ready(self) -> None:
        """Until REST ``/system`` answers and the DICOM port takes connections."""
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        rest_ready = False
        while True:
            if self.process.poll() is not None:
                raise OrthancStartError(
                    f"Orthanc exited with status {self.process.returncode} during start-up"
                    f"{log_tail(self.log_path)}"
                )
            if not rest_ready:
                try:
                    self.rest("GET", "/system", timeout=1)
                    rest_ready = True
                except (OSError, OrthancError):
                    pass
            if rest_ready and _port_open(self.dicom_port):
                return
            if time.monotonic() >= deadline:
                what = f"DICOM port {self.dicom_port}" if rest_ready else "REST /system"
                raise OrthancStartError(
                    f"Orthanc {what} did not answer within {self.startup_timeout:g} s "
                    f"(HTTP port {self.http_port}){log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL; safe to call twice."""
        stop_process(self.process, timeout=20)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.graceful_stop:
            self.stop()
        else:
            self.kill()
        if self._own_dir is not None:
            self._own_dir.cleanup()

    # -- REST --

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.http_port}"

    def rest(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        data: bytes | None = None,
        content_type: str | None = None,
        timeout: float = 120,
    ) -> Any:
        """Call Orthanc's REST API; decoded JSON, or bytes for non-JSON answers.

        Raises ``OrthancError`` (with Orthanc's error body and the log path) on HTTP errors.
        """
        body = data
        headers = {"Accept": "application/json"}
        if json is not None:
            body = jsonlib.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        elif content_type is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self.base_url + path, data=body, method=method.upper(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise OrthancError(
                f"Orthanc {method.upper()} {path} -> HTTP {exc.code}: {detail.strip()} "
                f"(log: {self.log_path})"
            ) from exc
        if "json" in kind:
            return jsonlib.loads(payload)
        return payload

    def system(self) -> dict[str, Any]:
        return dict(self.rest("GET", "/system"))

    def upload(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """POST one DICOM file to /instances; returns Orthanc's answer (ID, ParentStudy...)."""
        answer = self.rest(
            "POST", "/instances", data=Path(path).read_bytes(), content_type="application/dicom"
        )
        if not isinstance(answer, dict) or answer.get("Status") not in {"Success", "AlreadyStored"}:
            raise OrthancError(f"upload of {path} not stored: {answer!r} (log: {self.log_path})")
        return answer

    def store_to_modality(self, modality: str, resources: list[str]) -> dict[str, Any]:
        """C-STORE Orthanc resources (instance/series/study IDs) to a configured modality.

        Synchronous: returns when Orthanc's job has finished; raises ``OrthancError``
        unless every instance was sent.
        """
        answer = self.rest(
            "POST",
            f"/modalities/{modality}/store",
            json={"Resources": list(resources), "Synchronous": True},
        )
        if not isinstance(answer, dict):
            raise OrthancError(f"unexpected answer from store to {modality}: {answer!r}")
        failed = int(answer.get("FailedInstancesCount", 0))
        if failed:
            raise OrthancError(
                f"store to {modality}: {failed} of {answer.get('InstancesCount')} instances "
                f"failed: {answer!r} (log: {self.log_path})"
            )
        return answer

    def find(self, level: str, query: Mapping[str, str]) -> list[str]:
        """Orthanc IDs of the resources at ``level`` (Patient, Study, Series, Instance)
        whose main tags match ``query`` (``/tools/find``)."""
        found = self.rest("POST", "/tools/find", json={"Level": level, "Query": dict(query)})
        return [str(item) for item in found or []]

    def study_modalities(self, study_instance_uid: str) -> list[str]:
        """The Modality of each series Orthanc holds for the study, sorted ([] if none)."""
        found = self.find("Study", {"StudyInstanceUID": study_instance_uid})
        if not found:
            return []
        series = self.rest("GET", f"/studies/{found[0]}/series")
        return sorted(str(s["MainDicomTags"].get("Modality", "")) for s in series)

    def instance_count(self) -> int:
        return int(self.rest("GET", "/statistics")["CountInstances"])

    def instances(self) -> list[str]:
        return list(self.rest("GET", "/instances"))
