"""Training samples for the orientation network, from three sources.

Every sample is one film reduced to the network's ``resized`` 8-bit image (steps 1–2 of
``pipelines.hand_orientation.preprocess``: a (1, R, R) image, R = ``InputSpec.resize``,
kept as ``uint8`` — 64 KiB at R = 256, so thousands fit in memory) with the angle θ of
the hand in it, in the pipeline's convention (counter-clockwise as displayed from the
image's +x axis to the wrist → middle-finger axis, [0°, 360°), upright = 90°). The
paper's augmentation (``augment``) runs on these per sample while training.

Sources:

``load_labelled_films``
    A folder of DICOM films (searched recursively) and a labels CSV with the column
    ``angle_deg`` and either ``file`` (a path relative to the CSV's folder or to the data
    folder) or ``sop_instance_uid``. Each film is one sample, at its labelled angle.

``load_upright_films`` (self-supervised)
    A folder of films assumed upright (θ = 90°), as radiographers leave them in the
    archive after turning them. Each film is turned by ``rotations_per_film`` random
    known angles r (counter-clockwise), so each copy's label is exactly 90° + r.

``render_synthetic_films``
    Films rendered in memory by ``training.synthetic.hand_films.render_hand`` at a small
    size and random angles (the demo and the CI smoke test).

Films are displayed exactly as the pipeline displays them: ``pipelines.film_io.read_film``
for DICOM files, and ``display_from_raw`` (the same linear min..max stretch to 0..65535
that ``read_film`` applies to a film without a VOI LUT) for rendered pixels.

**Black corners.** Turning a rectangular film by an angle that is not a multiple of 90°
leaves corners of the output frame that no film pixel covers; ``rotate_film`` of the
pipeline fills them with black (0) on an enlarged canvas. Films in an archive never have
such corners — a hand lies at an angle on an upright detector — so corners in training
images would be a cue that exists only in training: the frame's tilted edges reveal r
without looking at the hand, and a network may learn them instead of the anatomy. Here
the turn is split into an exact quarter turn (``np.rot90``, no corners, no interpolation:
it swaps portrait and landscape as real films do) and a residual turn in [−45°, 45°]
applied *within the same frame* (``rotate_within_frame``), so the image keeps its size
and the corners are filled with the film's own background level, the median of its
outermost pixel ring, rather than black. What the turn moves out of the frame is lost,
as when the hand lies askew on a real detector; the hand sits near the centre and stays.
The random crop of the augmentation trims the corners further.

Angles of the self-supervised labels: the film is first reduced once to a working size
(longest side ``2 × resize``, area averaging, aspect kept) so that the rotations are
cheap, then each turned copy goes through ``resized_8bit``. The reduction keeps square
pixels square, so a turn by r turns the anatomy by exactly r.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.transforms import Resize
from PIL import Image
from pydicom.errors import InvalidDicomError

from pipelines.film_io import DISPLAY_MAX, FilmUnreadable, read_film
from pipelines.hand_orientation.correct import signed_degrees, wrap_degrees
from pipelines.hand_orientation.model import load_model
from pipelines.hand_orientation.preprocess import InputSpec, resized_8bit
from training.runs import Advance

logger = logging.getLogger(__name__)

UPRIGHT_DEG = 90.0
#: Files that are never films: skipped by the folder scan without a warning.
NOT_FILM_SUFFIXES = frozenset({".csv", ".json", ".txt", ".md", ".png", ".jpg", ".jpeg", ".pt"})


class TrainingDataError(ValueError):
    """The training data cannot be used as given (the message says why and where)."""


class LabelsError(TrainingDataError):
    """The labels CSV is malformed or names films that are not there."""


@dataclass(frozen=True, eq=False)
class OrientationSample:
    """One training or evaluation image and the angle of the hand in it.

    ``image`` is (1, R, R) ``uint8``: ``resized_8bit`` of the (turned) film. ``film``
    names the film the sample came from; the split into training and validation keeps
    all samples of one film on the same side.
    """

    image: torch.Tensor
    angle_deg: float
    film: str


@dataclass(frozen=True)
class LoadReport:
    """What a source produced: films used, samples made, films skipped and why."""

    source: str  # "labels_csv", "upright" or "synthetic"
    label_mode: str
    films: int
    samples: int
    skipped: tuple[str, ...] = ()
    #: Readable films an ``accept`` check left out (``load_upright_films``), with why.
    left_out: tuple[str, ...] = ()

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)


@dataclass(frozen=True, eq=False)
class SampleSet:
    samples: list[OrientationSample]
    report: LoadReport


#: ``accept(path, display)`` of ``load_upright_films``: why to leave a film out, or None.
FilmCheck = Callable[[Path, np.ndarray], str | None]


# -- display pixels ----------------------------------------------------------------------------


def display_from_raw(raw: np.ndarray) -> np.ndarray:
    """Raw MONOCHROME2 detector values → display ``uint16``, as ``read_film`` shows them.

    A film without a VOI LUT (and with the identity Modality LUT) is stretched linearly
    from its smallest to its largest value onto 0..65535; this is that stretch, with the
    same arithmetic (float64, rounding to nearest), so a rendered film and the same film
    written as DICOM and read back give identical pixels.
    """
    if raw.ndim != 2:
        raise ValueError("expected one 2-D image")
    values = raw.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1.0
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    return np.rint(scaled * DISPLAY_MAX).astype(np.uint16)


def reduce_film(display: np.ndarray, longest: int) -> np.ndarray:
    """``display`` shrunk (area averaging, aspect kept) so its longest side is ``longest``.

    A film already that small is returned as it is; the result is ``uint16``.
    """
    rows, columns = display.shape
    if max(rows, columns) <= longest:
        return display
    scale = longest / max(rows, columns)
    size = (max(1, round(rows * scale)), max(1, round(columns * scale)))
    image = torch.from_numpy(np.ascontiguousarray(display, dtype=np.float32))[None]
    reduced = torch.as_tensor(Resize(spatial_size=size, mode="area")(image))[0]
    return np.rint(reduced.numpy()).clip(0, DISPLAY_MAX).astype(np.uint16)


def border_level(display: np.ndarray) -> float:
    """The median of the film's outermost ring of pixels: its background level."""
    ring = np.concatenate((display[0], display[-1], display[1:-1, 0], display[1:-1, -1]))
    return float(np.median(ring))


