"""Synthetic musculoskeletal radiograph studies (MURA-like), normal or abnormal.

The ``mura_abnormality`` pipeline (paper 001, Ghalyan et al., on Stanford's MURA) reads
upper-extremity studies of seven regions and calls each study normal or abnormal. MURA
cannot be shipped, so tests, training smoke runs and the demo use studies rendered here:
1–4 views (AP, oblique, lateral) of one region of one synthetic subject, with or without
one abnormality of the kinds MURA's radiologists labelled — a fracture (a dark line across
the bone with a displaced fragment), hardware (a plate with screws, or K-wires), a lytic or
sclerotic lesion, or joint degeneration (narrowed joint space, subchondral sclerosis,
osteophytes) — at a known place (``MskView.lesion_box``).

The subject is one analytic upper limb, in millimetres: shoulder girdle (humeral head,
glenoid, scapula, acromion, clavicle, ribs), humerus with condyles, radius and ulna,
eight carpal bones, five metacarpals and fourteen phalanges, each long bone a tube whose
cortex is brighter than its medulla, under a soft-tissue envelope. A region is a crop of
that limb (a finger film shows the neighbouring fingers' edges, a humerus film the
shoulder and the elbow); oblique and lateral views squeeze parallel bones onto each other
and flex the elbow. Every view has its own pose (rotation ±15°, position, scale), exposure
and display curve, collimator shutter (bright, electronically blacked out, or none),
detector noise and blur; side markers and jewellery (rings, bracelets, ECG electrodes)
appear in normal and abnormal films alike, so that "a bright object" is not the label.

Randomness is split by purpose, all from ``seed``: the subject and the views' poses and
exposures come from streams that never see the label, the abnormality from its own
stream. ``make_msk_study(seed, abnormal=False)`` and ``make_msk_study(seed,
abnormal=True)`` therefore render the same anatomy, pose and noise, and differ only in
``lesion_box`` (padded by the blur): the tests check that, and that global intensity
statistics do not tell the classes apart.

Images are float32 in [0, 1] in the MONOCHROME2 sense (1 = most attenuating: bone and
metal bright, air dark), as MURA's PNGs are displayed. ``write_msk_study`` writes a study
as DX (Digital X-Ray Image Storage – For Presentation) or CR Part 10 files through
``hand_films.write_hand_film``, with the region's Body Part Examined, View Position and
codes; ``write_mura_layout`` writes MURA-v1.1's folders, PNGs and CSV files.

Abnormal views are checked before they are called abnormal: the site must lie inside the
exposed field (views are collimated so that every site of the region does) and change the
noiseless picture by at least ``_MIN_CONTRAST``; a view that does not show it is labelled
normal, as is, rarely, a further view at random (MURA labels studies, not images).

Body Part Examined follows PS3.16 Annex L; dicom3tools' dciodvfy (2022) does not know
FOREARM yet and warns about it (a warning, not an error).

Speed: a 512 × 448 view takes about 15–20 ms of CPU on one core (numpy, float32;
primitives are evaluated only in pixel windows around them); 2500 px about 1 s.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.sequence import Sequence as DicomSequence

from training.synthetic.hand_films import SYNTHETIC_UID_ROOT, _code, _uid, write_hand_film

__all__ = [
    "ABNORMALITIES",
    "BODY_PART_EXAMINED",
    "REGIONS",
    "VIEWS",
    "MskStudy",
    "MskView",
    "WrittenMskStudy",
    "make_msk_studies",
    "make_msk_study",
    "write_msk_study",
    "write_mura_layout",
]

#: MURA's seven study types, XR_ELBOW … XR_WRIST.
REGIONS: tuple[str, ...] = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")

#: The abnormalities MURA's labels cover (Rajpurkar et al.: fractures, hardware,
#: degenerative joint disease, lesions).
ABNORMALITIES: tuple[str, ...] = ("fracture", "hardware", "lesion", "degeneration")

#: View types: frontal (AP, written as PA for hand, wrist and finger), lateral, oblique.
VIEWS: tuple[str, ...] = ("AP", "LAT", "OBL")

#: Body Part Examined (0018,0015): PS3.16 Annex L defined terms for CID 4031's regions.
BODY_PART_EXAMINED: dict[str, str] = {
    "elbow": "ELBOW",
    "finger": "FINGER",
    "forearm": "FOREARM",
    "hand": "HAND",
    "humerus": "HUMERUS",
    "shoulder": "SHOULDER",
    "wrist": "WRIST",
}

#: Anatomic Region Sequence codes (CID 4009 DX Anatomy Imaged).
_ANATOMY_CODES: dict[str, tuple[str, str, str]] = {
    "elbow": ("16953009", "SCT", "Elbow joint"),
    "finger": ("7569003", "SCT", "Finger"),
    "forearm": ("14975008", "SCT", "Forearm"),
    "hand": ("85562004", "SCT", "Hand"),
    "humerus": ("85050009", "SCT", "Humerus"),
    "shoulder": ("16982005", "SCT", "Shoulder"),
    "wrist": ("74670003", "SCT", "Wrist joint"),
}

#: View Code Sequence codes (CID 4010 DX View).
_VIEW_CODES: dict[str, tuple[str, str, str]] = {
    "AP": ("399348003", "SCT", "antero-posterior"),
    "PA": ("272479007", "SCT", "postero-anterior"),
    "LAT": ("399067008", "SCT", "lateral"),
    "OBL": ("399182000", "SCT", "oblique"),
}

Modality = Literal["DX", "CR"]
Photometric = Literal["MONOCHROME1", "MONOCHROME2"]

_F = npt.NDArray[np.float32]
_Pt = tuple[float, float]

# -- public records ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MskView:
    """One rendered view and its ground truth.

    ``image``: float32 (rows, cols) in [0, 1], 1 = most attenuating. ``lesion_box``:
    (row0, col0, row1, col1), half-open (``image[row0:row1, col0:col1]``), where the
    abnormality changes the pixels; ``None`` when this view does not show one.
    """

    region: str
    view: str
    image: npt.NDArray[np.float32]
    abnormal: bool
    abnormality: str | None
    lesion_box: tuple[int, int, int, int] | None
    pixel_spacing_mm: float


@dataclass(frozen=True)
class MskStudy:
    """A study: 1–4 views of one region of one subject; abnormal when any view shows it.

    ``laterality``: the side filmed, "L" or "R" (drawn from the seed; the DICOM headers
    carry it).
    """

    seed: int
    region: str
    abnormal: bool
    views: tuple[MskView, ...]
    laterality: str = "R"


@dataclass(frozen=True)
class WrittenMskStudy:
    """A study written as DICOM files, one per view in view order."""

    study: MskStudy
    study_instance_uid: str
    series_instance_uids: tuple[str, ...]
    files: tuple[Path, ...]
    sop_instance_uids: tuple[str, ...]


# -- primitives (model frame: millimetres, +v distal along the limb, +u lateral) ------------


@dataclass(frozen=True, eq=False)
class _Bone:
    """A long bone: segment a→b, shaft radius ``rs`` widening to ``ra`` / ``rb`` at its ends."""

    name: str
    group: str
    a: _Pt
    b: _Pt
    ra: float
    rs: float
    rb: float
    cortex: float = 0.6  # inner / outer radius along the shaft
    density: float = 1.0
    flare: int = 2
    ray: int = 0  # 2..5: a finger's phalanx (moves with the finger)

    def radius_at(self, t: float) -> float:
        s = 2.0 * t - 1.0
        return (
            self.rs
            + (self.ra - self.rs) * max(-s, 0.0) ** self.flare
            + (self.rb - self.rs) * max(s, 0.0) ** self.flare
        )

    def bbox(self) -> tuple[float, float, float, float]:
        r = max(self.ra, self.rs, self.rb)
        return (
            min(self.a[0], self.b[0]) - r,
            max(self.a[0], self.b[0]) + r,
            min(self.a[1], self.b[1]) - r,
            max(self.a[1], self.b[1]) + r,
        )


@dataclass(frozen=True, eq=False)
class _Blob:
    """An ellipsoidal bone (carpal, condyle, humeral head); ``shell`` 0 = solid."""

    name: str
    group: str
    centre: _Pt
    a: float  # semi-axis along the blob's own u
    b: float  # semi-axis along its own v
    angle: float = 0.0  # degrees, counter-clockwise in the (u, v) plane
    density: float = 1.0
    shell: float = 0.82
    marrow: float = 0.3
    depth: float = 0.0  # half-thickness along the beam; 0: the smaller semi-axis

    def bbox(self) -> tuple[float, float, float, float]:
        r = max(self.a, self.b)
        return (self.centre[0] - r, self.centre[0] + r, self.centre[1] - r, self.centre[1] + r)


@dataclass(frozen=True, eq=False)
class _Soft:
    """Soft tissue: a capsule of half-width w(t) and half-depth d(t) (elliptic section)."""

    group: str
    a: _Pt
    b: _Pt
    wa: float
    wb: float
    da: float
    db: float
    density: float = 1.0
    ray: int = 0

    def bbox(self) -> tuple[float, float, float, float]:
        r = max(self.wa, self.wb)
        return (
            min(self.a[0], self.b[0]) - r,
            max(self.a[0], self.b[0]) + r,
            min(self.a[1], self.b[1]) - r,
            max(self.a[1], self.b[1]) + r,
        )


@dataclass(frozen=True, eq=False)
class _Metal:
    """A flat metal strip a→b of half-width ``width`` (a disc when a == b)."""

    group: str
    a: _Pt
    b: _Pt
    width: float
    strength: float  # attenuation added on the strip
    ray: int = 0

    def bbox(self) -> tuple[float, float, float, float]:
        r = self.width + 1.0
        return (
            min(self.a[0], self.b[0]) - r,
            max(self.a[0], self.b[0]) + r,
            min(self.a[1], self.b[1]) - r,
            max(self.a[1], self.b[1]) + r,
        )


@dataclass(frozen=True, eq=False)
class _Joint:
    """A joint: gap centre, unit axis across the gap, half-width of the articular surfaces."""

    name: str
    group: str
    centre: _Pt
    axis: _Pt
    width: float
    gap: float
    ray: int = 0


@dataclass(frozen=True, eq=False)
class _Anatomy:
    bones: tuple[_Bone, ...]
    blobs: tuple[_Blob, ...]
    soft: tuple[_Soft, ...]
    metal: tuple[_Metal, ...]
    joints: tuple[_Joint, ...]

    def bone(self, name: str) -> _Bone:
        for bone in self.bones:
            if bone.name == name:
                return bone
        raise KeyError(name)

    def blob(self, name: str) -> _Blob:
        for blob in self.blobs:
            if blob.name == name:
                return blob
        raise KeyError(name)

    def joint(self, name: str) -> _Joint:
        for joint in self.joints:
            if joint.name == name:
                return joint
        raise KeyError(name)

    def turned(self, select: Callable[[str, int], bool], centre: _Pt, deg: float) -> _Anatomy:
        """The primitives chosen by ``select(group, ray)`` rotated by ``deg`` about ``centre``."""

        def pt(group: str, ray: int, p: _Pt) -> _Pt:
            return _rotate(p, deg, centre) if select(group, ray) else p

        return _Anatomy(
            bones=tuple(
                replace(b, a=pt(b.group, b.ray, b.a), b=pt(b.group, b.ray, b.b)) for b in self.bones
            ),
            blobs=tuple(
                replace(b, centre=pt(b.group, 0, b.centre), angle=b.angle + deg)
                if select(b.group, 0)
                else b
                for b in self.blobs
            ),
            soft=tuple(
                replace(s, a=pt(s.group, s.ray, s.a), b=pt(s.group, s.ray, s.b)) for s in self.soft
            ),
            metal=tuple(
                replace(m, a=pt(m.group, m.ray, m.a), b=pt(m.group, m.ray, m.b)) for m in self.metal
            ),
            joints=tuple(
                replace(j, centre=pt(j.group, j.ray, j.centre), axis=_rotate(j.axis, deg))
                if select(j.group, j.ray)
                else j
                for j in self.joints
            ),
        )


def _rotate(p: _Pt, deg: float, about: _Pt = (0.0, 0.0)) -> _Pt:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    x, y = p[0] - about[0], p[1] - about[1]
    return (about[0] + c * x - s * y, about[1] + s * x + c * y)


def _unit(deg: float) -> _Pt:
    """Unit vector at ``deg`` from +v towards +u."""
    a = math.radians(deg)
    return (math.sin(a), math.cos(a))


def _add(p: _Pt, q: _Pt, k: float = 1.0) -> _Pt:
    return (p[0] + k * q[0], p[1] + k * q[1])


# -- the subject ------------------------------------------------------------------------------

_SUBJECT_DRAWS = 32


@dataclass(frozen=True)
class _Subject:
    scale: float
    width: float
    humerus: float
    forearm: float
    hand: float
    density: float
    cortex: float
    soft: float
    spread: float
    finger_ray: int
    laterality: str
    flexion: float
    gaps: float
    thumb: float
    ulnar_variance: float
    ring: bool
    ring_ray: int
    bracelet: bool
    electrodes: bool
    extra: tuple[float, ...]

    @staticmethod
    def draw(u: npt.NDArray[np.float64]) -> _Subject:
        return _Subject(
            scale=0.86 + 0.26 * u[0],
            width=0.88 + 0.24 * u[1],
            humerus=285.0 + 40.0 * u[2],
            forearm=220.0 + 35.0 * u[3],
            hand=0.92 + 0.16 * u[4],
            density=0.85 + 0.3 * u[5],
            cortex=0.5 + 0.14 * u[6],
            soft=0.8 + 0.5 * u[7],
            spread=0.6 + 0.8 * u[8],
            finger_ray=2 + min(int(4 * u[9]), 3),
            laterality="L" if u[10] < 0.5 else "R",
            flexion=80.0 + 25.0 * u[11],
            gaps=0.8 + 0.4 * u[12],
            thumb=30.0 + 14.0 * u[13],
            ulnar_variance=-2.0 + 4.0 * u[14],
            ring=u[15] < 0.3,
            ring_ray=3 + int(u[16] < 0.5),
            bracelet=u[17] < 0.22,
            electrodes=u[18] < 0.35,
            extra=tuple(float(x) for x in u[19:]),
        )


# Hand layout: (u at the metacarpal base, v offset from the radiocarpal joint, metacarpal
# length, ray angle (deg from +v to +u), proximal / middle / distal phalanx lengths,
# shaft radius) for rays 1 (thumb) to 5. Lengths are centre to centre of the end caps.
_RAYS = (
    (21.0, 26.0, 34.0, 0.0, 24.0, 0.0, 15.0, 3.9),
    (10.0, 31.0, 56.0, 6.0, 33.0, 19.0, 12.0, 3.5),
    (0.0, 31.0, 54.0, 0.0, 37.0, 22.0, 13.0, 3.6),
    (-9.0, 30.0, 48.0, -6.0, 34.0, 20.0, 13.0, 3.3),
    (-17.0, 28.0, 44.0, -13.0, 27.0, 14.0, 11.0, 3.0),
)

# Carpal bones: name, (u, v offset from the radiocarpal joint), semi-axes, angle.
_CARPALS = (
    ("scaphoid", (13.0, 7.0), 8.0, 5.0, 35.0),
    ("lunate", (1.0, 6.5), 5.8, 5.2, 0.0),
    ("triquetrum", (-10.0, 8.0), 5.2, 4.6, -15.0),
    ("pisiform", (-13.0, 10.0), 3.6, 3.6, 0.0),
    ("trapezium", (19.0, 19.0), 6.0, 5.5, 25.0),
    ("trapezoid", (10.0, 20.0), 4.5, 5.0, 10.0),
    ("capitate", (0.5, 20.0), 5.2, 8.0, 0.0),
    ("hamate", (-10.0, 19.0), 5.8, 7.2, -10.0),
)


def _limb(s: _Subject) -> _Anatomy:
    """The whole upper limb in the anatomical position (AP), right side, +u lateral."""
    w = s.width
    x = s.extra
    bones: list[_Bone] = []
    blobs: list[_Blob] = []
    soft: list[_Soft] = []
    metal: list[_Metal] = []
    joints: list[_Joint] = []
    dens = s.density
    cortex = s.cortex

    # Shoulder girdle (v = 0: the glenohumeral joint).
    head_c = (12.0 * w, 2.0)
    head_r = 22.0 * w
    blobs.append(_Blob("humeral_head", "arm", head_c, head_r, head_r * 1.04, 0.0, 0.95 * dens, 0.9))
    blobs.append(
        _Blob("tuberosity", "arm", (31.0 * w, 12.0), 9.0 * w, 14.0 * w, 15.0, 0.8 * dens, 0.85)
    )
    glen_gap = 4.0 * s.gaps
    glen_c = (head_c[0] - head_r - glen_gap - 6.0 * w, 2.0)
    blobs.append(_Blob("glenoid", "girdle", glen_c, 6.0 * w, 19.0 * w, 0.0, 0.95 * dens, 0.7))
    blobs.append(
        _Blob("scapula", "girdle", (-62.0, 60.0), 38.0, 78.0, -22.0, 0.6 * dens, 0.0, 0.0, 3.5)
    )
    bones.append(
        _Bone(
            "scapula_border",
            "girdle",
            (glen_c[0] - 2.0, 22.0),
            (-72.0, 150.0),
            7.0,
            4.5,
            3.5,
            0.55,
            0.9 * dens,
        )
    )
    bones.append(
        _Bone(
            "acromion", "girdle", (-27.0, -30.0), (24.0 * w, -36.0), 8.0, 7.0, 8.5, 0.7, 0.9 * dens
        )
    )
    bones.append(
        _Bone("clavicle", "girdle", (-48.0, -38.0), (-175.0, -60.0), 9.0, 6.5, 10.0, cortex, dens)
    )
    blobs.append(_Blob("coracoid", "girdle", (-30.0, -12.0), 6.0, 12.0, 25.0, 0.8 * dens, 0.8))
    joints.append(
        _Joint(
            "glenohumeral",
            "girdle",
            (glen_c[0] + 6.0 * w + glen_gap / 2, 2.0),
            (1.0, 0.0),
            17.0 * w,
            glen_gap,
        )
    )
    joints.append(_Joint("acromioclavicular", "girdle", (-37.5, -34.0), (1.0, -0.1), 7.0, 3.0))
    for i in range(6):  # ribs: three-segment arcs over the lung
        v0 = -45.0 + 38.0 * i
        pts = [(-62.0, v0 + 28.0), (-105.0, v0 + 8.0), (-160.0, v0 + 2.0), (-230.0, v0 + 18.0)]
        for k in range(3):
            bones.append(
                _Bone(f"rib{i}{k}", "chest", pts[k], pts[k + 1], 4.5, 4.5, 4.5, 0.6, 0.55 * dens)
            )

    # Humerus and elbow (v = H: the distal humeral shaft's end).
    hum = s.humerus
    bones.append(
        _Bone(
            "humerus",
            "arm",
            (15.0 * w, 14.0),
            (4.0 * w, hum - 20.0),
            14.0 * w,
            10.5 * w,
            19.0 * w,
            cortex,
            dens,
            3,
        )
    )
    cap_c = (17.0 * w, hum + 2.0)
    troch_c = (-6.0 * w, hum + 4.0)
    blobs.append(_Blob("capitulum", "condyle", cap_c, 9.0 * w, 8.5 * w, 0.0, dens, 0.85))
    blobs.append(_Blob("trochlea", "condyle", troch_c, 11.0 * w, 8.0 * w, 0.0, dens, 0.85))
    blobs.append(
        _Blob(
            "medial_epicondyle",
            "condyle",
            (-19.0 * w, hum - 9.0),
            9.0 * w,
            6.5 * w,
            -20.0,
            0.9 * dens,
            0.8,
        )
    )
    blobs.append(
        _Blob(
            "lateral_epicondyle",
            "condyle",
            (22.0 * w, hum - 8.0),
            6.5 * w,
            5.5 * w,
            20.0,
            0.9 * dens,
            0.8,
        )
    )
    blobs.append(
        _Blob("fossa", "condyle", (2.0 * w, hum - 14.0), 9.0 * w, 10.0 * w, 0.0, -0.35 * dens, 0.0)
    )
    elbow_gap = 3.0 * s.gaps
    elbow_v = cap_c[1] + 8.5 * w + elbow_gap / 2
    joints.append(_Joint("elbow", "condyle", (6.0 * w, elbow_v), (0.0, 1.0), 24.0 * w, elbow_gap))
    rad_ra = 10.0 * w
    rad_a = (18.0 * w, elbow_v + elbow_gap / 2 + rad_ra)
    fore = s.forearm
    rad_rb = 14.0 * w
    rad_b = (20.0 * w, rad_a[1] + fore)
    bones.append(_Bone("radius", "forearm", rad_a, rad_b, rad_ra, 6.5 * w, rad_rb, cortex, dens))
    rc_v = rad_b[1] + rad_rb  # the radius' articular surface: the radiocarpal joint line
    uln_rb = 7.5 * w
    uln_b = (-12.0 * w, rc_v - uln_rb + s.ulnar_variance)
    bones.append(
        _Bone(
            "ulna", "forearm", (-7.0 * w, hum - 6.0), uln_b, 12.0 * w, 6.5 * w, uln_rb, cortex, dens
        )
    )
    blobs.append(
        _Blob(
            "ulnar_styloid",
            "forearm",
            (-17.0 * w, uln_b[1] + 4.0),
            2.5 * w,
            5.0 * w,
            -10.0,
            0.9 * dens,
            0.0,
        )
    )

    # Wrist and hand (v = rc_v: the radiocarpal joint line).
    h = s.hand * w
    rc_gap = 2.5 * s.gaps
    joints.append(
        _Joint("radiocarpal", "carpal", (8.0 * w, rc_v + rc_gap / 2), (0.0, 1.0), 17.0 * w, rc_gap)
    )
    for name, (cu, cv), a, b, ang in _CARPALS:
        blobs.append(
            _Blob(
                name,
                "carpal",
                (cu * h, rc_v + rc_gap - 2.5 + cv * h),
                1.12 * a * h,
                1.12 * b * h,
                ang,
                dens,
                0.8,
            )
        )
    gap = 1.8 * s.gaps
    for ray, (bu, bv, mc_len, angle, pp, mp, dp, rs) in enumerate(_RAYS, start=1):
        group = "thumb" if ray == 1 else "hand"
        ray_angle = s.thumb if ray == 1 else angle * s.spread
        d = _unit(ray_angle)
        start = (bu * h, rc_v + bv * h)
        lengths = (mc_len, pp, mp, dp)
        names = ("mc", "pp", "mp", "dp")
        radii = (
            (5.0, rs, 4.8),
            (4.6, rs * 0.95, 4.0),
            (3.9, rs * 0.8, 3.4),
            (3.2, rs * 0.65, 2.4),
        )
        previous: _Bone | None = None
        bend = (x[0] - 0.5) * 6.0  # a slight curl per joint
        for k, (length, name) in enumerate(zip(lengths, names, strict=True)):
            if length <= 0:
                continue
            ra, rsk, rb = (r * h for r in radii[k])
            if previous is not None:
                d = _unit(ray_angle + bend * k)
                centre = _add(previous.b, d, previous.rb + gap / 2)
                jname = {"pp": "mcp", "mp": "pip", "dp": "dip"}[name]
                if ray == 1:
                    jname = {"pp": "mcp", "dp": "ip"}[name]
                tag = ray if ray > 1 and name != "pp" else 0
                joints.append(
                    _Joint(f"{jname}{ray}", group, centre, d, max(previous.rb, ra), gap, tag)
                )
                start = _add(previous.b, d, previous.rb + gap + ra)
            end = _add(start, d, length * h)
            tag = ray if ray > 1 and name != "mc" else 0
            bone = _Bone(f"{name}{ray}", group, start, end, ra, rsk, rb, cortex, dens, ray=tag)
            bones.append(bone)
            previous = bone
        assert previous is not None
        tip = _add(previous.b, d, previous.rb + 3.5 * h)
        first = bones[-3] if ray == 1 else bones[-4]  # the ray's metacarpal
        if ray == 1:
            cmc = _add(first.a, _unit(ray_angle), -first.ra - gap / 2)
            joints.append(_Joint("cmc1", "thumb", cmc, _unit(ray_angle), first.ra, gap))
            soft.append(
                _Soft(
                    "thumb",
                    _add(first.a, _unit(ray_angle), 5.0),
                    tip,
                    15.0 * h,
                    9.0 * h,
                    12.0 * h,
                    8.0 * h,
                )
            )
        else:
            soft.append(_Soft("hand", first.b, tip, 9.5 * h, 7.5 * h, 9.0 * h, 7.5 * h, ray=ray))
        if s.ring and ray == s.ring_ray:  # a ring on the proximal phalanx
            pp_bone = bones[-3]
            c = _add(pp_bone.a, (pp_bone.b[0] - pp_bone.a[0], pp_bone.b[1] - pp_bone.a[1]), 0.3)
            n = _rotate(_unit(ray_angle), 90.0)
            half = 9.0 * h + 1.0
            metal.append(
                _Metal("hand", _add(c, n, -half), _add(c, n, half), 1.0 + 0.8 * x[1], 1.6, ray)
            )

    # Soft-tissue envelope.
    so = s.soft
    soft.append(
        _Soft(
            "arm",
            (20.0 * w, -25.0),
            (4.0 * w, hum + 10.0),
            52.0 * w * so,
            40.0 * w * so,
            48.0 * so,
            36.0 * so,
        )
    )
    soft.append(
        _Soft(
            "forearm",
            (6.0 * w, hum + 5.0),
            (4.0 * w, rc_v + 2.0),
            38.0 * w * so,
            29.0 * w * so,
            32.0 * so,
            19.0 * so,
        )
    )
    soft.append(
        _Soft(
            "hand",
            (3.0 * h, rc_v + 4.0),
            (0.0, rc_v + 62.0 * h),
            36.0 * h * so,
            43.0 * h,
            13.0 * h * so,
            12.0 * h,
        )
    )
    soft.append(_Soft("chest", (-255.0, -90.0), (-255.0, 420.0), 190.0, 190.0, 95.0, 95.0, 0.45))
    soft.append(_Soft("chest", (-170.0, -75.0), (-20.0, -42.0), 26.0, 20.0, 40.0, 30.0))

    if s.bracelet:  # a chain of beads round the wrist
        beads = 9 + int(6 * x[2])
        v = rc_v - 12.0 - 10.0 * x[3]
        for i in range(beads):
            u = (-1.0 + 2.0 * i / (beads - 1)) * 31.0 * w * so
            p = (u + 4.0, v + 2.0 * math.cos(1.7 * i))
            metal.append(_Metal("forearm", p, p, 1.3 + 0.6 * x[4], 1.4))
    if s.electrodes:  # ECG electrodes on the chest wall
        for i in range(2):
            p = (-95.0 - 55.0 * x[5] - 45.0 * i, 10.0 + 130.0 * x[6] + 50.0 * i)
            metal.append(_Metal("chest", p, p, 2.6, 1.6))
            for k in range(8):
                q = _add(p, _unit(45.0 * k), 8.0)
                metal.append(_Metal("chest", q, q, 0.9, 0.9))

    return _Anatomy(tuple(bones), tuple(blobs), tuple(soft), tuple(metal), tuple(joints))


# Per view: group -> (axis u0, squeeze factor, shift along u, soft-tissue stacking).
_SQUEEZE: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "AP": {},
    "OBL": {
        "hand": (0.0, 0.55, 0.0, 1.3),
        "thumb": (0.0, 0.8, 4.0, 1.0),
        "carpal": (3.0, 0.6, 0.0, 1.0),
        "forearm": (4.0, 0.6, 0.0, 1.0),
        "condyle": (5.0, 0.7, 0.0, 1.0),
        "girdle": (-10.0, 0.7, 0.0, 1.0),
    },
    "LAT": {
        "hand": (0.0, 0.14, 0.0, 1.6),
        "thumb": (0.0, 0.5, 12.0, 1.0),
        "carpal": (3.0, 0.35, 0.0, 1.0),
        "forearm": (4.0, 0.3, 0.0, 1.0),
        "condyle": (5.0, 0.4, 0.0, 1.0),
        "girdle": (0.0, 0.4, 12.0, 1.0),
    },
}

_FLEXED = frozenset({"forearm", "carpal", "hand", "thumb"})


def _view_anatomy(base: _Anatomy, view: str, region: str, s: _Subject) -> _Anatomy:
    """The limb as seen in ``view``: parallel structures squeezed, the elbow flexed in LAT."""
    squeeze = _SQUEEZE[view]
    anat = base
    if squeeze:

        def fn_for(group: str) -> Callable[[_Pt], _Pt]:
            u0, k, du, _stack = squeeze[group]
            return lambda p: (u0 + k * (p[0] - u0) + du, p[1])

        moved_bones = []
        for b in anat.bones:
            if b.group in squeeze:
                f = fn_for(b.group)
                b = replace(b, a=f(b.a), b=f(b.b))
            moved_bones.append(b)
        moved_blobs = []
        for bl in anat.blobs:
            if bl.group in squeeze:
                bl = replace(bl, centre=fn_for(bl.group)(bl.centre))
            moved_blobs.append(bl)
        moved_soft = []
        for so in anat.soft:
            if so.group in squeeze:
                f = fn_for(so.group)
                _u0, k, _du, stack = squeeze[so.group]
                # The section turns: width towards depth as the squeeze grows.
                so = replace(
                    so,
                    a=f(so.a),
                    b=f(so.b),
                    wa=k * so.wa + (1 - k) * so.da,
                    wb=k * so.wb + (1 - k) * so.db,
                    da=k * so.da + (1 - k) * so.wa,
                    db=k * so.db + (1 - k) * so.wb,
                    density=so.density * stack,
                )
            moved_soft.append(so)
        moved_metal = [
            replace(m, a=fn_for(m.group)(m.a), b=fn_for(m.group)(m.b)) if m.group in squeeze else m
            for m in anat.metal
        ]
        moved_joints = []
        for j in anat.joints:
            if j.group in squeeze:
                j = replace(j, centre=fn_for(j.group)(j.centre))
            moved_joints.append(j)
        anat = _Anatomy(
            tuple(moved_bones),
            tuple(moved_blobs),
            tuple(moved_soft),
            tuple(moved_metal),
            tuple(moved_joints),
        )
    if view == "LAT" and region in ("elbow", "humerus"):
        centre = anat.joint("elbow").centre
        angle = s.flexion
        anat = anat.turned(lambda g, _r: g in _FLEXED, centre, angle)
    if view == "LAT" and region in ("hand", "finger", "wrist"):
        # Fingers fanned (hand, wrist) or folded away from the one filmed (finger).
        for ray in range(2, 6):
            if region == "finger":
                angle = 0.0 if ray == s.finger_ray else -(75.0 + 15.0 * s.extra[8])
            else:
                angle = -(ray - 2) * (6.0 + 6.0 * s.extra[7])
            if angle:
                mcp = anat.joint(f"mcp{ray}").centre
                anat = anat.turned(_ray_is(ray), mcp, angle)
    return anat


def _ray_is(ray: int) -> Callable[[str, int], bool]:
    return lambda _group, r: r == ray


# -- regions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RegionSpec:
    field_mm: float  # the film's longer side
    distal_up: bool  # fingers / distal end at the top of the film
    landscape: bool
    bone_mm: float  # typical bone radius: sets the bone contrast (the technique)
    soft_mm: float  # typical soft-tissue path: sets the soft-tissue contrast


_REGION_SPECS: dict[str, _RegionSpec] = {
    "elbow": _RegionSpec(210.0, False, False, 8.0, 70.0),
    "finger": _RegionSpec(115.0, True, False, 3.2, 15.0),
    "forearm": _RegionSpec(345.0, True, False, 6.5, 55.0),
    "hand": _RegionSpec(225.0, True, False, 4.4, 22.0),
    "humerus": _RegionSpec(410.0, False, False, 9.5, 85.0),
    "shoulder": _RegionSpec(270.0, False, True, 10.5, 95.0),
    "wrist": _RegionSpec(160.0, True, False, 6.5, 34.0),
}


def _region_centre(region: str, anat: _Anatomy, s: _Subject) -> _Pt:
    if region == "finger":
        return anat.joint(f"pip{s.finger_ray}").centre
    if region == "hand":
        mc3 = anat.bone("mc3")
        return _add(mc3.b, (0.0, 8.0))
    if region == "wrist":
        return _add(anat.blob("lunate").centre, (3.0, 4.0))
    if region == "forearm":
        e, r = anat.joint("elbow").centre, anat.joint("radiocarpal").centre
        return ((e[0] + r[0]) / 2, (e[1] + r[1]) / 2)
    if region == "elbow":
        return anat.joint("elbow").centre
    if region == "humerus":
        hum = anat.bone("humerus")
        return ((hum.a[0] + hum.b[0]) / 2 - 8.0, (hum.a[1] + hum.b[1]) / 2 - 5.0)
    return _add(anat.joint("glenohumeral").centre, (-28.0, 22.0))


# Abnormality sites: bone name (``{r}``: the subject's finger ray) and a range of t.
_BONE_SITES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "elbow": (("humerus", 0.84, 0.9), ("radius", 0.08, 0.16), ("ulna", 0.1, 0.2)),
    "finger": (("pp{r}", 0.3, 0.7), ("mp{r}", 0.3, 0.7)),
    "forearm": (("radius", 0.3, 0.75), ("ulna", 0.3, 0.75)),
    "hand": (
        ("mc2", 0.35, 0.7),
        ("mc3", 0.35, 0.7),
        ("mc4", 0.35, 0.7),
        ("mc5", 0.3, 0.75),
        ("pp2", 0.35, 0.65),
        ("pp3", 0.35, 0.65),
        ("pp4", 0.35, 0.65),
        ("pp5", 0.35, 0.65),
    ),
    "humerus": (("humerus", 0.25, 0.75),),
    "shoulder": (("humerus", 0.07, 0.16), ("clavicle", 0.25, 0.55)),
    "wrist": (("radius", 0.88, 0.93), ("ulna", 0.86, 0.92), ("mc2", 0.2, 0.35), ("mc3", 0.2, 0.35)),
}

_JOINT_SITES: dict[str, tuple[str, ...]] = {
    "elbow": ("elbow",),
    "finger": ("pip{r}", "dip{r}", "mcp{r}"),
    "forearm": ("radiocarpal", "elbow"),
    "hand": ("mcp2", "mcp3", "mcp4", "mcp5", "pip2", "pip3", "pip4", "pip5", "cmc1"),
    "humerus": ("glenohumeral", "elbow"),
    "shoulder": ("glenohumeral", "acromioclavicular"),
    "wrist": ("radiocarpal", "cmc1"),
}


# -- one view's geometry and look ------------------------------------------------------------

_VIEW_DRAWS = 32


@dataclass(frozen=True, eq=False)
class _Geom:
    """Pixel centres (x right, y down, mm from the film centre) → model (u, v)."""

    rows: int
    cols: int
    spacing: float
    m: tuple[float, float, float, float]  # (m00, m01, m10, m11)
    centre: _Pt

    def grid(self) -> tuple[_F, _F]:
        x = ((np.arange(self.cols, dtype=np.float32) - (self.cols - 1) / 2) * self.spacing).astype(
            np.float32
        )
        y = ((np.arange(self.rows, dtype=np.float32) - (self.rows - 1) / 2) * self.spacing).astype(
            np.float32
        )
        m00, m01, m10, m11 = (np.float32(v) for v in self.m)
        cu, cv = np.float32(self.centre[0]), np.float32(self.centre[1])
        u = np.add.outer(y * m01 + cu, x * m00)
        v = np.add.outer(y * m11 + cv, x * m10)
        return u.astype(np.float32, copy=False), v.astype(np.float32, copy=False)

    def to_pixel(self, p: _Pt) -> tuple[float, float]:
        """(row, col), fractional, of the model point ``p``."""
        m00, m01, m10, m11 = self.m
        det = m00 * m11 - m01 * m10
        du, dv = p[0] - self.centre[0], p[1] - self.centre[1]
        x = (m11 * du - m01 * dv) / det
        y = (-m10 * du + m00 * dv) / det
        return y / self.spacing + (self.rows - 1) / 2, x / self.spacing + (self.cols - 1) / 2

    def pixel_box(self, corners: Sequence[_Pt]) -> tuple[float, float, float, float]:
        rc = [self.to_pixel(p) for p in corners]
        return (
            min(r for r, _ in rc),
            min(c for _, c in rc),
            max(r for r, _ in rc),
            max(c for _, c in rc),
        )

    def sub(self, box: tuple[int, int, int, int]) -> _Geom:
        """The pixels ``[row0:row1, col0:col1]`` as a geometry of their own."""
        r0, c0, r1, c1 = box
        x = ((c0 + c1 - 1) / 2 - (self.cols - 1) / 2) * self.spacing
        y = ((r0 + r1 - 1) / 2 - (self.rows - 1) / 2) * self.spacing
        m00, m01, m10, m11 = self.m
        centre = (self.centre[0] + m00 * x + m01 * y, self.centre[1] + m10 * x + m11 * y)
        return _Geom(r1 - r0, c1 - c0, self.spacing, self.m, centre)

    def window(self, bbox: tuple[float, float, float, float]) -> tuple[slice, slice] | None:
        u0, u1, v0, v1 = bbox
        r0, c0, r1, c1 = self.pixel_box(((u0, v0), (u0, v1), (u1, v0), (u1, v1)))
        rs = slice(max(int(math.floor(r0)), 0), min(int(math.ceil(r1)) + 1, self.rows))
        cs = slice(max(int(math.floor(c0)), 0), min(int(math.ceil(c1)) + 1, self.cols))
        if rs.stop <= rs.start or cs.stop <= cs.start:
            return None
        return rs, cs


@dataclass(frozen=True)
class _Look:
    """Exposure, display curve, shutter, marker, noise and blur of one view."""

    bone_gain: float
    soft_gain: float
    gain: float
    offset: float
    gamma: float
    heel: float
    heel_angle: float
    noise: float
    blur: int
    shutter: str  # "bright", "dark" or "none"
    shutter_level: float
    borders: tuple[float, float, float, float]  # top, bottom, left, right (fractions)
    marker: bool
    marker_corner: int
    marker_mm: float
    texture: float


def _view_setup(
    region: str, view: str, s: _Subject, anat: _Anatomy, u: npt.NDArray[np.float64], size: int
) -> tuple[_Geom, _Look]:
    spec = _REGION_SPECS[region]
    aspect = 0.74 + 0.2 * u[0]
    if spec.landscape:
        rows, cols = max(16, round(size * aspect)), size
    else:
        rows, cols = size, max(16, round(size * aspect))
    field = spec.field_mm * (0.92 + 0.16 * u[1])
    angle = -15.0 + 30.0 * u[2]
    if u[3] < 0.08:
        angle += 180.0
    mirror = -1.0 if s.laterality == "R" else 1.0
    flip = -1.0 if spec.distal_up else 1.0
    # model = centre + (1 / scale) · Rot(angle) · diag(mirror, flip) · pixel
    c, sn = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    k = 1.0 / s.scale
    m = (k * c * mirror, -k * sn * flip, k * sn * mirror, k * c * flip)
    centre = _region_centre(region, anat, s)
    shift = 0.05 * field / s.scale
    centre = (centre[0] + shift * (2 * u[4] - 1), centre[1] + shift * (2 * u[5] - 1))

    kind = "bright" if u[6] < 0.55 else ("dark" if u[6] < 0.78 else "none")
    borders = tuple(0.11 * float(b) ** 1.5 for b in u[7:11]) if kind != "none" else (0.0,) * 4
    technique = (0.85 + 0.3 * u[11]) * {"AP": 1.0, "OBL": 0.9, "LAT": 0.72}[view]
    look = _Look(
        bone_gain=0.55 / spec.bone_mm * technique,
        soft_gain=0.4 / spec.soft_mm * (0.85 + 0.3 * u[12]),
        gain=0.82 + 0.3 * u[13],
        offset=0.01 + 0.05 * u[14],
        gamma=0.8 + 0.45 * u[15],
        heel=0.05 * (2 * u[16] - 1),
        heel_angle=2 * math.pi * u[17],
        noise=0.004 + 0.014 * u[18],
        blur=1 + int(u[19] < 0.5),
        shutter=kind,
        shutter_level=(0.8 + 0.18 * u[20]) if kind == "bright" else 0.02 * u[20],
        borders=(borders[0], borders[1], borders[2], borders[3]),
        marker=u[21] < 0.6,
        marker_corner=min(int(4 * u[22]), 3),
        marker_mm=10.0 + 6.0 * u[23],
        texture=0.25 + 0.25 * u[24],
    )
    # Collimated as a radiographer would: every site where this region's abnormalities
    # can lie stays inside the exposed field (widened in steps until it does).
    points = _site_points(region, anat, s)
    for step in range(12):
        geom = _Geom(rows, cols, field * 1.07**step / size, m, centre)
        r0, c0, r1, c1 = _field_rect(geom, look)
        rc = [geom.to_pixel(p) for p in points]
        if all(r0 + 1 <= r <= r1 - 2 and c0 + 1 <= c <= c1 - 2 for r, c in rc):
            break
    return geom, look


def _site_points(region: str, anat: _Anatomy, s: _Subject) -> list[_Pt]:
    """Outline points of every place an abnormality of ``region`` may occupy."""
    points: list[_Pt] = []
    for name in _JOINT_SITES[region]:
        j = anat.joint(name.replace("{r}", str(s.finger_ray)))
        p = (-j.axis[1], j.axis[0])
        points += _box_corners(
            j.centre,
            j.axis,
            p,
            (-(j.gap / 2 + 4.0), j.gap / 2 + 4.0),
            (-(j.width + 5.0), j.width + 5.0),
        )
    for name, t0, t1 in _BONE_SITES[region]:
        bone = anat.bone(name.replace("{r}", str(s.finger_ray)))
        for t in (t0, t1):
            centre, e, p, r = _bone_frame(bone, t)
            points += _box_corners(centre, e, p, (-r, r), (-(r + 4.0), r + 4.0))
    return points


def _field_rect(geom: _Geom, look: _Look) -> tuple[int, int, int, int]:
    """The exposed field inside the shutter: (row0, col0, row1, col1), half-open."""
    top, bottom, left, right = look.borders
    r0 = round(geom.rows * top)
    r1 = geom.rows - round(geom.rows * bottom)
    c0 = round(geom.cols * left)
    c1 = geom.cols - round(geom.cols * right)
    return r0, c0, max(r1, r0 + 1), max(c1, c0 + 1)


# -- evaluation --------------------------------------------------------------------------------


def _segment(a: _Pt, b: _Pt, u: _F, v: _F) -> tuple[_F, _F]:
    """t along a→b (clamped) and the squared distance to the nearest axis point."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    l2 = dx * dx + dy * dy
    pu = u - np.float32(a[0])
    pv = v - np.float32(a[1])
    if l2 < 1e-9:
        t = np.zeros_like(pu)
    else:
        t = pu * np.float32(dx / l2)
        t += pv * np.float32(dy / l2)
        np.clip(t, 0.0, 1.0, out=t)
    pu -= t * np.float32(dx)
    pv -= t * np.float32(dy)
    pu *= pu
    pv *= pv
    pu += pv
    return t, pu


