"""Synthetic CT phantoms of the whole body for the ``ct_body_part`` pipeline.

The ``ct_body_part`` pipeline (Unsupervised Body-part Regression, UBR) learns a per-slice
body-position score from the order of the slices alone, so its phantoms need axial
sections that change smoothly and recognisably along the body and differ between
subjects. Here every subject is an analytic body in DICOM patient coordinates (LPS: +x is
the patient's left, +y posterior, +z superior) standing in z: the vertex is at z ≈ 0 mm,
everything else lies below. A slice at z is painted from ellipses whose centres, axes and
values are smooth functions of z relative to the subject's landmarks, in numpy, pixel
windows only.

Zones (the ground truth, per subject; a boundary belongs to the zone above it):

- ``head_neck``: vertex → lung apex (≈ 0 to −250 mm);
- ``chest``: lung apex → liver dome (≈ −250 to −480 mm);
- ``abdomen``: liver dome → iliac crest, the upper border of the ilium (≈ −480 to −700);
- ``pelvis``: iliac crest → below the ischial tuberosities, the upper thighs (≈ −700 to
  −900).

A subject's landmarks are a canonical body's (``CANONICAL_LANDMARKS``) with independent
jitter, times a height scale in ``HEIGHT_SCALE_RANGE``; anatomy is defined in the canonical
body and mapped to the subject piecewise linearly between landmarks, so the liver starts
exactly at the subject's liver dome, the lungs at its lung apex and the iliac wings at its
iliac crest. Other per-subject variation: widths and depths, muscle and subcutaneous fat
(its share over the chest, waist and hips) and the trunk's proportions,
organ sizes, bowel loops, lung vessels, bladder filling, sex (breasts, prostate or
uterus), arms up or down, intravenous contrast or not, the body's position (a few cm) and
in-plane rotation (±5°) in the field of view, a patient couch, and noise.

Per scan, ``random_scan`` also draws how a scanner would reconstruct it
(``Scan.reconstruction``, a ``ct_reconstruction.Reconstruction``): the field of view
(250 to 500 mm for the body, 200 to 300 mm for heads, ≈ 10 % targeted 150 to 250 mm
reconstructions on the spine or off-centre) and its centre, the patient a few more cm
off the isocentre, padding outside the reconstruction circle (−2048, −1024, −3024 or
−2000), a couch (flat board or curved cradle, with or without a foam mattress, a head
holder for head protocols), fat, muscle and lung texture, the kernel (soft, standard,
sharp), noise with a CT noise power spectrum (5 to 40 HU), streaks near dense bone and,
in ≈ 5 % of scans, metal (a hip prosthesis or dental fillings) with its streaks.
``render_slice(..., reconstruction=scan.reconstruction)`` renders a slice through it,
``write_ct_series(..., reconstruction=...)`` writes it (with Pixel Padding Value); without
one both render as before.

Anatomy: head (scalp, skull, brain with white matter and ventricles, orbits and globes,
ethmoid, nasal cavity, maxillary sinuses, mastoids, petrous bones, clivus, palate, teeth,
mandible), neck (pharynx, larynx, trachea, thyroid, oesophagus, cervical spine), chest
(lungs with vessels, heart, aortic arch, ascending and descending aorta, pulmonary trunk,
SVC, bronchi, sternum, clavicles, scapulae, ribs with costal cartilage, breasts), abdomen
(liver with its left lobe, gallbladder, stomach with an air-fluid level, spleen, pancreas,
kidneys with renal sinus fat, IVC, aorta and iliac arteries, psoas, small bowel loops and
colon with gas) and pelvis (iliac wings, sacrum, acetabula, femoral heads, necks,
trochanters and shafts, ischia, pubic rami, bladder, rectum, prostate or uterus, thighs).
Vertebral bodies alternate with discs. Values are Hounsfield units: air −1000, fat −100,
muscle ≈ 45, liver ≈ 60, blood 40 (≈ 160 with contrast), lung −860, cortical bone up to
≈ 1000, cancellous bone ≈ 250, brain 28 to 36, water 5, bowel gas −950.

Pixels: ``render_slice`` returns float32 HU, rows along +y (posterior down), columns along
+x (the patient's right on the image's left), the field of view ``size × pixel_spacing``
mm centred on the isocentre (or the reconstruction's field and centre), clipped to
[−1024, 3071] (the padding apart). Edges are anti-aliased (partial volume); without a
reconstruction the noise is Gaussian (a 2 × 2 grain); everything random is seeded by the
subject, z, size, spacing and the reconstruction's seed, so the same call gives the same
picture. About 5 ms for 512 × 512 and 1 ms for 128 × 128 on one core; through a
reconstruction about 10 ms and 2 ms.

Files: ``write_ct_series`` writes a CT Image Storage series (explicit VR little endian,
16-bit signed, Rescale Intercept 0: stored values are HU) with exact geometry; ``anatomy_order`` can make the pixel
data disagree with the geometry ("reversed" or "mixed") and ``shuffle_instance_numbers``
makes Instance Number useless for sorting, for the pipeline's tests.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from training.synthetic.ct_reconstruction import (
    METAL_HU,
    Metal,
    Reconstruction,
    TissueValues,
    add_streaks,
    add_textures,
    draw_reconstruction,
    filter_and_noise,
    outside_field,
    paint_table,
)
from training.synthetic.hand_films import SYNTHETIC_UID_ROOT

__all__ = [
    "BODY_PARTS",
    "CANONICAL_LANDMARKS",
    "HEIGHT_SCALE_RANGE",
    "REGIONS",
    "SPACINGS_MM",
    "ZONES",
    "Phantom",
    "Reconstruction",
    "Scan",
    "WrittenSeries",
    "body_mask",
    "make_phantom",
    "random_scan",
    "render_slice",
    "render_volume",
    "write_ct_phantom_series",
    "write_ct_series",
    "write_ct_study",
    "write_multi_frame_ct",
]

_FloatArray = npt.NDArray[np.float32]
AnatomyOrder = Literal["normal", "reversed", "mixed"]

ZONES = ("head_neck", "chest", "abdomen", "pelvis")

#: Landmarks of the canonical body: mm of patient z, the vertex at 0.
CANONICAL_LANDMARKS: dict[str, float] = {
    "vertex": 0.0,
    "skull_base": -110.0,
    "chin": -195.0,
    "lung_apex": -250.0,
    "carina": -330.0,
    "liver_dome": -480.0,
    "iliac_crest": -700.0,
    "femoral_head": -815.0,
    "pelvis_bottom": -900.0,
}

#: Each landmark moves by up to this much (mm, uniform) before the height scale.
_LANDMARK_JITTER: dict[str, float] = {
    "vertex": 0.0,
    "skull_base": 6.0,
    "chin": 8.0,
    "lung_apex": 12.0,
    "carina": 10.0,
    "liver_dome": 18.0,
    "iliac_crest": 18.0,
    "femoral_head": 10.0,
    "pelvis_bottom": 12.0,
}

#: Range of the overall height scale of a subject.
HEIGHT_SCALE_RANGE = (0.85, 1.15)
_VERTEX_JITTER_MM = 5.0

#: The zones' (top, bottom) landmarks.
_ZONE_LANDMARKS: dict[str, tuple[str, str]] = {
    "head_neck": ("vertex", "lung_apex"),
    "chest": ("lung_apex", "liver_dome"),
    "abdomen": ("liver_dome", "iliac_crest"),
    "pelvis": ("iliac_crest", "pelvis_bottom"),
}

#: Slice spacings (mm) a random scan picks from.
SPACINGS_MM = (1.0, 1.25, 2.0, 2.5, 3.0, 5.0)

#: Scan protocols: (top landmark, offset mm, bottom landmark, offset mm, weight); positive
#: offsets are superior. Random margins are added to both ends.
REGIONS: dict[str, tuple[str, float, str, float, float]] = {
    "head": ("vertex", 10.0, "chin", -20.0, 0.05),
    "head_neck": ("vertex", 10.0, "lung_apex", -30.0, 0.05),
    "neck": ("skull_base", 20.0, "lung_apex", -35.0, 0.03),
    "neck_chest": ("skull_base", 10.0, "liver_dome", -70.0, 0.04),
    "head_neck_chest": ("vertex", 10.0, "liver_dome", -70.0, 0.03),
    "chest": ("lung_apex", 35.0, "liver_dome", -75.0, 0.2),
    "chest_abdomen": ("lung_apex", 35.0, "iliac_crest", -40.0, 0.05),
    "abdomen": ("liver_dome", 40.0, "iliac_crest", -40.0, 0.07),
    "abdomen_pelvis": ("liver_dome", 40.0, "pelvis_bottom", 0.0, 0.18),
    "pelvis": ("iliac_crest", 35.0, "pelvis_bottom", 0.0, 0.05),
    "chest_abdomen_pelvis": ("lung_apex", 35.0, "pelvis_bottom", 0.0, 0.18),
    "neck_chest_abdomen_pelvis": ("skull_base", 10.0, "pelvis_bottom", 0.0, 0.03),
    "whole_body": ("vertex", 10.0, "pelvis_bottom", 0.0, 0.04),
}

#: Body Part Examined (PS3.16 Annex L defined terms) of each protocol; None: not sent.
BODY_PARTS: dict[str, str | None] = {
    "head": "HEAD",
    "head_neck": "HEADNECK",
    "neck": "NECK",
    "neck_chest": "NECKCHEST",
    "head_neck_chest": None,
    "chest": "CHEST",
    "chest_abdomen": "CHESTABDOMEN",
    "abdomen": "ABDOMEN",
    "abdomen_pelvis": "ABDOMENPELVIS",
    "pelvis": "PELVIS",
    "chest_abdomen_pelvis": "CHESTABDPELVIS",
    "neck_chest_abdomen_pelvis": "NECKCHESTABDPELV",
    "whole_body": "WHOLEBODY",
}

_HU_MIN, _HU_MAX = -1024.0, 3071.0
AIR = -1000.0


# -- smooth profiles -------------------------------------------------------------------------


def _smoothstep(t: float) -> float:
    if t <= 0.0:
        return 0.0
    if t >= 1.0:
        return 1.0
    return t * t * (3.0 - 2.0 * t)


def _ramp(c: float, start: float, end: float) -> float:
    """0 at ``start``, 1 at ``end`` (either order of the two), smooth in between."""
    return _smoothstep((c - start) / (end - start))


def _bump(c: float, top: float, bottom: float, peak: float = 0.5) -> float:
    """An ellipsoid's profile: 0 outside (bottom, top), 1 at ``peak`` of the way down."""
    if c >= top or c <= bottom:
        return 0.0
    t = (top - c) / (top - bottom)
    u = (t - peak) / peak if t < peak else (t - peak) / (1.0 - peak)
    return math.sqrt(max(0.0, 1.0 - u * u))


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


class _Profile:
    """Values at knots (c descending), joined by smoothsteps; constant beyond the ends."""

    def __init__(self, knots: Sequence[tuple[float, ...]]) -> None:
        self._x = [-k[0] for k in knots]
        self._v = [k[1:] for k in knots]
        if any(b <= a for a, b in zip(self._x, self._x[1:], strict=False)):
            raise ValueError("knots must be in descending order")

    def __call__(self, c: float) -> tuple[float, ...]:
        x = -c
        i = bisect_right(self._x, x)
        if i == 0:
            return self._v[0]
        if i == len(self._x):
            return self._v[-1]
        t = _smoothstep((x - self._x[i - 1]) / (self._x[i] - self._x[i - 1]))
        lo, hi = self._v[i - 1], self._v[i]
        return tuple(a + (b - a) * t for a, b in zip(lo, hi, strict=True))


