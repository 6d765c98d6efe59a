"""The font burned into the pictures the pipelines make (plots, heat-map legends): the
DejaVu Sans that matplotlib ships, so that every install draws the same text."""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["bundled_font_file"]


@cache
def bundled_font_file() -> str:
    """The path of matplotlib's bundled DejaVu Sans; FileNotFoundError when it is missing
    (matplotlib always ships it, so a missing file is a broken install)."""
    import matplotlib  # only the pipelines that draw text need it

    path = Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib's bundled font {path} is missing")
    return str(path)
