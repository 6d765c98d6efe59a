"""Synthetic data for tests, training, benchmarks and the demo.

``hand_films``: analytic hand radiographs (phantoms) whose true orientation is known, for
the ``hand_orientation`` pipeline (paper 000, Baltruschat et al.), written as DX or CR
Part 10 files.
"""

from training.synthetic.hand_films import (
    DEFAULT_FIELD_MM,
    DETECTOR_PIXEL_SPACING_MM,
    DETECTOR_SIZES,
    SYNTHETIC_UID_ROOT,
    HandFilm,
    RenderedHand,
    hand_axis_angle,
    render_hand,
    render_hand_film,
    write_hand_film,
    write_hand_studies,
    write_hand_study,
)

__all__ = [
    "DEFAULT_FIELD_MM",
    "DETECTOR_PIXEL_SPACING_MM",
    "DETECTOR_SIZES",
    "SYNTHETIC_UID_ROOT",
    "HandFilm",
    "RenderedHand",
    "hand_axis_angle",
    "render_hand",
    "render_hand_film",
    "write_hand_film",
    "write_hand_studies",
    "write_hand_study",
]