# Lean (fat-free) half-width and half-depth of the body (mm) and the fat factor, below the
# widest level of the head; above it the head is an ellipsoidal cap. The fat factor is
# nearly flat over the trunk: how a subject's fat is shared between chest, waist and hips
# is its own (``Phantom.fat_distribution``), so fat thickness says who the subject is, not
# how far down the body a slice lies.
_HEAD_CAP_C = -88.0
_HEAD_CAP = (70.0, 90.0)
_OUTLINE = _Profile(
    [
        (-88.0, 70.0, 90.0, 0.12),
        (-120.0, 67.0, 93.0, 0.15),
        (-160.0, 58.0, 84.0, 0.3),
        (-192.0, 52.0, 70.0, 0.45),
        (-215.0, 50.0, 56.0, 0.55),
        (-230.0, 57.0, 58.0, 0.6),
        (-274.0, 142.0, 86.0, 0.85),
        (-300.0, 150.0, 98.0, 0.95),
        (-400.0, 152.0, 106.0, 1.0),
        (-480.0, 148.0, 106.0, 1.0),
        (-560.0, 138.0, 100.0, 1.05),
        (-650.0, 136.0, 98.0, 1.1),
        (-700.0, 145.0, 98.0, 1.1),
        (-780.0, 158.0, 100.0, 1.1),
        (-830.0, 165.0, 100.0, 1.05),
        (-865.0, 150.0, 90.0, 1.0),
        (-895.0, 85.0, 62.0, 0.95),
        (-915.0, 0.0, 0.0, 1.0),
    ]
)
# Muscle thickness (mm) of the trunk's wall at the sides, front and back: the cavity
# narrows to the true pelvis between the hips.
_MUSCLE = _Profile(
    [
        (-240.0, 14.0, 12.0, 28.0),
        (-680.0, 14.0, 12.0, 30.0),
        (-740.0, 24.0, 12.0, 40.0),
        (-800.0, 50.0, 14.0, 55.0),
        (-840.0, 68.0, 14.0, 60.0),
    ]
)
# Vertebral body radius, spinal canal radius, spinous process length (mm).
_SPINE = _Profile(
    [
        (-112.0, 8.0, 6.5, 10.0),
        (-240.0, 9.0, 6.5, 12.0),
        (-268.0, 12.0, 6.0, 22.0),
        (-555.0, 17.0, 6.5, 24.0),
        (-700.0, 21.0, 8.0, 24.0),
    ]
)
# Vertebral levels: C1 … C7, T1 … T12, L1 … L5 (index 0 … 24) along canonical z.
_LEVEL_C = np.array([112.0, 245.0, 555.0, 706.0])
_LEVEL_INDEX = np.array([0.0, 7.0, 19.0, 24.0])
_SACRUM_TOP, _SACRUM_BOTTOM = -706.0, -835.0
# Ribs: posterior end of rib k at _RIB_TOP − k·_RIB_PITCH, dropping _RIB_DROP towards the front.
_RIB_TOP, _RIB_PITCH, _RIB_DROP = -256.0, 24.0, 150.0
_RIB_BONE_END = (0.8, 0.82, 0.82, 0.82, 0.8, 0.78, 0.76, 0.72, 0.68, 0.62, 0.5, 0.42)
_RIB_CARTILAGE_END = (0.95, 0.95, 0.95, 0.95, 0.94, 0.93, 0.9, 0.86, 0.82, 0.78, 0.5, 0.42)
# The iliac wing from the crest (t = 0) to the acetabular roof (t = 1): centre along the
# sacroiliac → anterior superior iliac spine line, half-length as a fraction of it, and
# thickness (mm).
_ILIUM = _Profile(
    [
        (0.0, 0.64, 0.0, 3.0),
        (-0.12, 0.6, 0.26, 5.0),
        (-0.4, 0.5, 0.46, 7.0),
        (-0.72, 0.45, 0.4, 12.0),
        (-1.0, 0.45, 0.2, 26.0),
    ]
)


# -- the phantom ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phantom:
    """One synthetic subject: landmarks, zones and the parameters of its anatomy.

    ``zones`` maps each of ``ZONES`` to (z_top, z_bottom) in mm of patient z, contiguous
    and in order. ``landmarks`` holds the subject's z of each of ``CANONICAL_LANDMARKS``.
    Sizes are factors on the canonical body; ``offset_mm`` (x, y) and ``rotation_deg``
    place the body in the field of view; ``back_y_mm`` is the y of its back (the couch).
    """

    seed: int
    zones: dict[str, tuple[float, float]]
    landmarks: dict[str, float]
    height_scale: float
    head_scale: float
    width_scale: float
    depth_scale: float
    muscle_scale: float
    fat_mm: float
    sex: Literal["M", "F"]
    age_years: int
    offset_mm: tuple[float, float]
    rotation_deg: float
    back_y_mm: float
    noise_hu: float
    table: bool
    arms_down: bool
    contrast: bool
    breast_scale: float
    bladder_fill: float
    organ_scale: dict[str, float]
    hu: dict[str, float]
    bowel: tuple[tuple[float, ...], ...]
    lung_vessels: tuple[tuple[float, ...], ...]
    #: Subcutaneous fat over the chest, the waist and the hips, as factors on ``fat_mm``.
    fat_distribution: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: The trunk's lean width at the chest, the waist and the hips, as factors.
    trunk_shape: tuple[float, float, float] = (1.0, 1.0, 1.0)
    _z_knots: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _c_knots: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pairs = sorted((self.landmarks[k], CANONICAL_LANDMARKS[k]) for k in CANONICAL_LANDMARKS)
        object.__setattr__(self, "_z_knots", tuple(p[0] for p in pairs))
        object.__setattr__(self, "_c_knots", tuple(p[1] for p in pairs))

    @property
    def z_top(self) -> float:
        """The top of the head (mm)."""
        return self.zones["head_neck"][0]

    @property
    def z_bottom(self) -> float:
        """The lowest z the phantom defines: the bottom of the pelvis zone (upper thighs)."""
        return self.zones["pelvis"][1]

    def zone_at(self, z_mm: float) -> str | None:
        """The zone containing ``z_mm``; a boundary belongs to the zone above it."""
        for name in ZONES:
            top, bottom = self.zones[name]
            if bottom <= z_mm <= top:
                return name
        return None

    def canonical_z(self, z_mm: float) -> float:
        """The canonical body's z (mm) of the subject's ``z_mm`` (piecewise linear)."""
        zs, cs = self._z_knots, self._c_knots
        if z_mm >= zs[-1]:
            return cs[-1] + (z_mm - zs[-1]) / self.height_scale
        if z_mm <= zs[0]:
            return cs[0] + (z_mm - zs[0]) / self.height_scale
        i = bisect_right(zs, z_mm)
        t = (z_mm - zs[i - 1]) / (zs[i] - zs[i - 1])
        return cs[i - 1] + t * (cs[i] - cs[i - 1])


_ORGANS = ("lungs", "heart", "liver", "spleen", "stomach", "kidneys", "aorta", "brain")


def make_phantom(seed: int) -> Phantom:
    """A random subject, the same for the same ``seed``."""
    rng = np.random.default_rng([abs(int(seed)), 1 if seed < 0 else 0, 0x43545048])
    u = rng.uniform
    height = float(u(*HEIGHT_SCALE_RANGE))
    vertex = float(u(-_VERTEX_JITTER_MM, _VERTEX_JITTER_MM))
    landmarks = {
        name: round(vertex + height * (c + float(u(-1.0, 1.0)) * _LANDMARK_JITTER[name]), 3)
        for name, c in CANONICAL_LANDMARKS.items()
    }
    zones = {
        zone: (landmarks[top], landmarks[bottom]) for zone, (top, bottom) in _ZONE_LANDMARKS.items()
    }
    sex: Literal["M", "F"] = "F" if rng.random() < 0.5 else "M"
    build = float(u(-1.0, 1.0))  # a common factor of width, depth and fat
    width = 1.0 + 0.08 * build + float(u(-0.05, 0.05)) - (0.04 if sex == "F" else 0.0)
    depth = 1.0 + 0.1 * build + float(u(-0.06, 0.06))
    fat = float(np.clip(16.0 + 11.0 * build + float(u(-6.0, 6.0)), 4.0, 34.0))
    contrast = bool(rng.random() < 0.4)
    hu = {
        "fat": float(u(-110.0, -90.0)),
        "muscle": float(u(40.0, 50.0)),
        "soft": float(u(35.0, 45.0)),
        "liver": float(u(56.0, 68.0)) + (45.0 if contrast else 0.0),
        "spleen": float(u(44.0, 50.0)) + (45.0 if contrast else 0.0),
        "kidney": float(u(28.0, 36.0)) + (120.0 if contrast else 0.0),
        "blood": float(u(36.0, 44.0)) + (float(u(120.0, 200.0)) if contrast else 0.0),
        "lung": float(u(-880.0, -830.0)),
        "bone": float(u(900.0, 1100.0)),
        "cancellous": float(u(200.0, 320.0)),
        "brain": float(u(33.0, 39.0)),
    }
    bowel = []
    for _ in range(int(rng.integers(18, 28))):
        kind = float(rng.choice([0.0, 1.0, 2.0], p=[0.5, 0.15, 0.35]))
        bowel.append(
            (
                float(u(-830.0, -565.0)),  # canonical z of its centre
                float(u(14.0, 34.0)),  # half-length along z
                float(u(-0.55, 0.55)),  # x, fraction of the cavity's half-width
                float(u(-0.75, 0.2)),  # y, fraction of its half-depth
                float(u(8.0, 15.0)),  # radius
                kind,  # 0 fluid, 1 gas, 2 mixed
                float(u(0.0, 2.0 * math.pi)),
            )
        )
    vessels = []
    for side in (-1.0, 1.0):
        for _ in range(int(rng.integers(7, 12))):
            radius = math.sqrt(float(u(0.0, 1.0))) * 0.72
            angle = float(u(0.0, 2.0 * math.pi))
            vessels.append(
                (
                    side,
                    radius * math.cos(angle),
                    radius * math.sin(angle),
                    float(u(1.2, 4.0)),
                    float(u(25.0, 60.0)),  # wavelength of its drift along z
                    float(u(0.0, 2.0 * math.pi)),
                )
            )
    # Where the fat lies and the trunk's proportions differ between people (central or
    # hip fat; broad chest or broad hips) and are drawn independently of the build, so
    # neither is a cue to the level along the body that holds across subjects.
    hips = 0.15 if sex == "F" else -0.1
    fat_distribution = (
        float(u(0.55, 1.35)),
        float(u(0.55, 1.6)),
        float(u(0.55, 1.35)) + hips,
    )
    trunk_shape = (
        1.0 + float(u(-0.08, 0.08)),
        1.0 + float(u(-0.1, 0.08)),
        1.0 + float(u(-0.08, 0.08)) + 0.4 * hips,
    )
    return Phantom(
        seed=int(seed),
        zones=zones,
        landmarks=landmarks,
        height_scale=height,
        head_scale=float(u(0.93, 1.07)),
        width_scale=width,
        depth_scale=depth,
        muscle_scale=float(u(0.8, 1.2)),
        fat_mm=fat,
        sex=sex,
        age_years=int(rng.integers(18, 90)),
        offset_mm=(float(u(-30.0, 30.0)), float(u(-25.0, 25.0))),
        rotation_deg=float(u(-5.0, 5.0)),
        back_y_mm=float(u(100.0, 125.0)),
        noise_hu=float(u(10.0, 22.0)),
        table=bool(rng.random() < 0.85),
        arms_down=bool(rng.random() < 0.3),
        contrast=contrast,
        breast_scale=float(u(0.6, 1.3)) if sex == "F" else 0.0,
        bladder_fill=float(u(0.45, 1.3)),
        organ_scale={name: float(u(0.85, 1.15)) for name in _ORGANS},
        hu=hu,
        bowel=tuple(bowel),
        lung_vessels=tuple(vessels),
        fat_distribution=fat_distribution,
        trunk_shape=trunk_shape,
    )


# -- the canvas ------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _body_grid(
    size: int, spacing: float, rotation_deg: float, ox: float, oy: float
) -> tuple[_FloatArray, _FloatArray]:
    """Body coordinates (X, Y) of every pixel centre: scanner = R(rotation)·body + offset."""
    coord = (np.arange(size, dtype=np.float64) - (size - 1) / 2.0) * spacing
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    xs, ys = coord - ox, coord - oy
    x = np.add.outer(ys * s, xs * c).astype(np.float32)
    y = np.add.outer(ys * c, -xs * s).astype(np.float32)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


_Window = tuple[slice, slice]
_Ellipse = tuple[float, float, float, float]


