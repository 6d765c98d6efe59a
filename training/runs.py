"""What every training run shares: progress bars, seeds, and writing the model folder.

* ``progress_bars(enabled)`` — a rich ``Progress`` with the columns every run shows
  (description, bar, done/total, elapsed, remaining, a free ``status`` field);
* ``progress_callback(progress, what)`` — an ``Advance`` callback ``(done, total)`` for a
  loader to report on a new bar;
* ``int_seed(sequence)`` — one integer seed from a ``numpy.random.SeedSequence``;
* ``check_loss_finite(loss, ...)`` — stop a run whose loss has become NaN or infinite
  (``TrainingDiverged``, with the step and learning rate) before that step corrupts the
  weights;
* ``staged_folder(out_dir, version)`` — build a model folder under a hidden
  ``.<version>.partial`` name and rename it into place only when everything in it is
  written; a failed run leaves nothing behind;
* ``write_weights_and_card(folder, ...)`` — the trained state dict as ``weights.pt`` and
  its first ``model.json`` (metrics and calibration are added once evaluated).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipelines.model_store import WEIGHTS_FILE, ModelCard, file_sha256, write_model_card

#: A loader's progress report: (done, total).
Advance = Callable[[int, int], None]


class TrainingDiverged(ValueError):
    """The training loss is no longer a finite number: the steps are too large."""


def check_loss_finite(loss: float, *, step: int, lr: float, unit: str = "iteration") -> None:
    """Raise ``TrainingDiverged`` if ``loss`` is NaN or infinite.

    Called before the optimizer step, so the weights are never updated from it; the run
    stops with nothing written instead of training on and failing later with a puzzling
    error (a NaN network cannot be calibrated).
    """
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged: the loss is {loss} at {unit} {step} (learning rate {lr:g}); "
            f"nothing was written. Train again with a lower --lr, e.g. {lr / 10:g}"
        )


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not enabled,
        transient=False,
    )
    with progress:
        yield progress


def progress_callback(progress: Progress, what: str) -> Advance:
    task = progress.add_task(what, total=None, status="")

    def advance(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return advance


def int_seed(sequence: np.random.SeedSequence) -> int:
    return int(sequence.generate_state(1)[0])


@contextmanager
def staged_folder(out_dir: Path, version: str) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes ``out_dir/version``."""
    folder = Path(out_dir) / version
    if folder.exists():
        raise FileExistsError(f"model folder {folder} already exists; choose another version")
    staging = Path(out_dir) / f".{version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_weights_and_card(
    folder: Path,
    *,
    pipeline: str,
    version: str,
    architecture: str,
    input_spec: dict[str, Any],
    state: dict[str, torch.Tensor],
    training_data: dict[str, Any],
) -> ModelCard:
    """Save ``state`` as the folder's weights and write the card that describes them."""
    weights = Path(folder) / WEIGHTS_FILE
    torch.save({k: v.contiguous() for k, v in state.items()}, weights)
    card = ModelCard(
        pipeline=pipeline,
        version=version,
        created=datetime.now(UTC),
        architecture={"name": architecture},
        input_spec=input_spec,
        weights_sha256=file_sha256(weights),
        training_data=training_data,
    )
    write_model_card(folder, card)
    return card
