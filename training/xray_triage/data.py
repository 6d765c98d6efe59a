"""Labelled images for the triage trainer, from three sources.

Every image becomes one ``TriageSample``: the image reduced once to the network's 8-bit
``size`` × ``size`` grey picture (``pipelines.xray_triage.preprocess``, the pipeline's own
reading and conversion, so training sees what the pipeline sees), its label (one of the
fourteen X-ray type names or ``not_xray``) and a group key that keeps related images on
one side of the split (a DICOM study, or the file).

``load_labelled_folder(folder, labels_csv)``
    A folder of images (DICOM files, or PNG/JPEG pictures) and a CSV with a header row:
    a ``path`` column (also ``file``, ``file_name``, ``filename``: a path relative to the
    folder, or a bare file name found anywhere under it) and a ``label`` column (a type
    name, ``not_xray``, or a Body Part Examined value that names a type, e.g. ``THORAX``).

``load_weak_labels(folder)``
    DICOM files labelled by their own header: Body Part Examined that names a type
    (``body_parts.type_named_by_header``) gives that type; a modality that is no
    projection radiograph (MR, US, CT, a camera's photo ...) gives ``not_xray``; other
    files (an unknown or empty Body Part Examined on a CR) are left out and counted.
    ``confidence_filter(model_folder, min_confidence)`` drops, while loading, the images
    a current model calls another label with at least that confidence: a header the
    model is sure is wrong teaches nothing but the header's error.

``synthetic_samples(seed, per_label)``
    Films rendered by ``training.synthetic.xray_types`` in memory (CI and the demo).

Malformed CSVs and missing folders raise ``TrainingDataError`` / ``LabelsError`` with the
file and line.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from pipelines.film_io import FilmUnreadable
from pipelines.xray_triage.body_parts import NOT_XRAY, XRAY_TYPES, type_named_by_header
from pipelines.xray_triage.preprocess import (
    PICTURE_SUFFIXES,
    TriageImage,
    grey_from_rgb,
    read_image,
    resized_8bit,
    to_8bit,
)
from training.runs import Advance

logger = logging.getLogger(__name__)

#: Every label, module II's types first (Table I order), then ``not_xray``.
LABELS: tuple[str, ...] = (*(t.name for t in XRAY_TYPES), NOT_XRAY)
TYPE_NAMES: tuple[str, ...] = tuple(t.name for t in XRAY_TYPES)
#: Modalities that are no projection radiograph: weak label ``not_xray``.
NOT_XRAY_MODALITIES = frozenset(
    {"MR", "US", "CT", "NM", "PT", "XC", "OP", "ES", "GM", "SM", "VL", "OCT", "IVUS"}
)
#: Files that are never images: skipped by a folder scan without a warning.
NOT_IMAGE_SUFFIXES = frozenset({".csv", ".json", ".txt", ".md", ".pt", ".zip"})
_PATH_COLUMNS = ("path", "file", "filename", "filepath", "image")

#: A check of one grey image and its label: None keeps it, a reason drops it.
Check = Callable[[TriageImage, str], str | None]


class TrainingDataError(ValueError):
    """The training data cannot be used as given (the message says why and where)."""


class LabelsError(TrainingDataError):
    """A labels CSV is malformed or names files that are not there."""


@dataclass(frozen=True, eq=False)
class TriageSample:
    """One image: its (size, size) 8-bit grey picture, label, group and name."""

    image: np.ndarray
    label: str
    group: str
    name: str

    @property
    def is_xray(self) -> bool:
        return self.label != NOT_XRAY


@dataclass(frozen=True, eq=False)
class SampleSet:
    samples: list[TriageSample]
    source: str
    skipped: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "images": len(self.samples),
            "by_label": dict(sorted(Counter(s.label for s in self.samples).items())),
            "skipped": len(self.skipped),
            "skipped_examples": self.skipped[:5],
            **self.extra,
        }


def parse_label(text: str, where: str) -> str:
    """A label as the trainer names it: a type name, ``not_xray``, or a Body Part
    Examined value naming a type; ``LabelsError`` naming ``where`` otherwise."""
    value = text.strip().lower()
    if value in TYPE_NAMES:
        return value
    if re.sub(r"[\s_-]+", "", value) in ("notxray", "nonxray", "other"):
        return NOT_XRAY
    named = type_named_by_header(text)
    if named is not None:
        return named
    raise LabelsError(
        f"{where}: label {text!r} is not an X-ray type ({', '.join(TYPE_NAMES)}) or {NOT_XRAY}"
    )


def _column(name: str | None) -> str:
    return re.sub(r"[\s_]+", "", (name or "").strip().lower())


def read_labels(path: Path) -> list[tuple[str, str, str]]:
    """(path text, label, where) of every row of a labels CSV."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"labels file {path} does not exist")
    rows: list[tuple[str, str, str]] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise LabelsError(f"{path.name} is empty: it needs a header row (path,label)")
        columns = [_column(h) for h in header]
        shown = ", ".join(h.strip() for h in header)
        if "label" not in columns:
            raise LabelsError(f"{path.name}: no 'label' column (columns: {shown})")
        found = [c for c in columns if c in _PATH_COLUMNS]
        if not found:
            raise LabelsError(f"{path.name}: needs a 'path' or 'file' column (columns: {shown})")
        path_index, label_index = columns.index(found[0]), columns.index("label")
        for number, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            where = f"{path.name}:{number}"
            if len(row) != len(header):
                raise LabelsError(f"{where}: expected {len(header)} columns, got {len(row)}")
            name = row[path_index].strip()
            if not name:
                raise LabelsError(f"{where}: empty path")
            rows.append((name, parse_label(row[label_index], where), where))
    if not rows:
        raise LabelsError(f"{path.name} has no labelled images")
    return rows


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in Path(folder).rglob("*")
        if p.is_file() and p.suffix.lower() not in NOT_IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _group_of(image: TriageImage, fallback: str) -> str:
    if image.header is not None:
        study = str(image.header.get("StudyInstanceUID", "") or "")
        if study:
            return study
    return fallback


