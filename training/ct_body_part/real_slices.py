"""Real CT slices that no one here made, to check that a body part score learned on the
synthetic phantoms carries over to real scanners.

They come from packages the project installs for its tests (``pydicom-data``, pydicom's
own test files), each a single axial slice of a known body region:

- ``head``: ``693_UNCI.dcm`` (pydicom-data), a brain slice, 512², 5 mm;
- ``chest``: ``CT_small.dcm`` (pydicom), a 128² crop around a mid-thoracic vertebra and
  the descending aorta;
- ``lower_chest``: ``bad_sequence.dcm`` (pydicom-data), a targeted reconstruction (147 mm
  field of view) around a thoracolumbar vertebra (about T11–T12): a large vertebral body,
  rib heads, the lung bases behind the diaphragm and abdominal organs in front. Its header
  says Body Part Examined NECK, but the picture is of no neck (no airway, no thyroid, no
  cervical vertebra), and the region is what the picture shows;
- ``abdomen``: ``explicit_VR-UN.dcm`` (pydicom-data, a pancreas CT at the level of the
  kidneys), stored with its rows running anterior (Image Orientation (Patient)
  ``1\\0\\0\\0\\-1\\0``).

None of the installed packages holds a real neck slice. A model that learned the body's
order scores them head < chest < lower_chest < abdomen (the score rises towards the
feet). ``score_real_slices`` gives each one's score, turned to
the standard view and prepared exactly as the pipeline prepares a slice.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from pipelines.ct_body_part.model import UbrModel
from pipelines.ct_body_part.preprocess import slice_to_input
from pipelines.ct_body_part.view import in_plane_view
from pipelines.ct_body_part.volume import read_hu

__all__ = ["REAL_SLICES", "RealSlice", "real_slice_path", "score_real_slices"]


@dataclass(frozen=True)
class RealSlice:
    region: str  # head, chest, lower_chest or abdomen
    package: str  # "pydicom" (its test files) or "pydicom-data"
    name: str  # the file's name in the package


#: Head to feet: a model's scores should rise along this tuple.
REAL_SLICES: tuple[RealSlice, ...] = (
    RealSlice("head", "pydicom-data", "693_UNCI.dcm"),
    RealSlice("chest", "pydicom", "CT_small.dcm"),
    RealSlice("lower_chest", "pydicom-data", "bad_sequence.dcm"),
    RealSlice("abdomen", "pydicom-data", "explicit_VR-UN.dcm"),
)


def _package_data(package: str) -> Path:
    if package == "pydicom":
        return Path(pydicom.__file__).parent / "data" / "test_files"
    # pydicom-data installs its files as the ``data_store`` package.
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "pydicom-data is not installed (pip install pydicom-data; it is in the project's "
            "dev extra)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def real_slice_path(item: RealSlice) -> Path:
    """Where ``item`` is installed; FileNotFoundError saying what to install if it is not."""
    path = _package_data(item.package) / item.name
    if not path.is_file():
        raise FileNotFoundError(f"{item.name} is not in the installed {item.package}")
    return path


def score_real_slices(model: UbrModel) -> dict[str, float]:
    """Each real slice's score by ``model``, by region, in head-to-feet order."""
    images = []
    for item in REAL_SLICES:
        path = real_slice_path(item)
        orientation = pydicom.dcmread(path, stop_before_pixels=True).get("ImageOrientationPatient")
        view = in_plane_view([float(v) for v in orientation] if orientation else None)
        images.append(slice_to_input(view.apply(read_hu(path)), model.spec))
    scores = model.scores(np.stack(images))
    return {item.region: round(float(s), 3) for item, s in zip(REAL_SLICES, scores, strict=True)}
