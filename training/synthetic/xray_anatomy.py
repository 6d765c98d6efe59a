"""Analytic radiographs of the regions ``msk_films`` does not draw: chest, spine, hip,
knee, ankle, foot and a dental panoramic film (for ``xray_types``).

Each region is a scene in millimetres (u to the right of the upright film, v up) built
from the primitives of ``msk_films`` — long bones as cortical tubes round their medulla
(``_Bone``), ellipsoidal bones with a cortical shell (``_Blob``), soft-tissue capsules
(``_Soft``) and metal strips (``_Metal``) — plus signed soft-tissue blobs that add organs
(heart, breasts, abdomen) or take air away (lungs, airway, sinuses), lung-shaped air
(``_Lung``: rounded apex, broad base, sharp costophrenic angles), shafts that widen to a
flat articular end (``_Shaft``: tibial plafond and plateau, distal femur), curved tubes
without seams (ribs, bony rings, the mandible) and groups of parts drawn as one bone
(where they overlap they do not add up). The film is made as
``msk_films`` makes its views: soft tissue and bone are summed along each ray, turned into
transmission and shown through a per-film tone curve, with a heel-effect ramp, a
collimator shutter (bright, dark or none), lead side markers, blur and noise. Every film
has its own subject (sizes, bone density, soft-tissue thickness), pose (rotation ±15°,
shift, scale, mirror image for the other side), view (AP/PA, lateral or oblique where the
region has them) and exposure, so that global intensity statistics do not name the region.

Regions:

* **chest** — PA (or AP) chest: dark lungs with vessel markings, mediastinum and heart
  shadow, aortic knob, posterior and anterior ribs, clavicles, scapulae, spine shadow,
  domed hemidiaphragms with the dense abdomen below, shoulders and upper arms at the
  edges, sometimes breast shadows or ECG electrodes.
* **spine** — AP (AASCE-like long film, thoracic and lumbar, often scoliotic, with ribs,
  lungs and iliac crests) or lateral (lumbar or thoracolumbar column with discs,
  pedicles and spinous processes in a lordotic / kyphotic curve).
* **hip** — AP of one hip (femoral head in the acetabulum, neck, trochanters, shaft,
  ilium, pubic and ischial rami round the obturator foramen) or AP pelvis with both hips,
  sacrum and L5.
* **knee** — AP (femoral condyles, tibial plateau, fibular head, patella seen through
  the femur) or lateral (patella in front, flexed, tibial tubercle).
* **ankle** — AP/mortise (distal tibia and fibula with malleoli round the talar dome) or
  lateral (talus, calcaneus, navicular, the heel).
* **foot** — dorsoplantar or oblique (tarsals, five metatarsals and the phalanges).
* **dental** — a panoramic film: the mandible and rami with condyles, the maxilla and
  hard palate, sinuses, and two rows of teeth (bright enamel crowns, roots), some teeth
  missing, some with fillings or crowns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from training.synthetic.msk_films import (
    _MARKER_STROKES,
    _Blob,
    _blob_value,
    _blur,
    _Bone,
    _bone_value,
    _display,
    _field_rect,
    _Geom,
    _Look,
    _Metal,
    _metal_value,
    _segment,
    _smooth_noise,
    _Soft,
    _soft_value,
)

__all__ = ["ANATOMY_REGIONS", "render_region"]

_F = npt.NDArray[np.float32]
_Pt = tuple[float, float]

#: The regions this module draws.
ANATOMY_REGIONS: tuple[str, ...] = ("ankle", "spine", "chest", "foot", "hip", "knee", "dental")


@dataclass
class _Scene:
    """Primitives of one film (model frame: mm, u right, v up) and how to frame it."""

    soft: list[_Soft] = field(default_factory=list)  # the body outline (max-combined)
    organs: list[_Blob] = field(default_factory=list)  # signed soft tissue, added
    air: list[_Blob | _Lung] = field(default_factory=list)  # air for tissue (max-combined)
    bones: list[_Bone] = field(default_factory=list)
    chains: list[list[_Bone]] = field(default_factory=list)  # curved bones, max-combined
    groups: list[list[_Bone | _Blob | _Shaft]] = field(default_factory=list)  # one bone
    blobs: list[_Blob] = field(default_factory=list)
    metal: list[_Metal] = field(default_factory=list)
    centre: _Pt = (0.0, 0.0)
    field_mm: float = 300.0  # the film's longer side
    aspect: tuple[float, float] = (0.74, 0.94)  # shorter / longer side
    landscape: bool = False
    soft_mm: float = 100.0  # typical soft-tissue depth: sets the soft-tissue gain
    soft_att: float = 0.45  # attenuation of ``soft_mm`` of soft tissue
    bone_mm: float = 10.0  # typical bone depth: sets the bone gain
    turn: float = 15.0  # the pose's rotation range (±deg)
    flip_p: float = 0.0  # chance of a half turn (film hung upside down)
    shutter_p: tuple[float, float] = (0.55, 0.78)  # bright below, dark below, else none
    marker_p: float = 0.6
    texture: float = 1.0
    gamma: tuple[float, float] = (0.75, 1.25)  # the tone curve's exponent range


@dataclass(frozen=True, eq=False)
class _Shaft:
    """A long bone's shaft a→b that widens towards b (the metaphysis) and ends flat there
    with a thin bright end plate (a tibial plafond, a plateau, the femoral condyles'
    base); no cap at either end."""

    a: _Pt
    b: _Pt
    rs: float  # shaft radius
    rb: float  # radius at the flat end
    flare: float = 0.35  # the last fraction of the length that widens
    cortex: float = 0.6
    density: float = 1.0

    def bbox(self) -> tuple[float, float, float, float]:
        r = max(self.rs, self.rb)
        return (
            min(self.a[0], self.b[0]) - r,
            max(self.a[0], self.b[0]) + r,
            min(self.a[1], self.b[1]) - r,
            max(self.a[1], self.b[1]) + r,
        )


def _shaft_value(sh: _Shaft, u: _F, v: _F) -> tuple[_F, _F]:
    dx, dy = sh.b[0] - sh.a[0], sh.b[1] - sh.a[1]
    length = math.hypot(dx, dy)
    ex, ey = dx / length, dy / length
    pu = u - np.float32(sh.a[0])
    pv = v - np.float32(sh.a[1])
    along = pu * np.float32(ex) + pv * np.float32(ey)  # mm from a
    across = pu * np.float32(-ey) + pv * np.float32(ex)
    d2 = across * across
    end = np.clip(
        (along - np.float32(length * (1 - sh.flare))) / np.float32(length * sh.flare), 0.0, 1.0
    )
    end *= end
    r = np.float32(sh.rs) + np.float32(sh.rb - sh.rs) * end
    r2 = r * r
    c = np.float32(sh.cortex) + np.float32(0.93 - sh.cortex) * end
    outer = np.sqrt(np.maximum(r2 - d2, 0.0))
    inner = np.sqrt(np.maximum(c * c * r2 - d2, 0.0))
    inside = np.clip(np.float32(length) - along, 0.0, 1.0) * (along >= 0)
    plate = (np.float32(length) - along < np.float32(1.8)) * np.float32(0.35)
    cortical = (outer - inner + plate * outer) * inside * np.float32(2.0 * sh.density)
    fill = np.float32(0.12) + np.float32(0.3) * end
    trabecular = inner * fill * inside * np.float32(2.0 * sh.density)
    return cortical.astype(np.float32), trabecular.astype(np.float32)


@dataclass(frozen=True, eq=False)
class _Lung:
    """Air in place of tissue, lung-shaped: a rounded apex, a broad base with sharp
    costophrenic angles (a squarer superellipse below the centre), the lateral border
    sloping outwards towards the base. ``side`` −1 for the patient's right (image left)."""

    centre: _Pt
    a: float  # half-width at the centre
    top: float  # apex height above the centre
    bottom: float  # dome depth below the centre
    depth: float  # half the air column at the centre
    side: float

    def bbox(self) -> tuple[float, float, float, float]:
        r = 1.35 * self.a
        return (
            self.centre[0] - r,
            self.centre[0] + r,
            self.centre[1] - self.bottom,
            self.centre[1] + self.top,
        )


