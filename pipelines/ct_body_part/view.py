"""The standard axial view a slice is scored in, whatever way its pixels are stored.

The network learns slices as CT is usually shown: looking from the feet, the patient's
right on the image's left and anterior at the top, i.e. columns running to the patient's
left (+x in DICOM's LPS coordinates) and rows running posterior (+y). Most scanners store
slices that way (Image Orientation (Patient) ``1\\0\\0\\0\\1\\0``), but not all: a slice
stored with rows running anterior (``1\\0\\0\\0\\-1\\0``, seen in public research sets), a
mirrored one, or one with rows and columns swapped, shows the body upside down, mirrored
or turned, and a body part score learned on the standard view does not hold on it.
``in_plane_view`` finds, from the direction cosines, which transpose and flips bring a
slice to the standard view; ``InPlaneView.apply`` does it (a view of the array, no copy).
Only the nearest axis counts, so a gantry tilt or a small oblique angle keeps the
identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["STANDARD_VIEW", "InPlaneView", "in_plane_view"]


@dataclass(frozen=True)
class InPlaneView:
    """What brings a stored slice to the standard view: transpose first, then flips."""

    transpose: bool = False
    flip_rows: bool = False  # upside down: the first row becomes the last
    flip_columns: bool = False  # mirrored: the first column becomes the last

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_columns)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (rows × columns) in the standard view."""
        if self.transpose:
            image = image.T
        if self.flip_rows:
            image = image[::-1, :]
        if self.flip_columns:
            image = image[:, ::-1]
        return image


#: The view of a slice stored as most scanners store it.
STANDARD_VIEW = InPlaneView()


def in_plane_view(orientation: Sequence[float] | None) -> InPlaneView:
    """The view that turns a slice with Image Orientation (Patient) ``orientation`` (row
    direction cosines, then column direction cosines) to the standard view; the identity
    when the orientation is missing or malformed."""
    if orientation is None or len(orientation) != 6:
        return STANDARD_VIEW
    row = np.asarray(orientation[:3], dtype=np.float64)  # as the column index grows
    column = np.asarray(orientation[3:], dtype=np.float64)  # as the row index grows
    if not (np.all(np.isfinite(row)) and np.all(np.isfinite(column))):
        return STANDARD_VIEW
    if abs(row[0]) >= abs(row[1]):
        return InPlaneView(flip_rows=bool(column[1] < 0), flip_columns=bool(row[0] < 0))
    # Rows and columns swapped: after the transpose, columns run along ``column`` and
    # rows along ``row``.
    return InPlaneView(transpose=True, flip_rows=bool(row[1] < 0), flip_columns=bool(column[0] < 0))