def _bone_value(b: _Bone, u: _F, v: _F) -> tuple[_F, _F]:
    """Projected cortical and trabecular bone (mm): a cortical tube round its medulla."""
    t, d2 = _segment(b.a, b.b, u, v)
    s = t * np.float32(2.0)
    s -= np.float32(1.0)
    tail = np.maximum(s, 0.0)
    head = np.maximum(-s, 0.0)
    if b.flare == 2:
        hp, tp = head * head, tail * tail
    else:
        hp, tp = head**b.flare, tail**b.flare
    r = np.float32(b.rs) + np.float32(b.ra - b.rs) * hp
    r += np.float32(b.rb - b.rs) * tp
    end = np.maximum(hp, tp)
    end *= end  # "end-ness": 1 at the articular ends, near 0 along the shaft
    c = np.float32(b.cortex) + np.float32(0.9 - b.cortex) * end
    fill = np.float32(0.12) + np.float32(0.28) * end  # trabecular bone in the medulla
    r *= r
    outer = np.sqrt(np.maximum(r - d2, 0.0))
    c *= c
    c *= r
    c -= d2
    inner = np.sqrt(np.maximum(c, 0.0, out=c), out=c)
    outer -= inner
    outer *= np.float32(2.0 * b.density)
    inner *= fill
    inner *= np.float32(2.0 * b.density)
    return outer, inner


