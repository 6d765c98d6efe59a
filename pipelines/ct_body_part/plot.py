"""The score plot of ``ct_body_part``: each slice's body part score against its position.

As in the paper (Yan et al., Fig. 4), a normal CT scan gives a roughly straight line of
scores rising from head to feet; the plot shows it along the body (patient z in mm, the
head on the left), with the body zones found shaded and named, the calibrated thresholds
as dashed lines and the anomaly notes in red. ``render_score_plot`` returns RGB pixels
for a Secondary Capture image.

It draws with matplotlib's Agg renderer on its own ``Figure`` (no pyplot: no global
figure registry, no GUI backend) inside ``matplotlib.style.context("default")`` plus the
few settings below, so a site's matplotlibrc or another module's style cannot change the
picture, and every text uses the DejaVu Sans file bundled with matplotlib (not whichever
DejaVu the system has): the same input gives the same pixels. The function never sees
patient names or IDs; what it draws is what it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import MaxNLocator

from pipelines.fonts import bundled_font_file

#: Fill colours of the zones (pale, told apart easily), by zone name; other names take
#: ``OTHER_ZONE_COLOURS`` in turn.
ZONE_COLOURS: dict[str, str] = {
    "head/neck": "#e4d7f5",
    "head_neck": "#e4d7f5",
    "chest": "#cfe3f7",
    "abdomen": "#d6efd0",
    "pelvis": "#fde2c4",
}
OTHER_ZONE_COLOURS = ("#f7d4dc", "#f3f0c0", "#d2efee", "#e6e6e6")
BACKGROUND = "#ffffff"
NOTE_COLOUR = "#c00000"
LINE_COLOUR = "#1f3f7f"
THRESHOLD_COLOUR = "#555555"
X_LABEL = "z (mm), head \u2190 \u2192 feet"
Y_LABEL = "UBR score"

_DPI = 100
# Margins of the axes in pixels: room for tick labels and axis labels (left, bottom),
# the zone names and the title (top).
_LEFT, _RIGHT, _BOTTOM, _TOP = 70, 24, 56, 64


def _font(size: float) -> FontProperties:
    return FontProperties(fname=bundled_font_file(), size=size)


def _as_vector(values: object, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, not of shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what} is empty: nothing to plot")
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{what}[{bad}] is {float(array[bad])!r}: every value must be finite")
    return array


def _check_zones(zones: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    checked = []
    for number, zone in enumerate(zones):
        if len(zone) != 3:
            raise ValueError(f"zone {number} must be (name, z_top_mm, z_bottom_mm), not {zone!r}")
        name, top, bottom = zone
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"zone {number} needs a name")
        if not (math.isfinite(top) and math.isfinite(bottom)):
            raise ValueError(f"zone {name!r}: its extent ({top!r}, {bottom!r}) must be finite")
        checked.append((name.strip(), float(top), float(bottom)))
    return checked


def _padded(low: float, high: float, fraction: float, minimum: float) -> tuple[float, float]:
    pad = max((high - low) * fraction, minimum)
    return low - pad, high + pad


def _ticks(bins: int, low: float, high: float) -> list[float]:
    """Round tick values in [low, high], fixed here so their labels get the bundled font."""
    values = np.asarray(MaxNLocator(nbins=bins).tick_values(low, high), dtype=np.float64)
    return [float(v) for v in values if low <= v <= high]


def render_score_plot(
    positions_mm: np.ndarray,
    scores: np.ndarray,
    zones: Sequence[tuple[str, float, float]],
    *,
    title: str,
    notes: Sequence[str] = (),
    thresholds: Sequence[float] = (),
    width: int = 1024,
    height: int = 640,
) -> np.ndarray:
    """The plot of ``scores`` against ``positions_mm`` as ``uint8`` RGB, (height, width, 3).

    ``positions_mm``: each slice's position along the body axis (patient z in mm, superior
    is +), in the order the slices were scored; ``scores``: one UBR score per slice, in
    the same order (the line joins them in that order, so a scan that turns back shows).
    ``zones``: ``(name, z_top_mm, z_bottom_mm)`` of each zone found, shaded and named;
    ``thresholds``: the calibrated score thresholds, dashed; ``notes``: anomaly flags,
    in red. The x axis runs from head (left) to feet (right).

    Raises ``ValueError`` for mismatched lengths, empty input, values that are not
    finite, or a size below 160 x 120 or above 8192 pixels.
    """
    z = _as_vector(positions_mm, "positions_mm")
    y = _as_vector(scores, "scores")
    if z.size != y.size:
        raise ValueError(
            f"positions_mm has {z.size} value(s) but scores has {y.size}: one score per slice"
        )
    checked_zones = _check_zones(zones)
    lines = [float(t) for t in thresholds]
    if not all(math.isfinite(t) for t in lines):
        raise ValueError(f"thresholds {lines!r} must be finite")
    texts = [str(n) for n in notes if str(n).strip()]
    for what, size, low, high in (("width", width, 160, 8192), ("height", height, 120, 8192)):
        if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
            raise ValueError(f"{what} must be a whole number of pixels in {low}..{high}")

    z_ends = [float(z.min()), float(z.max())]
    for _, top, bottom in checked_zones:
        z_ends += [top, bottom]
    z_low, z_high = _padded(min(z_ends), max(z_ends), 0.02, 1.0)
    y_ends = [float(y.min()), float(y.max()), *lines]
    y_low, y_high = _padded(min(y_ends), max(y_ends), 0.06, 0.5)

    style = matplotlib.rc_context(
        {
            "figure.facecolor": BACKGROUND,
            "axes.facecolor": BACKGROUND,
            "text.usetex": False,
            "text.parse_math": False,
            "text.antialiased": True,
            "lines.antialiased": True,
            "path.simplify": False,
        }
    )
    with matplotlib.style.context("default"), style:
        # A quarter pixel more: the canvas truncates the figure's size to whole pixels.
        figure = Figure(figsize=((width + 0.25) / _DPI, (height + 0.25) / _DPI), dpi=_DPI)
        canvas = FigureCanvasAgg(figure)
        figure.subplots_adjust(
            left=_LEFT / width,
            right=1 - _RIGHT / width,
            bottom=_BOTTOM / height,
            top=1 - _TOP / height,
        )
        axes = figure.add_subplot()
        axes.set_xlim(z_high, z_low)  # superior (+z) on the left
        axes.set_ylim(y_low, y_high)

        others = iter(OTHER_ZONE_COLOURS * (1 + len(checked_zones)))
        for name, top, bottom in checked_zones:
            colour = ZONE_COLOURS.get(name.lower()) or next(others)
            axes.axvspan(min(top, bottom), max(top, bottom), color=colour, lw=0, zorder=0)
            label = axes.text(
                (top + bottom) / 2,
                1.01,
                name,
                transform=axes.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontproperties=_font(10),
                clip_on=False,
            )
            label.set_parse_math(False)

        for threshold in lines:
            axes.axhline(threshold, color=THRESHOLD_COLOUR, lw=1.0, ls="--", zorder=1)
            mark = axes.text(
                0.995,
                threshold,
                f"{threshold:g}",
                transform=axes.get_yaxis_transform(),
                ha="right",
                va="bottom",
                color=THRESHOLD_COLOUR,
                fontproperties=_font(8),
            )
            mark.set_parse_math(False)

        axes.grid(True, color="#d0d0d0", lw=0.6, zorder=1)
        axes.set_axisbelow(True)
        axes.plot(z, y, "-", color=LINE_COLOUR, lw=1.0, zorder=2)
        axes.plot(z, y, "o", color=LINE_COLOUR, ms=2.5, mew=0, zorder=3)

        x_ticks = _ticks(10, z_low, z_high)
        y_ticks = _ticks(8, y_low, y_high)
        axes.set_xticks(x_ticks, [f"{v + 0.0:g}" for v in x_ticks], fontproperties=_font(9))
        axes.set_yticks(y_ticks, [f"{v + 0.0:g}" for v in y_ticks], fontproperties=_font(9))
        axes.set_xlabel(X_LABEL, fontproperties=_font(11))
        axes.set_ylabel(Y_LABEL, fontproperties=_font(11))
        heading = figure.suptitle(title, y=1 - 8 / height, va="top", fontproperties=_font(13))
        heading.set_parse_math(False)

        if texts:
            note = axes.text(
                0.01,
                0.98,
                "\n".join(texts),
                transform=axes.transAxes,
                ha="left",
                va="top",
                color=NOTE_COLOUR,
                fontproperties=_font(11),
                bbox={"facecolor": BACKGROUND, "edgecolor": NOTE_COLOUR, "alpha": 0.85},
                zorder=4,
            )
            note.set_parse_math(False)

        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
    if pixels.shape != (height, width, 3):  # never expected: the size is fixed above
        raise RuntimeError(f"plot rendered at {pixels.shape}, not ({height}, {width}, 3)")
    return pixels


__all__ = ["ZONE_COLOURS", "render_score_plot"]