def _lung_value(lung: _Lung, u: _F, v: _F) -> _F:
    dv = v - np.float32(lung.centre[1])
    below = dv < 0
    y = np.where(below, dv / np.float32(lung.bottom), dv / np.float32(lung.top))
    # the base is wider than the apex: the half-width grows towards the dome
    width = np.float32(lung.a) * (np.float32(1.0) - np.float32(0.22) * y)
    x = (u - np.float32(lung.centre[0])) / width
    p = np.where(below, np.float32(3.4), np.float32(2.0))
    q = np.abs(x) ** p + np.abs(y) ** p
    r2 = q ** (np.float32(2.0) / p)
    return (np.sqrt(np.maximum(np.float32(1.0) - r2, 0.0)) * np.float32(2 * lung.depth)).astype(
        np.float32
    )


def _lerp(u: float, lo: float, hi: float) -> float:
    return lo + (hi - lo) * u


def _bone(
    a: _Pt,
    b: _Pt,
    ra: float,
    rs: float,
    rb: float,
    *,
    cortex: float = 0.6,
    density: float = 1.0,
    flare: int = 2,
) -> _Bone:
    return _Bone("b", "g", a, b, ra, rs, rb, cortex=cortex, density=density, flare=flare)


def _blob(
    c: _Pt,
    a: float,
    b: float,
    angle: float = 0.0,
    *,
    density: float = 1.0,
    shell: float = 0.82,
    marrow: float = 0.3,
    depth: float = 0.0,
) -> _Blob:
    return _Blob("b", "g", c, a, b, angle, density, shell, marrow, depth)


def _organ(c: _Pt, a: float, b: float, angle: float, density: float, depth: float) -> _Blob:
    """Soft tissue added (density > 0) or air in place of tissue (density < 0)."""
    return _Blob("o", "g", c, a, b, angle, density, 0.0, 0.0, depth)


def _soft(a: _Pt, b: _Pt, wa: float, wb: float, da: float, db: float) -> _Soft:
    return _Soft("s", a, b, wa, wb, da, db)


def _curve_bones(
    points: list[_Pt], radius: float | list[float], *, density: float, cortex: float = 0.55
) -> list[_Bone]:
    """A curved bone (rib, mandible) as a chain of short tubes through ``points``."""
    radii = radius if isinstance(radius, list) else [radius] * len(points)
    return [
        _bone(p, q, ra, 0.5 * (ra + rb), rb, cortex=cortex, density=density, flare=2)
        for p, q, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:], strict=True)
    ]


def _chain(
    s: _Scene,
    points: list[_Pt],
    radius: float | list[float],
    *,
    density: float,
    cortex: float = 0.55,
) -> None:
    """Add a curved bone through ``points``; its segments do not add up where they meet."""
    s.chains.append(_curve_bones(points, radius, density=density, cortex=cortex))


def _arc(
    centre: _Pt, a: float, b: float, deg0: float, deg1: float, n: int, side: float = 1.0
) -> list[_Pt]:
    """``n`` points on an ellipse from angle ``deg0`` to ``deg1``, mirrored when side < 0."""
    out = []
    for k in range(n):
        t = math.radians(deg0 + (deg1 - deg0) * k / (n - 1))
        out.append((side * (centre[0] + a * math.cos(t)), centre[1] + b * math.sin(t)))
    return out


# -- regions -------------------------------------------------------------------------------


def _vertebra_ap(
    s: _Scene, c: _Pt, w: float, h: float, tilt: float, density: float, ribs: bool
) -> None:
    """An AP vertebra: body, two pedicle rings, spinous process, transverse processes."""
    ct, st = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))

    def at(du: float, dv: float) -> _Pt:
        return (c[0] + ct * du - st * dv, c[1] + st * du + ct * dv)

    # the body: a stadium (a tube across the column), bright end plates and sides
    half = max(w / 2 - h / 2, 1.0)
    s.bones.append(
        _bone(at(-half, 0), at(half, 0), h / 2, h / 2, h / 2, cortex=0.78, density=density)
    )

    for side in (-1.0, 1.0):
        s.blobs.append(
            _blob(
                at(side * 0.34 * w, 0.18 * h),
                0.11 * w,
                0.16 * h,
                tilt,
                density=1.3 * density,
                shell=0.55,
                marrow=0.1,
            )
        )
        tp = 0.75 * w if ribs else 0.9 * w
        s.bones.append(
            _bone(
                at(side * 0.3 * w, 0.1 * h),
                at(side * tp, 0.2 * h),
                3.0,
                2.6,
                3.5,
                density=0.6 * density,
            )
        )
    s.blobs.append(
        _blob(at(0.0, -0.15 * h), 0.07 * w, 0.22 * h, tilt, density=1.0 * density, shell=0.6)
    )


