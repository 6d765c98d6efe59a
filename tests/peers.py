"""Real peers for the integration tests: Orthanc, dcmtk, dicom3tools and PostgreSQL.

Every helper here starts a real Debian program on free ports in a private temporary
folder and stops it again; nothing uses fixed ports and nothing sleeps where a
wait-for-condition fits. A program that is not installed makes the calling test skip
with the name of the Debian package to install.

Usage from a test or a fixture::

    with OrthancProcess(modalities={"node": ["DICOM_NODE", "127.0.0.1", port]}) as orthanc:
        orthanc.upload(path)
        orthanc.store_to_modality("node", [orthanc_instance_id])

    with StorescpProcess() as scp:
        storescu(scp.port, [path], aec=scp.aet).check_returncode()

    with PostgresProcess() as pg:
        engine = sqlalchemy.create_engine(pg.url)

The executables are looked up outside the virtual environment on purpose: pynetdicom
installs Python scripts called ``storescu``, ``storescp`` and ``echoscu`` into
``.venv/bin`` that take different options than dcmtk's.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from dicom_node.net.netutil import free_port as netutil_free_port

__all__ = [
    "DEBIAN_PACKAGES",
    "OrthancError",
    "OrthancProcess",
    "PeerStartError",
    "PostgresProcess",
    "StorescpProcess",
    "dciodvfy",
    "echoscu",
    "find_tool",
    "free_port",
    "require_tool",
    "storescu",
    "wait_for_port",
    "wait_until",
]

LOCALHOST = "127.0.0.1"

#: Debian package that ships each program, for skip messages.
DEBIAN_PACKAGES: dict[str, str] = {
    "storescu": "dcmtk",
    "storescp": "dcmtk",
    "echoscu": "dcmtk",
    "dcmsend": "dcmtk",
    "dsrdump": "dcmtk",
    "dcmdump": "dcmtk",
    "dcmcjpeg": "dcmtk",
    "dcmcjpls": "dcmtk",
    "dcmcrle": "dcmtk",
    "gdcmconv": "libgdcm-tools",
    "ojph_compress": "openjph-tools",
    "Orthanc": "orthanc",
    "dciodvfy": "dicom3tools",
    "dcentvfy": "dicom3tools",
    "initdb": "postgresql",
    "pg_ctl": "postgresql",
    "postgres": "postgresql",
    "createdb": "postgresql",
}

_POSTGRES_TOOLS = {"initdb", "pg_ctl", "postgres", "createdb", "psql"}


class PeerStartError(RuntimeError):
    """A peer program did not come up; the message carries the end of its log."""


class OrthancError(RuntimeError):
    """Orthanc's REST API answered with an error (or an unexpected answer)."""


# -- small utilities -------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, close)."""
    return netutil_free_port(LOCALHOST)


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> object:
    """Call ``predicate`` until it returns something truthy; return that value.

    Raises ``TimeoutError`` with ``message`` (a string, or a callable evaluated only on
    failure, e.g. to append a log tail) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"{text} (waited {timeout:g} s)")
        time.sleep(interval)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 30,
    *,
    process: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
) -> None:
    """Wait until a TCP connection to ``host:port`` succeeds.

    With ``process``, fail at once if it has exited; with ``log``, add the end of that
    file to the error.
    """
    deadline = time.monotonic() + timeout
    while True:
        if _port_open(host, port):
            return
        if process is not None and process.poll() is not None:
            raise PeerStartError(
                f"{_describe(process)} exited with status {process.returncode} before "
                f"{host}:{port} accepted connections{_log_tail(log)}"
            )
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"nothing accepted TCP connections on {host}:{port} within {timeout:g} s"
                f"{_log_tail(log)}"
            )
        time.sleep(0.05)


def _describe(process: subprocess.Popen[Any]) -> str:
    args = process.args
    if isinstance(args, (list, tuple)) and args:
        return Path(str(args[0])).name
    return str(args)


def _log_tail(log: Path | None, lines: int = 40) -> str:
    if log is None:
        return ""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"\n(no log at {log})"
    tail = "\n".join(text[-lines:])
    return f"\n--- last lines of {log} ---\n{tail}"


def _venv_bin_dirs() -> set[Path]:
    dirs = {Path(sys.prefix) / "bin", Path(sys.executable).parent}
    if os.environ.get("VIRTUAL_ENV"):
        dirs.add(Path(os.environ["VIRTUAL_ENV"]) / "bin")
    return {d.resolve() for d in dirs if d.exists()}


def find_tool(name: str) -> str | None:
    """Path of a system program, ignoring the virtual environment's ``bin`` folder.

    PostgreSQL's server programs are not on PATH on Debian; they are looked up in
    ``/usr/lib/postgresql/<newest>/bin`` too. ``Orthanc`` lives in ``/usr/sbin``.
    """
    skip = _venv_bin_dirs()
    search: list[str] = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and Path(entry).exists() and Path(entry).resolve() not in skip:
            search.append(entry)
    for extra in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if extra not in search:
            search.append(extra)
    if name in _POSTGRES_TOOLS:
        versions = sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()],
            reverse=True,
        )
        search = versions + search  # pg_ctl on PATH may be Debian's wrapper script
    return shutil.which(name, path=os.pathsep.join(search))


def require_tool(name: str) -> str:
    """The program's path, or skip the calling test naming the Debian package."""
    path = find_tool(name)
    if path is None:
        package = DEBIAN_PACKAGES.get(name, name)
        pytest.skip(f"{name} not installed: apt-get install {package}")
    return path


