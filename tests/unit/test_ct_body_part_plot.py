"""The ``ct_body_part`` score plot: size, zones where they belong, notes, determinism, errors."""

from __future__ import annotations

import time

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from pipelines.ct_body_part.plot import BACKGROUND, ZONE_COLOURS, render_score_plot

SLICES = 300
Z = np.linspace(0.0, -747.5, SLICES)  # head first, 2.5 mm apart
SCORES = -8.0 + 0.022 * -Z + np.random.default_rng(3).normal(0.0, 0.1, SLICES)
ZONES = [("chest", 0.0, -260.0), ("abdomen", -260.0, -500.0), ("pelvis", -500.0, -747.5)]
TITLE = "Body-part regression, model 20261122.1"


def plot(**kwargs: object) -> np.ndarray:
    args: dict[str, object] = {"title": TITLE, "thresholds": (-2.3, 3.1)}
    args.update(kwargs)
    return render_score_plot(Z, SCORES, ZONES, **args)  # type: ignore[arg-type]


def rgb(colour: str) -> np.ndarray:
    return np.array([round(c * 255) for c in to_rgb(colour)], dtype=np.uint8)


def columns_of(pixels: np.ndarray, colour: str) -> np.ndarray:
    """Columns where at least a tenth of the rows have exactly ``colour``."""
    hits = np.all(pixels == rgb(colour), axis=2).sum(axis=0)
    return np.flatnonzero(hits > pixels.shape[0] // 10)


def test_shape_and_type() -> None:
    pixels = plot()
    assert pixels.shape == (640, 1024, 3) and pixels.dtype == np.uint8
    assert pixels.flags.writeable and pixels.flags.c_contiguous
    for width, height in ((400, 300), (1001, 777), (2048, 1024)):
        assert plot(width=width, height=height).shape == (height, width, 3)


def test_zones_are_shaded_in_their_places_head_on_the_left() -> None:
    pixels = plot()
    runs = {}
    for name, _, _ in ZONES:
        columns = columns_of(pixels, ZONE_COLOURS[name])
        assert columns.size > 100, f"{name} band not found"
        # One band: its columns are contiguous (apart from grid lines crossing it).
        assert columns.max() - columns.min() < 1.2 * columns.size
        runs[name] = columns
    # The chest (head end) is left of the abdomen, which is left of the pelvis.
    assert runs["chest"].max() < runs["abdomen"].min() + 3
    assert runs["abdomen"].max() < runs["pelvis"].min() + 3
    # Widths follow the zones' lengths (260, 240 and 247.5 mm).
    widths = {name: columns.max() - columns.min() for name, columns in runs.items()}
    assert widths["chest"] / widths["abdomen"] == pytest.approx(260 / 240, rel=0.05)
    # A column inside the chest band is pale blue; with no zones it is background.
    middle = int(np.median(runs["chest"]))
    row = pixels.shape[0] // 2
    bare = render_score_plot(Z, SCORES, [], title=TITLE)
    assert not np.array_equal(pixels[:, middle], bare[:, middle])
    assert np.array_equal(bare[row, middle], rgb(BACKGROUND)) or np.all(bare[row, middle] > 180)
    assert columns_of(bare, ZONE_COLOURS["chest"]).size == 0


def test_unknown_zone_names_get_colours_too() -> None:
    pixels = render_score_plot(Z, SCORES, [("thorax", 0.0, -300.0)], title=TITLE)
    bare = render_score_plot(Z, SCORES, [], title=TITLE)
    assert (pixels != bare).any(axis=2).sum() > 50_000


def test_notes_are_drawn_in_red() -> None:
    plain = plot()
    noted = plot(notes=["r = 0.93 < 0.99", "scan direction not monotonic"])
    assert not np.array_equal(plain, noted)
    red = (noted[:, :, 0] > 150) & (noted[:, :, 1] < 80) & (noted[:, :, 2] < 80)
    assert red.sum() > 200
    plain_red = (plain[:, :, 0] > 150) & (plain[:, :, 1] < 80) & (plain[:, :, 2] < 80)
    assert plain_red.sum() == 0


def test_title_and_thresholds_change_the_picture() -> None:
    assert not np.array_equal(plot(), plot(title="another title"))
    assert not np.array_equal(plot(), plot(thresholds=()))


def test_same_input_same_pixels_whatever_the_global_style() -> None:
    first = plot(notes=["r = 0.93 < 0.99"])
    with matplotlib.rc_context({"font.size": 20, "lines.linewidth": 5, "axes.facecolor": "k"}):
        styled = plot(notes=["r = 0.93 < 0.99"])
    assert np.array_equal(first, styled)
    assert np.array_equal(first, plot(notes=["r = 0.93 < 0.99"]))


def test_global_matplotlib_state_is_left_alone() -> None:
    params = matplotlib.rcParams
    with matplotlib.rc_context({"font.size": 17, "path.simplify": True}):
        before = (params["font.size"], params["path.simplify"], params["axes.facecolor"])
        plot(notes=["x"])
        after = (params["font.size"], params["path.simplify"], params["axes.facecolor"])
        assert after == before == (17, True, "white")


def test_text_is_not_parsed_as_mathtext() -> None:
    # A "$" pair would be math in matplotlib; here it is text and must not fail.
    pixels = plot(title="cost $1 and $2", notes=["$x$"])
    assert pixels.shape == (640, 1024, 3)


def test_fast_enough_for_a_whole_series() -> None:
    plot()  # fonts loaded
    started = time.perf_counter()
    plot(notes=["r = 0.93 < 0.99"])
    assert time.perf_counter() - started < 0.3


def test_one_slice_and_a_reversed_scan_plot() -> None:
    assert render_score_plot(Z[:1], SCORES[:1], [], title="t").shape == (640, 1024, 3)
    # Scored feet first: the same curve along the body (the head still on the left);
    # only anti-aliasing where the line and points overlap differs.
    reversed_scan = render_score_plot(Z[::-1], SCORES[::-1], ZONES, title="t")
    head_first = render_score_plot(Z, SCORES, ZONES, title="t")
    assert (reversed_scan != head_first).any(axis=2).mean() < 0.002


@pytest.mark.parametrize(
    ("positions", "scores", "zones", "message"),
    [
        (Z, SCORES[:-1], [], "300 value.* but scores has 299"),
        (Z[:0], SCORES[:0], [], "positions_mm is empty"),
        (Z, np.where(np.arange(SLICES) == 7, np.nan, SCORES), [], r"scores\[7\] is nan"),
        (np.where(np.arange(SLICES) == 2, np.inf, Z), SCORES, [], r"positions_mm\[2\] is inf"),
        (Z.reshape(2, -1), SCORES, [], "one-dimensional"),
        (Z, SCORES, [("chest", 0.0, float("nan"))], "must be finite"),
        (Z, SCORES, [("", 0.0, -10.0)], "needs a name"),
        (Z, SCORES, [("chest", 0.0)], r"\(name, z_top_mm, z_bottom_mm\)"),
    ],
)
def test_bad_input_is_refused_clearly(
    positions: np.ndarray, scores: np.ndarray, zones: list[tuple[str, float, float]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_score_plot(positions, scores, zones, title="t")


def test_bad_thresholds_and_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        plot(thresholds=(1.0, float("inf")))
    with pytest.raises(ValueError, match="width"):
        plot(width=10)
    with pytest.raises(ValueError, match="height"):
        plot(height=640.5)