def _sample(image: TriageImage, label: str, size: int, group: str, name: str) -> TriageSample:
    return TriageSample(resized_8bit(image.grey, size), label, group, name)


def load_labelled_folder(
    folder: Path,
    labels_csv: Path,
    *,
    size: int,
    check: Check | None = None,
    advance: Advance | None = None,
) -> SampleSet:
    """The images a labels CSV names under ``folder``; see the module."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingDataError(f"data folder {folder} does not exist")
    rows = read_labels(labels_csv)
    by_name: dict[str, list[Path]] = {}
    for path in _image_files(folder):
        by_name.setdefault(path.name, []).append(path)
    samples: list[TriageSample] = []
    skipped: list[str] = []
    missing: list[str] = []
    for index, (text, label, where) in enumerate(rows):
        candidate = folder / text
        if ".." in Path(text).parts or Path(text).is_absolute():
            raise LabelsError(f"{where}: {text!r} is not a path inside {folder}")
        if not candidate.is_file():
            found = by_name.get(Path(text).name, [])
            if len(found) > 1:
                raise LabelsError(f"{where}: {text!r} names {len(found)} files; give its path")
            if not found:
                missing.append(text)
                continue
            candidate = found[0]
        try:
            image = read_image(candidate)
        except FilmUnreadable as exc:
            skipped.append(str(exc))
            continue
        reason = None if check is None else check(image, label)
        if reason is not None:
            skipped.append(f"{candidate.name}: {reason}")
            continue
        relative = candidate.relative_to(folder).as_posix()
        samples.append(_sample(image, label, size, _group_of(image, relative), relative))
        if advance is not None:
            advance(index + 1, len(rows))
    if missing:
        logger.warning(
            "%d labelled images are not in %s (e.g. %s)", len(missing), folder, missing[:3]
        )
    if not samples:
        raise LabelsError(
            f"no image named in {Path(labels_csv).name} could be read under {folder} "
            f"(missing: {missing[:3]}, unreadable: {skipped[:3]})"
        )
    return SampleSet(samples, "labels CSV", skipped, {"labelled_images_missing": len(missing)})


def weak_label(header: pydicom.Dataset) -> str | None:
    """The label a DICOM header gives its image: the type Body Part Examined names,
    ``not_xray`` for a modality that is no projection radiograph, else None."""
    modality = str(header.get("Modality", "") or "").strip().upper()
    if modality in NOT_XRAY_MODALITIES:
        return NOT_XRAY
    return type_named_by_header(str(header.get("BodyPartExamined", "") or ""))


def load_weak_labels(
    folder: Path, *, size: int, check: Check | None = None, advance: Advance | None = None
) -> SampleSet:
    """The DICOM files under ``folder`` labelled by their own headers; see the module."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingDataError(f"data folder {folder} does not exist")
    files = [p for p in _image_files(folder) if p.suffix.lower() not in PICTURE_SUFFIXES]
    samples: list[TriageSample] = []
    skipped: list[str] = []
    unnamed = 0
    dropped = 0
    for index, path in enumerate(files):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError) as exc:
            skipped.append(f"{path.name}: not DICOM ({exc})")
            continue
        label = weak_label(header)
        if label is None:
            unnamed += 1
            continue
        try:
            image = read_image(path)
        except FilmUnreadable as exc:
            skipped.append(str(exc))
            continue
        reason = None if check is None else check(image, label)
        if reason is not None:
            dropped += 1
            skipped.append(f"{path.name}: {reason}")
            continue
        relative = path.relative_to(folder).as_posix()
        samples.append(_sample(image, label, size, _group_of(image, relative), relative))
        if advance is not None:
            advance(index + 1, len(files))
    if not samples:
        raise TrainingDataError(
            f"no DICOM file under {folder} has a Body Part Examined that names an X-ray type "
            f"or a modality that is no radiograph ({unnamed} without one; {skipped[:3]})"
        )
    extra = {"without_weak_label": unnamed, "dropped_by_confidence_filter": dropped}
    return SampleSet(samples, "weak labels (Body Part Examined, Modality)", skipped, extra)