def _env(tcp_nodelay: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if tcp_nodelay:
        env["TCP_NODELAY"] = "1"
    if extra:
        env.update(extra)
    return env


def _stop_process(process: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """SIGTERM, wait, then SIGKILL; safe to call twice."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


# -- dcmtk / dicom3tools command wrappers ----------------------------------------------


def storescu(
    port: int,
    files: Iterable[str | os.PathLike[str]],
    aet: str = "STORESCU",
    aec: str = "DICOM_NODE",
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    *,
    host: str = LOCALHOST,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run dcmtk ``storescu`` once (one association for all ``files``); never raises on
    a failed store — check ``returncode`` / ``stderr``. Folders are scanned (``+sd``).

    ``env`` entries are added to the current environment (e.g. ``{"TCP_NODELAY": "1"}``).
    """
    exe = require_tool("storescu")
    paths = [str(f) for f in files]
    args = [exe, "-aet", aet, "-aec", aec, *extra_args]
    if any(Path(p).is_dir() for p in paths) and "+sd" not in args:
        args.append("+sd")
    args += [host, str(port), *paths]
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(False, env),
        check=False,
    )


def echoscu(
    port: int,
    aet: str = "ECHOSCU",
    aec: str = "ANY-SCP",
    *,
    host: str = LOCALHOST,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run dcmtk ``echoscu`` (C-ECHO); ``returncode`` 0 means the peer answered."""
    exe = require_tool("echoscu")
    return subprocess.run(
        [exe, "-aet", aet, "-aec", aec, "-to", str(int(timeout)), host, str(port)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def dciodvfy(path: str | os.PathLike[str], timeout: float = 60) -> tuple[list[str], list[str]]:
    """Validate a DICOM file with dicom3tools' ``dciodvfy``: (errors, warnings).

    Each entry is one ``Error - ...`` / ``Warning - ...`` line as dciodvfy printed it.
    If dciodvfy fails without printing an error line, one synthetic error describes it.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(file)
    exe = require_tool("dciodvfy")
    result = subprocess.run(
        [exe, str(file)], capture_output=True, text=True, timeout=timeout, check=False
    )
    errors: list[str] = []
    warnings: list[str] = []
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        stripped = line.strip()
        if stripped.startswith("Error"):
            errors.append(stripped)
        elif stripped.startswith("Warning"):
            warnings.append(stripped)
    if result.returncode != 0 and not errors:
        errors.append(
            f"Error - dciodvfy exited with status {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[:500]}"
        )
    return errors, warnings


# -- storescp --------------------------------------------------------------------------


class StorescpProcess:
    """dcmtk ``storescp`` on a free port, writing what it receives into ``output_dir``.

    Accepts every transfer syntax dcmtk knows (``+xa``), single process. With
    ``tcp_nodelay`` the environment variable TCP_NODELAY=1 is set for it.
    """

    def __init__(
        self,
        aet: str = "STORESCP",
        *,
        port: int | None = None,
        output_dir: Path | None = None,
        tcp_nodelay: bool = False,
        promiscuous: bool = False,
        ignore: bool = False,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30,
    ) -> None:
        self.aet = aet
        self.port = port or free_port()
        self.tcp_nodelay = tcp_nodelay
        self.promiscuous = promiscuous
        self.ignore = ignore
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if output_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="storescp-")
            output_dir = Path(self._own_dir.name) / "received"
        self.output_dir = output_dir
        self.log_path = output_dir.parent / f"storescp-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> Self:
        exe = require_tool("storescp")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        args = [exe, "-aet", self.aet, "-od", str(self.output_dir), "+xa", "-dhl"]
        if self.promiscuous:
            args.append("-pm")
        if self.ignore:
            args.append("--ignore")
        args += [*self.extra_args, str(self.port)]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=_env(self.tcp_nodelay)
        )
        try:
            wait_for_port(
                LOCALHOST,
                self.port,
                self.startup_timeout,
                process=self.process,
                log=self.log_path,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def received_files(self) -> list[Path]:
        """Files storescp has written so far (it writes each one before answering)."""
        if not self.output_dir.exists():
            return []
        return sorted(p for p in self.output_dir.iterdir() if p.is_file())

    def stop(self) -> None:
        _stop_process(self.process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()


# -- Orthanc ---------------------------------------------------------------------------


class OrthancProcess:
    """A private Orthanc (``/usr/sbin/Orthanc``) with its own storage, HTTP and DICOM port.

    ``modalities`` is Orthanc's ``DicomModalities``: ``{"node": ["DICOM_NODE",
    "127.0.0.1", port]}`` lets Orthanc C-STORE to the node as modality ``node``.
    ``extra_config`` entries override the generated configuration. REST access is
    limited to localhost without authentication; no plugins are loaded.

    Orthanc needs about 3.5 s to shut down on SIGTERM; ``graceful_stop=False`` makes
    ``__exit__`` kill it instead (its storage is thrown away anyway).
    Modality ports must be real (1..65534) when Orthanc starts: it refuses port 0.
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
    ) -> None:
        self.aet = aet
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

    def config(self) -> dict[str, Any]:
        """The configuration written for Orthanc (keys checked against Orthanc 1.10)."""
        config: dict[str, Any] = {
            "Name": f"test-{self.aet}",
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
        """Start Orthanc on free ports, or on ``ports`` = (HTTP, DICOM), e.g. to restart it
        where its peers expect it (its storage folder is kept between starts)."""
        exe = require_tool("Orthanc")
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        last_error: BaseException | None = None
        for _attempt in range(1 if ports else 3):  # a free port can be taken before bind
            if ports:
                self.http_port, self.dicom_port = ports
            else:
                self.http_port = free_port()
                self.dicom_port = free_port()
                while self.dicom_port == self.http_port:
                    self.dicom_port = free_port()
            self.config_path.write_text(json.dumps(self.config(), indent=2))
            self._log = open(self.log_path, "ab")
            self.process = subprocess.Popen(
                [exe, "--no-jobs", str(self.config_path)],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=_env(self.tcp_nodelay),
                cwd=self.workdir,
            )
            try:
                self._wait_ready()
                return self
            except PeerStartError as exc:
                self.stop()
                if not _port_clash(str(exc)):
                    raise
                last_error = exc  # another process took a port after we probed it: retry
            except BaseException:
                self.stop()
                raise
        assert last_error is not None
        raise last_error

    def _wait_ready(self) -> None:
        assert self.process is not None
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise PeerStartError(
                    f"Orthanc exited with status {process.returncode} during start-up"
                    f"{_log_tail(self.log_path)}"
                )
            try:
                self.rest("GET", "/system", timeout=1)
            except (OSError, OrthancError):
                return False
            return True

        wait_until(
            answers,
            self.startup_timeout,
            message=lambda: (
                f"Orthanc REST /system did not answer on port {self.http_port}"
                f"{_log_tail(self.log_path)}"
            ),
        )
        remaining = max(1.0, self.startup_timeout)
        wait_for_port(LOCALHOST, self.dicom_port, remaining, process=process, log=self.log_path)

    def stop(self) -> None:
        _stop_process(self.process, timeout=20)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines)

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
        timeout: float = 60,
    ) -> Any:
        """Call Orthanc's REST API; decoded JSON, or bytes for non-JSON answers.

        Raises ``OrthancError`` (with Orthanc's error body and the log path) on HTTP
        errors.
        """
        body = data
        headers = {"Accept": "application/json"}
        if json is not None:
            body = _json_dumps(json).encode()
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
            return _json_loads(payload)
        return payload

    def system(self) -> dict[str, Any]:
        return dict(self.rest("GET", "/system"))

    def upload(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """POST one DICOM file to /instances; returns Orthanc's answer (ID, ParentSeries...)."""
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

    def instance_count(self) -> int:
        return int(self.rest("GET", "/statistics")["CountInstances"])

    def instances(self) -> list[str]:
        return list(self.rest("GET", "/instances"))


def _port_clash(log_text: str) -> bool:
    return "already in use" in log_text.lower()


def _json_dumps(value: Any) -> str:
    return json.dumps(value)


def _json_loads(payload: bytes) -> Any:
    return json.loads(payload)


# -- PostgreSQL ------------------------------------------------------------------------


class PostgresProcess:
    """A throw-away PostgreSQL cluster listening only on a Unix socket.

    ``initdb`` refuses to run as root, so when the tests run as root the server runs as
    the ``postgres`` system user (or ``run_as``) through ``subprocess``'s ``user=`` and
    ``group=`` arguments, in a private folder chowned to that user. Durability is off
    (fsync, synchronous_commit, full_page_writes): it is for tests only.

    ``url`` is an SQLAlchemy URL for psycopg 3, e.g.
    ``postgresql+psycopg://node@/node_test?host=/tmp/pg-abc/socket``.
    """

    def __init__(
        self,
        dbname: str = "node_test",
        *,
        user: str = "node",
        run_as: str | None = None,
        startup_timeout: float = 30,
    ) -> None:
        self.dbname = dbname
        self.user = user
        self.run_as = run_as
        self.startup_timeout = startup_timeout
        self.root: Path | None = None
        self.data_dir: Path | None = None
        self.socket_dir: Path | None = None
        self.log_path: Path | None = None
        self._started = False
        self._as: dict[str, Any] = {}

    @property
    def url(self) -> str:
        if self.socket_dir is None:
            raise RuntimeError("PostgreSQL is not running")
        return f"postgresql+psycopg://{self.user}@/{self.dbname}?host={self.socket_dir}"

    @property
    def port(self) -> int:
        return 5432  # the socket's name; no TCP listener

    def _account(self) -> dict[str, Any]:
        """Keyword arguments for subprocess that drop root, or {} when not root."""
        if os.geteuid() != 0:
            return {}
        name = self.run_as or "postgres"
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            pytest.skip(
                f"running as root and there is no {name!r} user for PostgreSQL "
                "(initdb refuses root): apt-get install postgresql creates one"
            )
        return {
            "user": entry.pw_uid,
            "group": entry.pw_gid,
            "extra_groups": [],
            "env": {**os.environ, "HOME": entry.pw_dir or "/", "USER": name, "LOGNAME": name},
        }

    def _run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs = dict(self._as)
        env = kwargs.pop("env", dict(os.environ))
        env.setdefault("LC_ALL", "C.UTF-8")
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
            env=env,
            **kwargs,
        )
        if result.returncode != 0:
            raise PeerStartError(
                f"{Path(args[0]).name} failed with status {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{_log_tail(self.log_path)}"
            )
        return result

    def start(self) -> Self:
        initdb = require_tool("initdb")
        pg_ctl = require_tool("pg_ctl")
        createdb = require_tool("createdb")
        self._as = self._account()
        # A short path under /tmp: socket paths are limited to ~100 bytes, and pytest's
        # tmp_path (mode 0700, owned by root) is not reachable for the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "postgres.log"
        self.socket_dir.mkdir()
        self.log_path.touch()
        if self._as:
            for path in (self.root, self.socket_dir, self.log_path):
                os.chown(path, self._as["user"], self._as["group"])
        try:
            self._run(
                [
                    initdb,
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                timeout=120,
            )
            options = " ".join(
                [
                    "-c listen_addresses=''",
                    f"-c unix_socket_directories='{self.socket_dir}'",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=50",
                ]
            )
            self._run(
                [
                    pg_ctl,
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(int(self.startup_timeout)),
                    "start",
                ],
                timeout=self.startup_timeout + 10,
            )
            self._started = True
            self._run([createdb, "-h", str(self.socket_dir), "-U", self.user, self.dbname])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._started and self.data_dir is not None:
            pg_ctl = find_tool("pg_ctl")
            if pg_ctl is not None:
                with contextlib.suppress(PeerStartError, subprocess.TimeoutExpired):
                    self._run([pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"])
            self._started = False
        if self.data_dir is not None:
            pid_file = self.data_dir / "postmaster.pid"
            if pid_file.exists():  # pg_ctl failed: kill the postmaster we started
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)

    def kill(self) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
