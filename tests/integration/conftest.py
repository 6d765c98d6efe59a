"""Fixtures for integration tests: settings, an in-process receiver and test datasets.

``node_settings(tmp_path, **overrides)`` builds a ``NodeSettings`` that keeps everything
inside ``tmp_path`` (storage, SQLite database, models) and listens on 127.0.0.1, port 0.

``receiver(**overrides)`` starts ``dicom_node.ingest.receive.Receiver`` in this process on a
free port with a migrated SQLite database and stops it in teardown; the handle it
returns has ``.port``, ``.engine``, ``.store``, ``.settings`` and a few helpers that
look at what the node stored. Pass ``settings=`` or ``engine=`` to use your own.

``make_instance(**fields)`` writes a small synthetic Part 10 image (fresh UIDs, seeded
pixels) and returns its path; ``store_scu(port, paths)`` sends Part 10 files with a
pynetdicom SCU exactly as they are (no transcoding) and returns the statuses.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import config as pydicom_config
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, generate_uid
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset
from sqlalchemy import Engine, select

from dicom_node.db import migrate
from dicom_node.db.engine import make_engine
from dicom_node.db.models import Instance
from dicom_node.ingest.receive import Receiver
from dicom_node.settings import NodeSettings
from dicom_node.store import DurableStore
from tests.support.datasets import new_instance, set_monochrome_pixels

LOCALHOST = "127.0.0.1"
NODE_AET = "DICOM_NODE"
SCU_AET = "TEST_SCU"

SettingsBuilder = Callable[..., NodeSettings]


# -- settings ------------------------------------------------------------------------------


def build_node_settings(tmp_path: Path, **overrides: Any) -> NodeSettings:
    """Settings for a node whose files all live under ``tmp_path``; ``overrides`` win."""
    values: dict[str, Any] = {
        "ae_title": NODE_AET,
        "bind_address": LOCALHOST,
        "port": 0,
        "storage_dir": tmp_path / "storage",
        "database_url": f"sqlite:///{tmp_path / 'node.sqlite'}",
        "model_dir": tmp_path / "models",
        "min_free_bytes": 0,
        "stable_after_seconds": 1.0,
        "stable_check_seconds": 0.2,
    }
    values.update(overrides)
    return NodeSettings(**values)


def _clear_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DICOM_NODE_*`` variables would override the values a test passes: drop them."""
    for name in list(os.environ):
        if name.startswith("DICOM_NODE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def node_settings(monkeypatch: pytest.MonkeyPatch) -> SettingsBuilder:
    """``node_settings(tmp_path, **overrides) -> NodeSettings``."""
    _clear_node_environment(monkeypatch)
    return build_node_settings


# -- the receiver --------------------------------------------------------------------------


@dataclass
class RunningReceiver:
    """A started receiver and what it writes to."""

    settings: NodeSettings
    receiver: Receiver
    engine: Engine
    store: DurableStore

    @property
    def port(self) -> int:
        return self.receiver.port

    @property
    def ae_title(self) -> str:
        return self.settings.ae_title

    @property
    def root(self) -> Path:
        return self.store.root

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """Where the node keeps an instance: ``<root>/<study>/<series>/<sop>.dcm``."""
        return self.root / study_uid / series_uid / f"{sop_uid}.dcm"

    def stored_files(self) -> list[Path]:
        """Every file under the storage root except the spool, sorted."""
        spool = self.store.spool_dir
        return sorted(
            p for p in self.root.rglob("*") if p.is_file() and not p.is_relative_to(spool)
        )

    def spool_files(self) -> list[Path]:
        return sorted(self.store.spool_dir.iterdir())

    def instances(self) -> list[Any]:
        """Rows of the ``instances`` table (``sop_instance_uid``, ``path``, ...)."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(Instance).order_by(Instance.id)).all())


def open_node_storage(
    settings: NodeSettings, engine: Engine | None = None
) -> tuple[Engine, DurableStore]:
    """A migrated database engine and the durable store the settings name."""
    engine = engine or make_engine(settings.database_url)
    migrate.upgrade(engine)
    store = DurableStore(settings.storage_dir, min_free_bytes=settings.min_free_bytes)
    return engine, store


@pytest.fixture
def receiver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., RunningReceiver]]:
    """Factory: ``receiver(settings=None, engine=None, **overrides) -> RunningReceiver``.

    Starts ``Receiver`` in this process on 127.0.0.1, port 0; every receiver started
    through the factory is stopped (and its engine disposed) in teardown.
    """
    _clear_node_environment(monkeypatch)
    started: list[RunningReceiver] = []

    def start(
        settings: NodeSettings | None = None,
        *,
        engine: Engine | None = None,
        **overrides: Any,
    ) -> RunningReceiver:
        if settings is None:
            settings = build_node_settings(tmp_path, **overrides)
        elif overrides:
            settings = NodeSettings(**{**settings.model_dump(), **overrides})
        own_engine, store = open_node_storage(settings, engine)
        node = Receiver(settings, store, own_engine)
        running = RunningReceiver(settings, node, own_engine, store)
        node.start()
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.receiver.stop()
        running.engine.dispose()


# -- datasets ------------------------------------------------------------------------------


def write_instance(
    path: Path,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    media_sop_uid: str | None = None,
    sop_class_uid: str = CTImageStorage,
    media_sop_class_uid: str | None = None,
    modality: str = "CT",
    rows: int = 16,
    columns: int = 16,
    seed: int = 0,
    series_description: str = "integration test",
    instance_number: int = 1,
) -> Path:
    """Write a small 16-bit monochrome image as Explicit VR Little Endian Part 10.

    Any UID may be given as an invalid value (value validation is off while writing);
    ``media_sop_uid`` / ``media_sop_class_uid`` set the file meta's SOP Instance / Class
    UID, which a C-STORE SCU sends as the request's Affected SOP Instance / Class UID
    (default: the data set's).
    """
    study_uid = study_uid if study_uid is not None else generate_uid()
    series_uid = series_uid if series_uid is not None else generate_uid()
    sop_uid = sop_uid if sop_uid is not None else generate_uid()
    with pydicom_config.disable_value_validation():
        ds = new_instance(
            sop_class_uid,
            sop_uid,
            study_uid=study_uid,
            series_uid=series_uid,
            modality=modality,
            media_sop_class_uid=media_sop_class_uid,
            media_sop_uid=media_sop_uid,
            filename=path,
        )
        ds.PatientName = "Test^Integration"
        ds.PatientID = "IT-0001"
        ds.StudyDate = "20240101"
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = instance_number
        set_monochrome_pixels(ds, rows, columns, seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not enforce_file_format: that would copy SOPInstanceUID into the file meta.
        ds.save_as(path, implicit_vr=False, little_endian=True)
    return path


@pytest.fixture
def make_instance(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_instance(name=None, **fields) -> Path`` (see ``write_instance``)."""
    counter = iter(range(1_000_000))

    def make(name: str | None = None, **fields: Any) -> Path:
        number = next(counter)
        fields.setdefault("seed", number)
        return write_instance(tmp_path / "datasets" / (name or f"instance-{number}.dcm"), **fields)

    return make


def testdata_file(name: str) -> Path:
    """A file shipped inside pydicom (never downloaded); skip if this pydicom lacks it."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not available offline")
    return Path(str(path))


@pytest.fixture
def testdata() -> Callable[[str], Path]:
    """``testdata(name) -> Path`` of a pydicom test file; skips if it is not installed."""
    return testdata_file


# -- a pynetdicom SCU ----------------------------------------------------------------------


def scu_ae(calling_aet: str = SCU_AET, timeout: float = 10) -> AE:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    return ae


@dataclass
class StoreOutcome:
    statuses: list[int | None] = field(default_factory=list)
    established: bool = False
    assoc: Association | None = None


def store_files(
    port: int,
    paths: Sequence[Path],
    *,
    calling_aet: str = SCU_AET,
    called_aet: str = NODE_AET,
    tls: tuple[ssl.SSLContext, str] | None = None,
    timeout: float = 10,
) -> StoreOutcome:
    """C-STORE each Part 10 file as it is (chunked: the bytes after the meta group).

    One association for all files; a request that fails on our side counts as ``None``.
    """
    ae = scu_ae(calling_aet, timeout)
    contexts: list[tuple[str, str]] = []
    for path in paths:
        meta, _offset = split_dataset(path)
        pair = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        if pair not in contexts:
            contexts.append(pair)
            ae.add_requested_context(pair[0], [pair[1]])
    outcome = StoreOutcome()
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate(LOCALHOST, port, ae_title=called_aet, tls_args=tls)
        outcome.assoc = assoc
        outcome.established = assoc.is_established
        if not assoc.is_established:
            return outcome
        try:
            for path in paths:
                try:
                    status = assoc.send_c_store(path)
                except (ValueError, AttributeError, RuntimeError):
                    outcome.statuses.append(None)
                    continue
                outcome.statuses.append(int(status.Status) if status else None)
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    return outcome


@pytest.fixture
def store_scu() -> Callable[..., StoreOutcome]:
    """``store_scu(port, paths, *, calling_aet=..., tls=None) -> StoreOutcome``."""
    return store_files


# -- TLS material --------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    """A private CA, a server certificate for localhost / 127.0.0.1 and a client one."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_cn: str = "GOOD-CLIENT"

    def client_context(self, *, with_client_cert: bool = False) -> ssl.SSLContext:
        """A client context that trusts only the test CA and checks the host name."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_cert))
        if with_client_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def _openssl(openssl: str, *args: str | Path) -> None:
    result = subprocess.run(
        [openssl, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_tls_files(folder: Path, openssl: str) -> TLSFiles:
    """Create the CA, server and client keys and certificates with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(
        ca_cert=folder / "ca.crt",
        ca_key=folder / "ca.key",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
    )
    _openssl(
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
        "-keyout", files.ca_key, "-out", files.ca_cert, "-subj", "/CN=dicom-node test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name, cn, extensions in (
        (
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ),
        ("client", files.client_cn, "extendedKeyUsage=clientAuth"),
    ):
        key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
        ext = folder / f"{name}.ext"
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            + extensions
            + "\n"
        )
        _openssl(
            openssl, "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
            "-keyout", key, "-out", csr, "-subj", f"/CN={cn}",
        )  # fmt: skip
        _openssl(
            openssl, "x509", "-req", "-in", csr, "-CA", files.ca_cert, "-CAkey", files.ca_key,
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext, "-out", cert,
        )  # fmt: skip
    return files


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """TLS keys and certificates made once per session with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed: apt-get install openssl")
    return make_tls_files(tmp_path_factory.mktemp("tls"), openssl)


@pytest.fixture
def storage_snapshot() -> Callable[[Path], dict[str, int]]:
    """``snapshot(folder) -> {relative path: size}`` of every file and folder below it."""

    def snapshot(folder: Path) -> dict[str, int]:
        found: dict[str, int] = {}
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                full = Path(dirpath) / name
                found[str(full.relative_to(folder))] = (
                    full.lstat().st_size if name in filenames else -1
                )
        return found

    return snapshot