def rotate_within_frame(display: np.ndarray, ccw_deg: float) -> np.ndarray:
    """``display`` turned counter-clockwise by ``ccw_deg`` as displayed, without black corners.

    The nearest multiple of 90° is turned exactly (``np.rot90``); the residual turn in
    [−45°, 45°] is bilinear about the centre within the (quarter-turned) frame, the
    uncovered corners filled with ``border_level`` of the film. Same direction as
    ``pipelines.hand_orientation.correct.rotate_film``: a hand at θ ends at θ + ccw_deg.
    """
    if display.ndim != 2:
        raise ValueError("expected one 2-D image")
    quarters = round(wrap_degrees(ccw_deg) / 90.0) % 4
    residual = signed_degrees(ccw_deg - 90.0 * quarters)
    turned = np.ascontiguousarray(np.rot90(display, k=quarters))
    if abs(residual) < 1e-6:
        return turned
    fill = border_level(turned)
    image = Image.fromarray(turned.astype(np.float32))  # mode F
    # Pillow's rotate turns counter-clockwise as displayed, about the centre.
    rotated = image.rotate(residual, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    out = np.rint(np.asarray(rotated)).clip(0, DISPLAY_MAX)
    return out.astype(display.dtype)


def to_sample_image(display: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """``resized_8bit`` of a display image, kept as (1, R, R) ``uint8``."""
    image = torch.as_tensor(resized_8bit(display, spec)).as_subclass(torch.Tensor)
    return image.to(torch.uint8).clone()


# -- folders and CSV -------------------------------------------------------------------------


def find_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` that may be a film, sorted; hidden ones left out."""
    if not folder.is_dir():
        raise TrainingDataError(f"data folder {folder} does not exist or is not a folder")
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() not in NOT_FILM_SUFFIXES:
            found.append(path)
    return found


@dataclass(frozen=True)
class Label:
    """One row of the labels CSV, resolved to a file."""

    path: Path
    angle_deg: float
    line: int


def read_labels_csv(labels_csv: Path, data_dir: Path | None = None) -> list[Label]:
    """The CSV's rows resolved to films, or ``LabelsError`` naming every problem found.

    Columns (case-insensitive): ``angle_deg`` and ``file`` or ``sop_instance_uid`` (a row
    with both uses ``file``). ``file`` is absolute, or relative to the CSV's folder or to
    ``data_dir``; a UID is looked up among the DICOM files under ``data_dir``. Angles are
    any finite number of degrees (wrapped into [0°, 360°)).
    """
    labels_csv = Path(labels_csv)
    try:
        text = labels_csv.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"labels CSV {labels_csv} cannot be read: {exc}") from exc
    reader = csv.DictReader(text.splitlines())
    columns = {name.strip().lower(): name for name in (reader.fieldnames or []) if name}
    if "angle_deg" not in columns:
        raise LabelsError(
            f"{labels_csv.name} has no angle_deg column (found: {', '.join(columns) or 'none'}); "
            "expected angle_deg and file or sop_instance_uid"
        )
    if "file" not in columns and "sop_instance_uid" not in columns:
        raise LabelsError(
            f"{labels_csv.name} has neither a file nor a sop_instance_uid column "
            f"(found: {', '.join(columns)})"
        )
    problems: list[str] = []
    rows: list[tuple[int, str, str, float]] = []  # line, file, uid, angle
    for number, row in enumerate(reader, start=2):
        file = (row.get(columns.get("file", ""), "") or "").strip()
        uid = (row.get(columns.get("sop_instance_uid", ""), "") or "").strip()
        raw_angle = (row.get(columns["angle_deg"], "") or "").strip()
        if not file and not uid and not raw_angle:
            continue  # a blank line
        try:
            angle = float(raw_angle)
        except ValueError:
            problems.append(f"line {number}: angle_deg {raw_angle!r} is not a number")
            continue
        if not math.isfinite(angle):
            problems.append(f"line {number}: angle_deg {raw_angle!r} is not a finite number")
            continue
        if not file and not uid:
            problems.append(f"line {number}: neither file nor sop_instance_uid is given")
            continue
        rows.append((number, file, uid, wrap_degrees(angle)))
    if not rows and not problems:
        raise LabelsError(f"{labels_csv.name} has no labelled films")
    by_uid = _index_uids(data_dir) if any(not file for _, file, _, _ in rows) else {}
    labels: list[Label] = []
    seen: dict[Path, int] = {}
    for number, file, uid, angle in rows:
        if file:
            path = _resolve(file, labels_csv.parent, data_dir)
            if path is None:
                problems.append(f"line {number}: file {file!r} does not exist")
                continue
        else:
            if data_dir is None:
                problems.append(f"line {number}: a sop_instance_uid needs the data folder")
                continue
            if uid not in by_uid:
                problems.append(
                    f"line {number}: no film under {data_dir} has SOP Instance UID {uid}"
                )
                continue
            path = by_uid[uid]
        key = path.resolve()
        if key in seen:
            problems.append(f"line {number}: the film of line {seen[key]} is labelled again")
            continue
        seen[key] = number
        labels.append(Label(path=path, angle_deg=angle, line=number))
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        where = f"the CSV's folder {labels_csv.parent}" + (
            f" or the data folder {data_dir}" if data_dir is not None else ""
        )
        raise LabelsError(
            f"{labels_csv.name}: {len(problems)} problem(s): {shown}{more} "
            f"(file paths are relative to {where})"
        )
    return labels


def _resolve(file: str, csv_folder: Path, data_dir: Path | None) -> Path | None:
    candidate = Path(file)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for base in (csv_folder, data_dir):
        if base is not None and (base / candidate).is_file():
            return base / candidate
    return None


# What pydicom raises for a file that is not DICOM, or DICOM without a SOP Instance UID.
_NOT_DICOM = (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError, AttributeError)


def _index_uids(data_dir: Path | None) -> dict[str, Path]:
    """SOP Instance UID → file, for every DICOM file under ``data_dir`` (first one wins)."""
    if data_dir is None:
        return {}
    index: dict[str, Path] = {}
    for path in find_files(data_dir):
        try:
            header = pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]
            )
            uid = str(header.SOPInstanceUID)
        except _NOT_DICOM as exc:
            logger.debug("%s is not a DICOM file (%s)", path, exc)
            continue
        index.setdefault(uid, path)
    return index


# -- the three sources ---------------------------------------------------------------------


def load_labelled_films(
    data_dir: Path | None,
    labels_csv: Path,
    spec: InputSpec,
    *,
    advance: Advance | None = None,
) -> SampleSet:
    """One sample per film of the labels CSV, at its labelled angle.

    Films that cannot be read or displayed are skipped with a warning and counted; every
    other problem of the CSV raises ``LabelsError`` before any film is read.
    """
    labels = read_labels_csv(Path(labels_csv), Path(data_dir) if data_dir is not None else None)
    samples: list[OrientationSample] = []
    skipped: list[str] = []
    base = Path(data_dir) if data_dir is not None else Path(labels_csv).parent
    for done, label in enumerate(labels, start=1):
        name = _name(label.path, base)
        try:
            display = read_film(label.path).display
        except (FilmUnreadable, OSError) as exc:
            skipped.append(f"{name}: {exc}")
        else:
            samples.append(OrientationSample(to_sample_image(display, spec), label.angle_deg, name))
        if advance is not None:
            advance(done, len(labels))
    _warn_skipped(skipped, len(labels))
    if not samples:
        raise TrainingDataError(f"none of the {len(labels)} labelled films could be read")
    report = LoadReport(
        source="labels_csv",
        label_mode="angles from the labels CSV",
        films=len(samples),
        samples=len(samples),
        skipped=tuple(skipped),
    )
    return SampleSet(samples, report)


def load_upright_films(
    data_dir: Path,
    spec: InputSpec,
    *,
    rotations_per_film: int,
    seed: int,
    upright_deg: float = UPRIGHT_DEG,
    accept: FilmCheck | None = None,
    advance: Advance | None = None,
) -> SampleSet:
    """Self-supervised samples: each film, assumed at ``upright_deg``, turned at random.

    Each readable film under ``data_dir`` is reduced once to a working size (longest side
    ``2 × spec.resize``) and turned by ``rotations_per_film`` angles r drawn uniformly
    from [0°, 360°) (``rotate_within_frame``); a copy's label is ``upright_deg + r``.
    Files that are not readable films are skipped with a warning and counted.
    ``accept(path, display)`` may leave a film out (it returns why, else None), e.g.
    ``not_upright_check``: a film the archive holds askew would teach a wrong label. The
    angles drawn for the other films do not depend on it.
    """
    if rotations_per_film < 1:
        raise ValueError("rotations_per_film must be at least 1")
    data_dir = Path(data_dir)
    files = find_files(data_dir)
    if not files:
        raise TrainingDataError(f"no files under {data_dir}")
    rng = np.random.default_rng(seed)
    samples: list[OrientationSample] = []
    skipped: list[str] = []
    left_out: list[str] = []
    films = 0
    for done, path in enumerate(files, start=1):
        name = _name(path, data_dir)
        try:
            display = read_film(path).display
        except (FilmUnreadable, OSError) as exc:
            skipped.append(f"{name}: {exc}")
        else:
            turns = rng.uniform(0.0, 360.0, size=rotations_per_film)  # drawn for every film
            why = accept(path, display) if accept is not None else None
            if why is not None:
                left_out.append(f"{name}: {why}")
            else:
                films += 1
                working = reduce_film(display, 2 * spec.resize)
                for turn in turns:
                    image = to_sample_image(rotate_within_frame(working, float(turn)), spec)
                    samples.append(OrientationSample(image, wrap_degrees(upright_deg + turn), name))
        if advance is not None:
            advance(done, len(files))
    _warn_skipped(skipped, len(files))
    if left_out:
        logger.warning("left out %d of %d films, e.g. %s", len(left_out), len(files), left_out[0])
    if not samples:
        why = f" ({len(left_out)} left out as not upright)" if left_out else ""
        raise TrainingDataError(
            f"none of the {len(files)} files under {data_dir} is a readable film to use{why}"
        )
    report = LoadReport(
        source="upright",
        label_mode=(
            f"self-supervised: films assumed at {upright_deg:g} deg, each turned by "
            f"{rotations_per_film} random known angles"
        ),
        films=films,
        samples=len(samples),
        skipped=tuple(skipped),
        left_out=tuple(left_out),
    )
    return SampleSet(samples, report)


def not_upright_check(model_folder: Path, max_tilt_deg: float) -> FilmCheck:
    """A check that leaves out films a model finds more than ``max_tilt_deg`` from upright.

    The archive's films are assumed upright, but some were stored askew; the model (the
    pipeline's active one) reads each film as it is, and a film it puts far from
    ``UPRIGHT_DEG`` is left out rather than taught as upright. Its own mistakes leave good
    films out too, so the limit is generous (20° by default in a retraining run).
    """
    model = load_model(Path(model_folder))

    def check(path: Path, display: np.ndarray) -> str | None:
        (angle,) = model.predict_degrees([display])
        tilt = abs(signed_degrees(angle - UPRIGHT_DEG))
        if tilt > max_tilt_deg:
            return f"the model {model.card.version} puts it at {angle:.0f} deg, {tilt:.0f} from upright"
        return None

    return check


def render_synthetic_films(
    count: int,
    spec: InputSpec,
    *,
    seed: int,
    size: int | None = None,
    detectors: Sequence[tuple[int, int]] | None = None,
    prefix: str = "synthetic",
    advance: Advance | None = None,
) -> SampleSet:
    """``count`` hand films rendered in memory at random angles, one sample each.

    Each film takes a detector format at random from ``detectors`` (default: every
    format of ``training.synthetic.hand_films.DETECTOR_SIZES``), scaled so its longest
    side is ``size`` pixels (default ``2 × spec.resize``) with the aspect ratio kept, and
    a uniform random angle; the raw pixels are displayed by ``display_from_raw``.
    """
    from training.synthetic import hand_films  # imported on use: only this source needs it

    if count < 1:
        raise ValueError("count must be at least 1")
    formats = list(detectors) if detectors is not None else detector_formats()
    longest = size if size is not None else 2 * spec.resize
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        rows, columns = formats[int(rng.integers(len(formats)))]
        scale = longest / max(rows, columns)
        shape = (max(8, round(rows * scale)), max(8, round(columns * scale)))
        angle = float(rng.uniform(0.0, 360.0))
        raw = hand_films.render_hand(*shape, angle_deg=angle, rng=rng)
        image = to_sample_image(display_from_raw(raw), spec)
        samples.append(OrientationSample(image, wrap_degrees(angle), f"{prefix}-{index}"))
        if advance is not None:
            advance(index + 1, count)
    report = LoadReport(
        source="synthetic",
        label_mode="rendered at known angles (training.synthetic.hand_films)",
        films=count,
        samples=count,
    )
    return SampleSet(samples, report)


def detector_formats() -> list[tuple[int, int]]:
    """(rows, columns) of each detector the synthetic films module knows."""
    from training.synthetic import hand_films

    sizes = hand_films.DETECTOR_SIZES
    values: Iterable[object] = sizes.values() if isinstance(sizes, dict) else sizes
    formats = []
    for value in values:
        rows, columns = _rows_columns(value)
        formats.append((rows, columns))
    return formats


def _rows_columns(value: object) -> tuple[int, int]:
    if isinstance(value, tuple | list) and len(value) == 2:
        return int(value[0]), int(value[1])
    rows, columns = getattr(value, "rows", None), getattr(value, "columns", None)
    if rows is None or columns is None:
        raise TypeError(f"cannot read a detector size from {value!r}")
    return int(rows), int(columns)


# -- splitting ------------------------------------------------------------------------------


def split_by_film(
    samples: Sequence[OrientationSample], fractions: Sequence[float], *, seed: int
) -> list[list[OrientationSample]]:
    """Split the samples by film into parts: the first gets the rest, the others ``fractions``.

    ``split_by_film(samples, [0.3], seed=0)`` gives ``[train, validation]`` with about 30 %
    of the films in validation; every film's samples stay together. Each part asked for
    gets at least one film; ``TrainingDataError`` when that leaves none to train on.
    """
    films = sorted({sample.film for sample in samples})
    order = [films[i] for i in np.random.default_rng(seed).permutation(len(films))]
    counts = [max(1, round(len(films) * f)) if f > 0 else 0 for f in fractions]
    if sum(counts) >= len(films):
        raise TrainingDataError(
            f"{len(films)} films are too few to hold out {sum(counts)} and still train on one"
        )
    part_of: dict[str, int] = {}
    start = 0
    for part, n in enumerate(counts, start=1):
        for film in order[start : start + n]:
            part_of[film] = part
        start += n
    parts: list[list[OrientationSample]] = [[] for _ in range(len(fractions) + 1)]
    for sample in samples:
        parts[part_of.get(sample.film, 0)].append(sample)
    return parts


def _name(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _warn_skipped(skipped: list[str], total: int) -> None:
    if skipped:
        logger.warning(
            "skipped %d of %d files that are not readable films, e.g. %s",
            len(skipped),
            total,
            skipped[0],
        )