def _chest(r: np.random.Generator) -> _Scene:
    s = _Scene()
    width = r.uniform(0.85, 1.12)
    tall = r.uniform(0.9, 1.1)
    female = r.random() < 0.5
    soft = r.uniform(0.85, 1.2)
    dens = r.uniform(0.8, 1.15)
    hw = 150.0 * width  # half-width of the thorax
    s.soft += [
        _soft((0, -260 * tall), (0, 140 * tall), hw * 1.12, hw * 1.05, 105 * soft, 95 * soft),
        _soft((0, 140 * tall), (0, 300), 52, 48, 55, 50),  # neck
    ]
    for side in (-1.0, 1.0):
        shoulder = (side * hw * 1.25, 125 * tall)
        s.soft.append(_soft((0, 150 * tall), shoulder, 60, 50, 60, 50))
        s.soft.append(_soft(shoulder, (side * hw * 1.38, -120 * tall), 45, 40, 45, 40))  # the arm
        # lungs: air in place of tissue
        lift = 10 * tall if side < 0 else 0.0  # the right dome sits higher
        air = 95 * soft * r.uniform(0.9, 1.05)
        s.air.append(
            _Lung(
                (side * hw * 0.56, 0.0 + lift),
                hw * 0.36,
                150 * tall - lift,
                95 * tall * r.uniform(0.9, 1.1),
                air,
                side,
            )
        )
        # vessels fanning out of each hilum
        hil = (side * hw * 0.28, 15 * tall)
        for _k in range(7):
            ang = math.radians(r.uniform(-80, 80) + (0 if side > 0 else 180))
            length = r.uniform(35, 75)
            c = (hil[0] + math.cos(ang) * length * 0.6, hil[1] + math.sin(ang) * length * 0.6)
            s.organs.append(
                _organ(c, length * 0.6, r.uniform(2.0, 4.0), math.degrees(ang), 0.6, 8.0)
            )
        s.organs.append(_organ(hil, 18, 26, 0, 0.8, 20))
        if female:
            s.organs.append(
                _organ((side * hw * 0.58, -85 * tall), 62, 48, 0, 0.45, 45 * r.uniform(0.6, 1.2))
            )
        # clavicle: an S from the sternum to the acromion
        a = (side * 18.0, 150 * tall + r.uniform(-5, 5))
        m = (side * hw * 0.5, 158 * tall)
        b = (side * hw * 1.02, 178 * tall)
        _chain(s, [a, m, b], [9.0, 6.5, 8.0], density=0.95 * dens)
        # scapula, seen through the lateral lung
        s.blobs.append(
            _blob(
                (side * hw * 0.95, 75 * tall),
                40,
                80 * tall,
                side * 18,
                density=0.35 * dens,
                shell=0.9,
                marrow=0.5,
                depth=10,
            )
        )
        # the humeral head and shaft at the edge
        hh = (side * hw * 1.25, 150 * tall)
        s.blobs.append(_blob(hh, 25, 27, density=0.8 * dens, shell=0.8, depth=25))
        s.bones.append(_bone(hh, (side * hw * 1.35, -150 * tall), 18, 11, 12, density=0.9 * dens))
        # ribs: posterior arcs from the spine, anterior ones sloping down to the sternum
        for k in range(11):
            v = (150 - 27.0 * k) * tall
            post = _arc(
                (12.0, v - 55 * tall),
                hw * (0.62 + 0.035 * min(k, 6)),
                55 * tall,
                95,
                -25 - 2 * k,
                7,
                side,
            )
            _chain(s, post, 5.5, density=0.4 * dens)
            if k < 8:
                ant = _arc(
                    (35.0, v - 35 * tall),
                    hw * (0.55 + 0.03 * min(k, 6)),
                    70 * tall,
                    -15,
                    -68,
                    5,
                    side,
                )
                _chain(s, ant, 5.0, density=0.2 * dens)
    # heart, aortic knob, abdomen under the domes
    s.organs.append(
        _organ(
            (hw * 0.16, -60 * tall),
            hw * r.uniform(0.42, 0.55),
            62 * tall,
            -25,
            0.85,
            62 * soft,
        )
    )
    s.organs.append(_organ((hw * 0.18, 85 * tall), 18, 16, 0, 0.8, 30))
    s.organs.append(_organ((0.0, 30 * tall), 28, 120 * tall, 0, 0.5, 40))  # mediastinum
    # the spine behind the mediastinum
    for k in range(14):
        v = (190 - 32.0 * k) * tall
        w = 30 + 2.0 * k
        _vertebra_ap(s, (0.0, v), w, 22 + 0.8 * k, 0.0, 0.3 * dens, ribs=True)
    if r.random() < 0.3:
        for _ in range(int(r.integers(2, 5))):
            p = (r.uniform(-hw, hw), r.uniform(-150, 120) * tall)
            s.metal.append(_Metal("e", p, p, 5.0, 0.8))
    s.centre = (r.uniform(-10, 10), r.uniform(-40, 0) * tall)
    s.field_mm = 430.0 * width * r.uniform(0.95, 1.08)
    s.aspect = (0.8, 1.0)
    s.landscape = r.random() < 0.4
    s.soft_mm = 210.0 * soft
    s.soft_att = 1.5
    s.bone_mm = 14.0
    s.turn = 6.0
    s.shutter_p = (0.3, 0.6)
    s.gamma = (0.8, 1.9)
    return s


