"""How a CT scanner turns a synthetic phantom's section into the image it stores.

``training.synthetic.ct_phantoms`` paints a subject's anatomy as an ideal HU map. A real
slice differs from that map in ways that have nothing to do with the anatomy but that a
model trained on phantoms must see to work on real slices. This module models them,
per scan, in a frozen ``Reconstruction`` that ``ct_phantoms.random_scan`` draws (so a
whole series is consistent) and ``ct_phantoms.render_slice`` applies:

- **field of view** (``fov_mm``, the Reconstruction Diameter): the image is
  ``fov_mm`` wide, 250 to 500 mm for body scans, 200 to 300 mm for heads, sometimes
  (≈ 10 %) a targeted 150 to 250 mm reconstruction centred on the spine or off-centre
  (``centre_mm``); the patient lies a few cm off the isocentre (``patient_shift_mm``);
- **reconstruction circle and padding**: pixels outside the circle inscribed in the
  image, or outside the scanner's 500 mm scan field, hold the scanner's padding value
  (``padding_hu``: −2048, −1024, −3024 or −2000, returned as such in the HU array; written
  as Pixel Padding Value); None: the whole square is reconstructed;
- **the couch** (``Table``): a flat board or a curved cradle (narrow and deep for a head
  holder) of a carbon-fibre shell around a foam core, with or without a foam mattress
  (−900 to −700 HU) of varying thickness, sometimes a support beneath, cut by the field
  of view like everything else;
- **texture**: low-frequency variation of fat and soft tissue, septa in fat, fat streaks
  in muscle, fine vessels (dots and short segments) in the lungs and their denser
  dependent (posterior) part;
- **kernel** (``kernel``): soft (blurred), standard, or sharp (bone / lung: edge
  enhancement, an unsharp mask), applied to the clean image in the Fourier domain;
- **noise**: Gaussian noise with a CT noise power spectrum (a ramp rolled off by the
  kernel: nothing at DC, a peak at 0.2 to 0.6 cycles/mm, higher and finer for sharper
  kernels), ``noise_hu`` its standard deviation in a native 512² image (5 to 40 HU,
  depending on kVp, dose and kernel), up to 35 % more where dense bone lies across the
  body (shoulders, pelvis); rendered coarser than 512², a slice gets the noise that
  area-averaging a 512² slice leaves;
- **streaks**: a dark band with fine bright and dark lines between dense bones that share
  a lateral path (shoulders, hips, petrous bones: beam hardening and photon starvation)
  and, around metal (``metal``: a hip prosthesis or dental fillings, ≈ 5 % of scans),
  bright and dark lines through the implant at a few angles, fading with distance.

All of it is seeded by the subject, z, the image size and spacing and ``seed``, so a
slice renders the same for the same arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "KERNELS",
    "METAL_HU",
    "NATIVE_MATRIX",
    "PADDING_VALUES_HU",
    "SCAN_FIELD_MM",
    "Kernel",
    "Metal",
    "Reconstruction",
    "Table",
    "TissueValues",
    "add_streaks",
    "add_textures",
    "draw_reconstruction",
    "filter_and_noise",
    "outside_field",
    "paint_table",
]

_FloatArray = npt.NDArray[np.float32]

Kernel = Literal["soft", "standard", "sharp"]
Metal = Literal["hip_left", "hip_right", "dental"]
KERNELS: tuple[Kernel, ...] = ("soft", "standard", "sharp")
#: Padding values scanners write outside the reconstruction circle (HU-like stored values).
PADDING_VALUES_HU = (-2048.0, -1024.0, -3024.0, -2000.0)
#: Diameter of the scanner's scan field around the isocentre: nothing outside it.
SCAN_FIELD_MM = 500.0
#: The matrix a real reconstruction has: ``noise_hu`` is the noise at this size.
NATIVE_MATRIX = 512
#: What a metal implant reads as (the top of the 12-bit CT range).
METAL_HU = 3071.0
_AIR = -1000.0

#: Per kernel: the blur (σ, mm) of the clean image, the edge enhancement (gain, σ mm of
#: its unsharp mask), the noise power spectrum's roll-off (cycles/mm; its peak is at
#: 1/√2 of it) and the noise relative to a standard kernel at the same dose.
_KERNEL_MTF: dict[str, tuple[float, float, float, float, float]] = {
    "soft": (0.75, 0.0, 1.0, 0.3, 0.75),
    "standard": (0.4, 0.0, 1.0, 0.42, 1.0),
    "sharp": (0.2, 0.9, 0.9, 0.9, 1.9),
}
_KVP_NOISE = {80: 1.35, 100: 1.12, 120: 1.0, 140: 0.9}


@dataclass(frozen=True)
class Table:
    """A patient couch, in scanner coordinates (centred at x = 0), under the patient.

    Its top surface is ``pad_mm`` below the patient's back at x = 0 and rises by
    ``curvature_per_mm · x²`` towards its edges (0: a flat board); from that surface
    down: a carbon-fibre shell, a foam core and a second shell; a foam mattress of
    ``pad_mm`` lies on it (0: none); ``support_drop_mm`` > 0 adds a beam that far below
    the top.
    """

    shape: Literal["flat", "cradle"]
    width_mm: float
    curvature_per_mm: float
    shell_mm: float
    shell_hu: float
    core_mm: float
    core_hu: float
    pad_mm: float = 0.0
    pad_hu: float = -800.0
    support_drop_mm: float = 0.0
    support_hu: float = 0.0


@dataclass(frozen=True)
class Reconstruction:
    """One scan's reconstruction: its field of view and what the scanner adds to the
    anatomy (module docstring). The image of ``size`` pixels has a pixel spacing of
    ``fov_mm / size``; its centre is at ``centre_mm`` (x, y of the patient coordinates,
    the isocentre at 0, 0)."""

    fov_mm: float = 460.8
    centre_mm: tuple[float, float] = (0.0, 0.0)
    #: The patient's position relative to the isocentre, on top of the phantom's own.
    patient_shift_mm: tuple[float, float] = (0.0, 0.0)
    kernel: Kernel = "standard"
    #: Noise standard deviation (HU) of a native 512² image at this kernel.
    noise_hu: float = 12.0
    kvp: int = 120
    #: The value outside the reconstruction circle; None: no circle.
    padding_hu: float | None = None
    table: Table | None = None
    metal: Metal | None = None
    #: Strength of the streaks near dense bone and metal (1: typical).
    streak_scale: float = 1.0
    textures: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.fov_mm > 0.0:
            raise ValueError("fov_mm must be positive")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}")
        if self.noise_hu < 0.0:
            raise ValueError("noise_hu must not be negative")
        if self.padding_hu is not None and not -32768.0 <= self.padding_hu <= -1001.0:
            # Below air: a 16-bit signed stored value (Rescale Intercept 0) that no
            # pixel inside the circle has.
            raise ValueError("padding_hu must be in [-32768, -1001] (below air)")

    def pixel_spacing(self, size: int) -> float:
        return self.fov_mm / size


class TissueValues(NamedTuple):
    """A subject's fat, muscle and lung values (HU), for the textures."""

    fat: float
    muscle: float
    lung: float