class _Canvas:
    """A HU image painted with anti-aliased ellipses given in body coordinates (mm)."""

    def __init__(
        self,
        size: int,
        spacing: float,
        phantom: Phantom,
        offset: tuple[float, float] | None = None,
    ) -> None:
        self.size = size
        self.ps = spacing
        self.half = (size - 1) / 2.0 * spacing
        self.cos = math.cos(math.radians(phantom.rotation_deg))
        self.sin = math.sin(math.radians(phantom.rotation_deg))
        # The body's offset from the image centre (mm): the phantom's own, or as a
        # reconstruction places it.
        self.ox, self.oy = phantom.offset_mm if offset is None else offset
        self.X, self.Y = _body_grid(size, spacing, phantom.rotation_deg, self.ox, self.oy)
        self.img = np.full((size, size), AIR, dtype=np.float32)

    def window(self, bx: float, by: float, radius: float) -> _Window | None:
        """Pixels within ``radius`` (a square) of the body point (bx, by)."""
        sx = self.ox + self.cos * bx - self.sin * by + self.half
        sy = self.oy + self.sin * bx + self.cos * by + self.half
        inv = 1.0 / self.ps
        j0 = max(math.floor((sx - radius) * inv), 0)
        j1 = min(math.ceil((sx + radius) * inv) + 1, self.size)
        i0 = max(math.floor((sy - radius) * inv), 0)
        i1 = min(math.ceil((sy + radius) * inv) + 1, self.size)
        if j0 >= j1 or i0 >= i1:
            return None
        return slice(i0, i1), slice(j0, j1)

    def coverage(
        self, win: _Window, cx: float, cy: float, a: float, b: float, angle: float = 0.0
    ) -> _FloatArray:
        """Partial-volume coverage (0..1) of the ellipse in the window."""
        u = self.X[win] - np.float32(cx)
        v = self.Y[win] - np.float32(cy)
        if angle:
            ca, sa = np.float32(math.cos(angle)), np.float32(math.sin(angle))
            u, v = u * ca + v * sa, v * ca - u * sa
        u *= u
        u *= np.float32(1.0 / (a * a))
        v *= v
        v *= np.float32(1.0 / (b * b))
        u += v
        # (1 − q) · min(a, b) / 2 is about the distance inside the edge, in mm.
        k = min(a, b) / (2.0 * self.ps)
        u *= np.float32(-k)
        u += np.float32(0.5 + k)
        np.clip(u, 0.0, 1.0, out=u)
        return u

    def blend(self, win: _Window, cov: _FloatArray, value: float) -> None:
        region = self.img[win]
        delta = np.float32(value) - region
        delta *= cov
        region += delta

    def ellipse(
        self,
        cx: float,
        cy: float,
        a: float,
        b: float,
        value: float,
        *,
        angle_deg: float = 0.0,
        hole: tuple[float, float] | None = None,
        within: _Ellipse | None = None,
        clip: tuple[float, float, float] | None = None,
    ) -> None:
        """Paint an ellipse, optionally a ring (``hole``: inner half-axes), cut to another
        ellipse ``within`` (cx, cy, a, b) and to the half-plane nx·X + ny·Y ≤ d (``clip``)."""
        if a < 0.2 or b < 0.2:
            return
        win = self.window(cx, cy, max(a, b) + 2.0 * self.ps)
        if win is None:
            return
        angle = math.radians(angle_deg)
        cov = self.coverage(win, cx, cy, a, b, angle)
        if hole is not None and hole[0] > 0.2 and hole[1] > 0.2:
            cov *= 1.0 - self.coverage(win, cx, cy, hole[0], hole[1], angle)
        if within is not None:
            if within[2] < 0.2 or within[3] < 0.2:
                return
            cov *= self.coverage(win, *within)
        if clip is not None:
            nx, ny, d = clip
            side = self.X[win] * np.float32(-nx / self.ps)
            side -= self.Y[win] * np.float32(ny / self.ps)
            side += np.float32(d / self.ps + 0.5)
            np.clip(side, 0.0, 1.0, out=side)
            cov *= side
        self.blend(win, cov, value)

    def bone(
        self,
        cx: float,
        cy: float,
        a: float,
        b: float,
        cortex: float,
        marrow: float,
        *,
        shell: float = 2.5,
        angle_deg: float = 0.0,
    ) -> None:
        """A bone: a cortical ellipse with a cancellous (or marrow) core."""
        self.ellipse(cx, cy, a, b, cortex, angle_deg=angle_deg)
        if a > shell + 1.0 and b > shell + 1.0:
            self.ellipse(cx, cy, a - shell, b - shell, marrow, angle_deg=angle_deg)

    def table(self, y_top: float) -> None:
        """The patient couch in scanner coordinates: a curved carbon shell over foam."""
        rows = self._scanner_rows(y_top - 40.0, y_top + 60.0)
        if rows is None:
            return
        coord = (np.arange(self.size, dtype=np.float32) * self.ps) - np.float32(self.half)
        x = coord
        y = coord[rows]
        top = np.float32(y_top) - np.float32(0.0006) * x * x
        depth = y[:, None] - top[None, :]
        inside = np.abs(x) < 215.0
        shell = ((depth >= 0.0) & (depth < 3.0)) | ((depth >= 43.0) & (depth < 46.0))
        foam = (depth >= 3.0) & (depth < 43.0)
        region = self.img[rows, :]
        region[shell & inside] = 200.0
        region[foam & inside] = -900.0

    def _scanner_rows(self, y0: float, y1: float) -> slice | None:
        i0 = max(math.floor((y0 + self.half) / self.ps), 0)
        i1 = min(math.ceil((y1 + self.half) / self.ps) + 1, self.size)
        return slice(i0, i1) if i0 < i1 else None


# -- anatomy ---------------------------------------------------------------------------------


class _Section(NamedTuple):
    """The body at one canonical z: lean half-axes (a, b), outer ones (ao, bo), centre y,
    the trunk's cavity (ac, bc, yc; zero outside the trunk) and the fat thickness."""

    a: float
    b: float
    ao: float
    bo: float
    cy: float
    ac: float
    bc: float
    yc: float
    fat: float
    trunk: float


def _section(ph: Phantom, c: float) -> _Section:
    if c > _HEAD_CAP_C:
        cap = math.sqrt(max(0.0, 1.0 - ((c - _HEAD_CAP_C) / _HEAD_CAP_C) ** 2))
        a, b, fat_factor = _HEAD_CAP[0] * cap, _HEAD_CAP[1] * cap, 0.12 * cap
    else:
        a, b, fat_factor = _OUTLINE(c)
    trunk = _ramp(c, -236.0, -264.0)
    a *= _lerp(ph.head_scale, ph.width_scale, _ramp(c, -200.0, -250.0))
    b *= _lerp(ph.head_scale, ph.depth_scale, _ramp(c, -200.0, -250.0))
    fat_factor *= _regional(ph.fat_distribution, c)
    a *= _regional(ph.trunk_shape, c)
    fat = ph.fat_mm * fat_factor if a > 0.0 else 0.0
    ao, bo = (a + fat, b + fat) if a > 0.0 else (0.0, 0.0)
    cy = ph.back_y_mm - bo
    m = ph.muscle_scale
    side, front, back = (v * m for v in _MUSCLE(c))
    ac = max(a - side, 0.0) * trunk
    bc = max(b - (front + back) / 2.0, 0.0) * trunk
    yc = cy - (back - front) / 2.0
    return _Section(a, b, ao, bo, cy, ac, bc, yc, fat, trunk)


#: Canonical z where a subject's chest, waist and hip factors hold fully (``_regional``).
_REGION_LEVELS = (-330.0, -600.0, -780.0)


def _regional(factors: tuple[float, float, float], c: float) -> float:
    """A subject's chest / waist / hip factor at canonical z ``c``: 1 at the neck, the
    chest's from the lung apex down, then smoothly the waist's and the hips'."""
    chest, waist, hips = factors
    (z_chest, z_waist, z_hips) = _REGION_LEVELS
    if c >= z_chest:
        return _lerp(1.0, chest, _ramp(c, -230.0, z_chest))
    if c >= z_waist:
        return _lerp(chest, waist, _ramp(c, z_chest, z_waist))
    return _lerp(waist, hips, _ramp(c, z_waist, z_hips))


def _spine_y(s: _Section, r_vb: float) -> float:
    """y of the vertebral body's centre: behind the pharynx, then in the trunk's cavity
    (the lungs reach behind it on either side)."""
    neck = s.cy + 0.2 * s.b
    trunk = s.yc + s.bc - r_vb - 20.0
    return _lerp(neck, trunk, s.trunk)


def _paint(cv: _Canvas, ph: Phantom, c: float, *, table: bool = True) -> None:
    """The anatomy at canonical z ``c`` (and, with ``table``, the phantom's own couch)."""
    s = _section(ph, c)
    hu = ph.hu
    if table and ph.table:
        cv.table(ph.offset_mm[1] + ph.back_y_mm + 2.0)
    _outline(cv, ph, c, s)
    if c > -215.0:
        _head(cv, ph, c, s)
    if s.ac > 1.0:
        # Muscle and vessels at the thoracic inlet, mediastinal then abdominal fat below.
        cavity = _lerp(15.0, -70.0, _ramp(c, -262.0, -300.0)) - 18.0 * _ramp(c, -470.0, -530.0)
        cv.ellipse(0.0, s.yc, s.ac, s.bc, cavity)
        if c > -560.0:
            _chest(cv, ph, c, s)
        if c < -470.0:
            _abdomen(cv, ph, c, s)
        if c < -690.0:
            _pelvis_soft(cv, ph, c, s)
    if -118.0 > c > -500.0:
        _neck_airway(cv, ph, c, s)
    _spine(cv, ph, c, s)
    if s.ac > 1.0 and -640.0 < c < -240.0:
        _ribs(cv, ph, c, s, hu["bone"] * 0.75, 120.0)
    if c < -695.0:
        _pelvis_bones(cv, ph, c, s)
    if c < -850.0:
        _femoral_shafts(cv, ph, c, _thigh(ph, c))


def _outline(cv: _Canvas, ph: Phantom, c: float, s: _Section) -> None:
    hu = ph.hu
    lean = hu["muscle"] if s.trunk > 0.5 else hu["soft"]
    thigh = _thigh(ph, c)
    arms = _arms(ph, c, s) if ph.arms_down else []
    # Fat first (the outer shapes), then the lean tissue inside each.
    if s.ao > 0.0:
        cv.ellipse(0.0, s.cy, s.ao, s.bo, hu["fat"])
    for bx, by, ba, bb, angle in _breasts(ph, c, s):
        cv.ellipse(bx, by, ba, bb, hu["fat"], angle_deg=angle)
        cv.ellipse(bx, by - 0.2 * bb, 0.5 * ba, 0.45 * bb, 20.0, angle_deg=angle)
    for tx, ty, r_out, _r in thigh:
        cv.ellipse(tx, ty, r_out, r_out * 0.95, hu["fat"])
    for arm in arms:
        cv.ellipse(arm[0], arm[1], arm[2], arm[3], hu["fat"])
    if s.a > 0.0:
        cv.ellipse(0.0, s.cy, s.a, s.b, lean)
    for tx, ty, r_out, r in thigh:
        cv.ellipse(tx, ty + (r_out - r) * 0.2, r, r * 0.95, hu["muscle"])
    for bx, by, _ao, _bo, a, b, bones in arms:
        cv.ellipse(bx, by, a, b, hu["muscle"])
        for dx, rb in bones:
            cv.bone(bx + dx, by, rb, rb, hu["bone"], -40.0, shell=3.0)


def _breasts(ph: Phantom, c: float, s: _Section) -> list[tuple[float, float, float, float, float]]:
    """(x, y, a, b, angle) of each breast: flattened and spread sideways, lying supine."""
    if ph.sex != "F" or not -290.0 > c > -440.0 or s.ao <= 0.0:
        return []
    p = _bump(c, -290.0, -440.0, 0.55) * ph.breast_scale
    return [
        (side * 0.45 * s.ao, s.cy - 0.78 * s.bo, 62.0 * p, 34.0 * p, side * 20.0)
        for side in (-1.0, 1.0)
    ]


def _thigh(ph: Phantom, c: float) -> list[tuple[float, float, float, float]]:
    # The thighs (with the buttocks) emerge from inside the trunk and settle on the couch.
    t = _ramp(c, -830.0, -905.0)
    if c > -830.0:
        return []
    r = 62.0 * ph.width_scale * (0.6 + 0.4 * t)
    r_out = r + ph.fat_mm * 0.9
    x = _hip_x(ph) + 8.0
    y = ph.back_y_mm - r_out * 0.95 - 30.0 * (1.0 - t)
    return [(side * x, y, r_out, r) for side in (-1.0, 1.0)]


def _hip_frame(ph: Phantom) -> _Section:
    return _section(ph, -815.0)


def _hip_x(ph: Phantom) -> float:
    return 0.56 * _hip_frame(ph).a


def _arms(
    ph: Phantom, c: float, s: _Section
) -> list[tuple[float, float, float, float, float, float, list[tuple[float, float]]]]:
    if not -262.0 > c > -845.0 or s.ao <= 0.0:
        return []
    grow = _ramp(c, -262.0, -290.0)
    if c > -540.0:
        a, b, bones = 38.0, 40.0, [(0.0, 11.0)]
    elif c > -770.0:
        a, b, bones = 30.0, 33.0, [(-7.0, 7.0), (8.0, 6.5)]
    else:
        a, b, bones = 36.0, 14.0, [(-12.0, 4.0), (0.0, 4.0), (12.0, 4.0)]
    taper = 1.0 - 0.25 * _ramp(c, -420.0, -540.0)
    a, b = a * ph.width_scale * grow * taper, b * ph.width_scale * grow * taper
    fat = ph.fat_mm * 0.6
    out = []
    for side in (-1.0, 1.0):
        bx = side * (s.ao + a + fat + 6.0)
        by = s.cy + 0.1 * s.b
        scaled = [(side * dx * grow, rb * grow) for dx, rb in bones]
        out.append((bx, by, a + fat, b + fat, a, b, scaled))
    return out