def _spine(r: np.random.Generator) -> _Scene:
    s = _Scene()
    dens = r.uniform(0.8, 1.15)
    soft = r.uniform(0.85, 1.2)
    lateral = r.random() < 0.35
    if not lateral:
        # AASCE-like: T1..L5 on one long film, possibly scoliotic
        amp = r.uniform(8, 60) if r.random() < 0.8 else r.uniform(0, 8)
        period = r.uniform(380, 620)
        phase = r.uniform(0, 2 * math.pi)
        levels = 17
        v = 330.0
        hw = 145.0 * r.uniform(0.9, 1.1)
        s.soft.append(_soft((0, -330), (0, 330), hw, hw * 1.05, 100 * soft, 100 * soft))
        for side in (-1.0, 1.0):
            s.organs.append(_organ((side * hw * 0.5, 160), hw * 0.42, 150, 0, -0.9, 75 * soft))
            s.blobs.append(
                _blob(
                    (side * 95, -330),
                    90,
                    55,
                    side * -15,
                    density=0.35 * dens,
                    shell=0.93,
                    marrow=0.5,
                    depth=12,
                )
            )  # iliac wing, its crest at the film's lower edge
        for k in range(levels):
            lumbar = k >= 12
            h = (17 + 0.9 * k) if not lumbar else 30 + 1.0 * (k - 12)
            w = (30 + 1.3 * k) if not lumbar else 48 + 2 * (k - 12)
            gap = 5.0 if not lumbar else 9.0
            off = amp * math.sin(2 * math.pi * v / period + phase)
            slope = amp * 2 * math.pi / period * math.cos(2 * math.pi * v / period + phase)
            c = (off, v - h / 2)
            _vertebra_ap(s, c, w, h, math.degrees(math.atan(slope)), dens, ribs=not lumbar)
            if not lumbar:
                for side in (-1.0, 1.0):
                    post = _arc(
                        (10.0, c[1] - 50),
                        hw * (0.55 + 0.02 * min(k, 6)),
                        52,
                        95,
                        -30,
                        6,
                        side,
                    )
                    post = [(p[0] + off, p[1]) for p in post]
                    _chain(s, post, 5.0, density=0.45 * dens)
            v -= h + gap
        s.centre = (0.0, 10.0)
        s.field_mm = 720.0 * r.uniform(0.92, 1.05)
        s.aspect = (0.38, 0.55)
        s.soft_mm = 200.0 * soft
        s.bone_mm = 16.0
        s.turn = 5.0
        s.gamma = (0.8, 1.8)
        return s
    # lateral lumbar / thoracolumbar: anterior to the right (+u), posterior elements left
    lordosis = r.uniform(15, 45)  # mm the lumbar curve bows forward
    hw = 170.0
    s.soft.append(_soft((0, -300), (0, 300), hw, hw, 140 * soft, 150 * soft))
    s.organs.append(_organ((90, 40), 70, 160, 0, -0.35, 50))  # bowel gas in front
    v = 250.0
    n = 8 + int(r.integers(0, 3))
    for k in range(n):
        h = 24 + 1.0 * k
        w = 36 + 1.6 * k
        t = v / 280.0

        def offset(t: float) -> float:
            return lordosis * (1.0 - t * t) - 0.6 * lordosis

        off = offset(t)
        slope = (offset(t + 0.01) - off) / (0.01 * 280.0)
        tilt = math.degrees(math.atan(slope))
        c = (off, v - h / 2)
        ct, st = math.cos(math.radians(-tilt)), math.sin(math.radians(-tilt))

        def at(du: float, dv: float, c: _Pt = c, ct: float = ct, st: float = st) -> _Pt:
            return (c[0] + ct * du - st * dv, c[1] + st * du + ct * dv)

        half = w / 2 - h / 2
        s.bones.append(
            _bone(at(-half, 0), at(half, 0), h / 2, h / 2, h / 2, cortex=0.8, density=1.3 * dens)
        )
        # pedicle, lamina and spinous process behind the body
        s.bones.append(_bone(at(-w / 2 - 2, 0.2 * h), at(-w / 2 - 16, 0.15 * h), 5, 4, 6))
        s.blobs.append(_blob(at(-w / 2 - 20, 0.0), 9, 0.42 * h, -tilt, density=0.9 * dens))
        s.bones.append(
            _bone(at(-w / 2 - 24, -0.1 * h), at(-w / 2 - 50, -0.35 * h), 6, 4, 6, density=dens)
        )
        v -= h + 8.0 + r.uniform(-1, 1)
    # the sacrum, tilted back
    s.blobs.append(
        _blob(
            (offset(v / 280.0) - 15, v - 40),
            28,
            55,
            -35,
            density=0.9 * dens,
            shell=0.85,
            marrow=0.4,
        )
    )
    if r.random() < 0.5:  # the iliac wings over the lower column
        s.blobs.append(_blob((-20, v + 10), 70, 60, 10, density=0.35 * dens, shell=0.9, depth=12))
    if r.random() < 0.6:  # lower ribs over the upper bodies
        for k in range(4):
            pts = _arc((-30.0, 280 - 32 * k), 110, 45, 150, 250, 5)
            _chain(s, pts, 5.0, density=0.35 * dens)
    s.centre = (0.0, 60.0)
    s.field_mm = 420.0 * r.uniform(0.92, 1.05)
    s.aspect = (0.7, 0.85)
    s.soft_mm = 300.0 * soft
    s.soft_att = 0.8
    s.bone_mm = 26.0
    s.gamma = (0.8, 1.8)
    return s


def _ring(centre: _Pt, a: float, b: float, angle: float, n: int = 12) -> list[_Pt]:
    """A closed ellipse of ``n`` segments (a bony ring: pelvic inlet, obturator foramen)."""
    ca, sa = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    out = []
    for k in range(n + 1):
        t = 2 * math.pi * k / n
        x, y = a * math.cos(t), b * math.sin(t)
        out.append((centre[0] + ca * x - sa * y, centre[1] + sa * x + ca * y))
    return out


def _hip(r: np.random.Generator) -> _Scene:
    """Femoral heads at (±spread, 0); the pubic symphysis at (0, −45)."""
    s = _Scene()
    dens = r.uniform(0.8, 1.15)
    soft = r.uniform(0.85, 1.25)
    both = r.random() < 0.45
    spread = r.uniform(92, 108)
    wide = r.uniform(0.9, 1.15)  # a female pelvis is wider
    s.soft.append(_soft((0, 200), (0, -60), 210, 200, 110 * soft, 100 * soft))
    # the pelvic inlet: a bony ring from the promontory to the symphysis
    _chain(s, _ring((0, 20), 62 * wide, 58, 0.0, 16), 5.0, density=0.7 * dens)
    s.blobs.append(
        _blob((0, 75), 42, 62, 0, density=0.55 * dens, shell=0.9, marrow=0.5, depth=20)
    )  # sacrum
    s.organs.append(_organ((r.uniform(-60, 60), 120), 40, 18, 0, -0.5, 30))  # bowel gas
    if both or r.random() < 0.5:
        _vertebra_ap(s, (0, 165), 52, 30, r.uniform(-3, 3), 0.8 * dens, ribs=False)
    for side in (-1.0, 1.0):
        h = (side * spread, 0.0)

        def p(du: float, dv: float, side: float = side, h: _Pt = h) -> _Pt:
            return (h[0] + side * du, h[1] + dv)

        # ilium: a thin plate with its crest, the sacroiliac joint medially
        s.blobs.append(
            _blob(p(8, 95), 72, 58, side * 22, density=0.45 * dens, shell=0.93, depth=10)
        )
        crest = _arc((spread + 5.0, 85.0), 68 * wide, 62, 165, 15, 8, side)
        _chain(s, crest, 5.0, density=0.55 * dens)
        s.bones.append(_bone(p(-55, 120), p(-60, 45), 8, 7, 8, density=0.6 * dens))  # SI joint
        # acetabular roof (sourcil) over the head
        _chain(s, _arc(h, 28.0, 28.0, 20, 160, 6), 4.0, density=0.9 * dens)
        # obturator ring, ischial tuberosity, pubic body
        _chain(s, _ring(p(-48, -50), 27, 20, side * -25, 12), 7.0, density=0.75 * dens)
        s.blobs.append(_blob(p(-30, -72), 17, 13, side * 30, density=0.8 * dens, shell=0.85))
        s.blobs.append(_blob((side * 14, -48), 12, 18, 0, density=0.8 * dens, shell=0.85))
        # femur: head, neck, trochanters, shaft
        neck = r.uniform(125, 140)
        na = math.radians(180 - neck)
        s.blobs.append(_blob(h, 24, 24, density=1.0 * dens, shell=0.85, marrow=0.4, depth=24))
        base = p(52 * math.cos(na), -52 * math.sin(na))
        s.bones.append(_bone(h, base, 16, 14, 19, density=0.9 * dens))
        s.blobs.append(_blob(p(52, -28), 14, 22, side * -10, density=0.6 * dens, shell=0.8))
        s.blobs.append(_blob(p(22, -72), 9, 8, density=0.8 * dens, shell=0.7))
        s.bones.append(_bone(p(46, -40), p(30, -340), 22, 15, 18, density=1.0 * dens, cortex=0.55))
        s.soft.append(_soft(p(30, 40), p(35, -340), 95, 75, 90 * soft, 70 * soft))
    if both:
        s.centre = (0.0, 30.0)
        s.field_mm = 400.0 * r.uniform(0.95, 1.08)
        s.landscape = True
    else:
        side = 1.0 if r.random() < 0.5 else -1.0
        s.centre = (side * (spread - 5.0), -35.0)
        s.field_mm = 280.0 * r.uniform(0.92, 1.1)
    s.aspect = (0.75, 0.9)
    s.soft_mm = 220.0 * soft
    s.soft_att = 0.5
    s.bone_mm = 19.0
    s.gamma = (0.9, 2.0)
    return s


