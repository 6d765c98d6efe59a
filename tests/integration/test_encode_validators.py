"""Every object the encoder makes passes dicom3tools' ``dciodvfy`` and dcmtk's ``dsrdump``.

For each source set (pydicom's CT and MR slices, a synthetic DX hand film series) the
demo result is encoded — one SR with measurements and findings and one SC image of each
kind — and each file is validated. ``dciodvfy`` must report no errors; its warnings are
printed (run with ``-s`` to see them). ``dsrdump`` must parse every SR.

Grayscale Softcopy Presentation States are validated for every rotation (0, 90, 180,
270) with and without the flip, built from the synthetic DX film (and its MONOCHROME1 and
VOI LUT variants, and the CT and MR slices). dcmtk's ``dcmp2pgm`` then renders the film
through each presentation state: the picture must be the film as rendered on its own,
rotated clockwise and flipped as asked, with the same grey levels.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file

from dicom_node.output.encode import DeviceIdentity, encode_result, write_output
from pipelines import PipelineResult, PresentationTransform
from tests.peers import dciodvfy, find_tool, require_tool
from tests.support.datasets import SOURCE_SETS, synthetic_dx
from tests.support.pipelines import SC_KINDS, demo_result

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

DEVICE = DeviceIdentity(ae_title="DICOM_NODE", software_version="0.1.0")
UID_ROOT = "1.2.826.0.1.3680043.8.498.99"
OUTPUT_KINDS = ["sr", *(f"sc-{name}" for name in SC_KINDS.values())]


def _encode(source_set: str, folder: Path) -> dict[str, Path]:
    """The demo result's objects for one source set, written; by output kind."""
    sources = SOURCE_SETS[source_set]()
    outputs = encode_result(demo_result(sources, "3"), sources, device=DEVICE, uid_root=UID_ROOT)
    assert [o.kind for o in outputs] == ["sr"] + ["sc"] * len(SC_KINDS)
    return {kind: write_output(o, folder) for kind, o in zip(OUTPUT_KINDS, outputs, strict=True)}


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
@pytest.mark.parametrize("source_set", sorted(SOURCE_SETS))
def test_dciodvfy_finds_no_errors(source_set: str, kind: str, tmp_path: Path) -> None:
    require_tool("dciodvfy")
    path = _encode(source_set, tmp_path)[kind]
    errors, warnings = dciodvfy(path)
    print(f"\ndciodvfy {source_set} {kind}: {len(errors)} error(s), {len(warnings)} warning(s)")
    for line in warnings:
        print(f"  {line}")
    assert errors == [], "\n".join(errors)


