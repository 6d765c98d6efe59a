"""Synthetic paediatric hand films whose bone age drives what a radiologist reads.

Children's hand films cannot be shipped, so the ``bone_age`` pipeline (paper 002,
Castillo et al., trained there on the RSNA bone-age films) is tested, trained and
demonstrated on films rendered here, on top of the adult hand phantom of
``training.synthetic.hand_films`` (its ``SkeletalMaturity`` option).

What changes with age (``skeletal_maturity``): every feature is a smooth (continuous,
piecewise smooth) and monotone function of a *maturity stage* in months, which is the
bone age itself for boys and the bone age times ``GIRLS_AHEAD`` (1.13) for girls, since a
girl of a given bone age shows what a boy shows about 13 % later (1.5-2 years in
adolescence); the numbers are the usual textbook ages for boys, in months of stage:

- **hand size**: the whole hand (bones and soft tissue) grows from a third of its adult
  length at birth to its adult length by about 18 years (``GROWTH_KNOTS``); girls' adult
  hands are 7 % smaller.
- **carpal bones**: none at birth; ossification starts in the capitate (3 months) and
  hamate (5), triquetrum (30), lunate (50), trapezium (66), scaphoid (70), trapezoid
  (74), pisiform (132). Each grows from a dot, round at first, as
  ``((stage - onset) / 120) ** 0.45`` of its adult size, and shows on a film
  (``carpal_count``) from 30 % of it, about 8 months after onset: one at 1 year, two at
  14 months, all eight at about 11.7 years in boys and 10.3 in girls.
- **epiphyses** of the phalanges, metacarpals, radius and ulna: appear (radius 12
  months, proximal phalanges 16, distal 20, metacarpals 20, middle 26, ulna 84), grow to
  the width of the metaphysis, then cap it; the **growth plate** (physis) between them
  narrows from ``PHYSIS_MAX_MM`` (2.5 mm) towards 0 as fusion nears; **fusion** runs distal
  phalanges first (174-192 months), then metacarpals and proximal phalanges (186-204),
  middle phalanges (192-210), ulna (198-216) and the radius last (204-222).
- **sesamoids** of the thumb appear at puberty (156 months of stage).

Per-subject variation: the phantom's own draws (hand size ±15 %, proportions, finger
spread, placement, exposure) and a chronological age that differs from the bone age by
a normal offset whose standard deviation grows with age (``chronological_age``), as in
real children; the label is the *bone* age, which is what the film shows. Timing does
not vary per subject beyond that: two films of one bone age and sex show the same
maturity stage.

Films are square, ``size`` pixels a side, upright (θ = 90°, the convention of
``hand_films``) or turned by ``angle_deg``; the field of view shrinks with the child
(``field_mm``) so a small hand still fills a good part of the film, while Pixel Spacing
keeps the true size. A lead "L"/"R" marker and a short burned-in text label are drawn in
the exposed field away from the hand; their boxes come with the film so that the mask
test can check they are left out. ``write_paediatric_hand_film`` writes a DX or CR file
with PatientSex, PatientBirthDate and StudyDate consistent with the chronological age;
``write_rsna_layout`` writes the RSNA bone-age layout (``images/<id>.png`` and
``labels.csv`` with ``id,boneage,male``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from pathlib import Path
from types import EllipsisType
from typing import Literal

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.uid import generate_uid

from training.synthetic.hand_films import (
    SYNTHETIC_UID_ROOT,
    Epiphysis,
    SkeletalMaturity,
    render_hand_film,
    write_hand_film,
)

__all__ = [
    "AGE_RANGE_MONTHS",
    "GIRLS_AHEAD",
    "GROWTH_KNOTS",
    "PHYSIS_MAX_MM",
    "PaediatricHand",
    "carpal_count",
    "chronological_age",
    "field_mm",
    "make_paediatric_hands",
    "maturity_stage",
    "render_paediatric_hand",
    "skeletal_maturity",
    "write_paediatric_hand_film",
    "write_rsna_layout",
]

Sex = Literal["M", "F"]

#: The ages this module renders (months): birth to 19 years.
AGE_RANGE_MONTHS = (0.0, 228.0)

#: A girl's maturity stage is her bone age times this (girls mature earlier).
GIRLS_AHEAD = 1.13

#: Hand length relative to the adult (male) hand, by stage in months.
GROWTH_KNOTS: tuple[tuple[float, float], ...] = (
    (0.0, 0.33),
    (12.0, 0.42),
    (24.0, 0.48),
    (60.0, 0.62),
    (120.0, 0.78),
    (156.0, 0.88),
    (180.0, 0.95),
    (216.0, 1.0),
)
_GIRLS_ADULT_SIZE = 0.93

#: The growth plate's width in a young child (mm on the child's hand, before the
#: phantom's own size factor of 0.72-0.98).
PHYSIS_MAX_MM = 2.5

# Carpal onset (months of stage), in the order of ``SkeletalMaturity.carpals``:
# scaphoid, lunate, triquetrum, pisiform, trapezium, trapezoid, capitate, hamate.
_CARPAL_ONSET = (70.0, 50.0, 30.0, 132.0, 66.0, 74.0, 3.0, 5.0)
_CARPAL_GROWTH = 120.0  # months from onset to adult size
_CARPAL_VISIBLE = 0.3  # ossified to this share of its size a carpal bone shows

# Epiphysis groups: onset, width of the metaphysis reached, fusion start, fusion end.
_EPIPHYSES = {
    "distal": (20.0, 120.0, 174.0, 192.0),
    "middle": (26.0, 130.0, 192.0, 210.0),
    "proximal": (16.0, 120.0, 186.0, 204.0),
    "metacarpal": (20.0, 125.0, 186.0, 204.0),
    "radius": (12.0, 130.0, 204.0, 222.0),
    "ulna": (84.0, 160.0, 198.0, 216.0),
}
_CAP = 0.15  # how much wider than the metaphysis an epiphysis grows when it caps it
_SESAMOID = (156.0, 36.0)  # onset, months to full size

_CONTRAST_POWER = 0.6  # bone contrast ∝ growth ** -0.6 (lower kV for smaller hands)
_MIN_PRESENT = 0.02  # as in hand_films: smaller ossification centres are not drawn
_BITS = 12


def maturity_stage(bone_age_months: float, sex: str) -> float:
    """The sex-neutral maturity stage (months): the bone age, a girl's scaled by 1.13."""
    _check_sex(sex)
    age = max(float(bone_age_months), 0.0)
    return age * GIRLS_AHEAD if sex == "F" else age