def _knee(r: np.random.Generator) -> _Scene:
    s = _Scene()
    dens = r.uniform(0.8, 1.15)
    soft = r.uniform(0.85, 1.25)
    k = r.uniform(0.9, 1.1)
    gap = r.uniform(3.0, 7.0)
    if r.random() < 0.6:  # AP
        s.soft.append(_soft((0, 320), (0, -320), 75 * soft, 55 * soft, 60 * soft, 50 * soft))
        femur: list[_Bone | _Blob | _Shaft] = [
            _Shaft((0, 330), (0, 26 * k), 14 * k, 36 * k, 0.3, density=dens),
        ]
        for side in (-1.0, 1.0):
            femur.append(
                _blob(
                    (side * 18 * k, 17 * k),
                    21 * k,
                    16 * k,
                    side * -8,
                    density=0.6 * dens,
                    shell=0.9,
                    marrow=0.5,
                    depth=26 * k,
                )
            )
        s.groups.append(femur)
        s.groups.append(
            [_Shaft((0, -330), (0, -gap - 2 * k), 15 * k, 38 * k, 0.28, density=dens)]
        )  # tibia, its plateau flat
        s.blobs.append(_blob((35 * k, -gap - 30 * k), 10 * k, 11 * k, density=0.8 * dens))
        s.bones.append(
            _bone((36 * k, -gap - 35 * k), (33 * k, -300), 8 * k, 6 * k, 6 * k, density=dens)
        )
        s.blobs.append(
            _blob((r.uniform(-4, 6), 38 * k), 22 * k, 27 * k, density=0.35 * dens, shell=0.9)
        )  # patella through the femur
        s.centre = (0.0, 0.0)
        s.field_mm = 250.0 * r.uniform(0.9, 1.15)
    else:  # lateral, flexed ~20-40°
        flex = r.uniform(15, 45)
        s.soft.append(_soft((0, 320), (0, 0), 75 * soft, 65 * soft, 60 * soft, 60 * soft))
        lower = (math.sin(math.radians(flex)) * -320, -math.cos(math.radians(flex)) * 320)
        s.soft.append(_soft((0, 0), lower, 65 * soft, 50 * soft, 55 * soft, 45 * soft))
        s.groups.append(
            [
                _Shaft((-10, 330), (0, 30 * k), 14 * k, 30 * k, 0.3, density=dens),
                _blob(
                    (3 * k, 22 * k),
                    27 * k,
                    22 * k,
                    density=0.6 * dens,
                    shell=0.9,
                    marrow=0.5,
                    depth=35 * k,
                ),
            ]
        )  # femur and its condyles, superimposed
        s.blobs.append(
            _blob((44 * k, 30 * k), 10 * k, 22 * k, -12, density=0.9 * dens, shell=0.75)
        )  # patella
        t = math.radians(flex)

        def q(du: float, dv: float) -> _Pt:
            return (du * math.cos(t) + dv * math.sin(t), -du * math.sin(t) + dv * math.cos(t))

        s.groups.append(
            [
                _Shaft(q(-5, -330), q(0, -gap - 2 * k), 15 * k, 31 * k, 0.28, density=dens),
                _blob(q(24 * k, -gap - 38 * k), 7 * k, 14 * k, -flex, density=0.7 * dens),
            ]
        )  # tibia with its tubercle
        s.bones.append(
            _bone(q(-22 * k, -gap - 30 * k), q(-18 * k, -300), 8 * k, 6 * k, 6 * k, density=dens)
        )
        s.centre = (10.0, 0.0)
        s.field_mm = 260.0 * r.uniform(0.9, 1.15)
    s.soft_mm = 110.0 * soft
    s.bone_mm = 30.0
    return s


def _ankle(r: np.random.Generator) -> _Scene:
    s = _Scene()
    dens = r.uniform(0.8, 1.15)
    soft = r.uniform(0.85, 1.25)
    k = r.uniform(0.9, 1.1)
    if r.random() < 0.6:  # AP / mortise
        s.soft.append(_soft((0, 320), (0, 10), 45 * soft, 40 * soft, 45 * soft, 45 * soft))
        s.soft.append(_soft((0, 10), (0, -30), 48 * soft, 45 * soft, 60 * soft, 60 * soft))
        s.groups.append(
            [
                _Shaft((0, 320), (0, 33 * k), 13 * k, 25 * k, 0.3, density=dens),
                _bone(
                    (-18 * k, 38 * k), (-20 * k, 18 * k), 8 * k, 7.5 * k, 6.5 * k, density=dens
                ),  # medial malleolus
            ]
        )
        s.groups.append(
            [
                _bone((31 * k, 300), (30 * k, 60 * k), 7 * k, 6 * k, 8 * k, density=dens),
                _blob((30 * k, 27 * k), 9 * k, 22 * k, 4, density=0.8 * dens, shell=0.85),
            ]
        )  # fibula, its malleolus reaching lower than the medial one
        s.blobs.append(
            _blob((3 * k, 17 * k), 23 * k, 13 * k, density=0.8 * dens, shell=0.88, depth=20 * k)
        )  # talar dome in the mortise
        s.blobs.append(
            _blob((0, -12 * k), 30 * k, 16 * k, density=0.3 * dens, shell=0.9, depth=14)
        )  # the calcaneus and the tarsals beneath, foreshortened
        s.centre = (2.0, 40.0)
        s.field_mm = 220.0 * r.uniform(0.9, 1.15)
    else:  # lateral: heel to the left, toes to the right
        s.soft.append(_soft((0, 320), (0, 10), 45 * soft, 42 * soft, 45 * soft, 45 * soft))
        s.soft.append(_soft((-45, -10), (150, -15), 40 * soft, 30 * soft, 45 * soft, 35 * soft))
        s.bones.append(_bone((0, 300), (2, 66 * k), 15 * k, 14 * k, 24 * k, density=dens))
        s.bones.append(
            _bone((-12 * k, 300), (-10 * k, 20 * k), 7 * k, 6 * k, 11 * k, density=0.6 * dens)
        )  # fibula behind
        s.blobs.append(_blob((3 * k, 20 * k), 26 * k, 17 * k, 10, density=dens, shell=0.85))
        s.blobs.append(
            _blob((-30 * k, -12 * k), 40 * k, 20 * k, 18, density=0.9 * dens, shell=0.85)
        )  # calcaneus
        s.blobs.append(_blob((35 * k, 5 * k), 9 * k, 14 * k, -15, density=dens, shell=0.8))
        s.blobs.append(_blob((40 * k, -15 * k), 14 * k, 11 * k, density=dens, shell=0.8))
        for j in range(3):
            s.bones.append(
                _bone(
                    (55 * k, (2 - 8 * j) * k),
                    (135 * k, (-18 - 4 * j) * k),
                    6 * k,
                    4 * k,
                    6 * k,
                    density=0.7 * dens,
                )
            )
        s.centre = (20.0, 15.0)
        s.field_mm = 240.0 * r.uniform(0.9, 1.15)
    s.soft_mm = 90.0 * soft
    s.bone_mm = 28.0
    return s


