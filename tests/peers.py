"""Real peers for the integration tests: Orthanc, dcmtk, dicom3tools and PostgreSQL.

Every helper here starts a real Debian program on free ports in a private temporary
folder and stops it again; nothing uses fixed ports and nothing sleeps where a
wait-for-condition fits. A program that is not installed makes the calling test skip
with the name of the Debian package to install. ``OrthancProcess`` is the node's own
Orthanc manager (``dicom_node.demo.orthanc``, the demo's PACS) with that skip added.

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
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from dicom_node.demo.orthanc import OrthancError, log_tail, stop_process
from dicom_node.demo.orthanc import OrthancProcess as SharedOrthancProcess
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
                f"{host}:{port} accepted connections{log_tail(log)}"
            )
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"nothing accepted TCP connections on {host}:{port} within {timeout:g} s"
                f"{log_tail(log)}"
            )
        time.sleep(0.05)


def _describe(process: subprocess.Popen[Any]) -> str:
    args = process.args
    if isinstance(args, (list, tuple)) and args:
        return Path(str(args[0])).name
    return str(args)


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
        stop_process(self.process)
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
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()


# -- Orthanc ---------------------------------------------------------------------------


class OrthancProcess(SharedOrthancProcess):
    """``dicom_node.demo.orthanc.OrthancProcess`` (the demo's PACS) for the tests: it skips
    the calling test when Orthanc is not installed, and names its server ``test-<AET>``.

    ``modalities`` is Orthanc's ``DicomModalities``: ``{"node": ["DICOM_NODE",
    "127.0.0.1", port]}`` lets Orthanc C-STORE to the node as modality ``node``.
    ``graceful_stop=False`` makes ``__exit__`` kill it instead of waiting the 3.5 s of its
    shutdown; ``start(ports=(http, dicom))`` restarts it where its peers expect it.
    """

    def __init__(self, aet: str = "ORTHANC", **options: Any) -> None:
        options.setdefault("name", f"test-{aet}")
        super().__init__(aet, **options)

    def executable(self) -> str:
        return require_tool("Orthanc")


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
                f"{result.stdout}{result.stderr}{log_tail(self.log_path)}"
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
        return log_tail(self.log_path, lines)

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
