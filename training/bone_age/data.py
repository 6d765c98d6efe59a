"""Labelled hand films for bone-age training, prepared once as the pipeline prepares them.

Sources:

* **a folder and a labels CSV** (``load_labelled``): columns ``file`` (or ``id``, or
  ``sop_instance_uid``: the DICOM films under the folder are indexed by their SOP
  Instance UID, as the node's retraining links its archive's files),
  ``boneage`` (months; ``bone_age_months`` also read) and ``male`` (``True``/``False``,
  1/0; or a ``sex`` column with M/F); a ``file`` is a path under the folder (DICOM or PNG),
  an ``id`` names ``<id>.png`` (or ``.dcm``) in the folder or its ``images/``;
* **the RSNA bone-age layout** read directly (``load_rsna``): its CSV (``id,boneage,male``:
  ``labels.csv``, ``boneage-training-dataset.csv`` or the only CSV in the folder) and the
  PNG images named by id, in the folder, ``images/`` or ``boneage-training-dataset/``;
* **synthetic paediatric hands** (``synthetic_samples``,
  ``training.synthetic.paediatric_hands``), whose age drives what a reader reads, for the
  demo and the tests.

Each film goes through the pipeline's own preprocessing (``pipelines.bone_age.preprocess``:
hand mask, crop, square, resize) once, into a (N, S, S) ``uint8`` array.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.bone_age.network import SEX_FEMALE, SEX_MALE, SEX_UNKNOWN
from pipelines.bone_age.preprocess import InputSpec, film_input

RSNA_CSV_NAMES = ("labels.csv", "boneage-training-dataset.csv", "train.csv")
IMAGE_FOLDERS = ("", "images", "boneage-training-dataset")
IMAGE_SUFFIXES = (".png", ".dcm", "")


class LabelsError(ValueError):
    """A labels file or image folder that cannot be read as the trainer needs."""


@dataclass(frozen=True, eq=False)
class Sample:
    """One labelled film: its display pixels (upright), bone age in months, sex index."""

    ident: str
    image: np.ndarray
    age_months: float
    sex: int


@dataclass(frozen=True, eq=False)
class Prepared:
    """Films ready for the network: (N, S, S) uint8 images, ages, sex indices, ids."""

    images: np.ndarray
    ages: np.ndarray
    sexes: np.ndarray
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int] | np.ndarray) -> Prepared:
        picks = np.asarray(index, dtype=np.int64)
        return Prepared(
            self.images[picks],
            self.ages[picks],
            self.sexes[picks],
            tuple(self.ids[i] for i in picks),
        )


def parse_sex(value: object) -> int:
    """The sex index of a CSV value: True/1/M/male → male, False/0/F/female → female."""
    text = str(value or "").strip().lower()
    if text in ("true", "1", "m", "male", "yes"):
        return SEX_MALE
    if text in ("false", "0", "f", "female", "no"):
        return SEX_FEMALE
    return SEX_UNKNOWN


def read_image(path: Path) -> np.ndarray:
    """A film's display pixels from a DICOM file (``pipelines.film_io``) or an image file."""
    from PIL import Image

    from pipelines.film_io import FilmUnreadable, read_film

    if path.suffix.lower() in (".dcm", ""):
        try:
            return read_film(path).display
        except FilmUnreadable as exc:
            raise LabelsError(f"{path}: {exc}") from exc
    try:
        with Image.open(path) as picture:
            grey = picture.convert("I;16") if picture.mode.startswith("I") else picture.convert("L")
            return np.asarray(grey).copy()
    except OSError as exc:
        raise LabelsError(f"{path}: not a readable image ({exc})") from exc


def _find_image(folder: Path, ident: str) -> Path:
    for sub in IMAGE_FOLDERS:
        for suffix in IMAGE_SUFFIXES:
            candidate = folder / sub / f"{ident}{suffix}"
            if candidate.is_file():
                return candidate
    raise LabelsError(f"no image for id {ident!r} in {folder} (looked for {ident}.png, .dcm)")


def _index_by_uid(folder: Path) -> dict[str, Path]:
    """The DICOM files under ``folder`` by SOP Instance UID (unreadable files left out)."""
    import pydicom

    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            header = pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]
            )
        except Exception:  # noqa: BLE001  # not DICOM: not a film to index
            continue
        uid = header.get("SOPInstanceUID")
        if uid:
            found.setdefault(str(uid), path)
    return found