_META = (  # base u, base v, length, angle (deg from +v to +u), shaft radius
    (-22.0, 0.0, 65.0, -8.0, 6.5),
    (-8.0, 6.0, 75.0, -2.0, 4.2),
    (4.0, 4.0, 70.0, 4.0, 4.0),
    (15.0, 0.0, 66.0, 10.0, 4.0),
    (25.0, -6.0, 60.0, 17.0, 4.2),
)


def _foot(r: np.random.Generator) -> _Scene:
    s = _Scene()
    dens = r.uniform(0.8, 1.15)
    soft = r.uniform(0.85, 1.25)
    k = r.uniform(0.9, 1.1)
    squeeze = 1.0 if r.random() < 0.6 else r.uniform(0.6, 0.8)  # oblique

    def p(u: float, v: float) -> _Pt:
        return (u * k * squeeze, v * k)

    s.soft.append(_soft(p(0, -150), p(0, 60), 35 * k, 48 * k, 30 * soft, 22 * soft))
    for m, (bu, bv, length, ang, rs) in enumerate(_META):
        a = math.radians(ang)
        d = (math.sin(a), math.cos(a))
        base = (bu, bv)
        head = (bu + d[0] * length, bv + d[1] * length)
        s.bones.append(_bone(p(*base), p(*head), rs * 1.5, rs, rs * 1.5, density=dens))
        phal = (28.0, 20.0) if m == 0 else (21.0 - 1.5 * m, 9.0, 7.0)
        cur = head
        for j, ln in enumerate(phal):
            nxt = (cur[0] + d[0] * (ln + 3), cur[1] + d[1] * (ln + 3))
            rr = (rs * 0.9 if m == 0 else 3.2) * (1 - 0.15 * j)
            s.bones.append(
                _bone(
                    p(cur[0] + d[0] * 3, cur[1] + d[1] * 3),
                    p(*nxt),
                    rr * 1.4,
                    rr,
                    rr * 1.3,
                    density=0.9 * dens,
                )
            )
            cur = nxt
        tip = (cur[0] + d[0] * 6, cur[1] + d[1] * 6)
        s.soft.append(_soft(p(*head), p(*tip), 9 if m else 13, 7 if m else 11, 9, 8))
    # tarsals
    for c, a, b, ang, dn in (
        ((-18.0, -12.0), 9.0, 11.0, 0.0, 1.0),  # medial cuneiform
        ((-5.0, -10.0), 6.0, 9.0, 0.0, 1.0),
        ((6.0, -12.0), 6.0, 9.0, 0.0, 1.0),
        ((20.0, -20.0), 12.0, 14.0, 10.0, 1.0),  # cuboid
        ((-8.0, -32.0), 22.0, 9.0, -10.0, 1.0),  # navicular
        ((-5.0, -60.0), 20.0, 22.0, 0.0, 0.9),  # talar head
        ((12.0, -85.0), 22.0, 40.0, 10.0, 0.6),  # calcaneus
    ):
        s.blobs.append(_blob(p(*c), a * k * squeeze, b * k, ang, density=dn * dens, shell=0.8))
    s.centre = p(0.0, 5.0)
    s.field_mm = 260.0 * r.uniform(0.9, 1.12)
    s.soft_mm = 45.0 * soft
    s.bone_mm = 14.0
    s.flip_p = 0.05
    return s


