"""The ``mura_abnormality`` pipeline: is this upper-extremity study normal or abnormal?

Study-scoped: the node hands it every CR/DX view its routes sent (often one series per
view). Each view is decoded with ``pipelines.film_io`` (LUTs, MONOCHROME1), preprocessed
as the paper does (224 × 224, [−1, 1]) and given a probability by the DenseNet (the
network runs on the views read so far while a thread reads the next ones); the
study's probability is the mean over its views (MURA's rule), abnormal when it reaches the
threshold on the model card (chosen on validation studies at training; the option
``threshold`` overrides it).

Torch is imported when the model is loaded, not when the node loads this class.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from pipelines.contract import (
    DerivedImage,
    Finding,
    KeyObjectSelection,
    Measurement,
    PipelineResult,
    StudyInput,
)
from pipelines.errors import PipelineInputError
from pipelines.film_io import Film, FilmUnreadable, read_film
from pipelines.model_store import ModelFolderCache
from pipelines.mura_abnormality.concepts import (
    ABNORMAL,
    FINDING,
    KEY_OBJECTS_TITLE,
    NORMAL,
    PIPELINE_NAME,
    RUNTIMES,
    STUDY_PROBABILITY,
    THRESHOLD,
    VIEW_PROBABILITY,
    Runtime,
)
from pipelines.mura_abnormality.regions import REGION_CODES, region_of

if TYPE_CHECKING:
    import torch

    from pipelines.mura_abnormality.model import MuraModel

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

HOW_TO_GET_A_MODEL = (
    "train one with `dicom-node train mura_abnormality --mura DIR` (MURA's folder), `--data DIR "
    "--labels CSV` (DICOM studies and their normal/abnormal labels) or `--synthetic N`, or "
    "import one with `dicom-node models import FOLDER`; then `dicom-node models activate "
    "mura_abnormality VERSION` and `dicom-node jobs retry ID`"
)


@dataclass(frozen=True, eq=False)
class View:
    """One film of the study and what the model made of it."""

    film: Film
    series_instance_uid: str
    region: str
    probability: float = math.nan

    @property
    def sop_instance_uid(self) -> str:
        return self.film.sop_instance_uid


@dataclass(frozen=True)
class Verdict:
    """The study's probability (mean over views), the threshold and what they decide."""

    probability: float
    threshold: float

    @property
    def abnormal(self) -> bool:
        return self.probability >= self.threshold


def heat_map_views(probabilities: np.ndarray, verdict: Verdict) -> list[int]:
    """Which views get a heat map: those at or above the threshold, highest first, when the
    study is abnormal; the most probable one when it is normal."""
    order = [int(i) for i in np.argsort(-np.asarray(probabilities), kind="stable")]
    if not verdict.abnormal:
        return order[:1]
    return [i for i in order if probabilities[i] >= verdict.threshold]


def _files_of(study: StudyInput) -> list[tuple[str, Path]]:
    """(Series Instance UID, file) of every file of the study, series after series."""
    return [(series.series_instance_uid, path) for series in study.series for path in series.files]


def _read(path: Path) -> tuple[Film | None, str | None]:
    """The film in ``path``, or why it cannot be read (naming the file)."""
    try:
        return read_film(path), None
    except FilmUnreadable as exc:
        reason = str(exc)
        if not reason.startswith(f"{path.name}:"):
            reason = f"{path.name}: {reason}"
        return None, reason


def _done(value: _T) -> Future[_T]:
    """A future that holds ``value`` already."""
    future: Future[_T] = Future()
    future.set_result(value)
    return future


def _keep(
    film: Film | None,
    reason: str | None,
    path: Path,
    series_uid: str,
    seen: set[str],
    views: list[View],
    skipped: list[str],
) -> bool:
    """Add ``film`` to ``views`` (True), or its reason, or that its instance came already,
    to ``skipped`` (False)."""
    if film is None:
        logger.warning("%s: %s", PIPELINE_NAME, reason)
        skipped.append(str(reason))
        return False
    if film.sop_instance_uid in seen:
        skipped.append(f"{path.name}: instance {film.sop_instance_uid} seen already")
        return False
    seen.add(film.sop_instance_uid)
    views.append(View(film, series_uid, region_of(film.header)))
    return True


