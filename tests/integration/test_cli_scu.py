"""`dicom-node echo` and `dicom-node send` as a user runs them, against a real receiver."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pydicom

from tests.integration.conftest import NODE_AET, RunningReceiver


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicom_node", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_echo_reports_success_and_refusal(receiver: Callable[..., RunningReceiver]) -> None:
    node = receiver()
    ok = _cli("echo", f"127.0.0.1:{node.port}", "--aec", NODE_AET)
    assert ok.returncode == 0, ok.stderr
    assert "success" in ok.stdout

    closed = _cli("echo", "127.0.0.1:1", "--aec", NODE_AET)
    assert closed.returncode == 1
    assert "no association" in closed.stderr


def test_echo_rejects_a_malformed_target() -> None:
    result = _cli("echo", "localhost")
    assert result.returncode == 1
    assert "HOST:PORT" in result.stderr


def test_send_a_folder_stores_every_file_once(
    receiver: Callable[..., RunningReceiver],
    make_instance: Callable[..., Path],
    testdata: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    node = receiver()
    folder = tmp_path / "to-send"
    made = [make_instance(f"s{i}.dcm", instance_number=i) for i in range(5)]
    for path in made:
        (folder / "nested").mkdir(parents=True, exist_ok=True)
        (folder / "nested" / path.name).write_bytes(path.read_bytes())
    compressed = testdata("JPEG2000.dcm")
    (folder / "j2k.dcm").write_bytes(compressed.read_bytes())
    (folder / "README.txt").write_text("not DICOM")

    result = _cli("send", str(folder), "--to", f"127.0.0.1:{node.port}", "--aec", NODE_AET)

    assert result.returncode == 0, result.stderr
    assert "sent 6 of 6" in result.stdout
    assert "skipped" in result.stderr and "README.txt" in result.stderr
    sops = sorted(row.sop_instance_uid for row in node.instances())
    expected = sorted(
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in [*made, compressed]
    )
    assert sops == expected
    j2k_uid = str(pydicom.dcmread(compressed, stop_before_pixels=True).SOPInstanceUID)
    stored = next(p for p in node.stored_files() if p.name == f"{j2k_uid}.dcm")
    assert pydicom.dcmread(stored).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.91"


def test_send_reports_refused_files_and_exits_nonzero(
    receiver: Callable[..., RunningReceiver], make_instance: Callable[..., Path]
) -> None:
    node = receiver(max_dataset_bytes=1024)
    big = make_instance("big.dcm", rows=64, columns=64)
    result = _cli("send", str(big), "--to", f"127.0.0.1:{node.port}", "--aec", NODE_AET)
    assert result.returncode == 1
    assert "0xA701" in result.stderr
    assert node.instances() == []


def test_send_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("send", str(tmp_path / "nope"), "--to", "127.0.0.1:11112")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