def _dental(r: np.random.Generator) -> _Scene:
    """A panoramic film: the arch flattened, incisors in the middle, molars outward."""
    s = _Scene()
    dens = r.uniform(0.8, 1.15)
    k = r.uniform(0.88, 1.12)
    smile = r.uniform(0.0006, 0.002)  # the occlusal plane curves up towards the molars

    def occlusal(u: float) -> float:
        return -4.0 + smile * u * u

    s.soft.append(_soft((-150, 5), (150, 5), 150, 150, 70, 70))
    s.organs.append(_organ((0, 0), 105, 9, 0, -0.5, 30))  # air between tongue and palate
    s.organs.append(_organ((0, -30), 90, 22, 0, 0.25, 30))  # tongue
    for side in (-1.0, 1.0):
        s.air.append(_organ((side * 50, 62), 36, 22, 0, 1.0, 35))  # maxillary sinus
        s.air.append(_organ((side * 128 * k, 0), 11, 70, side * 8, 1.0, 30))  # pharynx
        # the spine's ghost at the edge
        for j in range(3):
            s.blobs.append(_blob((side * 150, 40 - 32 * j), 10, 12, 0, density=0.25, shell=0.8))
    # the mandible: a broad plate under the lower teeth, a dense lower border, rami
    us = np.linspace(-118 * k, 118 * k, 11)
    body = [(float(u), occlusal(float(u)) * 1.1 - 42.0) for u in us]
    _chain(s, body, 26.0, density=0.28 * dens, cortex=0.85)
    border = [(float(u), occlusal(float(u)) * 1.15 - 64.0) for u in us]
    _chain(s, border, 5.0, density=0.8 * dens)
    for side in (-1.0, 1.0):
        ramus = [
            (side * 118 * k, occlusal(118 * k) - 45),
            (side * 126 * k, 0.0),
            (side * 128 * k, 40.0),
        ]
        _chain(s, ramus, 15.0, density=0.45 * dens, cortex=0.8)
        s.blobs.append(_blob((side * 130 * k, 58), 11, 9, density=0.8 * dens, shell=0.8))
        s.bones.append(
            _bone((side * 112 * k, 10), (side * 104 * k, 42), 9, 6, 3, density=0.4 * dens)
        )  # coronoid process
        s.bones.append(
            _bone((side * 30, 66), (side * 140, 62), 5, 4, 5, density=0.45 * dens)
        )  # zygomatic arch
    # the maxilla over the upper teeth, the hard palate above
    upper = [(float(u), occlusal(float(u)) * 0.9 + 28.0) for u in np.linspace(-100, 100, 9)]
    _chain(s, upper, 20.0, density=0.22 * dens, cortex=0.9)
    s.bones.append(_bone((-85 * k, 44), (85 * k, 44), 4, 3, 4, density=0.8 * dens))
    s.air.append(_organ((0, 62), 13, 20, 0, 1.0, 30))  # nasal cavity
    # teeth, 8 per quadrant
    widths = (10.5, 9.0, 10.0, 9.5, 9.5, 13.0, 12.5, 12.0)
    crowns = (13.0, 12.0, 13.0, 11.5, 11.0, 10.0, 9.5, 9.5)
    roots = (24.0, 22.0, 28.0, 22.0, 21.0, 20.0, 19.0, 17.0)
    missing = r.random(32) < r.uniform(0.0, 0.12)
    wisdom = r.random(4) < 0.5
    filled = r.random(32) < r.uniform(0.0, 0.25)
    n = 0
    for jaw in (1.0, -1.0):  # upper: crowns point down, roots up
        for side in (-1.0, 1.0):
            u = 0.5
            for t in range(8):
                w = widths[t] * k
                c = u + w / 2
                u += w + 0.8
                n += 1
                if missing[n - 1] or (t == 7 and not wisdom[n // 8 - 1 if n > 7 else 0]):
                    continue
                ch = crowns[t] * k
                root_dir = jaw
                cc = (side * c, occlusal(c) + jaw * (1.5 + ch / 2))
                s.blobs.append(
                    _blob(
                        cc,
                        w / 2 - 0.2,
                        ch / 2 + 0.6,
                        density=2.0 * dens,
                        shell=0.6,
                        marrow=0.55,
                        depth=8.0,
                    )
                )  # crown: enamel round the pulp chamber
                nroots = 2 if t >= 5 else 1
                for q in range(nroots):
                    du = 0.0 if nroots == 1 else (q - 0.5) * w * 0.45
                    a = (cc[0] + side * du, cc[1] + root_dir * (ch / 2 - 1.0))
                    b = (a[0] + side * du * 0.3, a[1] + root_dir * roots[t] * k)
                    rw = w / (2.7 if nroots == 1 else 4.6)
                    s.bones.append(
                        _bone(a, b, rw, rw * 0.85, rw * 0.4, cortex=0.45, density=1.6 * dens)
                    )
                if filled[n - 1]:
                    s.metal.append(
                        _Metal(
                            "f",
                            (cc[0] - w * 0.2, cc[1] - jaw * ch * 0.2),
                            (cc[0] + w * 0.2, cc[1] - jaw * ch * 0.2),
                            w * r.uniform(0.15, 0.35),
                            2.5,
                        )
                    )
    s.centre = (r.uniform(-12, 12), r.uniform(-10, 20))
    s.field_mm = 300.0 * r.uniform(0.85, 1.1)
    s.aspect = (0.48, 0.56)
    s.landscape = True
    s.soft_mm = 140.0
    s.soft_att = 0.35
    s.bone_mm = 13.0
    s.turn = 7.0
    s.shutter_p = (0.0, 0.6)  # no bright shutter; often a dark rounded frame
    s.marker_p = 0.15
    s.gamma = (0.9, 2.0)
    return s


_BUILDERS: dict[str, Callable[[np.random.Generator], _Scene]] = {
    "ankle": _ankle,
    "spine": _spine,
    "chest": _chest,
    "foot": _foot,
    "hip": _hip,
    "knee": _knee,
    "dental": _dental,
}


# -- the film ---------------------------------------------------------------------------


def _window(geom: _Geom, bbox: tuple[float, float, float, float]) -> tuple[slice, slice] | None:
    return geom.window(bbox)


def _chain_value(chain: list[_Bone], u: _F, v: _F) -> tuple[_F, _F]:
    """A curved tube along a polyline (rib, ring, mandible): one cortical tube round the
    nearest point of the whole line, so the segments join without seams."""
    d2 = np.full(u.shape, np.inf, dtype=np.float32)
    r2 = np.zeros(u.shape, dtype=np.float32)
    for b in chain:
        t, e2 = _segment(b.a, b.b, u, v)
        radius = np.float32(b.ra) + np.float32(b.rb - b.ra) * t
        radius *= radius
        closer = e2 < d2
        np.copyto(d2, e2, where=closer)
        np.copyto(r2, radius, where=closer)
    first = chain[0]
    outer = np.sqrt(np.maximum(r2 - d2, 0.0))
    inner = np.sqrt(np.maximum(np.float32(first.cortex**2) * r2 - d2, 0.0))
    outer -= inner
    outer *= np.float32(2.0 * first.density)
    inner *= np.float32(0.3 * 2.0 * first.density)
    return outer, inner


def _attenuation(scene: _Scene, geom: _Geom, look: _Look, rng: np.random.Generator) -> _F:
    rows, cols = geom.rows, geom.cols
    u, v = geom.grid()
    soft = np.zeros((rows, cols), dtype=np.float32)
    for sp in scene.soft:
        win = _window(geom, sp.bbox())
        if win is not None:
            np.maximum(soft[win], _soft_value(sp, u[win], v[win]), out=soft[win])
    for organ in scene.organs:
        win = _window(geom, organ.bbox())
        if win is not None:
            soft[win] += _blob_value(organ, u[win], v[win])[0]
    if scene.air:
        air = np.zeros((rows, cols), dtype=np.float32)
        for a in scene.air:
            win = _window(geom, a.bbox())
            if win is not None:
                value = (
                    _lung_value(a, u[win], v[win])
                    if isinstance(a, _Lung)
                    else _blob_value(a, u[win], v[win])[0]
                )
                np.maximum(air[win], value, out=air[win])
        soft -= air
    np.maximum(soft, 0.0, out=soft)
    bone = np.zeros((rows, cols), dtype=np.float32)
    trab = np.zeros((rows, cols), dtype=np.float32)
    for b in scene.bones:
        win = _window(geom, b.bbox())
        if win is not None:
            cortical, trabecular = _bone_value(b, u[win], v[win])
            bone[win] += cortical
            trab[win] += trabecular
    for chain in scene.chains:
        boxes = [b.bbox() for b in chain]
        box = (
            min(b[0] for b in boxes),
            max(b[1] for b in boxes),
            min(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        win = _window(geom, box)
        if win is None:
            continue
        cortical, trabecular = _chain_value(chain, u[win], v[win])
        bone[win] += cortical
        trab[win] += trabecular
    for group in scene.groups:
        boxes = [b.bbox() for b in group]
        box = (
            min(b[0] for b in boxes),
            max(b[1] for b in boxes),
            min(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        win = _window(geom, box)
        if win is None:
            continue
        uw, vw = u[win], v[win]
        cort = np.zeros(uw.shape, dtype=np.float32)
        spongy = np.zeros(uw.shape, dtype=np.float32)
        for part in group:
            if isinstance(part, _Bone):
                cortical, trabecular = _bone_value(part, uw, vw)
            elif isinstance(part, _Shaft):
                cortical, trabecular = _shaft_value(part, uw, vw)
            else:
                cortical, trabecular = _blob_value(part, uw, vw)
            np.maximum(cort, cortical, out=cort)
            np.maximum(spongy, trabecular, out=spongy)
        bone[win] += cort
        trab[win] += spongy
    for bl in scene.blobs:
        win = _window(geom, bl.bbox())
        if win is not None:
            cortical, trabecular = _blob_value(bl, u[win], v[win])
            bone[win] += cortical
            trab[win] += trabecular
    cell = max(2, round(0.9 / geom.spacing))
    texture = _smooth_noise(rng, rows, cols, cell)
    texture *= np.float32(look.texture * min(1.0, 0.9 / (cell * geom.spacing)))
    texture += np.float32(1.0)
    trab *= texture
    bone += trab
    np.maximum(bone, 0.0, out=bone)
    att = soft
    att *= np.float32(look.soft_gain)
    bone *= np.float32(look.bone_gain)
    att += bone
    edge = max(0.3, 0.7 * geom.spacing)
    for m in scene.metal:
        win = _window(geom, m.bbox())
        if win is not None:
            att[win] += _metal_value(m, u[win], v[win], edge)
    return att


def _marker(
    img: _F, spacing: float, look: _Look, field: tuple[int, int, int, int], letter: str
) -> None:
    height = look.marker_mm / spacing
    if height < 5:
        return
    width = 0.8 * height
    margin = 4.0 / spacing + 2
    r0, c0, r1, c1 = field
    top = r0 + margin if look.marker_corner < 2 else r1 - margin - height
    left = c0 + margin if look.marker_corner % 2 == 0 else c1 - margin - width
    for a, b, c, d in _MARKER_STROKES[letter]:
        rs = slice(max(int(top + a * height), 0), max(int(top + c * height), 0))
        cs = slice(max(int(left + b * width), 0), max(int(left + d * width), 0))
        img[rs, cs] += np.float32(2.6)


_MIDLINE = frozenset({"chest", "spine", "dental"})


def render_region(region: str, rng: np.random.Generator, size: int) -> tuple[_F, float]:
    """One film of ``region``: float32 (rows, cols) in [0, 1] (MONOCHROME2) and its pixel
    spacing in mm; the longer side is ``size`` pixels."""
    scene = _BUILDERS[region](rng)
    u = rng.random(32)
    aspect = _lerp(u[0], *scene.aspect)
    if scene.landscape:
        rows, cols = max(16, round(size * aspect)), size
    else:
        rows, cols = size, max(16, round(size * aspect))
    # The marker's letter; a limb film of the other side is the mirror image, and a
    # midline film (chest, spine, pelvis, jaw) is hung back to front now and then.
    side = "L" if u[1] < 0.5 else "R"
    if region in _MIDLINE:
        mirror = 1.0 if u[25] < 0.92 else -1.0
    else:
        mirror = -1.0 if side == "L" else 1.0
    angle = scene.turn * (2 * u[2] - 1)
    if u[3] < scene.flip_p:
        angle += 180.0
    scale = 0.9 + 0.2 * u[4]
    c, sn = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    k = 1.0 / scale
    flip = -1.0  # model v up
    m = (k * c * mirror, -k * sn * flip, k * sn * mirror, k * c * flip)
    field_mm = scene.field_mm * (0.94 + 0.12 * u[5])
    shift = 0.04 * field_mm
    centre = (
        scene.centre[0] + shift * (2 * u[6] - 1),
        scene.centre[1] + shift * (2 * u[7] - 1),
    )
    spacing = field_mm / size
    geom = _Geom(rows, cols, spacing, m, centre)
    lo, hi = scene.shutter_p
    kind = "bright" if u[8] < lo else ("dark" if u[8] < hi else "none")
    borders = tuple(0.1 * float(b) ** 1.5 for b in u[9:13]) if kind != "none" else (0.0,) * 4
    look = _Look(
        bone_gain=0.55 / scene.bone_mm * (0.8 + 0.4 * u[13]),
        soft_gain=scene.soft_att / scene.soft_mm * (0.8 + 0.4 * u[14]),
        gain=0.8 + 0.32 * u[15],
        offset=0.01 + 0.06 * u[16],
        gamma=scene.gamma[0] + (scene.gamma[1] - scene.gamma[0]) * u[17],
        heel=0.05 * (2 * u[18] - 1),
        heel_angle=2 * math.pi * u[19],
        noise=0.004 + 0.014 * u[20],
        blur=1 + int(u[21] < 0.5),
        shutter=kind,
        shutter_level=(0.8 + 0.18 * u[22]) if kind == "bright" else 0.02 * u[22],
        borders=(borders[0], borders[1], borders[2], borders[3]),
        marker=u[23] < scene.marker_p,
        marker_corner=min(int(4 * u[24]), 3),
        marker_mm=10.0 + 6.0 * u[26],
        texture=(0.25 + 0.25 * u[27]) * scene.texture,
    )
    att = _attenuation(scene, geom, look, rng)
    fr = _field_rect(geom, look)
    if look.marker:
        _marker(att, spacing, look, fr, side)
    img = _display(att, look)
    if look.heel:
        ramp_r = np.linspace(-0.5, 0.5, rows, dtype=np.float32)
        ramp_r *= np.float32(look.heel * math.sin(look.heel_angle))
        ramp_c = np.linspace(-0.5, 0.5, cols, dtype=np.float32)
        ramp_c *= np.float32(look.heel * math.cos(look.heel_angle))
        img += np.add.outer(ramp_r, ramp_c)
    if region == "dental" and kind == "dark":  # the panoramic's rounded dark frame
        yy = np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
        xx = np.linspace(-1, 1, cols, dtype=np.float32)[None, :]
        outside = (np.abs(xx) ** 6 + np.abs(yy) ** 3) > np.float32(0.9 + 0.1 * u[28])
        img[outside] = np.float32(0.02 * u[22])
    elif kind != "none":
        r0, c0, r1, c1 = fr
        level = np.float32(look.shutter_level)
        img[:r0] = level
        img[r1:] = level
        img[:, :c0] = level
        img[:, c1:] = level
    img = _blur(img, look.blur)
    z = rng.standard_normal((rows, cols), dtype=np.float32)
    sigma = img * np.float32(look.noise)
    sigma += np.float32(0.5 * look.noise)
    z *= sigma
    img += z
    np.clip(img, 0.0, 1.0, out=img)
    return img, float(spacing)