@pytest.mark.parametrize("source_set", sorted(SOURCE_SETS))
def test_dsrdump_parses_every_sr(source_set: str, tmp_path: Path) -> None:
    dsrdump = require_tool("dsrdump")
    path = _encode(source_set, tmp_path)["sr"]
    result = subprocess.run(
        [dsrdump, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr or result.stdout
    assert "Imaging Measurement Report" in result.stdout
    assert "Comprehensive SR Document" in result.stdout
    assert "reporting_demo" in result.stdout  # algorithm name and device model name


# -- Grayscale Softcopy Presentation States ---------------------------------------------------

TRANSFORMS = [(rotation, flip) for rotation in (0, 90, 180, 270) for flip in (False, True)]


def _monochrome1_film() -> Dataset:
    film = synthetic_dx(1)
    film.PhotometricInterpretation = "MONOCHROME1"
    film.PresentationLUTShape = "INVERSE"
    return film


def _voi_lut_film() -> Dataset:
    film = synthetic_dx(1)
    del film.WindowCenter, film.WindowWidth
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.LUTExplanation = "film response"
    lut.add_new("LUTData", "US", [min(65535, int(v**0.5 * 1024)) for v in range(4096)])
    film.VOILUTSequence = [lut]
    return film


def _windowed_film() -> Dataset:
    film = synthetic_dx(1)
    film.WindowCenter = "1500"
    film.WindowWidth = "1000"
    return film


#: Sources of a presentation state: whole images (pixel data included, for rendering).
GSPS_SOURCES: dict[str, Callable[[], Dataset]] = {
    "dx": lambda: synthetic_dx(1),
    "dx-window": _windowed_film,
    "dx-monochrome1": _monochrome1_film,
    "dx-voi-lut": _voi_lut_film,
    "ct": lambda: pydicom.dcmread(_testdata("CT_small.dcm")),
    "mr": lambda: pydicom.dcmread(_testdata("MR_small.dcm")),
}


def _testdata(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, name
    return str(path)


def _gsps(source: Dataset, rotation: int, flip: bool, folder: Path) -> Path:
    header = copy.deepcopy(source)
    del header.PixelData  # the encoder sees headers only, as in the worker
    transform = PresentationTransform(str(source.SOPInstanceUID), rotation, flip)
    result = PipelineResult("hand_orientation", "3", presentation_transforms=(transform,))
    (output,) = encode_result(result, [header], device=DEVICE, uid_root=UID_ROOT)
    assert output.kind == "gsps"
    return write_output(output, folder)


@pytest.mark.parametrize(("rotation", "flip"), TRANSFORMS)
def test_dciodvfy_finds_no_errors_in_gsps(rotation: int, flip: bool, tmp_path: Path) -> None:
    require_tool("dciodvfy")
    path = _gsps(synthetic_dx(1), rotation, flip, tmp_path)
    errors, warnings = dciodvfy(path)
    print(
        f"\ndciodvfy gsps {rotation} flip={flip}: {len(errors)} error(s), {len(warnings)} warning(s)"
    )
    for line in warnings:
        print(f"  {line}")
    assert errors == [], "\n".join(errors)


@pytest.mark.parametrize("source", sorted(GSPS_SOURCES))
def test_dciodvfy_finds_no_errors_in_gsps_of_other_sources(source: str, tmp_path: Path) -> None:
    require_tool("dciodvfy")
    path = _gsps(GSPS_SOURCES[source](), 90, True, tmp_path)
    errors, warnings = dciodvfy(path)
    print(f"\ndciodvfy gsps of {source}: {len(errors)} error(s), {len(warnings)} warning(s)")
    for line in warnings:
        print(f"  {line}")
    assert errors == [], "\n".join(errors)


def _render(
    image: Path, target: Path, presentation_state: Path | None = None
) -> npt.NDArray[np.uint8]:
    """``dcmp2pgm`` renders ``image`` (through ``presentation_state``) to an 8-bit PGM."""
    exe = find_tool("dcmp2pgm")
    if exe is None:
        pytest.skip("dcmp2pgm not installed: apt-get install dcmtk")
    command = [exe, str(image), str(target)]
    if presentation_state is not None:
        command[1:1] = ["--pstate", str(presentation_state)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr or result.stdout
    data = target.read_bytes()
    magic, width, height, maximum = data.split(maxsplit=4)[:4]
    assert (magic, maximum) == (b"P5", b"255")
    size = int(width) * int(height)
    return np.frombuffer(data[-size:], np.uint8).reshape(int(height), int(width))


@pytest.mark.parametrize("source", sorted(GSPS_SOURCES))
@pytest.mark.parametrize(("rotation", "flip"), TRANSFORMS)
def test_dcmtk_renders_the_source_rotated_and_flipped(
    source: str, rotation: int, flip: bool, tmp_path: Path
) -> None:
    image = GSPS_SOURCES[source]()
    image_path = tmp_path / "image.dcm"
    image.save_as(image_path, enforce_file_format=True)
    plain = _render(image_path, tmp_path / "plain.pgm")
    assert plain.max() > plain.min()  # something to see
    shown = _render(image_path, tmp_path / "shown.pgm", _gsps(image, rotation, flip, tmp_path))
    expected = np.rot90(plain, k=-(rotation // 90))  # clockwise
    if flip:
        expected = expected[:, ::-1]
    np.testing.assert_array_equal(shown, expected)