def _femoral_shafts(
    cv: _Canvas, ph: Phantom, c: float, thigh: list[tuple[float, float, float, float]]
) -> None:
    frame = _hip_frame(ph)
    hip_x = _hip_x(ph)
    y_fh = frame.cy - 0.02 * frame.b
    grow = 0.6 + 0.4 * _ramp(c, -850.0, -875.0)
    r = 14.0 * ph.width_scale * grow
    medial = 40.0 - 0.35 * max(0.0, -850.0 - c)
    t = _ramp(c, -860.0, -925.0)
    for side in (-1.0, 1.0):
        x = side * (hip_x + max(medial, 16.0))
        y = _lerp(y_fh + 8.0, (thigh[0][1] - 4.0) if thigh else y_fh + 8.0, t)
        cv.bone(x, y, r, r, ph.hu["bone"], -40.0, shell=5.0)


def _head(cv: _Canvas, ph: Phantom, c: float, s: _Section) -> None:
    hu = ph.hu
    hs = ph.head_scale
    a0, b0 = _HEAD_CAP[0] * hs, _HEAD_CAP[1] * hs

    def layer(inset: float) -> tuple[float, float]:
        if c > _HEAD_CAP_C:
            h = -_HEAD_CAP_C - inset
            q = 1.0 - ((c - _HEAD_CAP_C) / h) ** 2
            if q <= 0.0:
                return 0.0, 0.0
            k = math.sqrt(q)
            return (a0 - inset) * k, (b0 - inset) * k
        return s.a - inset, s.b - inset

    # Cranium: skull and brain. In front the skull retreats above the orbits (``low``);
    # towards the skull base the brain shrinks to the posterior fossa (``base``).
    if c > -130.0:
        low = 0.3 * _ramp(c, -52.0, -88.0)
        base = _ramp(c, -92.0, -130.0)
        shrink = math.sqrt(max(0.0, 1.0 - base * base))
        sa, sb = layer(3.0)
        ba, bb0 = layer(10.0)
        ys = s.cy + low * sb
        sb, bb0 = sb * (1.0 - low), bb0 - low * sb
        ba, bb = ba * shrink, bb0 * (1.0 - 0.35 * base) * shrink
        yb = ys + (bb0 - bb)  # the back of the brain stays put
        if c > -100.0:
            cv.ellipse(0.0, ys, sa, sb, hu["bone"])
        elif ba > 0.5:
            cv.ellipse(0.0, yb, ba + 9.0, bb + 9.0, hu["bone"])
        if ba > 0.5 and bb > 0.5:
            cv.ellipse(0.0, yb, ba, bb, hu["brain"])
            p = _bump(c, -18.0, -95.0, 0.45)
            cv.ellipse(0.0, yb, 0.62 * ba * p, 0.7 * bb * p, hu["brain"] - 8.0)
            p = _bump(c, -35.0, -80.0) * ph.organ_scale["brain"]
            for side in (-1.0, 1.0):
                cv.ellipse(
                    side * 0.1 * ba,
                    yb - 0.05 * bb,
                    0.07 * ba * p,
                    0.3 * bb * p,
                    8.0,
                    angle_deg=side * 12.0,
                )
        # Skull base: petrous ridges, clivus, mastoid air cells.
        p = _bump(c, -100.0, -122.0)
        if p > 0.0:
            for side in (-1.0, 1.0):
                cv.ellipse(
                    side * 0.35 * s.a,
                    s.cy + 0.15 * s.b,
                    0.3 * s.a * p,
                    7.0 * p,
                    hu["bone"],
                    angle_deg=side * 40.0,
                )
                cv.ellipse(side * 0.8 * s.a, s.cy + 0.3 * s.b, 10.0 * p, 12.0 * p, -500.0)
        p = _bump(c, -100.0, -135.0)
        cv.ellipse(0.0, s.cy + 0.02 * s.b, 8.0 * p, 14.0 * p, hu["bone"] * 0.8)
    # Face: orbits and globes, ethmoid, nasal cavity, maxillary sinuses, palate, teeth,
    # mandible.
    p = _bump(c, -58.0, -100.0)
    if p > 0.0:
        for side in (-1.0, 1.0):
            ox, oy = side * 0.45 * s.a, s.cy - 0.7 * s.b
            cv.ellipse(ox, oy, 20.0 * p, 22.0 * p, hu["bone"] * 0.6, hole=(17.0 * p, 19.0 * p))
            cv.ellipse(ox, oy, 17.0 * p, 19.0 * p, hu["fat"] + 20.0)
            g = _bump(c, -64.0, -94.0)
            cv.ellipse(ox, oy - 6.0, 12.0 * g, 12.0 * g, 15.0)
    p = _bump(c, -58.0, -96.0)
    cv.ellipse(0.0, s.cy - 0.6 * s.b, 9.0 * p, 0.18 * s.b * p, -650.0)
    p = _bump(c, -88.0, -148.0)
    cv.ellipse(0.0, s.cy - 0.75 * s.b, 7.0 * p, 0.2 * s.b * p, AIR)
    p = _bump(c, -98.0, -148.0)
    if p > 0.0:
        for side in (-1.0, 1.0):
            mx, my = side * 0.38 * s.a, s.cy - 0.5 * s.b
            ma, mb = 0.22 * s.a * p, 0.2 * s.b * p
            cv.ellipse(mx, my, ma + 2.5, mb + 2.5, hu["bone"] * 0.6)
            cv.ellipse(mx, my, ma, mb, AIR)
    p = _bump(c, -139.0, -151.0)
    cv.ellipse(0.0, s.cy - 0.5 * s.b, 0.4 * s.a * p, 0.3 * s.b * p, hu["bone"] * 0.7)
    for top, bottom, ya, yb in ((-146.0, -161.0, 0.45, 0.55), (-163.0, -176.0, 0.4, 0.52)):
        p = _bump(c, top, bottom)
        if p > 0.0:
            ty = s.cy - ya * s.b
            cv.ellipse(
                0.0,
                ty,
                0.6 * s.a,
                yb * s.b,
                1600.0,
                hole=(0.6 * s.a - 9.0 * p, yb * s.b - 9.0 * p),
                clip=(0.0, 1.0, ty + 0.05 * s.b),
            )
    p = _bump(c, -160.0, -202.0, 0.35)
    if p > 0.0:
        my = s.cy - 0.4 * s.b
        cv.ellipse(
            0.0,
            my,
            0.8 * s.a,
            0.62 * s.b,
            hu["bone"] * 0.85,
            hole=(0.8 * s.a - 8.0 * p, 0.62 * s.b - 8.0 * p),
            clip=(0.0, 1.0, my + 0.1 * s.b),
        )
    p = _bump(c, -115.0, -168.0)
    if p > 0.0:
        for side in (-1.0, 1.0):
            cv.ellipse(side * 0.72 * s.a, s.cy - 0.05 * s.b, 5.0, 0.2 * s.b * p, hu["bone"] * 0.8)


def _neck_airway(cv: _Canvas, ph: Phantom, c: float, s: _Section) -> None:
    """Pharynx → larynx → trachea → bronchi, the oesophagus and the thyroid."""
    hu = ph.hu
    r_vb = _SPINE(c)[0] * math.sqrt(ph.width_scale)
    y_vb = _spine_y(s, r_vb)
    y_tr = y_vb - r_vb - _lerp(12.0, 27.0, _ramp(c, -188.0, -212.0))
    carina = CANONICAL_LANDMARKS["carina"]
    if c > -195.0:  # pharynx
        p = _bump(c, -118.0, -200.0, 0.3)
        cv.ellipse(0.0, y_tr, 14.0 * p, 7.0 * p, AIR)
    elif c > carina:
        r = 9.0 * ph.width_scale
        p = _ramp(c, -195.0, -212.0)
        if c > -215.0:  # larynx: thyroid cartilage around a narrower airway
            cv.ellipse(0.0, y_tr, 14.0, 15.0, 160.0, hole=(12.0, 13.0))
            cv.ellipse(0.0, y_tr, 8.0 + 2.0 * p, 10.0 - p, AIR)
        else:
            cv.ellipse(0.0, y_tr, r + 2.0, r + 2.0, 80.0)
            cv.ellipse(0.0, y_tr, r, r * 0.92, AIR)
    p = _bump(c, carina + 5.0, carina - 45.0, 0.2)
    if p > 0.0:
        spread = 8.0 + 0.8 * (carina - c)
        for side in (-1.0, 1.0):
            cv.ellipse(side * spread, y_tr + 6.0, 8.0 * p, 8.0 * p, 80.0)
            cv.ellipse(side * spread, y_tr + 6.0, 6.0 * p, 6.0 * p, AIR)
    if c > -490.0:
        ox = 2.0 + 0.2 * s.ac * _ramp(c, -400.0, -490.0)
        oy = y_vb - r_vb - 9.0
        cv.ellipse(ox, oy, 7.0, 6.0, hu["soft"])
        cv.ellipse(ox, oy, 1.5, 1.5, AIR)
    p = _bump(c, -208.0, -250.0)
    if p > 0.0:
        thyroid = 90.0 + (60.0 if ph.contrast else 0.0)
        for side in (-1.0, 1.0):
            cv.ellipse(side * 17.0, y_tr + 2.0, 9.0 * p, 14.0 * p, thyroid)


def _chest(cv: _Canvas, ph: Phantom, c: float, s: _Section) -> None:
    hu = ph.hu
    org = ph.organ_scale
    ac, bc, yc = s.ac, s.bc, s.yc
    cavity = (0.0, yc, ac - 1.0, bc - 1.0)
    r_vb = _SPINE(c)[0] * math.sqrt(ph.width_scale)
    y_vb = _spine_y(s, r_vb)
    # Lungs: an ellipse cut to the hemithorax; they grow from the apex and shrink into
    # the posterior recesses below the liver dome.
    p = _bump(c, CANONICAL_LANDMARKS["lung_apex"], -548.0, 0.55) * org["lungs"] ** 0.5
    if p > 0.0:
        low = _ramp(c, -440.0, -540.0)
        for side in (-1.0, 1.0):
            lx = side * 0.5 * ac
            ly = yc + (0.08 + 0.42 * low) * bc
            la = 0.6 * ac * p * (0.95 if side > 0 else 1.0)
            lb = 0.98 * bc * p
            cv.ellipse(
                lx,
                ly,
                la,
                lb,
                hu["lung"],
                within=cavity,
                clip=(-side, 0.0, -0.05 * ac),
            )
            for vs, vu, vv, vr, wave, phase in ph.lung_vessels:
                if vs != side:
                    continue
                du = 0.2 * math.sin(c / wave + phase)
                r = vr * (0.4 + 0.6 * p)
                if r < 0.25 * cv.ps:
                    continue
                cv.ellipse(
                    lx + (vu + du) * 0.5 * ac * p,
                    ly + vv * 0.85 * lb,
                    r,
                    r,
                    hu["blood"],
                    within=cavity,
                )
    # Heart and great vessels.
    p = _bump(c, -345.0, -497.0, 0.6) * org["heart"]
    if p > 0.0:
        hx, hy, ha, hb = 0.14 * ac, yc - 0.12 * bc, 0.46 * ac * p, 0.5 * bc * p
        myocardium = 48.0 + (35.0 if ph.contrast else 0.0)
        cv.ellipse(hx, hy, ha, hb, myocardium, angle_deg=-35.0, within=cavity)
        # Chambers: the left ventricle towards the apex (left, front), the right in front.
        cv.ellipse(hx + 0.2 * ha, hy - 0.05 * hb, 0.4 * ha, 0.45 * hb, hu["blood"], angle_deg=-35.0)
        cv.ellipse(
            hx - 0.35 * ha, hy - 0.25 * hb, 0.4 * ha, 0.35 * hb, hu["blood"], angle_deg=-35.0
        )
    r_ao = 13.0 * org["aorta"]
    desc = (r_vb + 11.0, y_vb - 0.2 * r_vb)
    asc = (-0.1 * ac, yc - 0.32 * bc)
    p = _bump(c, -300.0, -336.0)
    if p > 0.0:
        dx, dy = desc[0] - asc[0], desc[1] - asc[1]
        half = math.hypot(dx, dy) / 2.0
        # The arch passes to the left of the trachea; its top is a short oblique tube.
        r = r_ao * (0.6 + 0.4 * p)
        mx = max((asc[0] + desc[0]) / 2.0 + 0.1 * ac, 9.0 * ph.width_scale + r + 5.0)
        my = (asc[1] + desc[1]) / 2.0
        angle = math.degrees(math.atan2(dy, dx))
        cv.ellipse(mx, my, half * p * p + r, r, hu["blood"], angle_deg=angle)
    p = _bump(c, -322.0, -400.0, 0.15)
    if p > 0.0:
        cv.ellipse(asc[0], asc[1], (r_ao + 2.0) * p, (r_ao + 2.0) * p, hu["blood"])
        cv.ellipse(0.05 * ac, yc - 0.4 * bc, 12.0 * p, 12.0 * p, hu["blood"])
    p = _bump(c, -262.0, -392.0, 0.1)
    cv.ellipse(-0.2 * ac, yc - 0.22 * bc, 9.0 * p, 9.0 * p, hu["blood"])
    # Sternum, clavicles, scapulae.
    p = _bump(c, -262.0, -446.0, 0.1)
    if p > 0.0:
        ma = _lerp(22.0, 13.0, _ramp(c, -280.0, -310.0)) * p
        cv.bone(0.0, yc - bc - 5.0, ma, 7.0 * math.sqrt(p), hu["bone"] * 0.8, hu["cancellous"])
    p = _bump(c, -236.0, -270.0)
    if p > 0.0:
        for side in (-1.0, 1.0):
            cv.bone(
                side * 0.5 * s.a,
                s.cy - 0.62 * s.b,
                0.4 * s.a * p,
                8.0 * p,
                hu["bone"],
                hu["cancellous"],
                angle_deg=side * 15.0,
            )
    p = _bump(c, -252.0, -400.0, 0.3)
    if p > 0.0:
        for side in (-1.0, 1.0):
            cv.ellipse(
                side * 0.56 * s.a,
                s.cy + 0.62 * s.b,
                0.24 * s.a * math.sqrt(p),
                5.0 * p,
                hu["bone"] * 0.8,
                angle_deg=-side * 25.0,
            )


