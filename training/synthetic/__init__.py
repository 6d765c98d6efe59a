"""Synthetic data for tests, training, benchmarks and the demo.

``hand_films``: analytic hand radiographs (phantoms) whose true orientation is known, for
the ``hand_orientation`` pipeline (paper 000, Baltruschat et al.), written as DX or CR
Part 10 files.

``ct_phantoms``: analytic whole-body CT subjects (head to upper thighs) with known body
zones (head_neck, chest, abdomen, pelvis), rendered slice by slice and written as CT
series with exact geometry (or deliberately reversed / mixed anatomy), for the
``ct_body_part`` pipeline (Unsupervised Body-part Regression).
"""

from training.synthetic.ct_phantoms import (
    ZONES,
    Phantom,
    Scan,
    WrittenSeries,
    make_phantom,
    random_scan,
    render_slice,
    render_volume,
    write_ct_phantom_series,
    write_ct_series,
    write_ct_study,
)
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
    "ZONES",
    "HandFilm",
    "Phantom",
    "RenderedHand",
    "Scan",
    "WrittenSeries",
    "hand_axis_angle",
    "make_phantom",
    "random_scan",
    "render_hand",
    "render_hand_film",
    "render_slice",
    "render_volume",
    "write_ct_phantom_series",
    "write_ct_series",
    "write_ct_study",
    "write_hand_film",
    "write_hand_studies",
    "write_hand_study",
]
