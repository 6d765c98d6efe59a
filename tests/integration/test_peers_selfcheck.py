"""The real-peer helpers in ``tests.peers`` work: each starts, answers and stops."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from tests.peers import (
    OrthancError,
    OrthancProcess,
    PostgresProcess,
    StorescpProcess,
    dciodvfy,
    echoscu,
    free_port,
    require_tool,
    storescu,
    wait_for_port,
    wait_until,
)

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]


@pytest.fixture
def ct_small() -> Path:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    return Path(path)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_until_returns_value_and_times_out_with_message() -> None:
    calls = iter([0, 0, 7])
    assert wait_until(lambda: next(calls), timeout=5, interval=0.01) == 7
    with pytest.raises(TimeoutError, match="never true"):
        wait_until(lambda: False, timeout=0.1, interval=0.01, message="never true")


def test_wait_for_port_times_out_on_a_closed_port() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="127.0.0.1"):
        wait_for_port("127.0.0.1", free_port(), timeout=0.3)
    assert time.monotonic() - started < 5


def test_require_tool_skips_naming_the_debian_package() -> None:
    with pytest.raises(pytest.skip.Exception, match="apt-get install no-such-tool-xyz"):
        require_tool("no-such-tool-xyz")


def test_require_tool_finds_dcmtk_not_pynetdicom_scripts() -> None:
    path = require_tool("storescu")
    assert "/.venv/" not in path
    help_text = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    assert "dcmtk" in help_text.lower()


def test_storescp_receives_from_storescu(ct_small: Path) -> None:
    with StorescpProcess(aet="TEST_SCP", tcp_nodelay=True) as scp:
        assert echoscu(scp.port, aec=scp.aet).returncode == 0
        result = storescu(scp.port, [ct_small], aec=scp.aet, env={"TCP_NODELAY": "1"})
        assert result.returncode == 0, result.stderr
        received = wait_until(scp.received_files, timeout=10, message="storescp wrote no file")
        assert isinstance(received, list) and len(received) == 1
        assert dcmread(received[0]).SOPInstanceUID == dcmread(ct_small).SOPInstanceUID
    assert scp.process is not None and scp.process.poll() is not None


def test_orthanc_starts_answers_and_accepts_an_upload(ct_small: Path) -> None:
    with OrthancProcess(aet="TEST_ORTHANC", tcp_nodelay=True) as orthanc:
        system = orthanc.system()
        assert system["DicomAet"] == "TEST_ORTHANC"
        assert system["DicomPort"] == orthanc.dicom_port
        assert orthanc.instance_count() == 0
        answer = orthanc.upload(ct_small)
        assert answer["Status"] == "Success"
        assert orthanc.instance_count() == 1
        assert echoscu(orthanc.dicom_port, aec=orthanc.aet).returncode == 0
        with pytest.raises(OrthancError, match="HTTP 404"):
            orthanc.rest("GET", "/instances/does-not-exist")
    assert orthanc.process is not None and orthanc.process.poll() is not None


def test_orthanc_receives_c_store_and_sends_to_a_modality(ct_small: Path) -> None:
    with StorescpProcess(aet="TEST_SCP") as scp:
        modalities = {"scp": ["TEST_SCP", "127.0.0.1", scp.port]}
        with OrthancProcess(modalities=modalities) as orthanc:
            result = storescu(orthanc.dicom_port, [ct_small], aec=orthanc.aet)
            assert result.returncode == 0, result.stderr
            assert orthanc.instance_count() == 1
            (instance_id,) = orthanc.instances()
            answer = orthanc.store_to_modality("scp", [instance_id])
            assert answer["InstancesCount"] == 1
            assert len(scp.received_files()) == 1


def test_postgres_answers_through_sqlalchemy() -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    with PostgresProcess(dbname="selfcheck") as pg:
        assert pg.url.startswith("postgresql+psycopg://")
        engine = sqlalchemy.create_engine(pg.url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("select 1")).scalar_one() == 1
                assert conn.execute(sqlalchemy.text("select current_database()")).scalar_one() == (
                    "selfcheck"
                )
        finally:
            engine.dispose()
        root = pg.root
    assert root is not None and not root.exists()


def test_dciodvfy_reports_warnings_and_errors(ct_small: Path, tmp_path: Path) -> None:
    errors, warnings = dciodvfy(ct_small)
    assert errors == []
    assert warnings and all(w.startswith("Warning") for w in warnings)

    broken = tmp_path / "broken.dcm"
    ds = dcmread(ct_small)
    del ds.Rows
    ds.save_as(broken)
    errors, _ = dciodvfy(broken)
    assert any("Rows" in e for e in errors), errors