def load_labelled(folder: Path, labels_csv: Path, *, limit: int | None = None) -> list[Sample]:
    """Samples from ``folder`` labelled by ``labels_csv`` (see the module's description)."""
    folder, labels_csv = Path(folder), Path(labels_csv)
    if not folder.is_dir():
        raise LabelsError(f"{folder} is not a folder")
    try:
        with open(labels_csv, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise LabelsError(f"cannot read labels {labels_csv}: {exc}") from exc
    if not rows:
        raise LabelsError(f"{labels_csv} has no rows")
    columns = {c.strip().lower(): c for c in rows[0] if c}
    name_key = columns.get("file") or columns.get("id") or columns.get("sop_instance_uid")
    by_uid = _index_by_uid(folder) if name_key == columns.get("sop_instance_uid") else None
    age_key = columns.get("boneage") or columns.get("bone_age_months")
    sex_key = columns.get("male") or columns.get("sex")
    if name_key is None or age_key is None:
        raise LabelsError(
            f"{labels_csv} needs a 'file', 'id' or 'sop_instance_uid' column and a 'boneage' column "
            f"(it has {', '.join(columns)})"
        )
    samples: list[Sample] = []
    for number, row in enumerate(rows, start=2):
        if limit is not None and len(samples) >= limit:
            break
        name = str(row.get(name_key) or "").strip()
        try:
            age = float(str(row.get(age_key)))
        except ValueError:
            raise LabelsError(f"{labels_csv} line {number}: boneage is not a number") from None
        if not name or not np.isfinite(age) or age < 0:
            raise LabelsError(f"{labels_csv} line {number}: needs a file/id and an age >= 0")
        if by_uid is not None:
            if name not in by_uid:
                raise LabelsError(f"{labels_csv} line {number}: no film with that SOP Instance UID")
            path = by_uid[name]
        elif name_key == columns.get("file"):
            path = folder / name
        else:
            path = _find_image(folder, name)
        if not path.is_file():
            raise LabelsError(f"{labels_csv} line {number}: {path} does not exist")
        sex = parse_sex(row.get(sex_key)) if sex_key else SEX_UNKNOWN
        samples.append(Sample(name, read_image(path), age, sex))
    return samples


def rsna_labels_file(folder: Path) -> Path:
    """The labels CSV of an RSNA bone-age folder."""
    folder = Path(folder)
    for name in RSNA_CSV_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    raise LabelsError(
        f"{folder} has no RSNA labels CSV ({', '.join(RSNA_CSV_NAMES)}, or one *.csv): "
        "give it with --labels"
    )


def load_rsna(
    folder: Path, labels_csv: Path | None = None, *, limit: int | None = None
) -> list[Sample]:
    """Samples from the RSNA bone-age layout (``id,boneage,male``; images named by id)."""
    return load_labelled(Path(folder), labels_csv or rsna_labels_file(Path(folder)), limit=limit)


def synthetic_samples(
    seed: int, count: int, *, size: int = 256, age_range_months: tuple[float, float] = (12, 216)
) -> list[Sample]:
    """``count`` synthetic paediatric hands, upright, ages uniform in ``age_range_months``."""
    from training.synthetic.paediatric_hands import make_paediatric_hands

    hands = make_paediatric_hands(
        seed,
        count,
        size=size,
        age_range_months=(int(age_range_months[0]), int(age_range_months[1])),
    )
    return [
        Sample(f"synthetic-{i}", hand.image, float(hand.bone_age_months), parse_sex(hand.sex))
        for i, hand in enumerate(hands)
    ]


def prepare(
    samples: Sequence[Sample], spec: InputSpec, advance: Callable[[int, int], None] | None = None
) -> Prepared:
    """Each sample through the pipeline's preprocessing into network-sized images."""
    if not samples:
        raise LabelsError("no films to prepare")
    images = np.empty((len(samples), spec.size, spec.size), dtype=np.uint8)
    for i, sample in enumerate(samples):
        images[i] = film_input(sample.image, spec)[0]
        if advance is not None:
            advance(i + 1, len(samples))
    return Prepared(
        images,
        np.asarray([s.age_months for s in samples], dtype=np.float32),
        np.asarray([s.sex for s in samples], dtype=np.int64),
        tuple(s.ident for s in samples),
    )


__all__ = [
    "LabelsError",
    "Prepared",
    "Sample",
    "load_labelled",
    "load_rsna",
    "parse_sex",
    "prepare",
    "read_image",
    "rsna_labels_file",
    "synthetic_samples",
]
