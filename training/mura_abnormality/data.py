"""Labelled studies for the MURA trainer, from three sources.

Every view becomes one ``MuraView``: the film reduced once to the network's 8-bit
``size`` × ``size`` image (steps 1–2 of ``pipelines.mura_abnormality.preprocess``; 50 KiB
at 224, so MURA's 40,561 images fit in 2 GiB) with its study's label, region, study and
patient keys. As in MURA, a view carries the label of its study.

``load_mura_folder(root, split)``
    MURA's own layout, read directly: ``<root>/<split>/XR_ELBOW/patient00011/
    study1_positive/image1.png``, ``<root>`` being the ``MURA-v1.1`` folder. The images are
    those of ``<split>_image_paths.csv`` when it is there (else every PNG in the layout),
    the labels those of ``<split>_labeled_studies.csv`` (``<study folder>/,<0|1>``) when it
    is there, else the study folder's ``_positive`` / ``_negative`` suffix. The CSVs name
    paths from the folder above ``MURA-v1.1`` (``MURA-v1.1/train/...``); paths relative to
    ``<root>`` itself are accepted too. PNGs are 8-bit, what a viewer shows.

``load_dicom_studies(folder, labels_csv)``
    A folder of DICOM files (searched recursively) and a CSV with a header row, a
    ``label`` column (``abnormal`` / ``normal``, ``1`` / ``0``, ``positive`` /
    ``negative``) and a ``study_instance_uid`` or ``accession_number`` column naming the
    study. Films are decoded as the pipeline decodes them (``pipelines.film_io``); a
    study's region is its films' Body Part Examined (or description). Studies without a
    label are left out (and counted).

``synthetic_views(studies, size)``
    Studies made by ``training.synthetic.msk_films`` in memory (the demo and CI), each
    view's lesion box kept for the Grad-CAM check.

Malformed CSVs and missing folders raise ``TrainingDataError`` / ``LabelsError`` with the
file and line.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from pipelines.film_io import DISPLAY_MAX, FilmUnreadable, read_film
from pipelines.mura_abnormality.preprocess import resized_8bit
from pipelines.mura_abnormality.regions import UNKNOWN_REGION, normalise_region, region_of
from training.runs import Advance

if TYPE_CHECKING:
    from training.synthetic.msk_films import MskStudy

logger = logging.getLogger(__name__)

#: Files that are never films: skipped by the folder scan without a warning.
NOT_FILM_SUFFIXES = frozenset({".csv", ".json", ".txt", ".md", ".png", ".jpg", ".jpeg", ".pt"})
_MURA_STUDY = re.compile(r"^study(\d+)_(positive|negative)$")
_LABEL_WORDS = {
    "1": 1,
    "abnormal": 1,
    "positive": 1,
    "true": 1,
    "yes": 1,
    "0": 0,
    "normal": 0,
    "negative": 0,
    "false": 0,
    "no": 0,
}


class TrainingDataError(ValueError):
    """The training data cannot be used as given (the message says why and where)."""


class LabelsError(TrainingDataError):
    """A labels CSV is malformed or names studies that are not there."""


@dataclass(frozen=True, eq=False)
class MuraView:
    """One view: its (size, size) 8-bit image and what is known of its study.

    ``lesion_box`` (synthetic views only) is the lesion's (row0, col0, row1, col1) as
    fractions of the film's height and width, for the Grad-CAM check.
    """

    image: np.ndarray
    study: str
    patient: str
    region: str
    label: int
    name: str
    lesion_box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class LoadReport:
    source: str
    studies: int
    views: int
    abnormal_studies: int
    regions: dict[str, int]
    skipped: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "studies": self.studies,
            "views": self.views,
            "abnormal_studies": self.abnormal_studies,
            "studies_by_region": self.regions,
            "skipped": len(self.skipped),
            "skipped_examples": list(self.skipped[:5]),
        }


@dataclass(frozen=True, eq=False)
class ViewSet:
    views: list[MuraView]
    report: LoadReport
    extra: dict[str, Any] = field(default_factory=dict)


def view_set(source: str, views: list[MuraView], skipped: Sequence[str] = ()) -> ViewSet:
    studies = {v.study: v for v in views}
    return ViewSet(
        views=views,
        report=LoadReport(
            source=source,
            studies=len(studies),
            views=len(views),
            abnormal_studies=sum(v.label for v in studies.values()),
            regions=dict(sorted(Counter(v.region for v in studies.values()).items())),
            skipped=tuple(skipped),
        ),
    )


def parse_label(text: str, where: str) -> int:
    label = _LABEL_WORDS.get(text.strip().lower())
    if label is None:
        raise LabelsError(
            f"{where}: label {text!r} is not abnormal/normal, 1/0 or positive/negative"
        )
    return label


# -- MURA's folder ---------------------------------------------------------------------------


def _mura_root(root: Path, split: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise TrainingDataError(f"MURA folder {root} does not exist")
    if (root / split).is_dir():
        return root
    nested = root / "MURA-v1.1"
    if (nested / split).is_dir():
        return nested
    raise TrainingDataError(
        f"{root} has no {split}/ folder: expected MURA's layout, "
        f"{split}/XR_ELBOW/patient00011/study1_positive/image1.png"
    )


def has_split(root: Path, split: str) -> bool:
    """Whether MURA's folder ``root`` has the split (``train`` or ``valid``)."""
    root = Path(root)
    return (root / split).is_dir() or (root / "MURA-v1.1" / split).is_dir()


