"""The calibration file: zone ranges in a few labelled CT series (the paper uses two).

A CSV file with a header row and one line per zone range::

    series,zone,from_mm,to_mm
    volume1,chest,-245,-478
    volume1,abdomen,-480,-702
    volume1,pelvis,-704,-880
    volume2,chest,...

* ``series`` — a folder holding one CT series, relative to the CSV file (or absolute);
* ``zone`` — ``chest``, ``abdomen`` or ``pelvis`` (``head_neck`` adds a fourth zone above
  the chest);
* ``from_mm``/``to_mm`` — the zone's range of patient z in mm, the position a viewer
  shows as Slice Location (superior is +), either order, both ends included.

Instead of millimetres a range may be given in Instance Numbers as a viewer lists them:
columns ``first_instance,last_instance`` (a line fills one pair or the other). Slices
outside every range are left unlabelled. Abdomen, as in the paper, runs from the upper
border of the liver to the upper border of the ilium.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.ct_body_part.preprocess import InputSpec, slices_to_inputs
from pipelines.ct_body_part.volume import CtStack, read_ct_geometry
from pipelines.ct_body_part.zones import ZONE_ORDER, Calibration, CalibrationError, calibrate
from pipelines.errors import PipelineInputError
from training.ct_body_part.data import TrainingVolume


class CalibrationFileError(ValueError):
    """The calibration file cannot be used (the message names the line)."""


@dataclass(frozen=True)
class ZoneRange:
    zone: str
    low: float
    high: float
    unit: str  # "mm" or "instance"

    def contains(self, z_mm: float, instance: int | None) -> bool:
        if self.unit == "mm":
            return self.low <= z_mm <= self.high
        return instance is not None and self.low <= instance <= self.high


@dataclass(frozen=True)
class LabelledSeries:
    folder: Path
    ranges: tuple[ZoneRange, ...]

    def labels(self, stack: CtStack) -> list[str | None]:
        if any(r.unit == "instance" for r in self.ranges) and any(
            item.frame is not None for item in stack.slices
        ):
            # The frames of a multi-frame image share one Instance Number.
            raise CalibrationFileError(
                f"{self.folder}: a multi-frame image has one Instance Number for all its "
                "slices; give this series' zones as from_mm,to_mm"
            )
        out: list[str | None] = []
        for item in stack.slices:
            zones = {r.zone for r in self.ranges if r.contains(item.z_mm, item.instance_number)}
            out.append(zones.pop() if len(zones) == 1 else None)  # overlaps stay unlabelled
        return out


def read_calibration_file(path: Path) -> list[LabelledSeries]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CalibrationFileError(f"{path}: cannot be read ({exc})") from exc
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise CalibrationFileError(f"{path}: no zone ranges (expected a header and lines)")
    columns = set(rows[0])
    if not {"series", "zone"} <= columns:
        raise CalibrationFileError(f"{path}: needs the columns series, zone, from_mm, to_mm")
    by_series: dict[Path, list[ZoneRange]] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{path}, line {line}"
        zone = (row.get("zone") or "").strip().lower()
        if zone not in ZONE_ORDER:
            raise CalibrationFileError(f"{where}: zone {zone!r} is not one of {ZONE_ORDER}")
        series = (row.get("series") or "").strip()
        if not series:
            raise CalibrationFileError(f"{where}: the series folder is empty")
        folder = Path(series) if Path(series).is_absolute() else path.parent / series
        if not folder.is_dir():
            raise CalibrationFileError(f"{where}: {folder} is not a folder")
        unit, pair = _range_of(row, where)
        low, high = sorted(pair)
        by_series.setdefault(folder, []).append(ZoneRange(zone, low, high, unit))
    return [LabelledSeries(folder, tuple(ranges)) for folder, ranges in by_series.items()]


def _range_of(row: dict[str, str | None], where: str) -> tuple[str, tuple[float, float]]:
    for unit, (a, b) in (
        ("mm", ("from_mm", "to_mm")),
        ("instance", ("first_instance", "last_instance")),
    ):
        first, last = (row.get(a) or "").strip(), (row.get(b) or "").strip()
        if first or last:
            try:
                values = (float(first), float(last))
            except ValueError as exc:
                raise CalibrationFileError(f"{where}: {a}/{b} must be numbers") from exc
            if not all(np.isfinite(values)):
                raise CalibrationFileError(f"{where}: {a}/{b} must be finite numbers")
            return unit, values
    raise CalibrationFileError(f"{where}: give from_mm,to_mm or first_instance,last_instance")


def write_calibration_file(
    path: Path, series: Sequence[tuple[Path, dict[str, tuple[float, float]]]]
) -> Path:
    """Write zone ranges in mm (e.g. a synthetic phantom's true zones) as a calibration file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series", "zone", "from_mm", "to_mm"])
        for folder, zones in series:
            try:
                name = str(Path(folder).relative_to(path.parent))
            except ValueError:
                name = str(Path(folder).resolve())
            for zone, (top, bottom) in zones.items():
                writer.writerow([name, zone, f"{top:.2f}", f"{bottom:.2f}"])
    return path


@dataclass(frozen=True)
class CalibrationVolume:
    """A labelled volume ready to score: images and one label (or None) per slice."""

    volume: TrainingVolume
    labels: list[str | None]


def load_labelled_series(
    entries: Sequence[LabelledSeries], spec: InputSpec
) -> list[CalibrationVolume]:
    """Read the labelled series through the pipeline's preprocessing."""
    out = []
    for entry in entries:
        files = sorted(
            p for p in entry.folder.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        try:
            stack = read_ct_geometry(files)
            images = slices_to_inputs(stack.slices, spec)
        except PipelineInputError as exc:
            raise CalibrationFileError(f"{entry.folder}: {exc}") from exc
        labels = entry.labels(stack)
        if not any(labels):
            raise CalibrationFileError(f"{entry.folder}: no slice falls inside the zone ranges")
        volume = TrainingVolume(name=str(entry.folder), images=images, z_mm=stack.z_mm)
        out.append(CalibrationVolume(volume, labels))
    return out


#: The scores of one labelled volume's labelled slices, and their zones.
LabelledScores = tuple[np.ndarray, list[str]]


def score_labelled(
    score: Callable[[np.ndarray], np.ndarray], volumes: Sequence[CalibrationVolume]
) -> list[LabelledScores]:
    """Score each labelled volume (``score``: images → one score each) and keep the
    scores of its labelled slices."""
    out = []
    for item in volumes:
        keep = [index for index, label in enumerate(item.labels) if label is not None]
        values = np.asarray(score(item.volume.images[keep]), dtype=np.float64)
        out.append((values, [str(item.labels[index]) for index in keep]))
    return out


def fit_thresholds(scored: Sequence[LabelledScores]) -> Calibration:
    """The zone thresholds fitted on the labelled slices of all ``scored`` volumes."""
    return calibrate(
        np.concatenate([values for values, _ in scored]),
        [label for _, labels in scored for label in labels],
    )


def cross_check_pct(scored: Sequence[LabelledScores]) -> float | None:
    """How far the labelled volumes agree on where the zones lie, in %.

    Each labelled volume in turn is classified by thresholds fitted on the others alone;
    the result is the share of its labelled slices put in their own zone, pooled over the
    volumes (slices of a zone the others do not cover are not counted). The fit on all of
    them (``Calibration.accuracy_pct``) is always optimistic; this is the figure a new
    series can expect, from the labels a site already gave. A model whose scores mean
    the same anatomy in every volume scores near 100 %; one whose scores drift from
    volume to volume does not, however well it orders each volume. None when there are
    fewer than two volumes or the others never cover two zones."""
    right = counted = 0
    for index, (values, labels) in enumerate(scored):
        others = [item for other, item in enumerate(scored) if other != index]
        try:
            calibration = fit_thresholds(others) if others else None
        except CalibrationError:
            calibration = None
        if calibration is None:
            continue
        for guess, label in zip(calibration.zone_names(values), labels, strict=True):
            if label in calibration.zones:
                counted += 1
                right += int(guess == label)
    return 100.0 * right / counted if counted else None