def _abdomen(cv: _Canvas, ph: Phantom, c: float, s: _Section) -> None:
    hu = ph.hu
    org = ph.organ_scale
    ac, bc, yc = s.ac, s.bc, s.yc
    cavity = (0.0, yc, ac - 1.0, bc - 1.0)
    r_vb = _SPINE(c)[0] * math.sqrt(ph.width_scale)
    y_vb = _spine_y(s, r_vb)
    wall = hu["soft"] + (40.0 if ph.contrast else 0.0)
    # Small bowel loops, each a short tube along z; gas rises to the front (−y).
    for c0, half, px, py, r0, kind, phase in ph.bowel:
        q = 1.0 - ((c - c0) / half) ** 2
        if q <= 0.0:
            continue
        r = r0 * math.sqrt(q)
        bx, by = px * ac, yc + py * bc
        gas = 0.0 if kind == 0.0 else 0.75 if kind == 1.0 else 0.3 + 0.2 * math.sin(c / 9.0 + phase)
        _loop(cv, bx, by, r, r * 0.85, wall, 12.0, gas, cavity)
    # Colon: ascending with the caecum, transverse, descending, sigmoid.
    stool = -40.0
    p = _bump(c, -575.0, -795.0, 0.8)
    if p > 0.0:
        r = 20.0 + 6.0 * _ramp(c, -740.0, -780.0)
        _loop(
            cv,
            -0.7 * ac,
            yc - 0.05 * bc,
            r * p,
            r * p,
            wall,
            stool,
            0.3 + 0.25 * math.sin(c / 21.0),
            cavity,
        )
    p = _bump(c, -555.0, -625.0)
    if p > 0.0:
        _loop(
            cv,
            0.05 * ac,
            yc - 0.64 * bc,
            0.5 * ac * p,
            17.0 * p,
            wall,
            stool,
            0.45 + 0.2 * math.sin(c / 13.0),
            cavity,
        )
    p = _bump(c, -550.0, -735.0, 0.3)
    if p > 0.0:
        _loop(
            cv,
            0.73 * ac,
            yc + 0.08 * bc,
            16.0 * p,
            16.0 * p,
            wall,
            stool,
            0.35 + 0.25 * math.sin(c / 17.0 + 1.0),
            cavity,
        )
    p = _bump(c, -725.0, -795.0)
    if p > 0.0:
        _loop(
            cv,
            0.32 * ac,
            yc - 0.2 * bc,
            18.0 * p,
            15.0 * p,
            wall,
            stool,
            0.3 + 0.2 * math.sin(c / 11.0),
            cavity,
        )
    # Stomach (air-fluid level), spleen, liver, gallbladder.
    p = _bump(c, -482.0, -600.0, 0.3) * org["stomach"]
    if p > 0.0:
        _loop(
            cv,
            0.38 * ac,
            yc - 0.28 * bc,
            0.36 * ac * p,
            0.42 * bc * p,
            wall,
            18.0,
            0.3,
            cavity,
            angle_deg=-30.0,
        )
    p = _bump(c, -490.0, -605.0, 0.45) * org["spleen"]
    if p > 0.0:
        cv.ellipse(
            0.7 * ac,
            yc + 0.38 * bc,
            0.24 * ac * p,
            0.4 * bc * p,
            hu["spleen"],
            angle_deg=-45.0,
            within=cavity,
        )
    liver_bottom = -655.0 - 25.0 * (org["liver"] - 1.0) / 0.15
    p = _bump(c, CANONICAL_LANDMARKS["liver_dome"], liver_bottom, 0.3) * org["liver"] ** 0.5
    if p > 0.0:
        cv.ellipse(
            -0.45 * ac,
            yc + 0.02 * bc,
            0.55 * ac * p,
            0.95 * bc * p,
            hu["liver"],
            angle_deg=15.0,
            within=cavity,
        )
    p = _bump(c, -486.0, -585.0, 0.35) * org["liver"]
    if p > 0.0:
        cv.ellipse(
            0.12 * ac, yc - 0.5 * bc, 0.4 * ac * p, 0.35 * bc * p, hu["liver"], within=cavity
        )
    p = _bump(c, -575.0, -632.0)
    if p > 0.0:
        cv.ellipse(-0.26 * ac, yc - 0.5 * bc, 14.0 * p, 20.0 * p, 10.0, within=cavity)
    # Pancreas, kidneys, IVC, aorta, iliac arteries, psoas.
    p = _bump(c, -538.0, -582.0)
    if p > 0.0:
        cv.ellipse(
            0.15 * ac,
            y_vb - r_vb - 32.0,
            0.36 * ac * p,
            11.0 * p,
            hu["soft"] + 5.0,
            angle_deg=-12.0,
            within=cavity,
        )
    for side, top in ((-1.0, -560.0), (1.0, -545.0)):
        p = _bump(c, top, top - 112.0) * org["kidneys"]
        if p > 0.0:
            kx, ky = side * 0.42 * ac, yc + 0.55 * bc
            angle = -side * 35.0
            cv.ellipse(kx, ky, 32.0 * p, 24.0 * p, hu["kidney"], angle_deg=angle, within=cavity)
            q = max(0.0, p - 0.6) / 0.4
            cv.ellipse(kx - side * 10.0, ky - 5.0, 12.0 * q, 8.0 * q, -60.0, angle_deg=angle)
    p = _bump(c, -468.0, -702.0, 0.1)
    cv.ellipse(-(0.6 * r_vb + 13.0), y_vb - r_vb - 9.0, 11.0 * p, 10.0 * p, hu["blood"])
    t = _ramp(c, -470.0, -540.0)
    r_ao = (13.0 - 3.0 * t) * org["aorta"]
    ax = _lerp(r_vb + 11.0, 0.45 * r_vb + 4.0, t)
    ay = _lerp(y_vb - 0.2 * r_vb, y_vb - r_vb - 12.0, t)
    if c > -690.0:
        cv.ellipse(ax, ay, r_ao, r_ao, hu["blood"])
    elif c > -795.0:
        spread = 6.0 + 0.45 * (-690.0 - c)
        for side in (-1.0, 1.0):
            cv.ellipse(side * spread, ay + 0.15 * (-690.0 - c), 6.5, 6.5, hu["blood"])
    p = _ramp(c, -600.0, -690.0)
    if p > 0.0 and c > -840.0:
        pa, pb = (8.0 + 14.0 * p) * ph.muscle_scale, 8.0 + 10.0 * p
        down = _ramp(c, -720.0, -790.0)
        hip = _ramp(c, -790.0, -835.0)
        frame = _hip_frame(ph)
        for side in (-1.0, 1.0):
            px = _lerp(side * (r_vb + pa), side * 0.45 * ac, down)
            py = _lerp(y_vb + 0.1 * r_vb, yc + 0.15 * bc, down)
            px = _lerp(px, side * (_hip_x(ph) - 8.0), hip)
            py = _lerp(py, frame.cy - 0.02 * frame.b - 30.0, hip)
            cv.ellipse(px, py, pa, pb, hu["muscle"])


def _loop(
    cv: _Canvas,
    x: float,
    y: float,
    a: float,
    b: float,
    wall: float,
    content: float,
    gas: float,
    within: _Ellipse,
    *,
    angle_deg: float = 0.0,
) -> None:
    """A hollow organ: wall, content, and gas filling the front ``gas`` of it."""
    if a < 1.0 or b < 1.0:
        return
    cv.ellipse(x, y, a, b, wall, angle_deg=angle_deg, within=within)
    ia, ib = a - 2.5, b - 2.5
    if ia < 0.5 or ib < 0.5:
        return
    cv.ellipse(x, y, ia, ib, content, angle_deg=angle_deg, within=within)
    if gas > 0.02:
        level = y - ib + 2.0 * ib * min(gas, 0.95)
        cv.ellipse(x, y, ia, ib, -950.0, angle_deg=angle_deg, within=within, clip=(0.0, 1.0, level))


def _pelvis_soft(cv: _Canvas, ph: Phantom, c: float, s: _Section) -> None:
    ac, bc, yc = s.ac, s.bc, s.yc
    cavity = (0.0, yc, ac - 1.0, bc - 1.0)
    fill = ph.bladder_fill
    bottom = -862.0
    p = _bump(c, bottom + 90.0 * fill, bottom, 0.6)
    if p > 0.0:
        cv.ellipse(
            0.0,
            yc - 0.3 * bc,
            0.5 * ac * p * fill**0.5,
            0.5 * bc * p * fill**0.5,
            5.0,
            within=cavity,
        )
    # Iliacus inside and gluteal muscles outside each iliac wing.
    for wing in _wings(ph, c, s):
        if wing.half <= 0.0:
            continue
        side = 1.0 if wing.x > 0.0 else -1.0
        cv.ellipse(
            wing.x,
            wing.y,
            wing.half + 8.0,
            wing.thick + 12.0,
            ph.hu["muscle"],
            angle_deg=wing.angle,
        )
        cv.ellipse(
            wing.x + side * 14.0,
            wing.y + 16.0,
            wing.half + 4.0,
            wing.thick + 18.0,
            ph.hu["muscle"],
            angle_deg=wing.angle,
            within=cavity,
        )
    _sac_a, sac_b, y_sac, _t = _sacrum(ph, c, s)
    p = _bump(c, -788.0, -885.0, 0.4)
    if p > 0.0:
        _loop(cv, 0.0, y_sac - sac_b - 18.0, 17.0 * p, 15.0 * p, ph.hu["soft"], -30.0, 0.25, cavity)
    if ph.sex == "M":
        p = _bump(c, -852.0, -885.0)
        cv.ellipse(0.0, yc - 0.25 * bc, 18.0 * p, 16.0 * p, 40.0, within=cavity)
    else:
        p = _bump(c, -765.0, -832.0)
        cv.ellipse(0.0, yc + 0.05 * bc, 30.0 * p, 22.0 * p, 50.0, within=cavity)


def _spine(cv: _Canvas, ph: Phantom, c: float, s: _Section) -> None:
    if c > -110.0 or c < _SACRUM_TOP or s.a <= 0.0:
        return
    hu = ph.hu
    r_vb, r_c, spinous = _SPINE(c)
    r_vb *= math.sqrt(ph.width_scale)
    y_vb = _spine_y(s, r_vb)
    level = float(np.interp(-c, _LEVEL_C, _LEVEL_INDEX))
    frac = level - math.floor(level)
    disc = min(max((frac - 0.8) / 0.04, 0.0), 1.0) * min(max((1.0 - frac) / 0.04, 0.0), 1.0)
    cortex = _lerp(hu["bone"] * 0.8, 90.0, disc)
    core = _lerp(hu["cancellous"], 90.0, disc)
    lumbar = _ramp(c, -555.0, -600.0)
    y_c = y_vb + r_vb + 2.0 + r_c
    if s.trunk > 0.0:  # erector spinae either side of the posterior elements
        pa, pb = 22.0 * ph.muscle_scale * s.trunk, 24.0 * s.trunk
        for side in (-1.0, 1.0):
            cv.ellipse(side * (r_c + 16.0), y_c + 10.0, pa, pb, hu["muscle"])
    cv.bone(0.0, y_vb, r_vb * (1.0 + 0.15 * lumbar), r_vb, cortex, core)
    arch = hu["bone"] * 0.7
    cv.ellipse(0.0, y_c, r_c + 4.0, r_c + 4.0, arch)
    cv.ellipse(0.0, y_c, r_c, r_c, 20.0)
    cv.ellipse(0.0, y_c + r_c + 3.0 + spinous / 2.0, 3.5, spinous / 2.0, arch)
    reach = _lerp(10.0, 16.0, lumbar)
    for side in (-1.0, 1.0):
        cv.ellipse(side * (r_c + reach), y_c - 2.0, reach, 4.0 + lumbar, arch)