def _blob_value(b: _Blob, u: _F, v: _F) -> tuple[_F, _F]:
    ca, sa = math.cos(math.radians(b.angle)), math.sin(math.radians(b.angle))
    du = u - np.float32(b.centre[0])
    dv = v - np.float32(b.centre[1])
    x = du * np.float32(ca / b.a) + dv * np.float32(sa / b.a)
    y = du * np.float32(-sa / b.b) + dv * np.float32(ca / b.b)
    x *= x
    y *= y
    x += y  # q: 1 on the outline
    depth = b.depth or min(b.a, b.b)
    outer = np.sqrt(np.maximum(np.float32(1.0) - x, 0.0))
    scale = np.float32(2.0 * depth * b.density)
    if b.shell <= 0:  # solid: all of it cortical-like
        outer *= scale
        return outer, np.zeros_like(outer)
    inner = np.sqrt(np.maximum(np.float32(b.shell**2) - x, 0.0))
    outer -= inner
    outer *= scale
    inner *= np.float32(b.marrow) * scale
    return outer, inner


def _soft_value(s: _Soft, u: _F, v: _F) -> _F:
    t, d2 = _segment(s.a, s.b, u, v)
    w = np.float32(s.wa) + np.float32(s.wb - s.wa) * t
    d = np.float32(s.da) + np.float32(s.db - s.da) * t
    w *= w
    d2 /= w
    np.subtract(np.float32(1.0), d2, out=d2)
    chord = np.sqrt(np.maximum(d2, 0.0, out=d2), out=d2)
    chord *= d
    chord *= np.float32(2.0 * s.density)
    return chord