# -- drawing a reconstruction ----------------------------------------------------------------


def draw_table(rng: np.random.Generator, *, head: bool) -> Table | None:
    """A random couch (5 % none); ``head``: a narrow, deep head holder."""
    if rng.random() < 0.05:
        return None
    u = rng.uniform
    if head:
        return Table(
            shape="cradle",
            width_mm=float(u(200.0, 280.0)),
            curvature_per_mm=float(u(0.004, 0.009)),
            shell_mm=float(u(2.0, 4.0)),
            shell_hu=float(u(100.0, 400.0)),
            core_mm=float(u(0.0, 10.0)),
            core_hu=float(u(-950.0, -800.0)),
            pad_mm=float(u(5.0, 30.0)) if rng.random() < 0.5 else 0.0,
            pad_hu=float(u(-900.0, -700.0)),
        )
    flat = rng.random() < 0.3
    return Table(
        shape="flat" if flat else "cradle",
        width_mm=float(u(400.0, 520.0)),
        curvature_per_mm=0.0 if flat else float(u(0.0004, 0.0014)),
        shell_mm=float(u(1.5, 4.0)),
        shell_hu=float(u(100.0, 500.0)),
        core_mm=float(u(8.0, 45.0)),
        core_hu=float(u(-950.0, -750.0)),
        pad_mm=float(u(15.0, 70.0)) if rng.random() < 0.6 else 0.0,
        pad_hu=float(u(-900.0, -700.0)),
        support_drop_mm=float(u(60.0, 140.0)) if rng.random() < 0.4 else 0.0,
        support_hu=float(u(-300.0, 300.0)),
    )