def _ribs(cv: _Canvas, ph: Phantom, c: float, s: _Section, bone: float, cartilage: float) -> None:
    """Ribs on the cavity's wall: rib k crosses the slice where its z, falling from the
    back towards the front, equals the slice's; outside its bony end it is cartilage."""
    ac, bc, yc = s.ac, s.bc, s.yc
    if ac < 10.0 or bc < 10.0:
        return
    win = cv.window(0.0, yc, max(ac, bc) + 14.0)
    if win is None:
        return
    x = cv.X[win]
    y = cv.Y[win] - np.float32(yc)
    e = (x * np.float32(1.0 / ac)) ** 2
    e += (y * np.float32(1.0 / bc)) ** 2
    outer = (1.0 + 12.0 / min(ac, bc)) ** 2
    idx = np.nonzero((e > 1.0) & (e < outer))
    if idx[0].size == 0:
        return
    xs, ys, r = np.abs(x[idx]), y[idx], np.sqrt(e[idx])
    phi = np.arctan2(xs / np.float32(ac), ys / np.float32(bc)) / np.float32(math.pi)
    local = np.sqrt(
        (ac * np.sin(phi * np.float32(math.pi))) ** 2
        + (bc * np.cos(phi * np.float32(math.pi))) ** 2
    )
    d = (r - 1.0) * local  # mm outside the cavity's edge
    radial = np.clip(0.5 + (np.minimum(d - 1.5, 9.5 - d)) / np.float32(cv.ps), 0.0, 1.0)
    kf = (_RIB_TOP - _RIB_DROP * phi ** np.float32(1.3) - c) / _RIB_PITCH
    k = np.rint(kf)
    dz = np.abs(kf - k) * _RIB_PITCH
    along = np.clip(0.5 + (4.5 - dz) / 1.5, 0.0, 1.0)
    valid = (k >= 0) & (k < len(_RIB_BONE_END)) & (phi > 0.1)
    ki = np.clip(k, 0, len(_RIB_BONE_END) - 1).astype(np.intp)
    bone_end = np.asarray(_RIB_BONE_END, dtype=np.float32)[ki]
    cart_end = np.asarray(_RIB_CARTILAGE_END, dtype=np.float32)[ki]
    valid &= phi < cart_end
    value = np.where(phi < bone_end, np.float32(bone), np.float32(cartilage))
    cov = radial * along * valid
    region = cv.img[win]
    old = region[idx]
    region[idx] = old + cov * (value - old)


class _Wing(NamedTuple):
    x: float
    y: float
    half: float
    thick: float
    angle: float


def _sacrum(ph: Phantom, c: float, s: _Section) -> tuple[float, float, float, float]:
    """(half-width, half-depth, centre y, t) of the sacrum, t = 0 at S1 … 1 at the coccyx."""
    t = _ramp(c, _SACRUM_TOP, _SACRUM_BOTTOM)
    sac_a = (58.0 - 50.0 * t) * ph.width_scale
    sac_b = 22.0 - 12.0 * t
    return sac_a, sac_b, s.yc + s.bc - sac_b - 2.0 + 10.0 * t, t


def _wings(ph: Phantom, c: float, s: _Section) -> list[_Wing]:
    """The iliac wings between the sacroiliac joint and the anterior superior iliac spine,
    becoming the body of the ilium over the acetabulum."""
    crest = CANONICAL_LANDMARKS["iliac_crest"]
    if not crest > c > -800.0 or s.ac <= 0.0:
        return []
    frame = _hip_frame(ph)
    hip_x = _hip_x(ph)
    y_fh = frame.cy - 0.02 * frame.b
    sac_a, _sac_b, y_sac, _t = _sacrum(ph, c, s)
    tw = (crest - c) / (crest + 795.0)
    f, hl, th = _ILIUM(-min(tw, 1.0))
    appear = _ramp(tw, 0.0, 0.04)
    out = []
    for side in (-1.0, 1.0):
        px, py = side * (sac_a + 3.0), y_sac
        qx, qy = side * 0.88 * s.ac, s.yc - 0.25 * s.bc
        dx, dy = qx - px, qy - py
        length = math.hypot(dx, dy)
        cx, cy = px + f * dx, py + f * dy
        w = _ramp(tw, 0.72, 1.0)
        cx, cy = _lerp(cx, side * (hip_x - 5.0), w), _lerp(cy, y_fh - 25.0, w)
        half = max(hl * length, th / 2.0) * appear
        out.append(_Wing(cx, cy, half, th / 2.0 * appear, math.degrees(math.atan2(dy, dx))))
    return out


def _pelvis_bones(cv: _Canvas, ph: Phantom, c: float, s: _Section) -> None:
    hu = ph.hu
    bone, core = hu["bone"], hu["cancellous"]
    ac = s.ac
    # Sacrum and coccyx, iliac wings.
    sac_a, sac_b, y_sac, t = _sacrum(ph, c, s)
    if _SACRUM_BOTTOM < c < _SACRUM_TOP + 2.0 and ac > 0.0:
        grow = _ramp(c, _SACRUM_TOP + 2.0, _SACRUM_TOP - 6.0)
        cv.bone(0.0, y_sac, sac_a * grow, sac_b * grow, bone * 0.8, core)
        cv.ellipse(0.0, y_sac + 0.45 * sac_b, (9.0 - 6.0 * t) * grow, 5.0 * grow, 20.0)
    for wing in _wings(ph, c, s):
        cv.bone(wing.x, wing.y, wing.half, wing.thick, bone * 0.85, core, angle_deg=wing.angle)
    frame = _hip_frame(ph)
    hip_x = _hip_x(ph)
    y_fh = frame.cy - 0.02 * frame.b
    # Hips: acetabula, femoral heads, necks, greater trochanters, ischia, pubic rami.
    c_fh = CANONICAL_LANDMARKS["femoral_head"]
    radius = 24.0 * ph.width_scale
    dz = c - c_fh
    for side in (-1.0, 1.0):
        fx = side * hip_x
        ring = (radius + 9.0) ** 2 - dz * dz
        if ring > 0.0 and dz < 22.0:
            ra = math.sqrt(ring)
            cv.ellipse(
                fx,
                y_fh,
                ra,
                ra,
                bone * 0.8,
                hole=(max(ra - 7.0, 0.0), max(ra - 7.0, 0.0)),
                clip=(side, 0.0, side * fx + 0.3 * radius),
            )
        head = radius * radius - dz * dz
        if head > 0.0:
            rh = math.sqrt(head)
            cv.bone(fx, y_fh, rh, rh, bone * 0.8, core)
        p = _bump(c, c_fh + 3.0, c_fh - 38.0)
        if p > 0.0:
            tx, ty = side * (hip_x + 45.0), y_fh + 12.0
            cv.bone(
                (fx + tx) / 2.0,
                (y_fh + ty) / 2.0,
                30.0,
                12.0 * p,
                bone * 0.85,
                core,
                angle_deg=math.degrees(math.atan2(ty - y_fh, tx - fx)),
            )
        p = _bump(c, c_fh + 15.0, c_fh - 52.0, 0.5)
        if p > 0.0:
            cv.bone(side * (hip_x + 48.0), y_fh + 10.0, 20.0 * p, 24.0 * p, bone * 0.85, core)
        p = _bump(c, c_fh + 15.0, c_fh - 60.0, 0.4)
        if p > 0.0:
            t = _ramp(c, c_fh + 15.0, c_fh - 60.0)
            ix = side * (hip_x - _lerp(12.0, 30.0, t))
            iy = y_fh + _lerp(28.0, 45.0, t)
            cv.bone(ix, iy, 13.0 * math.sqrt(p), 20.0 * math.sqrt(p), bone * 0.85, core)
        p = _bump(c, c_fh - 7.0, c_fh - 53.0)
        if p > 0.0:
            ax, ay = side * (hip_x - 15.0), y_fh - 22.0
            sx, sy = side * 4.0, frame.yc - 0.85 * frame.bc
            half = math.hypot(sx - ax, sy - ay) / 2.0
            cv.bone(
                (ax + sx) / 2.0,
                (ay + sy) / 2.0,
                half,
                9.0 * p,
                bone * 0.85,
                core,
                angle_deg=math.degrees(math.atan2(sy - ay, sx - ax)),
            )


# -- implants -------------------------------------------------------------------------------

#: The dental arches (canonical z top, bottom; the arch's y and depth as fractions of the
#: head's half-depth), as ``_head`` paints the teeth.
_DENTAL_ARCHES = ((-146.0, -161.0, 0.45, 0.55), (-163.0, -176.0, 0.4, 0.52))


def _implant(cv: _Canvas, ph: Phantom, c: float, kind: Metal, seed: int) -> None:
    """Metal at canonical z ``c``: a hip prosthesis (cup, head and stem in place of the
    femoral head and the top of the shaft) or dental fillings on the arches."""
    if kind == "dental":
        if not -140.0 > c > -182.0:
            return
        s = _section(ph, c)
        rng = np.random.default_rng([abs(int(seed)), 0x44454E54])
        for _ in range(int(rng.integers(2, 7))):
            top, bottom, ya, yb = _DENTAL_ARCHES[int(rng.integers(2))]
            c0 = float(rng.uniform(bottom + 4.0, top - 4.0))
            half = float(rng.uniform(3.0, 6.0))
            phi = float(rng.uniform(0.3, 1.35)) * (1.0 if rng.random() < 0.5 else -1.0)
            r0 = float(rng.uniform(2.5, 5.0))
            q = 1.0 - ((c - c0) / half) ** 2
            if q <= 0.0:
                continue
            arch_a, arch_b = 0.6 * s.a - 4.5, yb * s.b - 4.5
            x = arch_a * math.sin(phi)
            y = s.cy - ya * s.b - arch_b * math.cos(phi)
            r = r0 * math.sqrt(q)
            cv.ellipse(x, y, r, r, METAL_HU)
        return
    side = 1.0 if kind == "hip_left" else -1.0  # +x is the patient's left
    frame = _hip_frame(ph)
    hip_x = _hip_x(ph)
    y_fh = frame.cy - 0.02 * frame.b
    c_fh = CANONICAL_LANDMARKS["femoral_head"]
    dz = c - c_fh
    fx = side * hip_x
    ball = (24.0 * ph.width_scale + 2.0) ** 2 - dz * dz
    if ball > 0.0 and dz < 18.0:
        # The cup (a hemisphere open below) around the head.
        r = math.sqrt(ball)
        cv.ellipse(fx, y_fh, r, r, METAL_HU)
    if dz < -12.0:
        t = _ramp(c, c_fh - 12.0, c_fh - 70.0)
        x = _lerp(fx, side * (hip_x + 38.0), t)
        y = _lerp(y_fh, y_fh + 8.0, t)
        r = _lerp(9.0, 6.0, t)
        cv.ellipse(x, y, r, r * 0.85, METAL_HU)


# -- rendering -------------------------------------------------------------------------------


def _noise_rng(
    phantom: Phantom, z_mm: float, size: int, spacing: float, *extra: int
) -> np.random.Generator:
    key = [
        abs(phantom.seed) & 0xFFFFFFFF,
        int(round(z_mm * 1000.0)) & 0xFFFFFFFFFFFF,
        size,
        int(round(spacing * 1e6)),
        *extra,
    ]
    return np.random.default_rng(key)


def _image_geometry(
    size: int, pixel_spacing: float | None, reconstruction: Reconstruction | None
) -> float:
    """The pixel spacing: ``pixel_spacing`` (default 0.9 mm), or the reconstruction's
    field of view over ``size``."""
    if size < 1:
        raise ValueError("size must be positive")
    if reconstruction is None:
        spacing = 0.9 if pixel_spacing is None else float(pixel_spacing)
    else:
        spacing = reconstruction.pixel_spacing(int(size))
        if pixel_spacing is not None and not math.isclose(
            float(pixel_spacing), spacing, rel_tol=1e-6
        ):
            raise ValueError(
                f"pixel_spacing {pixel_spacing} disagrees with the reconstruction's "
                f"{reconstruction.fov_mm} mm field of view over {size} pixels"
            )
    if spacing <= 0.0:
        raise ValueError("pixel_spacing must be positive")
    return spacing


def _recon_offset(phantom: Phantom, recon: Reconstruction) -> tuple[float, float]:
    """The body's offset from the image centre (mm) under ``recon``."""
    return (
        phantom.offset_mm[0] + recon.patient_shift_mm[0] - recon.centre_mm[0],
        phantom.offset_mm[1] + recon.patient_shift_mm[1] - recon.centre_mm[1],
    )