def _mura_relative(root: Path, text: str, where: str) -> Path:
    """A path from a MURA CSV, relative to ``root`` (the MURA-v1.1 folder)."""
    parts = Path(text.strip()).parts
    if not parts or Path(text.strip()).is_absolute() or ".." in parts:
        raise LabelsError(f"{where}: {text!r} is not a path inside the MURA folder")
    if parts[0] == root.name or (parts[0].startswith("MURA") and not (root / parts[0]).exists()):
        parts = parts[1:]
    return Path(*parts)


def _read_mura_csv(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != columns:
                raise LabelsError(
                    f"{path.name}:{number}: expected {columns} column(s), got {len(row)}: {row!r}"
                )
            rows.append((number, row))
    return rows


def _study_of(relative: Path) -> tuple[str, str, str, int | None]:
    """(study key, patient, region, label from the folder name or None) of an image path
    ``<split>/XR_<REGION>/patientNNNNN/studyN_<positive|negative>/imageN.png``."""
    parts = relative.parts
    if len(parts) < 4:
        raise TrainingDataError(f"{relative} is not in MURA's layout")
    region_dir, patient, study = parts[-4], parts[-3], parts[-2]
    match = _MURA_STUDY.match(study)
    label = None if match is None else int(match.group(2) == "positive")
    key = "/".join(parts[-5:-1]) if len(parts) >= 5 else "/".join(parts[-4:-1])
    return key, f"{region_dir}/{patient}", normalise_region(region_dir), label


def load_mura_folder(
    root: Path, split: str = "train", *, size: int, advance: Advance | None = None
) -> ViewSet:
    """The views of MURA's ``split`` (``train`` or ``valid``) under ``root``; see the module."""
    from PIL import Image, UnidentifiedImageError

    base = _mura_root(root, split)
    images_csv = base / f"{split}_image_paths.csv"
    labels_csv = base / f"{split}_labeled_studies.csv"
    if images_csv.is_file():
        relatives = [
            _mura_relative(base, row[0], f"{images_csv.name}:{n}")
            for n, row in _read_mura_csv(images_csv, 1)
        ]
    else:
        relatives = sorted(p.relative_to(base) for p in (base / split).glob("XR_*/*/*/*.png"))
    if not relatives:
        raise TrainingDataError(f"{base / split} holds no MURA images (XR_*/patient*/study*/*.png)")
    labels: dict[str, int] = {}
    if labels_csv.is_file():
        for number, (text, value) in _read_mura_csv(labels_csv, 2):
            where = f"{labels_csv.name}:{number}"
            folder = _mura_relative(base, text.rstrip("/"), where)
            labels[folder.as_posix()] = parse_label(value, where)
    views: list[MuraView] = []
    skipped: list[str] = []
    for index, relative in enumerate(relatives):
        key, patient, region, folder_label = _study_of(relative)
        label = labels.get(relative.parent.as_posix(), folder_label)
        if label is None:
            raise LabelsError(
                f"study {relative.parent} has no label: not in {labels_csv.name} and its folder "
                "is not named studyN_positive or studyN_negative"
            )
        try:
            with Image.open(base / relative) as opened:
                pixels = np.asarray(opened.convert("L"), dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            skipped.append(f"{relative}: {exc}")
            continue
        views.append(
            MuraView(resized_8bit(pixels, size), key, patient, region, label, relative.as_posix())
        )
        if advance is not None:
            advance(index + 1, len(relatives))
    if not views:
        raise TrainingDataError(f"no image of {base / split} could be read: {skipped[:3]}")
    return view_set(f"mura:{split}", views, skipped)


# -- DICOM studies and a labels CSV ----------------------------------------------------------


def _column(name: str | None) -> str:
    """A CSV column name compared loosely: ``Study Instance UID`` = ``study_instance_uid``."""
    return re.sub(r"[\s_]+", "", (name or "").strip().lower())


_KEY_COLUMNS = {"studyinstanceuid": "study_instance_uid", "accessionnumber": "accession_number"}


def read_study_labels(path: Path) -> tuple[str, dict[str, int]]:
    """(``"study_instance_uid"`` or ``"accession_number"``, study → label) from a labels
    CSV with a header row; ``LabelsError`` naming the file and line of what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"labels file {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise LabelsError(f"{path.name} is empty: it needs a header row")
        columns = [_column(h) for h in header]
        shown = ", ".join(h.strip() for h in header)
        if "label" not in columns:
            raise LabelsError(f"{path.name}: no 'label' column (columns: {shown})")
        found = [c for c in columns if c in _KEY_COLUMNS]
        if not found:
            raise LabelsError(
                f"{path.name}: needs a 'study_instance_uid' or 'accession_number' column "
                f"(columns: {shown})"
            )
        key_index, label_index = columns.index(found[0]), columns.index("label")
        labels: dict[str, int] = {}
        for number, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            where = f"{path.name}:{number}"
            if len(row) != len(header):
                raise LabelsError(f"{where}: expected {len(header)} columns, got {len(row)}")
            study = row[key_index].strip()
            if not study:
                raise LabelsError(f"{where}: empty {_KEY_COLUMNS[found[0]]}")
            label = parse_label(row[label_index], where)
            if labels.get(study, label) != label:
                raise LabelsError(f"{where}: study {study} is labelled both ways")
            labels[study] = label
    if not labels:
        raise LabelsError(f"{path.name} has no labelled studies")
    return _KEY_COLUMNS[found[0]], labels


def load_dicom_studies(
    folder: Path, labels_csv: Path, *, size: int, advance: Advance | None = None
) -> ViewSet:
    """The labelled studies of a DICOM folder; see the module."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingDataError(f"data folder {folder} does not exist")
    key, labels = read_study_labels(labels_csv)
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in NOT_FILM_SUFFIXES
    )
    chosen: list[tuple[Path, str, str]] = []  # (file, study key, patient)
    unlabelled: set[str] = set()
    skipped: list[str] = []
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError) as exc:
            skipped.append(f"{path.name}: not DICOM ({exc})")
            continue
        study = str(
            header.get("StudyInstanceUID" if key == "study_instance_uid" else "AccessionNumber", "")
            or ""
        )
        if study not in labels:
            unlabelled.add(study or path.name)
            continue
        chosen.append((path, study, str(header.get("PatientID", "") or study)))
    found = {study for _, study, _ in chosen}
    missing = sorted(set(labels) - found)
    if not chosen:
        raise LabelsError(
            f"none of the {len(labels)} studies in {Path(labels_csv).name} is in {folder} "
            f"(by {key}; e.g. {missing[:3]})"
        )
    if missing:
        logger.warning(
            "%d labelled studies are not in %s (e.g. %s)", len(missing), folder, missing[:3]
        )
    views: list[MuraView] = []
    regions: dict[str, Counter[str]] = {}
    for index, (path, study, patient) in enumerate(chosen):
        try:
            film = read_film(path)
        except FilmUnreadable as exc:
            skipped.append(str(exc))
            continue
        region = region_of(film.header)
        regions.setdefault(study, Counter())[region] += 1
        views.append(
            MuraView(
                resized_8bit(film.display, size),
                study,
                patient,
                region,
                labels[study],
                f"{study}/{film.sop_instance_uid}",
            )
        )
        if advance is not None:
            advance(index + 1, len(chosen))
    if not views:
        raise TrainingDataError(f"no labelled film in {folder} could be read: {skipped[:3]}")
    # A study's region is the most frequent known region of its views.
    study_region = {
        study: next((r for r, _ in counts.most_common() if r != UNKNOWN_REGION), UNKNOWN_REGION)
        for study, counts in regions.items()
    }
    views = [
        MuraView(v.image, v.study, v.patient, study_region[v.study], v.label, v.name) for v in views
    ]
    result = view_set(f"dicom:{key}", views, skipped)
    result.extra.update(
        labelled_studies_missing=len(missing), unlabelled_studies_skipped=len(unlabelled)
    )
    return result


