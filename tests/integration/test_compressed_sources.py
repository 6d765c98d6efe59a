"""The pipelines read sources in the lossless transfer syntaxes PACS archives send.

Sources are compressed by dcmtk — JPEG Lossless SV1 (``dcmcjpeg``, the syntax most
lossless CT and CR/DX archives hold), JPEG-LS lossless (``dcmcjpls``) and RLE
(``dcmcrle``) — and must decode exactly as their uncompressed twins:

- ``ct_body_part``: a synthetic phantom series, as single-frame files and as one
  multi-frame image (Legacy Converted Enhanced CT), to the same Hounsfield units in the
  same geometric order;
- the film pipelines: a synthetic 16-bit DX hand film, to the same display image.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLosslessSV1, JPEGLSLossless, RLELossless

from pipelines.ct_body_part.volume import read_ct_geometry, read_slices_hu
from pipelines.film_io import read_film
from tests.peers import require_tool
from tests.support.datasets import synthetic_dx
from training.synthetic.ct_phantoms import write_ct_study, write_multi_frame_ct

pytestmark = [pytest.mark.peers, pytest.mark.timeout(300)]

#: dcmtk's encoder and its options for each syntax.
ENCODERS = {
    JPEGLosslessSV1: ("dcmcjpeg", ["+e1"]),
    JPEGLSLossless: ("dcmcjpls", ["+el"]),
    RLELossless: ("dcmcrle", []),
}


def _compress(source: Path, target: Path, syntax: str) -> Path:
    tool, options = ENCODERS[syntax]
    target.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [require_tool(tool), *options, str(source), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr or result.stdout
    assert pydicom.dcmread(target, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    return target


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
    compressed = [_compress(p, tmp_path / "compressed" / p.name, syntax) for p in plain]

    expected = read_ct_geometry(plain)
    found = read_ct_geometry(compressed)
    assert [s.z_mm for s in found.slices] == [s.z_mm for s in expected.slices]
    assert [s.frame for s in found.slices] == [s.frame for s in expected.slices]
    pairs = zip(read_slices_hu(expected.slices), read_slices_hu(found.slices), strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    assert len(found) == len(written.files)


@pytest.mark.parametrize("syntax", list(ENCODERS), ids=lambda uid: uid.keyword)
def test_a_compressed_film_reads_as_its_uncompressed_twin(tmp_path: Path, syntax: str) -> None:
    plain = tmp_path / "plain.dcm"
    synthetic_dx().save_as(plain, enforce_file_format=True)
    compressed = _compress(plain, tmp_path / "compressed.dcm", syntax)
    expected, found = read_film(plain), read_film(compressed)
    np.testing.assert_array_equal(found.display, expected.display)
    assert len(np.unique(expected.display)) > 100