def confidence_filter(model_folder: Path, min_confidence: float) -> Check:
    """A ``Check`` that drops an image a model (its folder) calls another label with at
    least ``min_confidence``: module I sure it is not an X-ray (for an X-ray label) or
    sure it is one (for ``not_xray``), or module II sure of another type."""
    import torch

    from pipelines.xray_triage.model import load_model
    from pipelines.xray_triage.preprocess import network_input

    if not 0.0 < min_confidence <= 1.0:
        raise ValueError("min_confidence must be in (0, 1]")
    model = load_model(Path(model_folder))

    def check(image: TriageImage, label: str) -> str | None:
        batch = torch.stack([network_input(image.grey, model.spec)])
        p_xray = float(model.xray_probabilities(batch)[0])
        if label == NOT_XRAY:
            if p_xray >= min_confidence:
                return f"labelled {NOT_XRAY}, the model says X-ray (p={p_xray:.2f})"
            return None
        if 1.0 - p_xray >= min_confidence:
            return f"labelled {label}, the model says not an X-ray (p={1.0 - p_xray:.2f})"
        types = model.type_probabilities(batch)[0]
        best = int(np.argmax(types))
        called = model.type_classes[best]
        if called != label and float(types[best]) >= min_confidence:
            return f"labelled {label}, the model says {called} (p={float(types[best]):.2f})"
        return None

    return check


def grey_of_rendering(image: np.ndarray) -> np.ndarray:
    """A synthetic film's image as the pipeline would read it back: grey floats stretched
    min..max (film_io's display of a film without a window) or RGB → luma."""
    if image.ndim == 3:
        return to_8bit(grey_from_rgb(image), 255.0 if image.dtype == np.uint8 else None)
    return to_8bit(image)


def synthetic_samples(
    seed: int,
    per_label: int,
    *,
    size: int,
    image_size: int,
    labels: Sequence[str] = (),
    prefix: str = "synthetic",
    advance: Advance | None = None,
) -> SampleSet:
    """``per_label`` synthetic films of each of ``labels`` (empty: all), rendered at
    ``image_size`` and reduced to ``size``; each film is its own group."""
    from training.synthetic.xray_types import make_triage_films

    films = make_triage_films(
        seed, per_label, size=image_size, labels=list(labels) if labels else None
    )
    samples: list[TriageSample] = []
    for index, film in enumerate(films):
        name = f"{prefix}-{seed}-{index}-{film.kind}"
        grey = grey_of_rendering(np.asarray(film.image))
        samples.append(TriageSample(resized_8bit(grey, size), str(film.label), name, name))
        if advance is not None:
            advance(index + 1, len(films))
    return SampleSet(samples, "synthetic", extra={"synthetic_per_label": per_label})


def split_samples(
    samples: Sequence[TriageSample], fractions: tuple[float, float, float], seed: int
) -> tuple[list[TriageSample], list[TriageSample], list[TriageSample]]:
    """Training, validation and test parts (the paper's 70/20/10), by group (a group's
    images on one side) and stratified by label (each label's groups split alike), seeded."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError("the split fractions must be non-negative and add up to 1")
    label_of: dict[str, str] = {}
    for sample in samples:
        label_of.setdefault(sample.group, sample.label)
    rng = np.random.default_rng(seed)
    part_of: dict[str, int] = {}
    for label in sorted(set(label_of.values())):
        groups = sorted(g for g, lab in label_of.items() if lab == label)
        order = [groups[int(i)] for i in rng.permutation(len(groups))]
        n = len(order)
        n_val = int(round(fractions[1] * n))
        n_test = int(round(fractions[2] * n))
        if n >= 3:  # every part gets one of the label when it can
            n_val, n_test = max(1, n_val), max(1, n_test) if fractions[2] > 0 else 0
        for index, group in enumerate(order):
            part_of[group] = 1 if index < n_val else 2 if index < n_val + n_test else 0
    parts: tuple[list[TriageSample], list[TriageSample], list[TriageSample]] = ([], [], [])
    for sample in samples:
        parts[part_of[sample.group]].append(sample)
    return parts


__all__ = [
    "LABELS",
    "NOT_XRAY_MODALITIES",
    "TYPE_NAMES",
    "Check",
    "LabelsError",
    "SampleSet",
    "TrainingDataError",
    "TriageSample",
    "confidence_filter",
    "grey_of_rendering",
    "load_labelled_folder",
    "load_weak_labels",
    "parse_label",
    "read_labels",
    "split_samples",
    "synthetic_samples",
    "weak_label",
]