def draw_reconstruction(
    rng: np.random.Generator,
    *,
    head: bool,
    body_width_mm: float,
    body_centre_mm: tuple[float, float],
    spine_mm: tuple[float, float],
    arms_width_mm: float | None = None,
    metal_options: tuple[Metal, ...] = (),
) -> Reconstruction:
    """A random reconstruction for a scan: ``head`` for head-only protocols (smaller
    field, head holder); the body's width (trunk or head, and thighs; ``arms_width_mm``
    with the arms at the sides) and centre and the spine's position (mm, scanner
    coordinates, without the patient shift drawn here) place the field."""
    u = rng.uniform
    shift = (float(u(-20.0, 20.0)), float(u(-30.0, 30.0)))
    bx, by = body_centre_mm[0] + shift[0], body_centre_mm[1] + shift[1]
    if rng.random() < 0.1:
        # A targeted reconstruction: small, on the spine or somewhere off-centre.
        fov = float(u(150.0, 250.0))
        if rng.random() < 0.6:
            centre = (spine_mm[0] + shift[0] + float(u(-10.0, 10.0)), spine_mm[1] + shift[1])
        else:
            centre = (bx + float(u(-80.0, 80.0)), by + float(u(-50.0, 50.0)))
    elif head:
        fov = float(u(200.0, 300.0))
        centre = (bx * float(u(0.5, 1.0)), by * float(u(0.5, 1.0)))
    else:
        # Fitted to the body more or less snugly (arms at the sides often cut), or the
        # full field.
        width = body_width_mm
        if arms_width_mm is not None and rng.random() < 0.5:
            width = max(arms_width_mm, body_width_mm)
        fov = float(np.clip(width * float(u(1.0, 1.25)), 250.0, 500.0))
        if rng.random() < 0.2:
            fov = float(u(460.0, 500.0))
        pull = float(u(0.0, 1.0))
        centre = (bx * pull + float(u(-10.0, 10.0)), by * pull + float(u(-10.0, 10.0)))
    kernel_index = int(rng.choice(3, p=[0.3, 0.5, 0.2]))
    kernel = KERNELS[kernel_index]
    kvp = int(rng.choice([80, 100, 120, 140], p=[0.1, 0.25, 0.5, 0.15]))
    base = float(u(5.0, 20.0)) * _KVP_NOISE[kvp]
    noise = float(np.clip(base * _KERNEL_MTF[kernel][4], 5.0, 40.0))
    padding: float | None = None
    if rng.random() < 0.85:
        padding = float(PADDING_VALUES_HU[int(rng.integers(len(PADDING_VALUES_HU)))])
    metal: Metal | None = None
    if metal_options and rng.random() < 0.05:
        metal = metal_options[int(rng.integers(len(metal_options)))]
    return Reconstruction(
        fov_mm=round(fov, 3),
        centre_mm=(round(centre[0], 3), round(centre[1], 3)),
        patient_shift_mm=(round(shift[0], 3), round(shift[1], 3)),
        kernel=kernel,
        noise_hu=round(noise, 3),
        kvp=kvp,
        padding_hu=padding,
        table=draw_table(rng, head=head),
        metal=metal,
        streak_scale=float(u(0.5, 1.5)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


# -- geometry --------------------------------------------------------------------------------


def _axis(size: int, spacing: float, centre: float) -> npt.NDArray[np.float64]:
    """Scanner coordinates (mm) of the pixel centres along one axis."""
    return centre + (np.arange(size, dtype=np.float64) - (size - 1) / 2.0) * spacing


@lru_cache(maxsize=8)
def outside_field(
    size: int, spacing: float, centre: tuple[float, float], fov_mm: float
) -> npt.NDArray[np.bool_]:
    """Pixels outside the circle inscribed in the image (diameter ``fov_mm``, at most the
    image's width) or outside the scanner's scan field: what gets the padding value."""
    x = _axis(size, spacing, centre[0])
    y = _axis(size, spacing, centre[1])
    radius = min(fov_mm, size * spacing) / 2.0
    in_circle = np.add.outer((y - centre[1]) ** 2, (x - centre[0]) ** 2) <= radius * radius
    in_field = np.add.outer(y * y, x * x) <= (SCAN_FIELD_MM / 2.0) ** 2
    out = ~(in_circle & in_field)
    out.flags.writeable = False
    return out


def paint_table(
    img: _FloatArray,
    table: Table,
    spacing: float,
    centre: tuple[float, float],
    back_y_mm: float,
) -> None:
    """Paint ``table`` into the air under the patient (in place): ``back_y_mm`` is the
    scanner y of the patient's back at x = 0. Edges are anti-aliased along y."""
    size = img.shape[0]
    top0 = back_y_mm + table.pad_mm
    half_w = table.width_mm / 2.0
    rise = table.curvature_per_mm * half_w * half_w
    bottom = top0 + 2.0 * table.shell_mm + table.core_mm
    if table.support_drop_mm > 0.0:
        bottom = max(bottom, top0 + table.support_drop_mm + 25.0)
    y = _axis(size, spacing, centre[1])
    rows = np.nonzero((y >= top0 - rise - table.pad_mm - spacing) & (y <= bottom + spacing))[0]
    if rows.size == 0:
        return
    x = _axis(size, spacing, centre[0])
    cols = np.nonzero(np.abs(x) <= half_w)[0]
    if cols.size == 0:
        return
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    xs = x[c0:c1]
    surface = (top0 - table.curvature_per_mm * xs * xs).astype(np.float32)
    depth = y[r0:r1, None].astype(np.float32) - surface[None, :]  # mm below the top
    inv = np.float32(1.0 / spacing)

    def below(d: float) -> _FloatArray:
        # Share of each pixel deeper than d (mm below the top).
        out = depth - np.float32(d)
        out *= inv
        out += np.float32(0.5)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    layers: list[tuple[float, float, float]] = []
    if table.pad_mm > 0.0:
        layers.append((-table.pad_mm, 0.0, table.pad_hu))
    s, core = table.shell_mm, table.core_mm
    layers += [(0.0, s, table.shell_hu), (s, s + core, table.core_hu)]
    layers.append((s + core, 2.0 * s + core, table.shell_hu))
    delta = np.zeros_like(depth)
    for d0, d1, value in layers:
        if d1 > d0:
            delta += (below(d0) - below(d1)) * np.float32(value - _AIR)
    if table.support_drop_mm > 0.0:
        beam = (np.abs(xs) <= 0.3 * table.width_mm).astype(np.float32)
        d0 = table.support_drop_mm
        # The beam hangs straight down: measured from the flat top, not the curve.
        flat = y[r0:r1, None].astype(np.float32) - np.float32(top0)
        cover = np.clip((flat - np.float32(d0)) * inv + 0.5, 0.0, 1.0)
        cover -= np.clip((flat - np.float32(d0 + 25.0)) * inv + 0.5, 0.0, 1.0)
        delta += cover * beam[None, :] * np.float32(table.support_hu - _AIR)
    region = img[r0:r1, c0:c1]
    # Only into air: the patient lies on the pad and the couch, never inside them.
    airy = np.clip((np.float32(-500.0) - region) * np.float32(1.0 / 500.0), 0.0, 1.0)
    region += delta * airy


# -- random fields ---------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _radial_frequency(size: int, spacing: float) -> _FloatArray:
    """|f| (cycles/mm) of the rfft2 bins of a size × size image."""
    fy = np.fft.fftfreq(size, spacing)
    fx = np.fft.rfftfreq(size, spacing)
    f = np.sqrt(np.add.outer(fy * fy, fx * fx)).astype(np.float32)
    f.flags.writeable = False
    return f


def _fast_length(n: int) -> int:
    """The smallest 2^a · 3^b · 5^c ≥ n (a quick FFT length)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _field_pair(
    rng: np.random.Generator, shape: tuple[int, int], spacing: float, f0: float
) -> tuple[_FloatArray, _FloatArray]:
    """Two independent Gaussian random fields of unit variance whose spectrum falls as
    exp(−(f/f0)²): the real and imaginary parts of one inverse FFT of a complex spectrum
    of which only the bins below 3 f0 are drawn."""
    h, w = (_fast_length(n) for n in shape)
    f_max = min(3.0 * f0, 0.5 / spacing)
    ky = min(int(math.ceil(f_max * h * spacing)), h // 2)
    kx = min(int(math.ceil(f_max * w * spacing)), w // 2)
    rows = np.unique(np.r_[0 : ky + 1, h - ky : h] % h)
    cols = np.unique(np.r_[0 : kx + 1, w - kx : w] % w)
    fy = np.fft.fftfreq(h, spacing)[rows]
    fx = np.fft.fftfreq(w, spacing)[cols]
    gain = np.exp(-(np.add.outer(fy * fy, fx * fx) / (f0 * f0))).astype(np.float32)
    gain[0, 0] = 0.0
    gain *= np.float32(1.0 / math.sqrt(float((gain * gain).sum())))
    draws = rng.standard_normal((rows.size, cols.size, 2), dtype=np.float32)
    spectrum = np.zeros((h, w), dtype=np.complex64)
    block = draws.view(np.complex64)[..., 0]
    block *= gain
    spectrum[np.ix_(rows, cols)] = block
    # Undo ifft2's 1 / (h·w): the complex field has variance 2 Σ gain² = 2, 1 in each part.
    field = np.fft.ifft2(spectrum)
    field *= np.float32(h * w)
    real = field.real[: shape[0], : shape[1]].astype(np.float32)
    imag = field.imag[: shape[0], : shape[1]].astype(np.float32)
    return real, imag


def _ridge(field: _FloatArray, level: float, width: float, px_gradient: float) -> _FloatArray:
    """Thin lines along ``field == level`` (0..1 at their centre), widened to at least a
    pixel and dimmed in proportion (partial volume) when the pixels are coarse."""
    eff = max(width, 0.6 * px_gradient)
    u = field - np.float32(level)
    u *= np.float32(1.0 / eff)
    u *= u
    np.negative(u, out=u)
    np.exp(u, out=u)
    if eff > width:
        u *= np.float32(width / eff)
    return u


def _window(img: _FloatArray, value: float, half: float) -> _FloatArray:
    """1 at ``value``, falling linearly to 0 at ``value ± half``."""
    w = img - np.float32(value)
    np.abs(w, out=w)
    w *= np.float32(-1.0 / half)
    w += np.float32(1.0)
    np.clip(w, 0.0, 1.0, out=w)
    return w


# -- textures --------------------------------------------------------------------------------


def _body_box(img: _FloatArray) -> tuple[slice, slice] | None:
    """The rows and columns holding anything but air."""
    solid = img > np.float32(-960.0)
    rows = np.nonzero(solid.any(axis=1))[0]
    if rows.size == 0:
        return None
    cols = np.nonzero(solid[rows[0] : rows[-1] + 1].any(axis=0))[0]
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def add_textures(
    img: _FloatArray,
    rng: np.random.Generator,
    spacing: float,
    tissue: TissueValues,
    lung_rows: tuple[float, float],
) -> None:
    """Fat, soft tissue, muscle and lung texture (in place), by each pixel's value in the
    clean image. ``lung_rows``: the rows (fractional) of the body's front and back, for
    the lungs' denser dependent part."""
    box = _body_box(img)
    if box is None:
        return
    region = img[box]
    f0 = 0.08  # cycles/mm: fat lobules, septa and vessels a few mm apart
    lines, patches = _field_pair(rng, region.shape, spacing, f0)
    # Typical |∇lines| per pixel, for the partial-volume widening of thin lines.
    px_gradient = 2.0 * math.pi * min(f0, 0.5 / spacing) * 0.75 * spacing
    fat = _window(region, tissue.fat, 30.0)
    soft = _window(region, 50.0, 70.0)
    muscle = _window(region, tissue.muscle, 12.0)
    lung = _window(region, tissue.lung, 60.0)
    # Lobular variation of fat and soft tissue.
    delta = patches * (fat * np.float32(7.0) + soft * np.float32(3.5))
    # Septa in fat: thin soft-tissue lines; fat streaks in muscle, sparser.
    septa = _ridge(lines, 0.0, 0.15, px_gradient)
    septa *= np.clip(patches + np.float32(0.7), 0.0, 1.0)
    septa *= fat
    septa *= np.float32(150.0)
    delta += septa
    marbling = _ridge(lines, 1.4, 0.1, px_gradient)
    marbling *= np.clip(patches, 0.0, 1.0)
    marbling *= muscle
    marbling *= np.float32(70.0)
    delta -= marbling
    if float(lung.max()) > 0.0:
        # Vessels: dots where ``lines`` peaks, short segments where ``patches`` allows;
        # the dependent (posterior) lung denser.
        vessels = np.clip(lines - np.float32(1.5), 0.0, 1.0)
        vessels *= np.float32(900.0)
        segments = _ridge(lines, -0.9, 0.1, px_gradient)
        segments *= np.clip(patches - np.float32(0.3), 0.0, 1.0)
        segments *= np.float32(700.0)
        vessels += segments
        front, back = lung_rows
        depth = max(back - front, 1.0)
        ys = np.arange(box[0].start, box[0].stop, dtype=np.float32)
        dependent = np.clip((ys - np.float32(front)) / np.float32(depth), 0.0, 1.0) ** 2
        vessels += (dependent * np.float32(70.0))[:, None]
        vessels += patches * np.float32(12.0)
        vessels *= lung
        delta += vessels
    region += delta


# -- streaks ---------------------------------------------------------------------------------


def _smooth_rows(values: npt.NDArray[np.float64], width_px: float) -> npt.NDArray[np.float64]:
    n = max(1, int(round(width_px)))
    if n <= 1:
        return values
    kernel = np.bartlett(2 * n + 1)
    kernel /= kernel.sum()
    return np.convolve(values, kernel, mode="same")


def add_streaks(
    img: _FloatArray,
    rng: np.random.Generator,
    spacing: float,
    centre_col: float,
    scale: float,
) -> float:
    """Streaks near dense bone and metal (in place). ``centre_col``: the body's midline
    (fractional column). Returns the slice's lateral dense-bone path: the geometric mean
    of the bone (mm, as HU above 200 / 1000) a row crosses left and right of the spine,
    at its largest (about 20 at the hips and shoulders, under 10 in the chest and
    abdomen), which also raises the slice's noise."""
    size = img.shape[0]
    dense = img - np.float32(200.0)
    np.clip(dense, 0.0, None, out=dense)
    margin = 35.0 / spacing  # the spine's half-width: not a lateral bone
    left_end = int(min(max(round(centre_col - margin), 0), size))
    right_start = int(min(max(round(centre_col + margin), 0), size))
    factor = spacing / 1000.0
    left = dense[:, :left_end].sum(axis=1, dtype=np.float64) * factor
    right = dense[:, right_start:].sum(axis=1, dtype=np.float64) * factor
    both = np.sqrt(left * right)
    path = float(both.max()) if both.size else 0.0
    # Beam hardening and photon starvation: dark between dense bones sharing a row, with
    # fine bright and dark lines along it; on the soft tissue, not the bone.
    strength = _smooth_rows(np.clip(both - 8.0, 0.0, None), 3.0 / spacing)
    strength = np.minimum(strength * 3.0 * scale, 150.0 * scale)
    rows = np.nonzero(strength > 1.0)[0]
    if rows.size:
        block = dense[rows] > 200.0
        first = np.argmax(block, axis=1)
        last = block.shape[1] - 1 - np.argmax(block[:, ::-1], axis=1)
        cols = np.arange(size)[None, :]
        between = (cols >= first[:, None]) & (cols <= last[:, None]) & ~block
        lines = _smooth_rows(rng.standard_normal((size,)), 0.6 / spacing)[rows]
        band = -strength[rows] * (1.0 + 0.6 * lines)
        img[rows] += between.astype(np.float32) * band[:, None].astype(np.float32)
    _metal_streaks(img, rng, spacing, scale)
    return path


def _metal_streaks(
    img: _FloatArray, rng: np.random.Generator, spacing: float, scale: float
) -> None:
    metal = img >= np.float32(METAL_HU - 200.0)
    count = int(metal.sum())
    if count == 0:
        return
    size = img.shape[0]
    ii, jj = np.nonzero(metal)
    ci, cj = float(ii.mean()), float(jj.mean())
    area_mm2 = count * spacing * spacing
    amplitude = min(250.0 + 1.5 * area_mm2, 900.0) * scale
    reach = 160.0 / spacing  # px around the implant where lines are drawn
    i0, i1 = max(int(ci - reach), 0), min(int(ci + reach) + 1, size)
    j0, j1 = max(int(cj - reach), 0), min(int(cj + reach) + 1, size)
    yy = (np.arange(i0, i1, dtype=np.float32) - np.float32(ci))[:, None]
    xx = (np.arange(j0, j1, dtype=np.float32) - np.float32(cj))[None, :]
    r = np.sqrt(yy * yy + xx * xx) * np.float32(spacing)
    decay = np.float32(1.0) / (np.float32(1.0) + r * np.float32(1.0 / 25.0))
    field = np.zeros((i1 - i0, j1 - j0), dtype=np.float32)
    width_px = max(1.2 / spacing, 0.6)
    dim = min(1.0, (1.2 / spacing) / width_px)
    for k in range(int(rng.integers(10, 25))):
        angle = float(rng.uniform(0.0, math.pi))
        sign = 1.0 if k % 2 == 0 else -1.0
        a = sign * amplitude * float(rng.uniform(0.4, 1.0)) * dim
        d = yy * np.float32(math.cos(angle)) - xx * np.float32(math.sin(angle))
        d *= np.float32(1.0 / width_px)
        d *= d
        np.negative(d, out=d)
        np.exp(d, out=d)
        field += d * np.float32(a)
    field *= decay
    region = img[i0:i1, j0:j1]
    region += np.where(metal[i0:i1, j0:j1], np.float32(0.0), field)


# -- kernel and noise ------------------------------------------------------------------------


def _forward(img: _FloatArray) -> npt.NDArray[np.complex64]:
    """rfft2 of a real image, through the inverse transforms (numpy's forward real FFT is
    several times slower than its inverse here): conj(ifft(ihfft(x))) · N²."""
    n0, n1 = img.shape
    half = np.fft.ihfft(img, axis=1)
    full = np.fft.ifft(half, axis=0)
    out = np.conj(full)
    out *= np.float32(n0 * n1)
    return out.astype(np.complex64, copy=False)


def _nps_shape(f: npt.NDArray[np.floating], roll_off: float) -> npt.NDArray[np.floating]:
    """The noise power spectrum's shape: a ramp rolled off by the kernel (its peak at
    ``roll_off`` / √2, a few % of it left at 1.4 × ``roll_off``)."""
    return f * np.exp(-((f / roll_off) ** 4))


@lru_cache(maxsize=16)
def _kernel_gain(kernel: Kernel, size: int, spacing: float) -> _FloatArray:
    """The kernel's transfer function on the image's rfft2 bins (relative to the ideal
    image: blur, edge enhancement)."""
    blur, gain, sigma_u, _roll_off, _noise = _KERNEL_MTF[kernel]
    f = _radial_frequency(size, spacing).astype(np.float64)
    two_pi2 = 2.0 * math.pi * math.pi
    out = np.exp(-two_pi2 * blur * blur * f * f)
    if gain > 0.0:
        out *= 1.0 + gain * (1.0 - np.exp(-two_pi2 * sigma_u * sigma_u * f * f))
    result = out.astype(np.float32)
    result.flags.writeable = False
    return result


@lru_cache(maxsize=16)
def _noise_gain(kernel: Kernel, fov_mm: float, size: int, spacing: float) -> _FloatArray:
    """Per rfft2 bin, the factor on complex unit normals that gives noise of the kernel's
    spectrum, standard deviation 1 HU in a native (512²) image of ``fov_mm``; coarser
    images get the variance a 512² image keeps when area-averaged to their pixels."""
    roll_off = _KERNEL_MTF[kernel][3]
    native = fov_mm / NATIVE_MATRIX
    fy = np.fft.fftfreq(NATIVE_MATRIX, native)
    f_nat = np.sqrt(np.add.outer(fy * fy, fy * fy))
    nps_nat = _nps_shape(f_nat, roll_off)
    var_native = float(nps_nat.sum())  # × Δf², Δf = 1 / fov: cancels below
    target = 1.0
    if spacing > native * 1.001:
        aperture = np.sinc(fy * spacing) / np.sinc(fy * native)
        target = float((nps_nat * np.multiply.outer(aperture**2, aperture**2)).sum()) / var_native
    fyr = np.fft.fftfreq(size, spacing)
    f_full = np.sqrt(np.add.outer(fyr * fyr, fyr * fyr))
    var_render = float(_nps_shape(f_full, roll_off).sum()) / (size * spacing) ** 2
    var_native_abs = var_native / fov_mm**2
    if spacing <= native * 1.001:
        target = var_render / var_native_abs  # the same spectrum, sampled as it comes
    f = _radial_frequency(size, spacing).astype(np.float64)
    nps = _nps_shape(f, roll_off) * (target / var_render)
    # irfft2 of (a + ib)·g, a and b unit normals, has variance Σ_full g² / N⁴ · ... : with
    # g = N · sqrt(nps / 2) / spacing each bin adds nps · Δf², Δf = 1 / (N · spacing).
    gain = size * np.sqrt(nps / 2.0) / spacing
    result = gain.astype(np.float32)
    result.flags.writeable = False
    return result


def filter_and_noise(
    img: _FloatArray,
    rng: np.random.Generator,
    spacing: float,
    recon: Reconstruction,
    *,
    noise: bool,
    noise_factor: float = 1.0,
) -> _FloatArray:
    """The reconstruction kernel applied to the clean image, plus noise of the kernel's
    spectrum (``recon.noise_hu`` × ``noise_factor``), in one pass through the Fourier
    domain."""
    size = img.shape[0]
    spectrum = _forward(img)
    spectrum *= _kernel_gain(recon.kernel, size, spacing)
    sigma = recon.noise_hu * noise_factor
    if noise and sigma > 0.0:
        draws = rng.standard_normal((size, size // 2 + 1, 2), dtype=np.float32)
        noise_spectrum = draws.view(np.complex64)[..., 0]
        noise_spectrum *= _noise_gain(recon.kernel, recon.fov_mm, size, spacing)
        noise_spectrum *= np.float32(sigma)
        spectrum += noise_spectrum
    return np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32, copy=False)
