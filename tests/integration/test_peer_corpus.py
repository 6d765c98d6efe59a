"""Real-world test files, every transfer syntax and many quirks, sent by dcmtk's
``dcmsend --no-halt`` in one association to the node and to a real Orthanc (issue 25).

The corpus is pydicom's own test files and pydicom-data's (a test dependency). Every
instance must get a status from the node wherever Orthanc gave one, the node must not
abort the association, it must accept at least every instance Orthanc accepts, and what
it accepts is stored byte-exact: the data set after the meta group is the one Orthanc
stored from the same sender. On failure the per-file table (file, transfer syntax, node
status, Orthanc status) is printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom.dsutils import split_dataset

from tests.integration.conftest import NODE_AET
from tests.peers import OrthancProcess, require_tool
from training.ct_body_part.real_slices import RealSlice, real_slice_path

pytestmark = [
    pytest.mark.peers,
    pytest.mark.timeout(300),
    # pydicom warns about each quirk while the node reads the headers.
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

SUCCESS = "0x0000"


@dataclass(frozen=True)
class Sent:
    file: str  # relative to the corpus folder
    transfer_syntax: str
    status: str  # "0x0000 (Success)", "<not sent>", ...

    @property
    def answered(self) -> bool:
        """The peer answered with a DIMSE status (dcmsend could read and send it)."""
        return self.status.startswith("0x")


def corpus(folder: Path) -> Path:
    """pydicom's test files and pydicom-data's files, copied under ``folder``."""
    pydicom_files = Path(pydicom.__file__).parent / "data" / "test_files"
    pydicom_data = real_slice_path(RealSlice("any", "pydicom-data", "693_UNCI.dcm")).parent
    shutil.copytree(pydicom_files, folder / "pydicom")
    shutil.copytree(pydicom_data, folder / "pydicom-data")
    return folder


def dcmsend(port: int, aet: str, folder: Path, report: Path) -> dict[str, Sent]:
    """``dcmsend --no-halt`` of every file under ``folder`` (one association where it can)
    and its per-file report."""
    subprocess.run(
        [require_tool("dcmsend"), "-aec", aet, "--no-halt", "--scan-directories", "--recurse",
         "--create-report-file", str(report), "127.0.0.1", str(port), str(folder)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    sent: dict[str, Sent] = {}
    for block in report.read_text(errors="replace").split("\n\n"):
        fields = dict(re.findall(r"^(\w[\w .]*?)\s*: (.*)$", block, re.MULTILINE))
        if "Filename" in fields:
            name = str(Path(fields["Filename"]).relative_to(folder))
            syntax = fields.get("Original Xfer", "?").split(" = ")[-1]
            sent[name] = Sent(name, syntax, fields.get("DIMSE Status", "?"))
    return sent


def after_meta(path: Path) -> bytes:
    _meta, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def orthanc_datasets(storage: Path) -> dict[str, bytes]:
    """SOP Instance UID → data set bytes of every DICOM file Orthanc stored."""
    found: dict[str, bytes] = {}
    for path in storage.rglob("*"):
        if not path.is_file():
            continue
        try:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        except Exception:  # noqa: BLE001  # Orthanc's index and other files
            continue
        found[uid] = after_meta(path)
    return found


def table(node: dict[str, Sent], orthanc: dict[str, Sent]) -> str:
    rows = [f"{'file':60} {'transfer syntax':34} {'node':34} orthanc"]
    for name in sorted(set(node) | set(orthanc)):
        mine, theirs = node.get(name), orthanc.get(name)
        syntax = (mine or theirs).transfer_syntax if (mine or theirs) else "?"  # type: ignore[union-attr]
        rows.append(
            f"{name:60} {syntax[:34]:34} {mine.status if mine else 'absent':34} "
            f"{theirs.status if theirs else 'absent'}"
        )
    return "\n".join(rows)


def test_the_peer_corpus_gets_a_status_for_every_instance_and_no_abort(
    tmp_path: Path, receiver: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    folder = corpus(tmp_path / "corpus")
    node = receiver()
    node_sent = dcmsend(node.port, NODE_AET, folder, tmp_path / "node-report.txt")
    with OrthancProcess(workdir=tmp_path / "orthanc", graceful_stop=False) as orthanc:
        orthanc_sent = dcmsend(
            orthanc.dicom_port, orthanc.aet, folder, tmp_path / "orthanc-report.txt"
        )
        stored_by_orthanc = orthanc_datasets(orthanc.storage_dir)
    summary = (
        f"node: {Counter(s.status for s in node_sent.values())}\n"
        f"orthanc: {Counter(s.status for s in orthanc_sent.values())}\n"
        + table(node_sent, orthanc_sent)
    )
    print(summary)  # the table in the test's output, pass or fail

    assert len(node_sent) == len(orthanc_sent) > 200, summary
    # Wherever Orthanc answered, the node answered too: no abort cut the send short.
    unanswered = [n for n, s in orthanc_sent.items() if s.answered and not node_sent[n].answered]
    assert unanswered == [], f"no status from the node for {unanswered}\n{summary}"
    assert "No supported service class" not in caplog.text
    # The node accepts at least every instance Orthanc accepts.
    refused = [
        n
        for n, s in orthanc_sent.items()
        if s.status.startswith(SUCCESS) and not node_sent[n].status.startswith(SUCCESS)
    ]
    assert refused == [], f"Orthanc accepted, the node did not: {refused}\n{summary}"
    # What the node stored is what it was sent: the same data set Orthanc stored.
    rows = {r.sop_instance_uid: r.path for r in node.instances()}
    differing = [
        uid
        for uid, path in rows.items()
        if uid in stored_by_orthanc and after_meta(node.root / path) != stored_by_orthanc[uid]
    ]
    assert differing == [], f"stored data sets differ from Orthanc's: {differing}\n{summary}"
    assert node.spool_files() == []