def _metal_value(m: _Metal, u: _F, v: _F, edge: float) -> _F:
    _t, d2 = _segment(m.a, m.b, u, v)
    d = np.sqrt(d2, out=d2)
    np.subtract(np.float32(m.width), d, out=d)
    d *= np.float32(1.0 / edge)
    d += np.float32(0.5)
    np.clip(d, 0.0, 1.0, out=d)
    d *= np.float32(m.strength)
    return d


# -- abnormalities ---------------------------------------------------------------------------

_ABN_DRAWS = 12


@dataclass(frozen=True)
class _AbnSpec:
    """A study's abnormality: its kind, where (bone and t, or joint) and its parameters."""

    kind: str
    site: str
    t: float
    u: tuple[float, ...]  # uniform draws for the kind's parameters


@dataclass(frozen=True, eq=False)
class _Fracture:
    bone: str
    point: _Pt
    normal: _Pt
    shift: _Pt
    taper: float
    width: float
    depth: float


@dataclass(frozen=True, eq=False)
class _Lesion:
    centre: _Pt
    radius: float
    lytic: bool
    strength: float


@dataclass(frozen=True, eq=False)
class _Parts:
    blobs: tuple[_Blob, ...]
    metal: tuple[_Metal, ...]
    fracture: _Fracture | None
    lesion: _Lesion | None
    corners: tuple[_Pt, ...]  # the model-frame outline of everything the abnormality changes