def render_slice(
    phantom: Phantom,
    z_mm: float,
    *,
    size: int = 512,
    pixel_spacing: float | None = None,
    noise: bool = True,
    reconstruction: Reconstruction | None = None,
) -> _FloatArray:
    """The axial slice at ``z_mm``: float32 HU, (rows, columns) = (size, size).

    Rows go along +y (posterior is down), columns along +x (the patient's left to the
    right). Without a ``reconstruction``, the field of view, ``size · pixel_spacing`` mm
    (0.9 mm by default), is centred on the isocentre (x = y = 0), so the top-left pixel
    centre is at x = y = −(size − 1)/2 · pixel_spacing; the noise is Gaussian (2 × 2
    grain) and the couch the phantom's own. With one (``ct_reconstruction``), the
    field of view is ``reconstruction.fov_mm`` (``pixel_spacing``, if given, must be
    ``fov_mm / size``) centred on ``reconstruction.centre_mm``, and the image gets its
    couch, textures, streaks, kernel, correlated noise and padding outside the
    reconstruction circle. Deterministic for the phantom, z, size, spacing and
    reconstruction; ``noise=False`` leaves out the noise (nothing else). Values are
    clipped to [−1024, 3071], except the padding.
    """
    spacing = _image_geometry(size, pixel_spacing, reconstruction)
    if reconstruction is not None:
        return _render_reconstructed(
            phantom, float(z_mm), int(size), spacing, reconstruction, noise
        )
    cv = _Canvas(int(size), spacing, phantom)
    _paint(cv, phantom, phantom.canonical_z(float(z_mm)))
    img = cv.img
    if noise and phantom.noise_hu > 0.0:
        rng = _noise_rng(phantom, float(z_mm), int(size), spacing)
        # Gaussian noise averaged over 2 × 2 neighbours: the same σ, a CT-like grain.
        white = rng.standard_normal((size + 1, size + 1), dtype=np.float32)
        grain = white[:-1, :-1] + white[1:, :-1]
        grain += white[:-1, 1:]
        grain += white[1:, 1:]
        grain *= np.float32(phantom.noise_hu / 2.0)
        img += grain
    np.clip(img, _HU_MIN, _HU_MAX, out=img)
    return img


def _render_reconstructed(
    phantom: Phantom, z_mm: float, size: int, spacing: float, recon: Reconstruction, noise: bool
) -> _FloatArray:
    c = phantom.canonical_z(z_mm)
    offset = _recon_offset(phantom, recon)
    cv = _Canvas(size, spacing, phantom, offset)
    _paint(cv, phantom, c, table=False)
    if recon.metal is not None:
        _implant(cv, phantom, c, recon.metal, recon.seed)
    img = cv.img
    rng = _noise_rng(phantom, z_mm, size, spacing, recon.seed & 0xFFFFFFFF)
    s = _section(phantom, c)
    half = (size - 1) / 2.0
    if recon.textures:
        front = (offset[1] + s.cy - s.bo) / spacing + half
        back = (offset[1] + s.cy + s.bo) / spacing + half
        tissue = TissueValues(phantom.hu["fat"], phantom.hu["muscle"], phantom.hu["lung"])
        add_textures(img, rng, spacing, tissue, (front, back))
    if recon.table is not None:
        back_y = phantom.offset_mm[1] + recon.patient_shift_mm[1] + phantom.back_y_mm
        paint_table(img, recon.table, spacing, recon.centre_mm, back_y)
    path = add_streaks(img, rng, spacing, offset[0] / spacing + half, recon.streak_scale)
    # Noise rises where dense bone crosses the body (shoulders, hips): up to 35 % more.
    factor = 1.0 + 0.35 * min(max((path - 6.0) / 16.0, 0.0), 1.0)
    img = filter_and_noise(img, rng, spacing, recon, noise=noise, noise_factor=factor)
    low = _HU_MIN
    if recon.padding_hu is not None and recon.padding_hu >= _HU_MIN:
        low = recon.padding_hu + 1.0  # no pixel inside reads as padding
    np.clip(img, low, _HU_MAX, out=img)
    if recon.padding_hu is not None:
        img[outside_field(size, spacing, recon.centre_mm, recon.fov_mm)] = recon.padding_hu
    return img


def render_volume(
    phantom: Phantom,
    z_positions: Sequence[float] | npt.NDArray[np.floating],
    *,
    size: int = 512,
    pixel_spacing: float | None = None,
    noise: bool = True,
    reconstruction: Reconstruction | None = None,
) -> _FloatArray:
    """``render_slice`` at each z: (n, size, size) float32."""
    zs = np.asarray(z_positions, dtype=np.float64).reshape(-1)
    out = np.empty((zs.size, size, size), dtype=np.float32)
    for i, z in enumerate(zs):
        out[i] = render_slice(
            phantom,
            float(z),
            size=size,
            pixel_spacing=pixel_spacing,
            noise=noise,
            reconstruction=reconstruction,
        )
    return out


def body_mask(
    phantom: Phantom,
    z_mm: float,
    *,
    size: int = 512,
    pixel_spacing: float | None = None,
    reconstruction: Reconstruction | None = None,
) -> npt.NDArray[np.bool_]:
    """Pixels inside the body (skin outline of trunk or head, thighs, arms) at ``z_mm``,
    in the image ``render_slice`` makes with the same arguments."""
    spacing = _image_geometry(size, pixel_spacing, reconstruction)
    offset = None if reconstruction is None else _recon_offset(phantom, reconstruction)
    cv = _Canvas(int(size), spacing, phantom, offset)
    cv.img[...] = 0.0
    c = phantom.canonical_z(float(z_mm))
    s = _section(phantom, c)
    if s.ao > 0.0:
        cv.ellipse(0.0, s.cy, s.ao, s.bo, 1.0)
    for tx, ty, r_out, _r in _thigh(phantom, c):
        cv.ellipse(tx, ty, r_out, r_out * 0.95, 1.0)
    if phantom.arms_down:
        for arm in _arms(phantom, c, s):
            cv.ellipse(arm[0], arm[1], arm[2], arm[3], 1.0)
    for bx, by, ba, bb, angle in _breasts(phantom, c, s):
        cv.ellipse(bx, by, ba, bb, 1.0, angle_deg=angle)
    return cv.img >= 0.5


# -- scans -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Scan:
    """A scan's slice positions (mm of patient z) in acquisition order and the
    reconstruction drawn for it (``render_slice(..., reconstruction=scan.reconstruction)``
    renders the series as that scanner would; None: not drawn)."""

    z_positions: npt.NDArray[np.float64]
    spacing_mm: float
    region: str
    head_first: bool
    reconstruction: Reconstruction | None = None


#: Protocols reconstructed with a head's field of view and a head holder.
_HEAD_REGIONS = frozenset({"head", "head_neck", "neck"})


