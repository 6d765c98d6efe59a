"""Sources of a study-scoped result: DX films of one study in several series.

``study_sources(series)`` gives ``series`` series of two synthetic DX hand films each (the
first is ``tests.support.datasets.synthetic_dx``'s own series, the others new ones), all
in the one study, series after series as ``StudyInput.files`` orders them.
"""

from __future__ import annotations

from pydicom import Dataset

from tests.support.datasets import DX_ROOT, synthetic_dx

STUDY_UID = f"{DX_ROOT}.1"
VIEWS = ("Hand PA", "Hand lateral", "Hand oblique")


def series_uid(number: int) -> str:
    """The Series Instance UID of series ``number`` (from 1) of ``study_sources``."""
    return f"{DX_ROOT}.2" if number == 1 else f"{DX_ROOT}.2.{number}"


def study_sources(series: int = 2, films: int = 2) -> list[Dataset]:
    """``films`` films in each of ``series`` series of one study (at most three series)."""
    sources = []
    for number in range(1, series + 1):
        for film in range(1, films + 1):
            ds = synthetic_dx(10 * number + film, study_uid=STUDY_UID)
            ds.SeriesInstanceUID = series_uid(number)
            ds.SeriesNumber = number
            ds.SeriesDescription = VIEWS[number - 1]
            ds.InstanceNumber = film
            sources.append(ds)
    return sources


__all__ = ["STUDY_UID", "VIEWS", "series_uid", "study_sources"]