# -- synthetic studies ---------------------------------------------------------------------


def display_from_raw(image: np.ndarray) -> np.ndarray:
    """A rendered film as ``read_film`` displays a stored one without a VOI LUT: its own
    min..max stretched linearly to 0..65535."""
    low, high = float(image.min()), float(image.max())
    scaled = (image.astype(np.float64) - low) / max(high - low, 1e-12)
    return np.rint(scaled * DISPLAY_MAX).astype(np.uint16)


def synthetic_views(
    studies: Sequence[MskStudy],
    *,
    size: int,
    prefix: str = "synthetic",
    advance: Advance | None = None,
) -> ViewSet:
    """The views of synthetic studies (``training.synthetic.msk_films``), in memory."""
    views: list[MuraView] = []
    for index, study in enumerate(studies):
        key = f"{prefix}-{study.seed}"
        for number, view in enumerate(study.views):
            rows, columns = view.image.shape
            box = None
            if view.lesion_box is not None:
                r0, c0, r1, c1 = view.lesion_box
                box = (r0 / rows, c0 / columns, r1 / rows, c1 / columns)
            views.append(
                MuraView(
                    resized_8bit(display_from_raw(view.image), size),
                    key,
                    key,
                    normalise_region(study.region),
                    int(bool(study.abnormal)),
                    f"{key}/{number}-{view.view}",
                    box,
                )
            )
        if advance is not None:
            advance(index + 1, len(studies))
    return view_set("synthetic", views)


