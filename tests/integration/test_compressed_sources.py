"""The pipelines read sources in the lossless transfer syntaxes PACS archives send.

Sources are compressed by programs other than the node's decoders — dcmtk's JPEG
Lossless SV1 (``dcmcjpeg``, the syntax most lossless CT and CR/DX archives hold),
JPEG-LS lossless (``dcmcjpls``) and RLE (``dcmcrle``), GDCM's JPEG 2000 lossless
(``gdcmconv --j2k``) and OpenJPH's HTJ2K lossless (``ojph_compress``, the reference
HTJ2K coder; the frames are wrapped into DICOM here) — and must decode exactly as their
uncompressed twins:

- ``ct_body_part``: a synthetic phantom series, as single-frame files and as one
  multi-frame image (Legacy Converted Enhanced CT), to the same Hounsfield units in the
  same geometric order;
- the film pipelines: a synthetic 16-bit DX hand film, to the same display image.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from pipelines.ct_body_part.volume import read_ct_geometry, read_slices_hu
from pipelines.film_io import read_film
from tests.integration.conftest import NODE_AET, RunningReceiver
from tests.peers import require_tool
from tests.support.datasets import synthetic_dx
from training.synthetic.ct_phantoms import write_ct_study, write_multi_frame_ct

pytestmark = [pytest.mark.peers, pytest.mark.timeout(300)]


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr or result.stdout


def _by_tool(tool: str, *options: str) -> Callable[[Path, Path], None]:
    """A DICOM-to-DICOM compressor such as dcmtk's ``dcmcjpeg`` or GDCM's ``gdcmconv``."""

    def compress(source: Path, target: Path) -> None:
        _run([require_tool(tool), *options, str(source), str(target)])

    return compress


def _htj2k_by_openjph(source: Path, target: Path) -> None:
    """Every frame's stored values through ``ojph_compress`` (reversible, lossless) as an
    unsigned codestream of Bits Stored bits, wrapped into ``target`` as HTJ2K Lossless.

    Signed CT pixels thus go in as their two's complement bits, a codestream that says
    "unsigned" under a Pixel Representation of 1: a layout real encoders write and the
    decoder must sign-correct. (Debian 12's OpenJPH 0.9 cannot stand in for an encoder
    that writes a signed codestream: OpenJPEG reads its negative samples as other
    values, apparently OpenJPH issue #102, an interoperability bug fixed after 0.9.)"""
    tool = require_tool("ojph_compress")
    dataset = pydicom.dcmread(source)
    stored = dataset.pixel_array
    frames = stored if int(dataset.get("NumberOfFrames", 1)) > 1 else stored[np.newaxis]
    bits = int(dataset.BitsStored)
    codestreams = []
    for index, frame in enumerate(frames):
        raw = target.parent / f"{target.stem}-{index}.raw"
        codestream = raw.with_suffix(".j2c")
        frame.astype("<u2" if bits <= 16 else "<u4").tofile(raw)  # two's complement kept
        options = {
            "-i": raw,
            "-o": codestream,
            "-dims": f"{{{frame.shape[1]},{frame.shape[0]}}}",
            "-num_comps": 1,
            "-signed": "false",
            "-bit_depth": bits,
            "-downsamp": "{1,1}",
            "-reversible": "true",
        }
        _run([tool, *(str(part) for pair in options.items() for part in pair)])
        codestreams.append(codestream.read_bytes())
        raw.unlink()
        codestream.unlink()
    dataset.PixelData = encapsulate(codestreams)
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = HTJ2KLossless
    dataset.save_as(target, enforce_file_format=True)


#: The compressor of each syntax.
ENCODERS: dict[str, Callable[[Path, Path], None]] = {
    JPEGLosslessSV1: _by_tool("dcmcjpeg", "+e1"),
    JPEGLSLossless: _by_tool("dcmcjpls", "+el"),
    RLELossless: _by_tool("dcmcrle"),
    JPEG2000Lossless: _by_tool("gdcmconv", "--j2k"),
    HTJ2KLossless: _htj2k_by_openjph,
}


def _compress(source: Path, target: Path, syntax: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    ENCODERS[syntax](source, target)
    assert pydicom.dcmread(target, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    return target


def _as_unsigned_with_intercept(source: Path, target: Path) -> Path:
    """``source`` (signed, intercept 0) stored as many scanners do: unsigned values with a
    Rescale Intercept of -1024, the same Hounsfield units."""
    dataset = pydicom.dcmread(source)
    hu = dataset.pixel_array.astype(np.int32) * int(dataset.RescaleSlope) + int(
        dataset.RescaleIntercept
    )
    assert hu.min() >= -1024
    dataset.PixelRepresentation = 0
    dataset.RescaleIntercept = "-1024"
    dataset.PixelData = (hu + 1024).astype("<u2").tobytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(target, enforce_file_format=True)
    return target


def _assert_same_series(expected_files: list[Path], found_files: list[Path]) -> None:
    expected = read_ct_geometry(expected_files)
    found = read_ct_geometry(found_files)
    assert [s.z_mm for s in found.slices] == [s.z_mm for s in expected.slices]
    assert [s.frame for s in found.slices] == [s.frame for s in expected.slices]
    pairs = zip(read_slices_hu(expected.slices), read_slices_hu(found.slices), strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    assert len(found) == len(expected)


@pytest.mark.parametrize("form", ["single-frame", "multi-frame"])
@pytest.mark.parametrize("syntax", list(ENCODERS), ids=lambda uid: uid.keyword)
def test_compressed_ct_decodes_to_the_uncompressed_hounsfield_units(
    tmp_path: Path, syntax: str, form: str
) -> None:
    written = write_ct_study(
        tmp_path / "plain", 77, size=64, max_slices=10, region="chest_abdomen_pelvis"
    )
    plain = list(written.files)
    if form == "multi-frame":
        plain = [write_multi_frame_ct(written, tmp_path / "plain-multi-frame" / "image.dcm")]
    assert int(pydicom.dcmread(plain[0]).pixel_array.min()) < 0  # signed, negative values
    compressed = [_compress(p, tmp_path / "compressed" / p.name, syntax) for p in plain]
    _assert_same_series(plain, compressed)
    assert len(read_ct_geometry(compressed)) == len(written.files)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, HTJ2KLossless], ids=lambda uid: uid.keyword)
def test_unsigned_ct_with_an_intercept_decodes_to_the_same_hounsfield_units(
    tmp_path: Path, syntax: str
) -> None:
    written = write_ct_study(
        tmp_path / "plain", 78, size=64, max_slices=6, region="chest_abdomen_pelvis"
    )
    unsigned = [
        _as_unsigned_with_intercept(p, tmp_path / "unsigned" / p.name) for p in written.files
    ]
    compressed = [_compress(p, tmp_path / "compressed" / p.name, syntax) for p in unsigned]
    _assert_same_series(list(written.files), compressed)


@pytest.mark.parametrize("syntax", list(ENCODERS), ids=lambda uid: uid.keyword)
def test_a_compressed_film_reads_as_its_uncompressed_twin(tmp_path: Path, syntax: str) -> None:
    plain = tmp_path / "plain.dcm"
    synthetic_dx().save_as(plain, enforce_file_format=True)
    compressed = _compress(plain, tmp_path / "compressed.dcm", syntax)
    expected, found = read_film(plain), read_film(compressed)
    np.testing.assert_array_equal(found.display, expected.display)
    assert len(np.unique(expected.display)) > 100


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, HTJ2KLossless], ids=lambda uid: uid.keyword)
def test_the_node_receives_and_reads_a_compressed_series_as_sent(
    tmp_path: Path, syntax: str, receiver: Callable[..., RunningReceiver]
) -> None:
    """``dicom-node send`` (the files' own syntax proposed) to a real receiver; the stored
    files keep the syntax and read to the uncompressed series' Hounsfield units."""
    written = write_ct_study(
        tmp_path / "plain", 79, size=64, max_slices=6, region="chest_abdomen_pelvis"
    )
    compressed = [_compress(p, tmp_path / "sent" / p.name, syntax) for p in written.files]
    node = receiver()
    sent = subprocess.run(
        [sys.executable, "-m", "dicom_node", "send", str(tmp_path / "sent")]
        + ["--to", f"127.0.0.1:{node.port}", "--aec", NODE_AET, "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    stored = node.stored_files()
    assert len(stored) == len(compressed)
    for path in stored:
        assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    _assert_same_series(list(written.files), stored)
