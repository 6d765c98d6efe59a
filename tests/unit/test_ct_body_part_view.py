"""Slices stored upside down, mirrored or with rows and columns swapped are scored in the
standard axial view: the network's input does not depend on how the scanner laid out the
pixels, only on the anatomy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.ct_body_part.preprocess import InputSpec, slices_to_inputs
from pipelines.ct_body_part.view import STANDARD_VIEW, InPlaneView, in_plane_view
from pipelines.ct_body_part.volume import read_ct_geometry
from training.synthetic.ct_phantoms import make_phantom, random_scan, write_ct_series

SIZE = 48
SPACING = 9.0


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        ([1, 0, 0, 0, 1, 0], STANDARD_VIEW),
        ([1, 0, 0, 0, -1, 0], InPlaneView(flip_rows=True)),
        ([-1, 0, 0, 0, 1, 0], InPlaneView(flip_columns=True)),
        ([-1, 0, 0, 0, -1, 0], InPlaneView(flip_rows=True, flip_columns=True)),
        ([0, 1, 0, 1, 0, 0], InPlaneView(transpose=True)),
        ([0, -1, 0, 1, 0, 0], InPlaneView(transpose=True, flip_rows=True)),
        # A gantry tilt of 15°: still the standard view.
        ([1, 0, 0, 0, 0.966, -0.259], STANDARD_VIEW),
        (None, STANDARD_VIEW),
        ([1, 0, 0], STANDARD_VIEW),
        ([float("nan"), 0, 0, 0, 1, 0], STANDARD_VIEW),
    ],
)
def test_in_plane_view_from_the_direction_cosines(
    orientation: list[float] | None, expected: InPlaneView
) -> None:
    assert in_plane_view(orientation) == expected


def test_apply_undoes_each_layout() -> None:
    image = np.arange(12).reshape(3, 4)
    assert InPlaneView(flip_rows=True).apply(image[::-1, :]).tolist() == image.tolist()
    assert InPlaneView(flip_columns=True).apply(image[:, ::-1]).tolist() == image.tolist()
    assert InPlaneView(transpose=True).apply(image.T).tolist() == image.tolist()
    turned = image[::-1, :].T  # moving along a row goes -y, down a column +x
    view = in_plane_view([0, -1, 0, 1, 0, 0])
    assert view.apply(turned).tolist() == image.tolist()


def _relaid(source: Path, target: Path, orientation: list[int]) -> None:
    """``source`` stored in another layout of the same anatomy: pixels rearranged, Image
    Orientation (Patient) saying so and Image Position (Patient) at the new first pixel."""
    ds = pydicom.dcmread(source)
    pixels = ds.pixel_array
    x0, y0, z0 = (float(v) for v in ds.ImagePositionPatient)
    far = (SIZE - 1) * SPACING
    if orientation == [1, 0, 0, 0, -1, 0]:
        pixels, position = pixels[::-1, :], (x0, y0 + far, z0)
    elif orientation == [-1, 0, 0, 0, 1, 0]:
        pixels, position = pixels[:, ::-1], (x0 + far, y0, z0)
    else:  # [0, 1, 0, 1, 0, 0]: rows run along +x, columns along +y
        pixels, position = pixels.T, (x0, y0, z0)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.ImageOrientationPatient = orientation
    ds.ImagePositionPatient = list(position)
    ds.save_as(target)


@pytest.mark.parametrize(
    "orientation", [[1, 0, 0, 0, -1, 0], [-1, 0, 0, 0, 1, 0], [0, 1, 0, 1, 0, 0]]
)
def test_the_networks_input_is_the_same_whatever_the_layout(
    tmp_path: Path, orientation: list[int]
) -> None:
    phantom = make_phantom(11)
    scan = random_scan(phantom, np.random.default_rng(11), region="chest_abdomen", max_slices=5)
    written = write_ct_series(
        tmp_path / "standard", phantom, scan, size=SIZE, pixel_spacing=SPACING
    )
    (tmp_path / "relaid").mkdir()
    relaid = []
    for path in written.files:
        relaid.append(tmp_path / "relaid" / path.name)
        _relaid(path, relaid[-1], orientation)
    spec = InputSpec(size=32)
    standard_stack = read_ct_geometry(list(written.files))
    relaid_stack = read_ct_geometry(relaid)
    assert relaid_stack.z_mm.tolist() == pytest.approx(standard_stack.z_mm.tolist())
    assert all(not item.view.is_identity for item in relaid_stack.slices)
    expected = slices_to_inputs(standard_stack.slices, spec)
    found = slices_to_inputs(relaid_stack.slices, spec)
    np.testing.assert_array_equal(found, expected)
    # Read as stored, the anatomy would not match: the view is what makes them equal.
    as_stored = [replace(item, view=STANDARD_VIEW) for item in relaid_stack.slices]
    assert not np.array_equal(slices_to_inputs(as_stored, spec), expected)