def _ramp(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _smoothstep(x: float) -> float:
    x = _ramp(x)
    return x * x * (3.0 - 2.0 * x)


def _epiphysis(
    stage: float, hand_growth: float, onset: float, wide: float, start: float, end: float
) -> Epiphysis:
    grown = _ramp((stage - onset) / (wide - onset)) ** 0.6
    capped = _CAP * _smoothstep((stage - wide) / (start - wide))
    size = grown + capped if stage > onset else 0.0
    # The plate's width is a width of cartilage, not a share of the hand: divided by the
    # growth, which the renderer multiplies every length by.
    gap = PHYSIS_MAX_MM * _ramp((start - stage) / start) ** 0.5 / hand_growth
    return Epiphysis(size=size, gap_mm=gap, fusion=_smoothstep((stage - start) / (end - start)))


def growth(stage: float, sex: str) -> float:
    """Hand length relative to the adult male hand the phantom's draws describe."""
    _check_sex(sex)
    ages, sizes = zip(*GROWTH_KNOTS, strict=True)
    g = float(np.interp(stage, ages, sizes))
    return g * _GIRLS_ADULT_SIZE if sex == "F" else g


def skeletal_maturity(bone_age_months: float, sex: str) -> SkeletalMaturity:
    """What a hand of this bone age and sex shows (see the module docstring)."""
    stage = maturity_stage(bone_age_months, sex)
    carpals = tuple(
        _ramp((stage - onset) / _CARPAL_GROWTH) ** 0.45 if stage > onset else 0.0
        for onset in _CARPAL_ONSET
    )
    onset, span = _SESAMOID
    hand_growth = growth(stage, sex)
    groups = {name: _epiphysis(stage, hand_growth, *timing) for name, timing in _EPIPHYSES.items()}
    return SkeletalMaturity(
        growth=hand_growth,
        carpals=(
            carpals[0],
            carpals[1],
            carpals[2],
            carpals[3],
            carpals[4],
            carpals[5],
            carpals[6],
            carpals[7],
        ),
        sesamoids=_ramp((stage - onset) / span) ** 0.6 if stage > onset else 0.0,
        **groups,
        bone_contrast=hand_growth**-_CONTRAST_POWER,
    )


def carpal_count(maturity: SkeletalMaturity, *, visible: float = _CARPAL_VISIBLE) -> int:
    """How many carpal bones show: ossified to at least ``visible`` of their adult size
    (a centre is drawn from 2 %, but a dot that small is lost on a 256 px film)."""
    return sum(1 for k in maturity.carpals if k >= visible)


def chronological_age(bone_age_months: float, rng: np.random.Generator) -> float:
    """A chronological age for a child of this bone age: a normal offset, SD 4 + 6 % of
    the age in months (about 11 months at 10 years), kept within 0-228 months."""
    age = float(bone_age_months)
    offset = float(rng.normal(0.0, 4.0 + 0.06 * age))
    return min(max(age + offset, 0.0), AGE_RANGE_MONTHS[1])


def field_mm(hand_growth: float) -> float:
    """The film's side (mm) for a hand of this ``growth``: 330 mm × growth ** 0.7, large
    enough that the phantom's largest hand fits whole at any angle (it is never shrunk,
    so Pixel Spacing tells its true size), and narrower for a small child, so a hand's
    size on the film grows with age as growth ** 0.3 (an infant's about 70 % of an
    adult's in pixels, 33 % in millimetres)."""
    return 330.0 * max(hand_growth, 0.05) ** 0.7


@dataclass(frozen=True, eq=False)
class PaediatricHand:
    """One paediatric hand film and its truth.

    ``image``: float32 (size, size) in [0, 1], MONOCHROME2 sense (bone bright, the
    collimator's shutter brightest). ``bone_age_months``: the label (what the film
    shows). ``angle_deg``: the hand's axis as rendered (90 = fingers up).
    ``marker_boxes``: (r0, c0, r1, c1), r1 / c1 exclusive, of the lead marker and the
    text label. ``hand_box``: the same for the hand's soft tissue inside the exposed
    field. Also: ``tissue_mask`` (True where the hand's soft tissue or bone is, inside the
    exposed field), ``maturity`` (what was drawn), ``laterality``, ``hand_scale`` (1: the
    hand is drawn at its true size), ``field`` (the exposed rectangle, top, bottom, left,
    right, in pixels).
    """

    image: npt.NDArray[np.float32]
    bone_age_months: float
    chronological_age_months: float
    sex: str
    pixel_spacing_mm: float
    angle_deg: float
    marker_boxes: tuple[tuple[int, int, int, int], ...]
    hand_box: tuple[int, int, int, int]
    tissue_mask: npt.NDArray[np.bool_] = dataclass_field(
        repr=False, default_factory=lambda: np.zeros((0, 0), dtype=bool)
    )
    maturity: SkeletalMaturity | None = None
    laterality: str = "L"
    hand_scale: float = 1.0
    field: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    seed: int = 0


def _check_sex(sex: str) -> None:
    if sex not in ("M", "F"):
        raise ValueError(f"sex must be 'M' or 'F', not {sex!r}")


_TISSUE_SIGNAL = 0.02  # anatomy signal above this is the hand (the soft tissue is ~0.2)
_MARKER_GAP = 0.04  # of the film side: markers keep at least this far from the hand
_EDGE_GAP = 0.03  # and from the shutter


def _font(height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(height, 6))


def _place(
    free: npt.NDArray[np.bool_], shape: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int] | None:
    """A top-left corner where a ``shape`` box lies wholly on ``free`` pixels, or None."""
    h, w = shape
    rows, cols = free.shape
    if h >= rows or w >= cols:
        return None
    # Summed-area table: the box is free where it holds h·w free pixels.
    table = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    table[1:, 1:] = np.cumsum(np.cumsum(free, axis=0), axis=1)
    inside = table[h:, w:] - table[:-h, w:] - table[h:, :-w] + table[:-h, :-w]
    ok = np.argwhere(inside == h * w)
    if ok.size == 0:
        return None
    r, c = ok[int(rng.integers(len(ok)))]
    return int(r), int(c)


def _draw_text(
    image: npt.NDArray[np.float32],
    text: str,
    height: int,
    free: npt.NDArray[np.bool_],
    rng: np.random.Generator,
    *,
    ink: float,
    plate: float | None,
) -> tuple[int, int, int, int] | None:
    """Draw ``text`` (on a plate of value ``plate`` when given) on a free spot; its box."""
    font = _font(height)
    left, top, right, bottom = font.getbbox(text)
    pad = max(2, height // 5)
    box_h, box_w = int(bottom - top) + 2 * pad, int(right - left) + 2 * pad
    corner = _place(free, (box_h, box_w), rng)
    if corner is None:
        return None
    r0, c0 = corner
    canvas = Image.new("L", (box_w, box_h), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, fill=255, font=font)
    alpha = np.asarray(canvas, dtype=np.float32) / 255.0
    view = image[r0 : r0 + box_h, c0 : c0 + box_w]
    if plate is not None:
        view[...] = plate
    view += alpha * (np.float32(ink) - view)
    free[max(r0 - pad, 0) : r0 + box_h + pad, max(c0 - pad, 0) : c0 + box_w + pad] = False
    return r0, c0, r0 + box_h, c0 + box_w


def _dilate(mask: npt.NDArray[np.bool_], radius: int) -> npt.NDArray[np.bool_]:
    """Square dilation by ``radius`` pixels (separable running maximum)."""
    out = mask.copy()
    for axis in (0, 1):
        grown = out.copy()
        for shift in range(1, radius + 1):
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(shift, None), slice(None, -shift)
            grown[tuple(lo)] |= out[tuple(hi)]
            grown[tuple(hi)] |= out[tuple(lo)]
        out = grown
    return out


_LABELS = ("ST ANNE", "PAEDS", "WARD 7", "RADIOL", "CHILD H", "XR WRIST")


def render_paediatric_hand(
    bone_age_months: float,
    sex: str,
    seed: int,
    *,
    size: int = 256,
    angle_deg: float = 90.0,
    markers: bool = True,
    noise: float = 1.0,
    chronological_age_months: float | None = None,
    laterality: Literal["L", "R"] = "L",
) -> PaediatricHand:
    """Render one hand film of this bone age and sex; everything else comes from ``seed``.

    ``size``: the film's side in pixels. ``angle_deg``: the hand's axis (90 upright).
    ``markers``: draw the lead laterality marker and a text label. ``noise``: the
    detector noise's scale (0 for none). ``chronological_age_months``: by default drawn
    from ``seed`` around the bone age (``chronological_age``). ``laterality``: which hand
    (the RSNA films are mostly left hands).
    """
    _check_sex(sex)
    age = float(bone_age_months)
    if not AGE_RANGE_MONTHS[0] <= age <= AGE_RANGE_MONTHS[1]:
        raise ValueError(f"bone age must lie in 0..228 months, not {age:g}")
    if size < 64:
        raise ValueError("a paediatric hand film needs at least 64 × 64 pixels")
    rng = np.random.default_rng([int(seed), 20290])
    chrono = (
        chronological_age(age, rng)
        if chronological_age_months is None
        else float(chronological_age_months)
    )
    maturity = skeletal_maturity(age, sex)
    side = field_mm(maturity.growth)
    film = render_hand_film(
        size,
        size,
        angle_deg=angle_deg,
        rng=rng,
        pixel_spacing_mm=side / size,
        laterality=laterality,
        bits_stored=_BITS,
        noise=noise,
        maturity=maturity,
        forearm_margin_mm=20.0 * maturity.growth,
        keep_signal=True,
    )
    assert film.signal is not None
    image = film.pixels.astype(np.float32) / np.float32(2**_BITS - 1)
    top, bottom, left, right = film.field
    in_field = np.zeros((size, size), dtype=bool)
    r_lo, r_hi = math.ceil(top), math.floor(bottom)
    c_lo, c_hi = math.ceil(left), math.floor(right)
    in_field[r_lo:r_hi, c_lo:c_hi] = True
    tissue = (film.signal > _TISSUE_SIGNAL) & in_field
    rows, cols = np.flatnonzero(tissue.any(axis=1)), np.flatnonzero(tissue.any(axis=0))
    hand_box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    boxes: list[tuple[int, int, int, int]] = []
    if markers:
        edge = max(2, round(_EDGE_GAP * size))
        free = np.zeros((size, size), dtype=bool)
        free[r_lo + edge : r_hi - edge, c_lo + edge : c_hi - edge] = True
        free &= ~_dilate(tissue, max(2, round(_MARKER_GAP * size)))
        letter = _draw_text(image, laterality, round(0.07 * size), free, rng, ink=0.97, plate=0.55)
        label = _LABELS[int(rng.integers(len(_LABELS)))]
        text = _draw_text(image, label, round(0.04 * size), free, rng, ink=0.9, plate=None)
        boxes = [box for box in (letter, text) if box is not None]
    np.clip(image, 0.0, 1.0, out=image)
    return PaediatricHand(
        image=image,
        bone_age_months=age,
        chronological_age_months=chrono,
        sex=sex,
        pixel_spacing_mm=film.pixel_spacing_mm,
        angle_deg=film.angle_deg,
        marker_boxes=tuple(boxes),
        hand_box=hand_box,
        tissue_mask=tissue,
        maturity=maturity,
        laterality=laterality,
        hand_scale=film.hand_scale,
        field=film.field,
        seed=int(seed),
    )


def make_paediatric_hands(
    seed: int,
    count: int,
    *,
    size: int = 256,
    age_range_months: tuple[float, float] = (12.0, 216.0),
    angle_deg: float | None = 90.0,
    markers: bool = True,
    noise: float = 1.0,
) -> list[PaediatricHand]:
    """``count`` films: bone ages uniform in ``age_range_months``, sexes alternating
    (balanced, the first drawn), ``angle_deg`` None for a random upright ±15°."""
    lo, hi = (float(v) for v in age_range_months)
    if not AGE_RANGE_MONTHS[0] <= lo <= hi <= AGE_RANGE_MONTHS[1]:
        raise ValueError(f"age_range_months must lie within 0..228, not {age_range_months}")
    if count < 0:
        raise ValueError("count must not be negative")
    rng = np.random.default_rng([int(seed), 20291])
    first = int(rng.integers(2))
    hands = []
    for index in range(count):
        age = float(rng.uniform(lo, hi))
        angle = 90.0 + float(rng.uniform(-15.0, 15.0)) if angle_deg is None else angle_deg
        sex: Sex = "M" if (index + first) % 2 == 0 else "F"
        film_seed = int(rng.integers(2**31))
        hands.append(
            render_paediatric_hand(
                age, sex, film_seed, size=size, angle_deg=angle, markers=markers, noise=noise
            )
        )
    return hands


def _age_string(months: float) -> str:
    """DICOM Age String (AS): months below 8 years' worth, else years."""
    whole = int(months)
    if whole < 96:
        return f"{whole:03d}M"
    return f"{min(whole // 12, 999):03d}Y"


def write_paediatric_hand_film(
    hand: PaediatricHand,
    path: Path,
    *,
    modality: str = "DX",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    patient_sex: str | None | EllipsisType = ...,
    seed: int = 0,
) -> Path:
    """Write ``hand`` as a DX (default) or CR hand film, a DICOM Part 10 file.

    Body Part Examined HAND, view PA, Image Laterality from the hand. ``patient_sex``:
    by default the hand's sex; a value ("M", "F", "O", or "" for unknown, which dciodvfy
    accepts) is written as given; None leaves PatientSex out (as some senders do;
    dciodvfy then reports the missing Type 2 element). StudyDate is a date drawn from
    ``seed`` and PatientBirthDate lies ``chronological_age_months`` before it (a month
    being 30.4375 days); PatientAge says the same. Burned In Annotation is YES when the
    film carries a text label. UIDs default to ones derived from ``seed`` and the film.
    """
    if modality not in ("DX", "CR"):
        raise ValueError(f"modality must be 'DX' or 'CR', not {modality!r}")
    if patient_sex is not ... and patient_sex not in (None, "M", "F", "O", ""):
        raise ValueError(f"patient_sex must be 'M', 'F', 'O', '' or None, not {patient_sex!r}")
    rng = np.random.default_rng([int(seed), hand.seed, 20292])
    study_day = datetime(2024, 1, 1, 9, 0, 0) + timedelta(
        days=int(rng.integers(0, 700)), minutes=int(rng.integers(0, 480))
    )
    birth = study_day - timedelta(days=round(hand.chronological_age_months * 30.4375))
    entropy = [str(seed), str(hand.seed), f"{hand.bone_age_months:.6f}", hand.sex]
    study = study_instance_uid or generate_uid(
        prefix=f"{SYNTHETIC_UID_ROOT}.29.1.", entropy_srcs=entropy
    )
    series = series_instance_uid or generate_uid(
        prefix=f"{SYNTHETIC_UID_ROOT}.29.2.", entropy_srcs=[study, *entropy]
    )
    instance = generate_uid(prefix=f"{SYNTHETIC_UID_ROOT}.29.3.", entropy_srcs=[series, *entropy])
    sex = hand.sex if patient_sex is ... else patient_sex
    top = 2**_BITS - 1
    pixels = np.rint(np.clip(hand.image, 0.0, 1.0) * top).astype(np.uint16)
    laterality: Literal["L", "R"] = "R" if hand.laterality == "R" else "L"
    path = write_hand_film(
        Path(path),
        pixels,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=instance,
        modality="CR" if modality == "CR" else "DX",
        patient_name="Phantom^Child",
        patient_id=f"CHILD-{hand.seed}",
        patient_sex="",
        patient_birth_date=birth.strftime("%Y%m%d"),
        pixel_spacing_mm=hand.pixel_spacing_mm,
        laterality=laterality,
        bits_stored=_BITS,
        angle_deg=hand.angle_deg,
        acquired_at=study_day,
        institution_name="Synthetic Children's Hospital",
    )
    ds = pydicom.dcmread(path)
    if sex is None:
        del ds.PatientSex
    else:
        ds.PatientSex = sex
    ds.PatientAge = _age_string(hand.chronological_age_months)
    ds.StudyDescription = "XR HAND BONE AGE"
    ds.BurnedInAnnotation = "YES" if len(hand.marker_boxes) > 1 else "NO"
    ds.ImageComments = (
        f"Synthetic paediatric hand phantom, bone age {hand.bone_age_months:.1f} months, "
        f"main axis at {hand.angle_deg % 360.0:.3f} deg"
    )
    ds.save_as(path, enforce_file_format=True)
    return path


def write_rsna_layout(
    folder: Path, hands: Sequence[PaediatricHand], *, image_format: str = "png"
) -> Path:
    """Write ``hands`` in the RSNA bone-age layout; returns the labels CSV's path.

    ``folder/images/<id>.<image_format>`` (8-bit grayscale, ids 1, 2, ... in order) and
    ``folder/labels.csv`` with the columns ``id,boneage,male`` (bone age in months,
    ``male`` True / False), as the RSNA Pediatric Bone Age Challenge ships them.
    """
    fmt = image_format.lower().lstrip(".")
    if fmt not in ("png", "jpg", "jpeg"):
        raise ValueError(f"image_format must be png or jpg, not {image_format!r}")
    folder = Path(folder)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "labels.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "boneage", "male"])
        for index, hand in enumerate(hands, start=1):
            pixels = np.rint(np.clip(hand.image, 0.0, 1.0) * 255.0).astype(np.uint8)
            Image.fromarray(pixels).save(images / f"{index}.{fmt}")
            writer.writerow([index, f"{hand.bone_age_months:.2f}", hand.sex == "M"])
    return csv_path
