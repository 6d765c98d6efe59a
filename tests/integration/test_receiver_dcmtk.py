"""The receiver against dcmtk's echoscu / storescu and the node's own SCU.

Every stored file must land once at ``<root>/<study>/<series>/<sop>.dcm`` with one
``instances`` row, and compressed transfer syntaxes must be stored as received: the
same transfer syntax, and the dataset bytes after the file meta group unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian as DEFLATED
from pydicom.uid import generate_uid
from pynetdicom.dsutils import split_dataset

from dicom_node.net.scu import SendReport, inspect_files, send_files
from tests.peers import StorescpProcess, echoscu, storescu

pytestmark = pytest.mark.timeout(60)

# (pydicom test file, storescu flag that proposes its transfer syntax)
COMPRESSED = [
    pytest.param("SC_rgb_jpeg_dcmtk.dcm", "-xy", id="jpeg-baseline"),
    pytest.param("JPEG-lossy.dcm", "-xx", id="jpeg-extended-12bit"),
    pytest.param("SC_rgb_jpeg_gdcm.dcm", "-xs", id="jpeg-lossless-sv1"),
    pytest.param("MR_small_jpeg_ls_lossless.dcm", "-xt", id="jpeg-ls-lossless"),
    pytest.param("JPEGLSNearLossless_16.dcm", "-xu", id="jpeg-ls-near-lossless-16bit"),
    pytest.param("SC_rgb_jls_lossy_line.dcm", "-xu", id="jpeg-ls-near-lossless-rgb"),
    pytest.param("MR_small_jp2klossless.dcm", "-xv", id="jpeg2000-lossless"),
    pytest.param("JPEG2000.dcm", "-xw", id="jpeg2000"),
    pytest.param("SC_rgb_rle.dcm", "-xr", id="rle"),
    pytest.param("MR_small_RLE.dcm", "-xr", id="rle-16bit"),
    pytest.param("image_dfl.dcm", "-xd", id="deflated"),
]


def after_meta(path: Path) -> bytes:
    """The encoded dataset after the preamble and the file meta group."""
    _meta, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def inflated(data: bytes) -> bytes:
    return zlib.decompress(data, -zlib.MAX_WBITS)


def comparable(path: Path) -> bytes:
    """Dataset bytes after the meta group; inflated for the deflated transfer syntax."""
    data = after_meta(path)
    if dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == DEFLATED:
        return inflated(data)
    return data


def source_file(testdata: Callable[[str], Path], name: str, folder: Path) -> Path:
    """The pydicom test file, or a copy with the Study/Series UIDs it lacks filled in.

    (pydicom's JPEG-LS near-lossless samples carry no Study or Series Instance UID; the
    node rightly refuses those with 0xC001.) The encapsulated pixel data is kept as is.
    """
    path = testdata(name)
    ds = dcmread(path)
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID") if k not in ds]
    if not missing:
        return path
    for keyword in missing:
        setattr(ds, keyword, generate_uid())
    copy = folder / name
    ds.save_as(copy, enforce_file_format=True)
    return copy


def uids(path: Path) -> tuple[str, str, str]:
    ds = dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def assert_stored_once(node: Any, sources: list[Path]) -> dict[str, Path]:
    """Each source is in place once, with its row; return {SOP Instance UID: stored path}."""
    expected: dict[str, Path] = {}
    for source in sources:
        study, series, sop = uids(source)
        expected[sop] = node.path_for(study, series, sop)
    assert sorted(node.stored_files()) == sorted(expected.values())
    rows = node.instances()
    assert sorted(r.sop_instance_uid for r in rows) == sorted(expected)
    for row in rows:
        assert node.root / row.path == expected[row.sop_instance_uid]
        assert row.size_bytes == expected[row.sop_instance_uid].stat().st_size
    assert node.spool_files() == []
    return expected


@pytest.mark.peers
def test_echoscu_gets_success(receiver: Callable[..., Any]) -> None:
    node = receiver()
    result = echoscu(node.port, aet="ECHOSCU", aec=node.ae_title, timeout=10)
    assert result.returncode == 0, result.stderr


@pytest.mark.peers
def test_storescu_stores_each_file_once(
    receiver: Callable[..., Any],
    make_instance: Callable[..., Path],
    testdata: Callable[[str], Path],
) -> None:
    node = receiver()
    study, series = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.1.1"
    generated = [
        make_instance(study_uid=study, series_uid=series, instance_number=n) for n in range(1, 4)
    ]
    sources = [testdata("CT_small.dcm"), testdata("MR_small.dcm"), *generated]

    result = storescu(node.port, sources, aet="STORESCU", aec=node.ae_title, timeout=30)

    assert result.returncode == 0, result.stderr
    stored = assert_stored_once(node, sources)
    for source in sources:
        copy = dcmread(stored[uids(source)[2]])
        original = dcmread(source)
        assert copy.PixelData == original.PixelData
    calling = {r.calling_ae_title for r in node.instances()}
    assert calling == {"STORESCU"}


@pytest.mark.peers
@pytest.mark.parametrize(("name", "flag"), COMPRESSED)
def test_storescu_compressed_syntax_stored_as_received(
    receiver: Callable[..., Any],
    testdata: Callable[[str], Path],
    tmp_path: Path,
    name: str,
    flag: str,
) -> None:
    """storescu proposes only the file's compressed syntax; the node keeps it as sent.

    dcmtk re-encodes what it sends (encapsulated Pixel Data as OB, no trailing padding),
    so the reference for "as sent" is dcmtk's own storescp receiving the same file.
    """
    source = source_file(testdata, name, tmp_path)
    original = dcmread(source)
    syntax = original.file_meta.TransferSyntaxUID
    node = receiver()

    result = storescu(node.port, [source], aec=node.ae_title, extra_args=[flag], timeout=30)

    assert result.returncode == 0, result.stdout + result.stderr
    [stored] = assert_stored_once(node, [source]).values()
    copy = dcmread(stored)
    assert copy.file_meta.TransferSyntaxUID == syntax
    assert node.instances()[0].transfer_syntax_uid == syntax
    assert copy.PixelData == original.PixelData
    with StorescpProcess() as reference:
        sent = storescu(reference.port, [source], aec=reference.aet, extra_args=[flag])
        assert sent.returncode == 0, sent.stdout + sent.stderr + reference.log_tail()
        [dcmtk_copy] = reference.received_files()
        assert comparable(stored) == comparable(dcmtk_copy)


@pytest.mark.parametrize(("name", "flag"), COMPRESSED)
def test_send_files_compressed_syntax_byte_exact(
    receiver: Callable[..., Any],
    testdata: Callable[[str], Path],
    tmp_path: Path,
    name: str,
    flag: str,
) -> None:
    """The node's SCU proposes the file's own syntax and sends the bytes after the meta
    group unchanged; the stored file's bytes after its meta group are the original's."""
    source = source_file(testdata, name, tmp_path)
    node = receiver()
    report = SendReport()
    files = inspect_files([source], report)

    report = send_files(
        files, "127.0.0.1", node.port, calling_aet="NODE_SCU", called_aet=node.ae_title
    )

    assert (report.sent, report.failed, report.skipped) == (1, [], [])
    [stored] = assert_stored_once(node, [source]).values()
    assert dcmread(stored).file_meta.TransferSyntaxUID == files[0].transfer_syntax_uid
    assert after_meta(stored) == after_meta(source)