def _bone_frame(b: _Bone, t: float) -> tuple[_Pt, _Pt, _Pt, float]:
    """Axis point at t, unit axis e (a→b), unit perpendicular p, radius there."""
    dx, dy = b.b[0] - b.a[0], b.b[1] - b.a[1]
    length = math.hypot(dx, dy)
    e = (dx / length, dy / length)
    p = (-e[1], e[0])
    return (b.a[0] + t * dx, b.a[1] + t * dy), e, p, b.radius_at(t)


def _box_corners(
    centre: _Pt, e: _Pt, p: _Pt, along: tuple[float, float], across: tuple[float, float]
) -> tuple[_Pt, ...]:
    out = []
    for a in along:
        for c in across:
            out.append((centre[0] + a * e[0] + c * p[0], centre[1] + a * e[1] + c * p[1]))
    return tuple(out)


def _parts(spec: _AbnSpec, anat: _Anatomy, view: str, spacing: float) -> _Parts:
    """The abnormality as it appears in one view's anatomy."""
    u = spec.u
    if spec.kind == "degeneration":
        j = anat.joint(spec.site)
        e = j.axis
        p = (-e[1], e[0])
        g, wj = j.gap, j.width
        blobs: list[_Blob] = []
        ang = math.degrees(math.atan2(p[1], p[0]))  # the blobs' own u-axis along p
        # Narrowing: both articular surfaces grow into the gap.
        fill = 0.26 + 0.12 * u[0]
        for side in (-1.0, 1.0):
            c = _add(j.centre, e, side * g * (0.5 - fill / 2))
            blobs.append(
                _Blob("dj_fill", j.group, c, wj * 0.9, g * fill * 0.5 + 0.3, ang, 0.8, 0.0)
            )
            # Subchondral sclerosis: a dense band inside each bone end.
            c2 = _add(j.centre, e, side * (g / 2 + 2.0))
            blobs.append(
                _Blob("dj_sclerosis", j.group, c2, wj * 0.75, 1.8, ang, 0.45 + 0.35 * u[1], 0.0)
            )
        # Osteophytes: spurs at the margins, pointing outwards.
        spurs = 2 + int(3 * u[2])
        reach = 0.0
        for k in range(spurs):
            side = -1.0 if k % 2 == 0 else 1.0
            level = (1.0 if (k // 2) % 2 == 0 else -1.0) * (g / 2 + 1.2)
            length = max(2.0, wj * (0.22 + 0.2 * u[3 + k % 3]))
            reach = max(reach, length)
            tilt = side * (25.0 if level > 0 else -25.0)
            c = _add(_add(j.centre, p, side * (wj + 0.2 * length)), e, level)
            blobs.append(
                _Blob("osteophyte", j.group, c, length, 0.7 + 0.2 * wj / 10, ang + tilt, 1.2, 0.0)
            )
        corners = _box_corners(
            j.centre,
            e,
            p,
            (-(g / 2 + 4.5), g / 2 + 4.5),
            (-(wj + 1.4 * reach + 1.0), wj + 1.4 * reach + 1.0),
        )
        return _Parts(tuple(blobs), (), None, None, corners)

    bone = anat.bone(spec.site)
    centre, e, p, r = _bone_frame(bone, spec.t)
    if spec.kind == "fracture":
        phi = -35.0 + 70.0 * u[0]
        normal = _rotate(e, phi)
        size = 0.5 + 0.5 * u[1]
        step = (0.35 + 0.35 * size) * r * 0.35 * (1.0 if u[2] < 0.5 else -1.0)
        shift = (step * p[0] - 0.15 * abs(step) * e[0], step * p[1] - 0.15 * abs(step) * e[1])
        taper = 2.2 * r
        width = max(0.35, 0.8 * spacing)
        fr = _Fracture(bone.name, centre, normal, shift, taper, width, 0.85)
        slope = abs(math.tan(math.radians(phi)))
        reach = r * slope + 3 * width
        along = (-reach - 1.0, reach + taper / math.cos(math.radians(phi)) + 1.0)
        across = (-(r + abs(step) + 1.5), r + abs(step) + 1.5)
        return _Parts((), (), fr, None, _box_corners(centre, e, p, along, across))
    if spec.kind == "lesion":
        rho = max(2.0, (0.45 + 0.3 * u[0]) * r)
        off = (2 * u[1] - 1) * max(0.0, r - rho) * 0.5
        c = _add(centre, p, off)
        lytic = u[2] < 0.55
        le = _Lesion(c, rho, lytic, 0.75 + 0.2 * u[3] if lytic else 0.5 + 0.3 * u[3])
        corners = _box_corners(c, e, p, (-rho - 1.0, rho + 1.0), (-rho - 1.0, rho + 1.0))
        return _Parts((), (), None, le, corners)
    # hardware
    metal: list[_Metal] = []
    if r >= 5.5 or u[0] < 0.4:  # a plate with screws
        length = min((5.0 + 4.0 * u[1]) * r, 0.45 * math.dist(bone.a, bone.b))
        on_edge = view == "LAT"
        half = (1.3 if on_edge else 0.55 * r) if r >= 5.5 else (0.9 if on_edge else 0.45 * r)
        off = (r + half + 0.3) if on_edge else (2 * u[2] - 1) * 0.35 * r
        side = 1.0 if u[3] < 0.5 else -1.0
        a = _add(_add(centre, e, -length / 2), p, side * off)
        b = _add(_add(centre, e, length / 2), p, side * off)
        metal.append(_Metal("hardware", a, b, half, 2.4))
        screws = 2 + int(3 * u[4]) if r >= 5.5 else 2
        screw_w = 1.6 if r >= 5.5 else 0.9
        for i in range(screws):
            t = (i + 0.5) / screws - 0.5
            sc = _add(centre, e, t * length * 0.9)
            s0 = _add(sc, p, side * (off + half))
            s1 = _add(sc, p, -side * (r + 1.5))
            metal.append(_Metal("hardware", s0, s1, screw_w, 1.4))
            metal.append(_Metal("hardware", s0, s0, screw_w * 1.7, 1.0))
    else:  # crossed K-wires
        for i in range(1 + int(u[5] < 0.6)):
            tilt = (18.0 + 12.0 * u[6]) * (1 if i == 0 else -1)
            d = _rotate(e, tilt)
            span = (3.0 + 1.5 * u[7]) * r
            metal.append(
                _Metal("hardware", _add(centre, d, -span), _add(centre, d, span), 0.6, 2.2)
            )
    us = [pt[0] for m in metal for pt in (m.a, m.b)]
    vs = [pt[1] for m in metal for pt in (m.a, m.b)]
    pad = max(m.width for m in metal) + 1.5
    corners = (
        (min(us) - pad, min(vs) - pad),
        (min(us) - pad, max(vs) + pad),
        (max(us) + pad, min(vs) - pad),
        (max(us) + pad, max(vs) + pad),
    )
    return _Parts((), tuple(metal), None, None, corners)


def _fractured_value(b: _Bone, fr: _Fracture, u: _F, v: _F) -> tuple[_F, _F]:
    """The bone with a fracture line and its distal fragment displaced (locally)."""
    sd = (u - np.float32(fr.point[0])) * np.float32(fr.normal[0])
    sd += (v - np.float32(fr.point[1])) * np.float32(fr.normal[1])
    w = np.clip(np.float32(1.0) - sd * np.float32(1.0 / fr.taper), 0.0, 1.0)
    w *= w
    w[sd <= 0] = 0.0
    cortical, trabecular = _bone_value(
        b, u - w * np.float32(fr.shift[0]), v - w * np.float32(fr.shift[1])
    )
    line = sd * np.float32(1.0 / fr.width)
    line *= line
    np.negative(line, out=line)
    np.exp(line, out=line)
    line *= np.float32(fr.depth)
    np.subtract(np.float32(1.0), line, out=line)
    cortical *= line
    trabecular *= line
    return cortical, trabecular


# -- rendering -------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, rows: int, cols: int, cell: int) -> _F:
    """Zero-mean, roughly unit-variance noise, smooth over ``cell`` pixels (bilinear)."""
    gr, gc = rows // cell + 2, cols // cell + 2
    coarse = rng.standard_normal((gr, gc), dtype=np.float32)
    ri = np.arange(rows, dtype=np.float32) / cell
    ci = np.arange(cols, dtype=np.float32) / cell
    r0 = ri.astype(np.intp)
    c0 = ci.astype(np.intp)
    fr = (ri - r0)[:, None]
    fc = (ci - c0)[None, :]
    across = coarse[:, c0] * (1 - fc)
    across += coarse[:, c0 + 1] * fc
    across *= np.float32(1.6)  # bilinear interpolation loses variance
    out = across[r0] * (1 - fr)
    out += across[r0 + 1] * fr
    return out.astype(np.float32, copy=False)


def _blur(img: _F, passes: int) -> _F:
    """[1 2 1] / 4 along rows and columns, ``passes`` times (edges replicated)."""
    for _ in range(passes):
        tmp = img.copy()
        tmp[1:-1] *= np.float32(0.5)
        tmp[1:-1] += np.float32(0.25) * (img[:-2] + img[2:])
        img = tmp.copy()
        img[:, 1:-1] *= np.float32(0.5)
        img[:, 1:-1] += np.float32(0.25) * (tmp[:, :-2] + tmp[:, 2:])
    return img


_MARKER_STROKES = {  # unit-square strokes (r0, c0, r1, c1) of a lead letter
    "L": ((0.0, 0.0, 1.0, 0.25), (0.78, 0.0, 1.0, 0.8)),
    "R": (
        (0.0, 0.0, 1.0, 0.24),
        (0.0, 0.0, 0.2, 0.8),
        (0.42, 0.0, 0.6, 0.8),
        (0.0, 0.62, 0.58, 0.84),
        (0.58, 0.4, 0.8, 0.64),
        (0.78, 0.58, 1.0, 0.84),
    ),
}


def _draw_marker(
    metal: _F, geom: _Geom, look: _Look, field: tuple[int, int, int, int], letter: str
) -> None:
    height = look.marker_mm / geom.spacing
    if height < 6:
        return
    width = 0.8 * height
    margin = 4.0 / geom.spacing + 2
    r0, c0, r1, c1 = field
    top = r0 + margin if look.marker_corner < 2 else r1 - margin - height
    left = c0 + margin if look.marker_corner % 2 == 0 else c1 - margin - width
    pad = 0.2 * height
    box = (
        slice(max(int(top - pad), 0), max(int(top + height + pad), 0)),
        slice(max(int(left - pad), 0), max(int(left + width + pad), 0)),
    )
    metal[box] += np.float32(0.25)  # the plastic holder
    for a, b, c, d in _MARKER_STROKES[letter]:
        rs = slice(max(int(top + a * height), 0), max(int(top + c * height), 0))
        cs = slice(max(int(left + b * width), 0), max(int(left + d * width), 0))
        metal[rs, cs] += np.float32(2.6)


def _attenuation(
    anat: _Anatomy,
    geom: _Geom,
    look: _Look,
    parts: _Parts | None,
    noise_rng: np.random.Generator | None,
) -> _F:
    """Soft tissue, bone and metal along each ray (the log of the attenuation).

    ``noise_rng`` draws the trabecular texture; without it the texture is left out.
    """
    rows, cols = geom.rows, geom.cols
    u, v = geom.grid()
    soft = np.zeros((rows, cols), dtype=np.float32)
    for s in anat.soft:
        win = geom.window(s.bbox())
        if win is not None:
            np.maximum(soft[win], _soft_value(s, u[win], v[win]), out=soft[win])
    bone = np.zeros((rows, cols), dtype=np.float32)  # cortical
    trab = np.zeros((rows, cols), dtype=np.float32)  # trabecular
    fracture = parts.fracture if parts is not None else None
    for b in anat.bones:
        win = geom.window(b.bbox())
        if win is None:
            continue
        if fracture is not None and fracture.bone == b.name:
            cortical, trabecular = _fractured_value(b, fracture, u[win], v[win])
        else:
            cortical, trabecular = _bone_value(b, u[win], v[win])
        bone[win] += cortical
        trab[win] += trabecular
    extra_blobs = parts.blobs if parts is not None else ()
    for bl in (*anat.blobs, *extra_blobs):
        win = geom.window(bl.bbox())
        if win is not None:
            cortical, trabecular = _blob_value(bl, u[win], v[win])
            bone[win] += cortical
            trab[win] += trabecular
    if noise_rng is not None:
        cell = max(2, round(0.9 / geom.spacing))
        texture = _smooth_noise(noise_rng, rows, cols, cell)
        texture *= np.float32(look.texture * min(1.0, 0.9 / (cell * geom.spacing)))
        texture += np.float32(1.0)
        trab *= texture
    bone += trab
    np.maximum(bone, 0.0, out=bone)
    if parts is not None and parts.lesion is not None:
        le = parts.lesion
        r = le.radius
        win = geom.window((le.centre[0] - r, le.centre[0] + r, le.centre[1] - r, le.centre[1] + r))
        if win is not None:
            du = u[win] - np.float32(le.centre[0])
            dv = v[win] - np.float32(le.centre[1])
            g = np.sqrt(np.maximum(1.0 - (du * du + dv * dv) / np.float32(r * r), 0.0))
            if le.lytic:
                bone[win] *= np.float32(1.0) - np.float32(le.strength) * np.sqrt(g)
            else:
                presence = np.clip(bone[win] / np.float32(r), 0.0, 1.0)
                bone[win] += np.float32(2.0 * r * le.strength) * g * presence
    att = soft
    att *= np.float32(look.soft_gain)
    bone *= np.float32(look.bone_gain)
    att += bone
    edge = max(0.3, 0.7 * geom.spacing)
    extra_metal = parts.metal if parts is not None else ()
    for m in (*anat.metal, *extra_metal):
        win = geom.window(m.bbox())
        if win is not None:
            att[win] += _metal_value(m, u[win], v[win], edge)
    return att


def _display(att: _F, look: _Look) -> _F:
    """Attenuation → displayed value: 1 − transmission, then the view's tone curve."""
    np.negative(att, out=att)
    np.exp(att, out=att)
    img = np.subtract(np.float32(1.0), att, out=att)
    np.power(img, np.float32(look.gamma), out=img)
    img *= np.float32(look.gain)
    img += np.float32(look.offset)
    return img


def _render(
    anat: _Anatomy,
    geom: _Geom,
    look: _Look,
    parts: _Parts | None,
    letter: str,
    noise_rng: np.random.Generator,
) -> _F:
    rows, cols = geom.rows, geom.cols
    att = _attenuation(anat, geom, look, parts, noise_rng)
    field = _field_rect(geom, look)
    if look.marker:
        _draw_marker(att, geom, look, field, letter)
    img = _display(att, look)
    if look.heel:
        ramp_r = np.linspace(-0.5, 0.5, rows, dtype=np.float32)
        ramp_r *= np.float32(look.heel * math.sin(look.heel_angle))
        ramp_c = np.linspace(-0.5, 0.5, cols, dtype=np.float32)
        ramp_c *= np.float32(look.heel * math.cos(look.heel_angle))
        img += np.add.outer(ramp_r, ramp_c)
    if look.shutter != "none":
        r0, c0, r1, c1 = field
        level = np.float32(look.shutter_level)
        img[:r0] = level
        img[r1:] = level
        img[:, :c0] = level
        img[:, c1:] = level
    img = _blur(img, look.blur)
    z = noise_rng.standard_normal((rows, cols), dtype=np.float32)
    sigma = img * np.float32(look.noise)
    sigma += np.float32(0.5 * look.noise)
    z *= sigma
    img += z
    np.clip(img, 0.0, 1.0, out=img)
    return img


#: An abnormality counts as shown in a view when it changes some pixel of the noiseless
#: picture by at least this much (about 13 grey levels of 255). Sites are drawn again
#: until one view shows it; failing that (a small abnormality on very coarse pixels), the
#: view where it shows best carries it.
_MIN_CONTRAST = 0.05
_ATTEMPTS = 24


def _contrast(
    anat: _Anatomy, geom: _Geom, look: _Look, parts: _Parts, box: tuple[int, int, int, int]
) -> float:
    """The largest change the abnormality makes inside ``box`` (noiseless, unblurred)."""
    sub = geom.sub(box)
    with_it = _display(_attenuation(anat, sub, look, parts, None), look)
    without = _display(_attenuation(anat, sub, look, None, None), look)
    return float(np.abs(with_it - without).max()) if with_it.size else 0.0


# -- studies ---------------------------------------------------------------------------------

_VIEW_TYPES: dict[int, tuple[str, ...]] = {
    1: ("AP",),
    2: ("AP", "LAT"),
    3: ("AP", "OBL", "LAT"),
    4: ("AP", "OBL", "LAT", "AP"),
}
_VIEW_COUNT_P = (0.08, 0.30, 0.42, 0.20)  # about MURA's 2.7 images per study


def _stream(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([abs(int(seed)), 1 if seed < 0 else 0, 0x4D534B, *tags])


def _draw_spec(region: str, s: _Subject, rng: np.random.Generator, kind: str | None) -> _AbnSpec:
    kind = kind or ABNORMALITIES[int(rng.integers(len(ABNORMALITIES)))]
    if kind == "degeneration":
        names = _JOINT_SITES[region]
        site = names[int(rng.integers(len(names)))].replace("{r}", str(s.finger_ray))
        t = 0.0
    else:
        sites = _BONE_SITES[region]
        name, t0, t1 = sites[int(rng.integers(len(sites)))]
        site = name.replace("{r}", str(s.finger_ray))
        t = float(rng.uniform(t0, t1))
    return _AbnSpec(kind, site, t, tuple(float(x) for x in rng.random(_ABN_DRAWS)))


def _visible_box(parts: _Parts, geom: _Geom, look: _Look) -> tuple[int, int, int, int] | None:
    """The padded pixel box of the abnormality, or None when the shutter or edge hides it."""
    r0, c0, r1, c1 = geom.pixel_box(parts.corners)
    pad = look.blur + 2
    r0, c0 = math.floor(r0) - pad, math.floor(c0) - pad
    r1, c1 = math.ceil(r1) + pad + 1, math.ceil(c1) + pad + 1
    f0, g0, f1, g1 = _field_rect(geom, look)
    area = max(r1 - r0, 1) * max(c1 - c0, 1)
    inner = max(min(r1, f1) - max(r0, f0), 0) * max(min(c1, g1) - max(c0, g0), 0)
    if inner < 0.75 * area:
        return None
    return max(r0, 0), max(c0, 0), min(r1, geom.rows), min(c1, geom.cols)


def make_msk_study(
    seed: int,
    *,
    region: str | None = None,
    abnormal: bool | None = None,
    views: int | None = None,
    size: int = 512,
    abnormality: str | None = None,
) -> MskStudy:
    """Render one study, deterministic in ``seed`` (and the arguments).

    ``region`` (one of ``REGIONS``), ``abnormal`` and ``views`` (1–4) are drawn from the
    seed when not given; ``abnormality`` (one of ``ABNORMALITIES``) forces the kind and
    implies ``abnormal=True``. ``size`` is the film's longer side in pixels; the field is
    the region's usual collimation (about 11 cm for a finger, 41 cm for a humerus, wider
    where a pose needs it), so the pixel spacing is field / size (``pixel_spacing_mm``).
    The same seed with ``abnormal`` True and False renders the same subject, poses,
    exposures and noise: the images differ only inside each view's ``lesion_box``. An
    abnormal study shows its abnormality in at least one view; a view where the shutter
    hides it or where it changes the picture too little (``_MIN_CONTRAST``), and now and
    then a further view at random, has ``abnormal=False``.
    """
    if size < 32:
        raise ValueError("size must be at least 32 pixels")
    if region is None:
        region = REGIONS[int(_stream(seed, 1).integers(len(REGIONS)))]
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {REGIONS}")
    if abnormality is not None:
        if abnormality not in ABNORMALITIES:
            raise ValueError(
                f"unknown abnormality {abnormality!r}; expected one of {ABNORMALITIES}"
            )
        if abnormal is False:
            raise ValueError("abnormality given with abnormal=False")
        abnormal = True
    if abnormal is None:
        abnormal = bool(_stream(seed, 2).random() < 0.5)
    if views is None:
        views = 1 + int(_stream(seed, 3).choice(4, p=_VIEW_COUNT_P))
    if not 1 <= views <= 4:
        raise ValueError("views must be between 1 and 4")

    subject = _Subject.draw(_stream(seed, 4).random(_SUBJECT_DRAWS))
    base = _limb(subject)
    kinds = _VIEW_TYPES[views]
    setups = []
    for k, view in enumerate(kinds):
        anat = _view_anatomy(base, view, region, subject)
        geom, look = _view_setup(
            region, view, subject, anat, _stream(seed, 5, k).random(_VIEW_DRAWS), size
        )
        setups.append((view, anat, geom, look))

    shown: list[tuple[_Parts, tuple[int, int, int, int]] | None] = [None] * views
    kind_shown: str | None = None
    if abnormal:
        rng = _stream(seed, 6)
        # The clearest candidate seen, kept for films too coarse to show this kind well.
        best: tuple[float, int, _Parts, tuple[int, int, int, int], str] | None = None
        for _attempt in range(_ATTEMPTS):
            spec = _draw_spec(region, subject, rng, abnormality)
            hide = rng.random(views) < 0.1
            candidate: list[tuple[_Parts, tuple[int, int, int, int]] | None] = []
            for k, (view, anat, geom, look) in enumerate(setups):
                parts = _parts(spec, anat, view, geom.spacing)
                box = _visible_box(parts, geom, look)
                if box is not None:
                    contrast = _contrast(anat, geom, look, parts, box)
                    if best is None or contrast > best[0]:
                        best = (contrast, k, parts, box, spec.kind)
                    if contrast < _MIN_CONTRAST:
                        box = None
                candidate.append((parts, box) if box is not None else None)
            visible = [i for i, c in enumerate(candidate) if c is not None]
            if visible:
                for i in visible[1:]:
                    if hide[i]:
                        candidate[i] = None
                shown = candidate
                kind_shown = spec.kind
                break
        else:
            if best is None:  # pragma: no cover - every region has sites inside its field
                raise RuntimeError(f"no abnormality site in the field: seed {seed}, {region}")
            _contrast_seen, k, parts, box, kind_shown = best
            shown[k] = (parts, box)

    rendered = []
    for k, (view, anat, geom, look) in enumerate(setups):
        item = shown[k]
        shown_parts = item[0] if item is not None else None
        box = item[1] if item is not None else None
        image = _render(anat, geom, look, shown_parts, subject.laterality, _stream(seed, 7, k))
        rendered.append(
            MskView(
                region=region,
                view=view,
                image=image,
                abnormal=item is not None,
                abnormality=kind_shown if item is not None else None,
                lesion_box=box,
                pixel_spacing_mm=float(geom.spacing),
            )
        )
    return MskStudy(
        seed=seed,
        region=region,
        abnormal=bool(abnormal),
        views=tuple(rendered),
        laterality=subject.laterality,
    )


def make_msk_studies(
    count: int,
    seed: int = 0,
    *,
    size: int = 512,
    abnormal_fraction: float = 0.5,
    regions: tuple[str, ...] = REGIONS,
) -> list[MskStudy]:
    """``count`` studies: regions in equal shares, ``round(count · abnormal_fraction)``
    abnormal, both shuffled, each study with its own seed drawn from ``seed``."""
    if count < 0:
        raise ValueError("count must not be negative")
    if not 0.0 <= abnormal_fraction <= 1.0:
        raise ValueError("abnormal_fraction must be in [0, 1]")
    if not regions or any(r not in REGIONS for r in regions):
        raise ValueError(f"regions must be a non-empty subset of {REGIONS}")
    rng = np.random.default_rng([abs(int(seed)), 1 if seed < 0 else 0, 0x4D5552])
    seeds = rng.integers(0, 2**31 - 1, size=count)
    labels = np.zeros(count, dtype=bool)
    labels[: round(count * abnormal_fraction)] = True
    rng.shuffle(labels)
    chosen = [regions[i % len(regions)] for i in range(count)]
    order = rng.permutation(count)
    return [
        make_msk_study(int(seeds[i]), region=chosen[order[i]], abnormal=bool(labels[i]), size=size)
        for i in range(count)
    ]


# -- DICOM -----------------------------------------------------------------------------------

_FRONTAL_PA = frozenset({"hand", "wrist", "finger"})


def _view_position(region: str, view: str, laterality: str) -> tuple[str, tuple[str, str, str]]:
    """View Position (0018,5101) defined term and the View Code Sequence item."""
    if view == "AP":
        key = "PA" if region in _FRONTAL_PA else "AP"
        return key, _VIEW_CODES[key]
    if view == "LAT":
        return ("RL" if laterality == "R" else "LL"), _VIEW_CODES["LAT"]
    return ("RLO" if laterality == "R" else "LLO"), _VIEW_CODES["OBL"]


def write_msk_study(
    folder: Path,
    study: MskStudy,
    *,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    series_per_view: bool = False,
    study_uid: str | None = None,
    accession: str | None = None,
    bits_stored: int = 12,
) -> WrittenMskStudy:
    """Write ``study`` as DX (For Presentation) or CR Part 10 files, one per view.

    Headers as ``hand_films.write_hand_film`` writes them (complete Patient, Study,
    Series, Equipment, Image, Pixel, Modality LUT and VOI LUT modules; MONOCHROME1 stores
    the inverted values so both display alike), with the region's Body Part Examined,
    Anatomic Region Sequence (DX), View Position and View Code Sequence, laterality and
    Patient Orientation (that of the upright pose: a view's tilt, or its occasional
    half turn, is not reflected), and the ground truth in Image Comments. ``bits_stored``
    12 or 16. One series for the study, or with
    ``series_per_view`` one series per view. Files are ``folder / "<SOP UID>.dcm"``;
    UIDs derive from the seed and the arguments unless ``study_uid`` is given.
    """
    if modality not in ("DX", "CR"):
        raise ValueError(f"unsupported modality {modality!r}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"unsupported photometric interpretation {photometric!r}")
    if bits_stored not in (12, 16):
        raise ValueError("bits_stored must be 12 or 16")
    mod: Modality = "DX" if modality == "DX" else "CR"
    phot: Photometric = "MONOCHROME1" if photometric == "MONOCHROME1" else "MONOCHROME2"
    key = (
        study.seed,
        study.region,
        study.abnormal,
        len(study.views),
        study.views[0].image.shape,
        modality,
        photometric,
        bits_stored,
    )
    study_uid = study_uid or _uid(SYNTHETIC_UID_ROOT, "msk-study", *key)
    series_uids = tuple(
        _uid(SYNTHETIC_UID_ROOT, "msk-series", *key, study_uid, k if series_per_view else 0)
        for k in range(len(study.views))
    )
    extras = _stream(study.seed, 8)
    sex: Literal["M", "F"] = "F" if extras.random() < 0.5 else "M"
    age = int(extras.integers(8, 85))
    acquired = datetime(2025, 1, 1, 8, 0, 0) + timedelta(
        minutes=int(extras.integers(0, 365 * 24 * 60))
    )
    birth = acquired.replace(year=acquired.year - age, month=1, day=1)
    number = abs(int(study.seed)) % 10**8
    laterality: Literal["L", "R"] = "L" if study.laterality == "L" else "R"
    region = study.region
    distal_up = _REGION_SPECS[region].distal_up
    top = (1 << bits_stored) - 1
    files: list[Path] = []
    sops: list[str] = []
    folder = Path(folder)
    for k, view in enumerate(study.views):
        sop = _uid(SYNTHETIC_UID_ROOT, "msk-image", *key, study_uid, series_per_view, k)
        pixels = np.rint(np.clip(view.image, 0.0, 1.0) * top).astype(np.uint16)
        position, view_code = _view_position(region, view.view, laterality)
        orientation = ("A" if view.view == "LAT" else "L", "H" if distal_up else "F")
        path = write_hand_film(
            folder / f"{sop}.dcm",
            pixels,
            study_instance_uid=study_uid,
            series_instance_uid=series_uids[k],
            sop_instance_uid=sop,
            modality=mod,
            photometric=phot,
            patient_name=f"Phantom^Msk{number}",
            patient_id=f"PHANTOM-MSK-{number}",
            patient_sex=sex,
            patient_birth_date=birth.strftime("%Y%m%d"),
            pixel_spacing_mm=view.pixel_spacing_mm,
            laterality=laterality,
            bits_stored=bits_stored,
            patient_orientation=orientation,
            acquired_at=acquired + timedelta(seconds=40 * k),
            accession_number=accession if accession is not None else f"MSK{number}",
            study_id=str(number % 10**6),
            series_number=k + 1 if series_per_view else 1,
            instance_number=1 if series_per_view else k + 1,
        )
        ds = pydicom.dcmread(path)
        ds.StudyDescription = f"XR {region.upper()}"
        ds.SeriesDescription = (
            f"{region.capitalize()} {'left' if laterality == 'L' else 'right'} {view.view}"
        )
        ds.BodyPartExamined = BODY_PART_EXAMINED[region]
        ds.ViewPosition = position
        ds.ManufacturerModelName = "msk_films"
        ds.KVP = "55" if region in _FRONTAL_PA else "65"
        label = "abnormal" if study.abnormal else "normal"
        finding = f"abnormal ({view.abnormality})" if view.abnormal else "normal view"
        ds.ImageComments = f"Synthetic MSK phantom, {region} {view.view}, study {label}, {finding}"
        if mod == "DX":
            ds.AnatomicRegionSequence = DicomSequence([_code(*_ANATOMY_CODES[region])])
            ds.ViewCodeSequence = DicomSequence([_code(*view_code)])
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        sops.append(sop)
    return WrittenMskStudy(
        study=study,
        study_instance_uid=study_uid,
        series_instance_uids=series_uids,
        files=tuple(files),
        sop_instance_uids=tuple(sops),
    )


# -- MURA's layout -----------------------------------------------------------------------------


def _png_grey8(path: Path, pixels: npt.NDArray[np.uint8]) -> None:
    """Write an 8-bit greyscale PNG (no dependency beyond zlib)."""
    rows, cols = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = np.zeros((rows, cols + 1), dtype=np.uint8)  # filter byte 0 (None) per row
    raw[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def write_mura_layout(
    root: Path, studies: Sequence[MskStudy], *, split: str = "train", first_patient: int = 1
) -> list[Path]:
    """Write ``studies`` in MURA-v1.1's layout under ``root`` (name it ``MURA-v1.1``).

    ``root/<split>/XR_<REGION>/patient<NNNNN>/study1_<positive|negative>/image<k>.png``
    (8-bit grey, as displayed), one patient per study numbered from ``first_patient``,
    and, as MURA ships them (no header, paths relative to root's parent):
    ``root/<split>_image_paths.csv`` with one image path per line and
    ``root/<split>_labeled_studies.csv`` with ``<study folder>/,<0|1>`` lines. The CSV
    files are rewritten for the given studies. Returns the study folders.
    """
    root = Path(root)
    image_lines: list[str] = []
    study_lines: list[str] = []
    folders: list[Path] = []
    for i, study in enumerate(studies):
        label = "positive" if study.abnormal else "negative"
        rel = f"{split}/XR_{study.region.upper()}/patient{first_patient + i:05d}/study1_{label}"
        folder = root / rel
        folder.mkdir(parents=True, exist_ok=True)
        for k, view in enumerate(study.views, start=1):
            pixels = np.rint(np.clip(view.image, 0.0, 1.0) * 255.0).astype(np.uint8)
            _png_grey8(folder / f"image{k}.png", pixels)
            image_lines.append(f"{root.name}/{rel}/image{k}.png")
        study_lines.append(f"{root.name}/{rel}/,{1 if study.abnormal else 0}")
        folders.append(folder)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}_image_paths.csv").write_text("".join(line + "\n" for line in image_lines))
    (root / f"{split}_labeled_studies.csv").write_text("".join(line + "\n" for line in study_lines))
    return folders