class MuraAbnormality:
    """Papers 001 (MURA abnormality, DenseNet + head) and 004 (Grad-CAM, module IV).

    Options (``[pipeline_options.mura_abnormality]`` in the node's config):

    ``threshold`` — the study probability at and above which a study is abnormal (default:
    the model card's, chosen on validation studies at training). ``heat_maps`` — send a
    Grad-CAM picture per abnormal view (the top view when normal); default true.
    ``max_side`` — the longest side in pixels of those pictures' film part (1024).
    ``runtime`` — where the probabilities run: ``"auto"`` (ONNX Runtime where it agrees
    with torch and measures faster at load), ``"torch"`` or ``"onnxruntime"``; Grad-CAM
    always runs on torch. ``batch_size`` — the most views per forward pass. ``read_ahead``
    — run the network on the views read so far while a thread reads the next ones
    (``predict_while_reading``; default true); false reads every view first, then runs
    the network (``benchmarks/mura.py`` measures both).
    """

    name = PIPELINE_NAME
    scope = "study"

    def __init__(
        self,
        *,
        threshold: float | None = None,
        heat_maps: bool = True,
        max_side: int = 1024,
        runtime: Runtime = "auto",
        batch_size: int = 8,
        read_ahead: bool = True,
    ) -> None:
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0.0 <= float(threshold) <= 1.0
        ):
            raise ValueError("threshold must be a probability in [0, 1]")
        if not isinstance(heat_maps, bool):
            raise ValueError("heat_maps must be true or false")
        if (
            isinstance(max_side, bool)
            or not isinstance(max_side, int)
            or not 64 <= max_side <= 4096
        ):
            raise ValueError("max_side must be a whole number of pixels in 64..4096")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not isinstance(read_ahead, bool):
            raise ValueError("read_ahead must be true or false")
        self.threshold = None if threshold is None else float(threshold)
        self.heat_maps = heat_maps
        self.max_side = max_side
        self.runtime: Runtime = runtime
        self.batch_size = batch_size
        self.read_ahead = read_ahead
        self._models: ModelFolderCache[MuraModel] = ModelFolderCache(self._load)

    def _load(self, folder: Path) -> MuraModel:
        from pipelines.mura_abnormality.model import load_model  # torch, on first use

        return load_model(folder, runtime=self.runtime)

    def model(self, study: StudyInput) -> MuraModel:
        """The study's model (its active version), loaded once and kept while it is active."""
        return self._models.get_active(
            study.model_dir,
            study.model_version,
            pipeline=PIPELINE_NAME,
            how_to_get=HOW_TO_GET_A_MODEL,
        )

    def read_views(self, study: StudyInput) -> tuple[list[View], list[str]]:
        """The study's films, series after series, and why any file was skipped (each
        reason names its file: in the node's store, ``<SOP Instance UID>.dcm``)."""
        views: list[View] = []
        skipped: list[str] = []
        seen: set[str] = set()
        for series_uid, path in _files_of(study):
            film, reason = _read(path)
            _keep(film, reason, path, series_uid, seen, views, skipped)
        return views, skipped

    def predict_while_reading(
        self, study: StudyInput, model: MuraModel
    ) -> tuple[list[View], list[str], torch.Tensor, np.ndarray, dict[str, float]]:
        """The study's views (as ``read_views`` gives them), the reasons for skipped files,
        the network's inputs, the probabilities and the seconds spent.

        One thread reads and preprocesses the films in order while this one runs the
        network: each forward pass takes the views read so far (at least one, at most
        ``batch_size``), so the network works while the next films are decoded instead
        of after all of them (decoding a film is pydicom's and NumPy's work, resizing it
        torch's, and ONNX Runtime and torch give the interpreter up while they compute).
        With ``read_ahead`` false every view is read first, then the network runs on
        batches of ``batch_size``."""
        import torch

        from pipelines.mura_abnormality.preprocess import network_input

        spec = model.spec

        def read_and_prepare(path: Path) -> tuple[Film | None, str | None, object, float]:
            started = time.perf_counter()
            film, reason = _read(path)
            tensor = None if film is None else network_input(film.display, spec)
            return film, reason, tensor, time.perf_counter() - started

        files = _files_of(study)
        views: list[View] = []
        skipped: list[str] = []
        seen: set[str] = set()
        inputs: list[torch.Tensor] = []
        probabilities: list[np.ndarray] = []
        seconds = {"read_preprocess": 0.0, "network": 0.0}
        with ThreadPoolExecutor(1, thread_name_prefix=f"{PIPELINE_NAME}-read") as reader:
            if self.read_ahead:
                futures = [reader.submit(read_and_prepare, path) for _, path in files]
            else:  # every view read here first, then the network in full batches
                futures = [_done(read_and_prepare(path)) for _, path in files]
            try:
                index = 0
                while index < len(files):
                    chunk: list[torch.Tensor] = []
                    while (
                        index < len(files)
                        and len(chunk) < self.batch_size
                        and (not chunk or not self.read_ahead or futures[index].done())
                    ):
                        film, reason, tensor, spent = futures[index].result()
                        seconds["read_preprocess"] += spent
                        series_uid, path = files[index]
                        if _keep(film, reason, path, series_uid, seen, views, skipped):
                            assert isinstance(tensor, torch.Tensor)
                            chunk.append(tensor)
                        index += 1
                    if chunk:
                        started = time.perf_counter()
                        part = torch.stack(chunk)
                        probabilities.append(model.probabilities(part, batch_size=self.batch_size))
                        seconds["network"] += time.perf_counter() - started
                        inputs.extend(chunk)
            finally:
                for future in futures:  # an error: the films not read yet are not read
                    future.cancel()
        batch = torch.stack(inputs) if inputs else torch.zeros(0)
        found = np.concatenate(probabilities) if probabilities else np.zeros(0)
        return views, skipped, batch, found, seconds

    def run(self, study: StudyInput) -> PipelineResult:
        model = self.model(study)
        started = time.perf_counter()
        views, skipped, batch, probabilities, seconds = self.predict_while_reading(study, model)
        if not views:
            reasons = "; ".join(skipped[:3]) or "the study has no files"
            raise PipelineInputError(f"no view of the study could be read as a film: {reasons}")
        views = [
            View(v.film, v.series_instance_uid, v.region, float(p))
            for v, p in zip(views, probabilities, strict=True)
        ]
        threshold = model.threshold if self.threshold is None else self.threshold
        verdict = Verdict(float(np.mean(probabilities)), threshold)
        predicted = time.perf_counter()
        chosen = heat_map_views(probabilities, verdict)
        images = self._heat_maps(model, batch, views, chosen, verdict) if self.heat_maps else []
        drawn = time.perf_counter()
        key_objects: tuple[KeyObjectSelection, ...] = ()
        if verdict.abnormal:
            key_objects = (self._key_objects(model, views, chosen, verdict),)
        summary: dict[str, object] = {
            "verdict": "abnormal" if verdict.abnormal else "normal",
            "study_probability": round(verdict.probability, 4),
            "threshold": round(verdict.threshold, 4),
            "threshold_from": "model card" if self.threshold is None else "pipeline_options",
            "views": [
                {
                    "sop_instance_uid": v.sop_instance_uid,
                    "series_instance_uid": v.series_instance_uid,
                    "region": v.region,
                    "probability": round(v.probability, 4),
                    "heat_map": index in chosen and self.heat_maps,
                }
                for index, v in enumerate(views)
            ],
            "key_objects": list(key_objects[0].sop_instance_uids) if key_objects else [],
            "architecture": model.architecture,
            "runtime": model.runtime,
            "seconds": {
                # reading and the network overlap: each is its own busy time
                "read_preprocess": round(seconds["read_preprocess"], 3),
                "network": round(seconds["network"], 3),
                "read_and_network": round(predicted - started, 3),
                "heat_maps": round(drawn - predicted, 3),
            },
        }
        if skipped:
            summary["skipped"] = skipped
        every_file_read = not skipped and len(views) == len(study.files)
        return PipelineResult(
            pipeline=PIPELINE_NAME,
            model_version=model.card.version,
            weights_sha256=model.card.weights_sha256,
            summary=summary,
            measurements=tuple(self._measurements(views, verdict)),
            findings=(
                Finding(
                    FINDING,
                    ABNORMAL if verdict.abnormal else NORMAL,
                    probability=verdict.probability
                    if verdict.abnormal
                    else 1.0 - verdict.probability,
                ),
            ),
            derived_images=tuple(images),
            source_headers=tuple(v.film.header for v in views) if every_file_read else (),
            key_objects=key_objects,
        )

    @staticmethod
    def _measurements(views: list[View], verdict: Verdict) -> list[Measurement]:
        out = [
            Measurement(
                "Study probability of abnormality",
                round(verdict.probability, 4),
                "1",
                STUDY_PROBABILITY,
            ),
            Measurement("Decision threshold", round(verdict.threshold, 4), "1", THRESHOLD),
        ]
        for view in views:
            out.append(
                Measurement(
                    "View probability of abnormality",
                    round(view.probability, 4),
                    "1",
                    VIEW_PROBABILITY,
                    tracking_uid=view.sop_instance_uid,
                    finding_site=REGION_CODES.get(view.region),
                )
            )
        return out

    def _heat_maps(
        self,
        model: MuraModel,
        batch: object,
        views: list[View],
        chosen: list[int],
        verdict: Verdict,
    ) -> list[DerivedImage]:
        from pipelines.mura_abnormality.heatmap import overlay_size, render_overlay

        maps, _ = model.heat_maps(batch[chosen])  # type: ignore[index]
        verdict_text = "ABNORMAL" if verdict.abnormal else "normal"
        images = []
        for heat, index in zip(maps, chosen, strict=True):
            view = views[index]
            display = view.film.display
            lines = [
                f"Study {verdict_text}: p = {verdict.probability:.2f} "
                f"(threshold {verdict.threshold:.2f}), {len(views)} views",
                f"This view ({view.region}): p = {view.probability:.2f}",
                f"{PIPELINE_NAME} model {model.card.version}",
            ]
            pixels = render_overlay(display, heat, lines, max_side=self.max_side)
            rows, columns = overlay_size(display.shape, self.max_side)
            spacing = view.film.pixel_spacing
            if spacing is not None:
                spacing = (
                    spacing[0] * display.shape[0] / rows,
                    spacing[1] * display.shape[1] / columns,
                )
            images.append(
                DerivedImage(
                    pixels=pixels,
                    kind="rgb_overlay",
                    description=f"Grad-CAM heat map, view p={view.probability:.2f}",
                    source_sop_instance_uid=view.sop_instance_uid,
                    burned_in_text=True,
                    pixel_spacing=spacing,
                )
            )
        return images

    @staticmethod
    def _key_objects(
        model: MuraModel, views: list[View], chosen: list[int], verdict: Verdict
    ) -> KeyObjectSelection:
        figures = ", ".join(f"{views[i].region} p={views[i].probability:.2f}" for i in chosen)
        return KeyObjectSelection(
            title=KEY_OBJECTS_TITLE,
            sop_instance_uids=tuple(views[i].sop_instance_uid for i in chosen),
            description=(
                f"Views driving the abnormal verdict of {PIPELINE_NAME} (model "
                f"{model.card.version}): study p={verdict.probability:.2f} at threshold "
                f"{verdict.threshold:.2f}; {figures}. Not for diagnosis."
            )[:1024],
        )


__all__ = ["HOW_TO_GET_A_MODEL", "MuraAbnormality", "Verdict", "View", "heat_map_views"]