def _scan_reconstruction(
    phantom: Phantom, rng: np.random.Generator, region: str, top: float, bottom: float
) -> Reconstruction:
    """A reconstruction fitted to the body between ``top`` and ``bottom`` (mm of z)."""
    cs = [phantom.canonical_z(float(z)) for z in np.linspace(top, bottom, 9)]
    half_width = arms_half_width = 0.0
    for c in cs:
        s = _section(phantom, c)
        half_width = max(half_width, s.ao)
        for tx, _ty, r_out, _r in _thigh(phantom, c):
            half_width = max(half_width, abs(tx) + r_out)
        if phantom.arms_down:
            for arm in _arms(phantom, c, s):
                arms_half_width = max(arms_half_width, abs(arm[0]) + arm[2])
    mid = cs[len(cs) // 2]
    s = _section(phantom, mid)
    ox, oy = phantom.offset_mm
    r_vb = _SPINE(mid)[0] * math.sqrt(phantom.width_scale)
    options: list[Metal] = []
    if min(cs) < CANONICAL_LANDMARKS["femoral_head"] + 20.0:
        options += ["hip_left", "hip_right"]
    if max(cs) > -176.0 and min(cs) < -146.0:
        options.append("dental")
    return draw_reconstruction(
        rng,
        head=region in _HEAD_REGIONS,
        body_width_mm=2.0 * half_width,
        arms_width_mm=2.0 * arms_half_width if phantom.arms_down else None,
        body_centre_mm=(ox, oy + s.cy),
        spine_mm=(ox, oy + _spine_y(s, r_vb)),
        metal_options=tuple(options),
    )


def random_scan(
    phantom: Phantom,
    rng: np.random.Generator,
    *,
    region: str | None = None,
    spacing_mm: float | None = None,
    max_slices: int | None = None,
    head_first: bool | None = None,
    reconstruction: Reconstruction | None = None,
) -> Scan:
    """A random scan of ``phantom``: a protocol region from ``REGIONS`` (by its weight,
    unless given) with random margins at both ends, a spacing from ``SPACINGS_MM`` (unless
    given) and a random direction (head first 70 %, unless given). ``max_slices`` caps the
    number of slices by widening the spacing (to a multiple of 0.01 mm). Positions are
    rounded to 0.001 mm and stay within [z_bottom, z_top]. ``reconstruction`` (unless
    given) is drawn for the protocol and the body in the scan (``ct_reconstruction``),
    after everything else, so the draws above are those of a scan without one."""
    names = list(REGIONS)
    if region is None:
        weights = np.array([REGIONS[n][4] for n in names])
        region = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    elif region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; known: {', '.join(names)}")
    top_name, top_off, bottom_name, bottom_off, _w = REGIONS[region]
    lm = phantom.landmarks
    top = lm[top_name] + top_off * phantom.height_scale + float(rng.uniform(-15.0, 25.0))
    bottom = lm[bottom_name] + bottom_off * phantom.height_scale - float(rng.uniform(-15.0, 25.0))
    top = min(top, phantom.z_top)
    bottom = max(bottom, phantom.z_bottom)
    if top - bottom < 20.0:
        top = min(bottom + 20.0, phantom.z_top)
    if spacing_mm is None:
        spacing_mm = float(rng.choice(SPACINGS_MM))
    if spacing_mm <= 0.0:
        raise ValueError("spacing_mm must be positive")
    length = top - bottom
    count = int(math.floor(length / spacing_mm + 1e-9)) + 1
    if max_slices is not None:
        if max_slices < 2:
            raise ValueError("max_slices must be at least 2")
        if count > max_slices:
            spacing_mm = math.ceil(length / (max_slices - 1) * 100.0) / 100.0
            count = int(math.floor(length / spacing_mm + 1e-9)) + 1
    if head_first is None:
        head_first = bool(rng.random() < 0.7)
    steps = np.arange(count, dtype=np.float64) * spacing_mm
    zs = top - steps if head_first else (top - steps)[::-1]
    if reconstruction is None:
        reconstruction = _scan_reconstruction(phantom, rng, region, top, bottom)
    return Scan(
        z_positions=np.round(zs, 3),
        spacing_mm=float(spacing_mm),
        region=region,
        head_first=head_first,
        reconstruction=reconstruction,
    )


# -- DICOM -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WrittenSeries:
    """A written CT series and its ground truth.

    ``files`` are in Instance Number order, ``z_positions`` (Image Position Patient z) and
    ``anatomy_z`` (the z whose anatomy each file's pixels show) in the same order.
    """

    folder: Path
    files: tuple[Path, ...]
    study_instance_uid: str
    series_instance_uid: str
    z_positions: npt.NDArray[np.float64]
    zones: dict[str, tuple[float, float]]
    anatomy_order: str
    anatomy_z: npt.NDArray[np.float64]
    instance_numbers: tuple[int, ...]
    region: str
    phantom_seed: int


def _uid(root: str, *parts: object) -> str:
    return str(generate_uid(prefix=f"{root}.", entropy_srcs=[str(p) for p in parts]))


def _ds(value: float) -> str:
    """A decimal string that reads back as ``value`` to 1e-6 (≤ 16 characters)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _anatomy_source(n: int, order: AnatomyOrder, rng: np.random.Generator) -> list[int]:
    """For each slice (acquisition order), the slice whose anatomy its pixels show."""
    source = list(range(n))
    if order == "normal" or n < 2:
        return source
    if order == "reversed":
        return source[::-1]
    if order == "mixed":
        block = max(2, round(n / 3))
        lo, hi = (1, n - block - 1) if n - block >= 2 else (0, n - block)
        start = int(rng.integers(lo, hi + 1))
        source[start : start + block] = source[start : start + block][::-1]
        return source
    raise ValueError(f"unknown anatomy_order {order!r}")


#: Convolution Kernel (0018,1210) written for each kernel.
_KERNEL_NAMES = {"soft": "SOFT", "standard": "STANDARD", "sharp": "BONE"}


def write_ct_series(
    folder: Path,
    phantom: Phantom,
    scan: Scan,
    *,
    size: int = 512,
    pixel_spacing: float | None = None,
    anatomy_order: AnatomyOrder = "normal",
    shuffle_instance_numbers: bool = False,
    reconstruction: Reconstruction | None = None,
    study_instance_uid: str | None = None,
    patient_id: str | None = None,
    patient_name: str | None = None,
    series_description: str = "Synthetic CT phantom",
    series_number: int = 1,
    seed: int | None = None,
    uid_root: str = SYNTHETIC_UID_ROOT,
    progress: Callable[[int, int], None] | None = None,
) -> WrittenSeries:
    """Render ``scan`` of ``phantom`` and write it as a CT Image Storage series.

    One file per slice, ``folder / "<SOP Instance UID>.dcm"``: explicit VR little endian,
    16 bits signed, Rescale Intercept 0 and Slope 1 (HU), Image Orientation (Patient)
    1\\0\\0\\0\\1\\0, Image Position (Patient) the top-left pixel centre at the slice's z,
    Slice Thickness the spacing, Instance Number 1 … n in acquisition order (a random
    permutation with ``shuffle_instance_numbers``), Patient Position HFS for head-first
    scans and FFS otherwise. ``anatomy_order``: "normal" pixels match the geometry;
    "reversed" assigns the slices' pixel data in reverse order; "mixed" reverses a
    contiguous block of about a third of the slices in place. ``patient_id`` and
    ``patient_name`` default to PHANTOM-<seed> and Phantom^<seed> (the phantom's seed);
    ``seed`` (default: the phantom's) drives the UIDs, dates, the shuffle and the mixed
    block. ``progress(done, total)`` is called after each file.

    ``pixel_spacing`` defaults to 0.9 mm. With a ``reconstruction`` (e.g. the scan's own,
    ``scan.reconstruction``) the slices are rendered through it: the pixel spacing is its
    field of view over ``size``, Image Position (Patient) follows its centre, Reconstruction
    Diameter, Convolution Kernel and KVP are its, and when it pads outside the
    reconstruction circle, Pixel Padding Value (0028,0120) holds the padding as stored
    (signed 16 bits, Rescale Intercept 0: the padding value itself).
    """
    n = len(scan.z_positions)
    if n == 0:
        raise ValueError("the scan has no slices")
    pixel_spacing = _image_geometry(size, pixel_spacing, reconstruction)
    run_seed = phantom.seed if seed is None else int(seed)
    rng = np.random.default_rng([abs(run_seed), 1 if run_seed < 0 else 0, 0x53455249])
    zs = np.asarray(scan.z_positions, dtype=np.float64)
    source = _anatomy_source(n, anatomy_order, rng)
    numbers = list(range(1, n + 1))
    if shuffle_instance_numbers:
        numbers = [int(v) + 1 for v in rng.permutation(n)]
    key = (
        run_seed,
        phantom.seed,
        scan.region,
        f"{zs[0]:.3f}",
        f"{zs[-1]:.3f}",
        n,
        f"{scan.spacing_mm:.4f}",
        size,
        f"{pixel_spacing:.6f}",
        anatomy_order,
        shuffle_instance_numbers,
        series_description,
        series_number,
        *(() if reconstruction is None else (repr(reconstruction),)),
    )
    study_uid = study_instance_uid or _uid(uid_root, "ct-study", run_seed, phantom.seed)
    series_uid = _uid(uid_root, "ct-series", study_uid, *key)
    frame_uid = _uid(uid_root, "ct-frame", study_uid, phantom.seed)
    acquired = datetime(2025, 1, 1, 7, 0, 0) + timedelta(
        minutes=int(rng.integers(0, 365 * 24 * 60))
    )
    birth = acquired.replace(year=acquired.year - phantom.age_years, month=1, day=1)
    date, time = acquired.strftime("%Y%m%d"), acquired.strftime("%H%M%S")
    number = abs(phantom.seed)
    body_part = BODY_PARTS.get(scan.region)
    centre = (0.0, 0.0) if reconstruction is None else reconstruction.centre_mm
    origin_x = centre[0] - (size - 1) / 2.0 * pixel_spacing
    origin_y = centre[1] - (size - 1) / 2.0 * pixel_spacing
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    base = Dataset()
    base.SpecificCharacterSet = "ISO_IR 100"
    base.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    base.InstanceCreationDate = date
    base.InstanceCreationTime = time
    base.SOPClassUID = CTImageStorage
    base.StudyDate = date
    base.SeriesDate = date
    base.AcquisitionDate = date
    base.ContentDate = date
    base.StudyTime = time
    base.SeriesTime = time
    base.AcquisitionTime = time
    base.ContentTime = time
    base.AccessionNumber = f"SYNCT{number % 10**8}"
    base.Modality = "CT"
    base.Manufacturer = "dicom-node synthetic phantom"
    base.InstitutionName = "Synthetic Hospital"
    base.ReferringPhysicianName = "Referrer^Synthetic"
    base.StationName = "PHANTOMCT"
    base.StudyDescription = f"CT {scan.region.replace('_', ' ')}"
    base.SeriesDescription = series_description
    base.ManufacturerModelName = "ct_phantoms"
    base.PatientName = patient_name or f"Phantom^{number}"
    base.PatientID = patient_id or f"PHANTOM-{number}"
    base.PatientBirthDate = birth.strftime("%Y%m%d")
    base.PatientSex = phantom.sex
    base.PatientAge = f"{phantom.age_years:03d}Y"
    if body_part is not None:
        base.BodyPartExamined = body_part
    base.SliceThickness = _ds(scan.spacing_mm)
    base.KVP = "120" if reconstruction is None else str(reconstruction.kvp)
    base.DataCollectionDiameter = "500"
    base.DeviceSerialNumber = "0001"
    base.SoftwareVersions = "1"
    base.ReconstructionDiameter = _ds(size * pixel_spacing)
    base.GantryDetectorTilt = "0"
    base.TableHeight = _ds(150.0 - phantom.back_y_mm)
    base.RotationDirection = "CW"
    base.ExposureTime = "500"
    base.XRayTubeCurrent = "200"
    base.Exposure = "100"
    base.FilterType = "BODY"
    base.ConvolutionKernel = "STANDARD"
    if reconstruction is not None:
        base.ConvolutionKernel = _KERNEL_NAMES[reconstruction.kernel]
        if reconstruction.table is None:
            del base.TableHeight
    base.PatientPosition = "HFS" if scan.head_first else "FFS"
    if phantom.contrast:  # Contrast/Bolus module: intravenous iodinated contrast
        base.ContrastBolusAgent = "IODINATED CONTRAST"
        base.ContrastBolusRoute = "IV"
    base.StudyInstanceUID = study_uid
    base.SeriesInstanceUID = series_uid
    base.StudyID = str(number % 10**6)
    base.SeriesNumber = series_number
    base.AcquisitionNumber = 1
    base.FrameOfReferenceUID = frame_uid
    base.PositionReferenceIndicator = ""
    base.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME2"
    base.Rows = size
    base.Columns = size
    spacing = _ds(pixel_spacing)
    base.PixelSpacing = [spacing, spacing]
    base.BitsAllocated = 16
    base.BitsStored = 16
    base.HighBit = 15
    base.PixelRepresentation = 1
    if scan.region.startswith(("head", "neck")) and "chest" not in scan.region:
        base.WindowCenter, base.WindowWidth = "40", "120"
        base.WindowCenterWidthExplanation = "BRAIN"
    elif "chest" in scan.region or scan.region == "whole_body":
        base.WindowCenter = ["40", "-600"]
        base.WindowWidth = ["400", "1500"]
        base.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    else:
        base.WindowCenter, base.WindowWidth = "40", "400"
        base.WindowCenterWidthExplanation = "SOFT TISSUE"
    base.RescaleIntercept = "0"
    base.RescaleSlope = "1"
    base.RescaleType = "HU"
    if reconstruction is not None and reconstruction.padding_hu is not None:
        # Stored value = (HU − intercept) / slope = the padding value: signed 16 bits.
        base.add_new(0x00280120, "SS", int(round(reconstruction.padding_hu)))
    base.BurnedInAnnotation = "NO"
    base.LossyImageCompression = "00"

    written: list[tuple[int, Path, float, float]] = []
    for k in range(n):
        z = float(zs[k])
        z_anatomy = float(zs[source[k]])
        pixels = render_slice(
            phantom,
            z_anatomy,
            size=size,
            pixel_spacing=pixel_spacing,
            reconstruction=reconstruction,
        )
        stored = np.rint(pixels).astype("<i2")
        sop_uid = _uid(uid_root, "ct-image", series_uid, k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = UID(sop_uid)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.update(base)
        ds.file_meta = meta
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = numbers[k]
        ds.ImagePositionPatient = [_ds(origin_x), _ds(origin_y), _ds(z)]
        ds.SliceLocation = _ds(z)
        ds.SmallestImagePixelValue = int(stored.min())
        ds.LargestImagePixelValue = int(stored.max())
        ds.PixelData = stored.tobytes()
        path = folder / f"{sop_uid}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append((numbers[k], path, z, z_anatomy))
        if progress is not None:
            progress(k + 1, n)
    written.sort(key=lambda item: item[0])
    return WrittenSeries(
        folder=folder,
        files=tuple(item[1] for item in written),
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        z_positions=np.array([item[2] for item in written], dtype=np.float64),
        zones=dict(phantom.zones),
        anatomy_order=anatomy_order,
        anatomy_z=np.array([item[3] for item in written], dtype=np.float64),
        instance_numbers=tuple(item[0] for item in written),
        region=scan.region,
        phantom_seed=phantom.seed,
    )


def write_ct_study(
    folder: Path,
    seed: int,
    *,
    size: int = 512,
    pixel_spacing: float | None = None,
    region: str | None = None,
    spacing_mm: float | None = None,
    max_slices: int | None = None,
    anatomy_order: AnatomyOrder = "normal",
    shuffle_instance_numbers: bool = False,
    reconstructed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> WrittenSeries:
    """One subject (``make_phantom(seed)``), one random scan of it, written to ``folder``.

    ``pixel_spacing`` defaults to a 460 mm field of view (0.9 mm at 512); ``reconstructed``
    renders the scan through its drawn reconstruction instead (its own field of view)."""
    phantom = make_phantom(seed)
    rng = np.random.default_rng([abs(int(seed)), 1 if seed < 0 else 0, 0x5343414E])
    scan = random_scan(phantom, rng, region=region, spacing_mm=spacing_mm, max_slices=max_slices)
    if reconstructed:
        spacing = pixel_spacing
    else:
        spacing = pixel_spacing if pixel_spacing is not None else 460.8 / size
    return write_ct_series(
        folder,
        phantom,
        scan,
        size=size,
        pixel_spacing=spacing,
        anatomy_order=anatomy_order,
        shuffle_instance_numbers=shuffle_instance_numbers,
        reconstruction=scan.reconstruction if reconstructed else None,
        progress=progress,
    )


def write_multi_frame_ct(
    series: WrittenSeries,
    path: Path,
    *,
    series_number: int = 90,
    uid_root: str = SYNTHETIC_UID_ROOT,
) -> Path:
    """``series`` converted into one multi-frame image: a Legacy Converted Enhanced CT Image
    made by highdicom, one frame per slice, each frame's position and the shared
    orientation, pixel spacing and rescale in the functional groups; a new series of the
    same study, its UIDs derived from the source series'. Written to ``path``, which is
    returned."""
    import highdicom.legacy
    import pydicom

    sources = [pydicom.dcmread(file) for file in series.files]
    image = highdicom.legacy.LegacyConvertedEnhancedCTImage(
        sources,
        series_instance_uid=_uid(uid_root, "multi-frame series", series.series_instance_uid),
        series_number=series_number,
        sop_instance_uid=_uid(uid_root, "multi-frame image", series.series_instance_uid),
        instance_number=1,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save_as(path)
    return path


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda _n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("CT phantoms"), BarColumn(), MofNCompleteColumn(), transient=False
    ) as bar:
        task = bar.add_task("write", total=total)
        yield lambda n: bar.advance(task, n)


def write_ct_phantom_series(
    root: Path,
    count: int,
    *,
    seed: int,
    size: int = 512,
    pixel_spacing: float | None = None,
    region: str | None = None,
    spacing_mm: float | None = None,
    max_slices: int | None = None,
    anatomy_order: AnatomyOrder = "normal",
    shuffle_instance_numbers: bool = False,
    reconstructed: bool = False,
    show_progress: bool = False,
) -> list[WrittenSeries]:
    """``count`` series of distinct subjects (seeds drawn from ``seed``), each in its own
    folder ``root / "ct_<index>_<subject seed>"``; a rich progress bar counts series.
    ``reconstructed``: as for ``write_ct_study``."""
    if count < 0:
        raise ValueError("count must not be negative")
    rng = np.random.default_rng([abs(int(seed)), 0x50484E54])
    seeds: list[int] = []
    while len(seeds) < count:
        candidate = int(rng.integers(0, 2**31 - 1))
        if candidate not in seeds:
            seeds.append(candidate)
    out = []
    with _progress_bar(show_progress, count) as advance:
        for index, subject in enumerate(seeds):
            out.append(
                write_ct_study(
                    Path(root) / f"ct_{index:04d}_{subject}",
                    subject,
                    size=size,
                    pixel_spacing=pixel_spacing,
                    region=region,
                    spacing_mm=spacing_mm,
                    max_slices=max_slices,
                    anatomy_order=anatomy_order,
                    shuffle_instance_numbers=shuffle_instance_numbers,
                    reconstructed=reconstructed,
                )
            )
            advance(1)
    return out