def make_synthetic(
    count: int,
    *,
    seed: int,
    size: int,
    image_size: int,
    abnormal_fraction: float = 0.5,
    kinds: Sequence[str] = (),
    paired: bool = False,
    prefix: str = "synthetic",
    advance: Advance | None = None,
) -> ViewSet:
    """``count`` synthetic studies rendered at ``image_size`` and reduced to ``size``.

    Regions take turns; ``round(count · abnormal_fraction)`` studies are abnormal (at
    random), each with an abnormality of one of ``kinds`` (empty: any of
    ``msk_films.ABNORMALITIES``, as ``msk_films`` draws them).

    ``paired``: the studies come in matched pairs, a normal and an abnormal rendering of
    the same subject, poses, exposures and noise (``msk_films`` renders them so), which
    differ only inside the lesion: the lesion is then all that tells the classes apart,
    which a network trained from random weights on a few hundred studies needs. A pair is
    one "patient", so the split keeps it on one side; ``abnormal_fraction`` is then ½.
    """
    from training.synthetic.msk_films import REGIONS, make_msk_study

    rng = np.random.default_rng([abs(int(seed)), 0x4D555241])
    subjects = rng.integers(0, 2**31 - 1, size=count)
    labels = np.zeros(count, dtype=bool)
    labels[: round(count * (0.5 if paired else abnormal_fraction))] = True
    rng.shuffle(labels)
    views: list[MuraView] = []
    for index in range(count):
        pair = index // 2
        subject = int(subjects[pair if paired else index])
        abnormal = bool(index % 2) if paired else bool(labels[index])
        region = REGIONS[(pair if paired else index) % len(REGIONS)]
        kind = str(rng.choice(list(kinds))) if abnormal and kinds else None
        study = make_msk_study(
            subject, region=region, abnormal=abnormal, abnormality=kind, size=image_size
        )
        label = "abnormal" if abnormal else "normal"
        made = synthetic_views([study], size=size, prefix=f"{prefix}-{label}" if paired else prefix)
        patient = f"{prefix}-pair-{subject}" if paired else made.views[0].patient
        views += [replace(view, patient=patient) for view in made.views]
        if advance is not None:
            advance(index + 1, count)
    return view_set("synthetic (matched pairs)" if paired else "synthetic", views)


def split_by_patient(
    views: Sequence[MuraView], fractions: Sequence[float], seed: int
) -> list[list[MuraView]]:
    """Views split into ``len(fractions) + 1`` parts by patient (the first part takes what
    the fractions leave), each patient's views on one side, seeded; each later part gets at
    least one patient when there are enough."""
    patients = sorted({v.patient for v in views})
    order = np.random.default_rng(seed).permutation(len(patients))
    counts = [int(round(f * len(patients))) for f in fractions]
    counts = [max(1, c) if len(patients) > len(fractions) else c for c in counts]
    parts_of: dict[str, int] = {}
    position = 0
    for part, count in enumerate(counts, start=1):
        for i in order[position : position + count]:
            parts_of[patients[int(i)]] = part
        position += count
    parts: list[list[MuraView]] = [[] for _ in range(len(fractions) + 1)]
    for view in views:
        parts[parts_of.get(view.patient, 0)].append(view)
    return parts


__all__ = [
    "LabelsError",
    "LoadReport",
    "MuraView",
    "TrainingDataError",
    "ViewSet",
    "display_from_raw",
    "has_split",
    "load_dicom_studies",
    "load_mura_folder",
    "make_synthetic",
    "parse_label",
    "read_study_labels",
    "split_by_patient",
    "synthetic_views",
]
