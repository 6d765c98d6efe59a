"""Training volumes for UBR: unlabelled CT series, read once and kept small in memory.

A volume is its slices in superior → inferior order, already through the pipeline's own
preprocessing (``pipelines.ct_body_part``: geometry, HU, window, resize), as uint8
``size`` × ``size`` images: 1,000 slices at 128² take 16 MB.

Sources:

* ``load_ct_volumes(folder)`` — every CT series under a folder (any layout, the node's
  storage folder included), grouped by Series Instance UID; series that are not axial
  CT stacks are skipped with the reason;
* ``render_phantom_volumes(count)`` — synthetic phantoms (``training.synthetic.ct_phantoms``)
  rendered straight into memory, through the same preprocessing, with their true zones.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from pipelines.ct_body_part.preprocess import InputSpec, slice_to_input, slices_to_inputs
from pipelines.ct_body_part.volume import AIR_HU, read_ct_geometry
from pipelines.errors import PipelineInputError
from training.runs import Advance
from training.synthetic.ct_phantoms import make_phantom, random_scan, render_slice
from training.synthetic.ct_reconstruction import Reconstruction

logger = logging.getLogger(__name__)

#: Files that are never DICOM slices: skipped by the folder scan without a warning.
NOT_DICOM_SUFFIXES = frozenset({".csv", ".json", ".txt", ".md", ".png", ".jpg", ".pt", ".toml"})
#: Field of view (mm) of synthetic phantoms rendered without a reconstruction: 512 pixels
#: of 0.9 mm, as ``write_ct_series`` writes them by default (training renders each scan
#: through its own reconstruction, 150 to 500 mm).
PHANTOM_FOV_MM = 512 * 0.9


class TrainingDataError(ValueError):
    """The training data cannot be used as given (the message says why and where)."""


@dataclass(frozen=True, eq=False)
class TrainingVolume:
    name: str
    images: np.ndarray  # (n, size, size) uint8, superior → inferior
    z_mm: np.ndarray  # (n,) patient z of each slice
    zones: dict[str, tuple[float, float]] | None = None  # true zones (synthetic only)
    anatomy_order: str = "normal"

    def __len__(self) -> int:
        return len(self.images)

    def zone_labels(self) -> list[str | None]:
        """The true zone of each slice (synthetic volumes), None outside every zone."""
        if self.zones is None:
            return [None] * len(self)
        out: list[str | None] = []
        for z in self.z_mm:
            out.append(
                next(
                    (name for name, (top, bottom) in self.zones.items() if bottom <= z <= top),
                    None,
                )
            )
        return out


@dataclass
class LoadReport:
    series: int = 0
    slices: int = 0
    skipped: list[str] = field(default_factory=list)


def find_ct_series(folder: Path) -> dict[str, list[Path]]:
    """CT files under ``folder`` by Series Instance UID (headers only)."""
    if not folder.is_dir():
        raise TrainingDataError(f"{folder} is not a folder")
    series: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() in NOT_DICOM_SUFFIXES or path.name.startswith("."):
            continue
        try:
            header = pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=["Modality", "SeriesInstanceUID"]
            )
        except Exception:  # noqa: BLE001  # not DICOM: skipped, like any other stray file
            continue
        if str(header.get("Modality", "")).upper() == "CT" and header.get("SeriesInstanceUID"):
            series[str(header.SeriesInstanceUID)].append(path)
    return dict(series)


def load_ct_volumes(
    folder: Path,
    spec: InputSpec,
    *,
    min_slices: int = 8,
    advance: Advance | None = None,
) -> tuple[list[TrainingVolume], LoadReport]:
    """Every usable CT series under ``folder`` as a training volume."""
    found = find_ct_series(Path(folder))
    if not found:
        raise TrainingDataError(f"no CT series found under {folder}")
    report = LoadReport()
    volumes: list[TrainingVolume] = []
    for done, (uid, files) in enumerate(sorted(found.items()), start=1):
        try:
            stack = read_ct_geometry(files)
            if len(stack) < min_slices:
                raise PipelineInputError(f"{len(stack)} slices, fewer than {min_slices}")
            images = slices_to_inputs(stack.slices, spec)
        except PipelineInputError as exc:
            report.skipped.append(f"series {uid}: {exc}")
            logger.warning("skipping series %s: %s", uid, exc)
        else:
            volumes.append(TrainingVolume(name=uid, images=images, z_mm=stack.z_mm))
            report.series += 1
            report.slices += len(stack)
        if advance is not None:
            advance(done, len(found))
    if not volumes:
        reasons = "; ".join(report.skipped[:3])
        raise TrainingDataError(f"no usable CT series under {folder}: {reasons}")
    return volumes, report


def render_phantom_volume(
    seed: int,
    spec: InputSpec,
    *,
    max_slices: int | None = 160,
    region: str | None = None,
    anatomy_order: str = "normal",
    realistic: bool = False,
) -> TrainingVolume:
    """One phantom scan, rendered at twice the input size and area-averaged down to it, as
    a 512² slice is; ``anatomy_order`` ``"reversed"`` or ``"mixed"`` re-orders the
    slices against their z, as ``write_ct_series`` does in DICOM.

    ``realistic``: the slices go through the scan's reconstruction (``Scan.reconstruction``:
    its field of view and centre, couch, textures, kernel, correlated noise, streaks and
    metal), and its padding outside the reconstruction circle reads as air, as the
    pipeline reads a Pixel Padding Value. Otherwise the plain phantoms in a fixed 461 mm
    field, as before (what every preset trains on until a model trained on realistic
    scans is shipped: see training/ct_body_part/README.md)."""
    phantom = make_phantom(seed)
    rng = np.random.default_rng(seed + 7_000_003)
    scan = random_scan(phantom, rng, region=region, max_slices=max_slices)
    recon = scan.reconstruction if realistic else None
    z = np.sort(np.asarray(scan.z_positions, dtype=np.float64))[::-1]  # superior first
    render_size = 2 * spec.size
    images = np.stack(
        [
            slice_to_input(
                _padding_as_air(
                    render_slice(
                        phantom,
                        float(value),
                        size=render_size,
                        pixel_spacing=None if realistic else PHANTOM_FOV_MM / render_size,
                        reconstruction=recon,
                    ),
                    recon,
                ),
                spec,
            )
            for value in z
        ]
    )
    images = reorder_anatomy(images, anatomy_order)
    return TrainingVolume(
        name=f"phantom-{seed}",
        images=images,
        z_mm=z,
        zones=dict(phantom.zones),
        anatomy_order=anatomy_order,
    )


def _padding_as_air(hu: np.ndarray, recon: Reconstruction | None) -> np.ndarray:
    """``hu`` with the reconstruction's padding pixels set to air (-1000), as
    ``pipelines.ct_body_part.volume`` does for a Pixel Padding Value."""
    if recon is not None and recon.padding_hu is not None:
        hu[hu == np.float32(recon.padding_hu)] = AIR_HU
    return hu


def reorder_anatomy(images: np.ndarray, anatomy_order: str) -> np.ndarray:
    """The slices' pixels against their positions: as they are, reversed, or with the
    middle third reversed in place (the orders ``write_ct_series`` writes)."""
    if anatomy_order == "normal":
        return images
    if anatomy_order == "reversed":
        return images[::-1].copy()
    if anatomy_order == "mixed":
        n = len(images)
        start, stop = n // 3, n // 3 + max(2, n // 3)
        out = images.copy()
        out[start:stop] = images[start:stop][::-1]
        return out
    raise ValueError(f"anatomy order {anatomy_order!r} is not normal, reversed or mixed")


def render_phantom_volumes(
    count: int,
    spec: InputSpec,
    *,
    seed: int,
    max_slices: int | None = 160,
    region: str | None = None,
    advance: Advance | None = None,
    realistic: bool = False,
) -> list[TrainingVolume]:
    """``count`` phantoms with seeds ``seed``, ``seed + 1``, …; ``region`` as for
    ``render_phantom_volume`` (None: a random protocol per phantom)."""
    volumes = []
    for index in range(count):
        volumes.append(
            render_phantom_volume(
                seed + index, spec, max_slices=max_slices, region=region, realistic=realistic
            )
        )
        if advance is not None:
            advance(index + 1, count)
    return volumes
