"""``python -m training.ct_body_part.calibration_pairs MODEL``: how a trained model's zone
accuracy depends on which two volumes were labelled for its calibration.

The paper fits the two thresholds on two labelled volumes; which two moves the figure by
several points. This scores held-out synthetic phantoms (the training run's own test
seeds, so with the model's ``--seed`` they are the ones it never saw) and labelled
chest–abdomen–pelvis phantoms, then reports the three-zone accuracy for every pair of
labelled phantoms as the calibration, for all of them at once, and the ceiling
(thresholds fitted on the test slices). The figures in ``training/ct_body_part/README.md``
come from this, with its defaults.

    python -m training.ct_body_part.calibration_pairs var/models/ct_body_part/<version>
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from pipelines.ct_body_part.model import load_model
from pipelines.model_store import ModelStoreError
from training.ct_body_part.data import render_phantom_volumes
from training.ct_body_part.evaluate import PAPER_ZONE_ACCURACY_PCT, calibration_pair_study
from training.ct_body_part.train import (
    CALIBRATION_REGION,
    CALIBRATION_SEED_OFFSET,
    TEST_SEED_OFFSET,
)
from training.runs import progress_bars, progress_callback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.ct_body_part.calibration_pairs",
        description="Three-zone accuracy of a ct_body_part model for every pair of labelled "
        "phantoms as its two calibration volumes.",
    )
    parser.add_argument("model", type=Path, help="a ct_body_part model folder")
    parser.add_argument("--labelled", type=int, default=12, help="labelled phantoms (12)")
    parser.add_argument("--test", type=int, default=40, help="held-out test phantoms (40)")
    parser.add_argument("--seed", type=int, default=0, help="the training run's seed (0)")
    parser.add_argument("--max-slices", type=int, default=120, help="per phantom (120)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    if args.labelled < 2 or args.test < 1 or args.max_slices < 3:
        parser.error("--labelled needs at least 2, --test at least 1, --max-slices at least 3")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model)
    except (ModelStoreError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    spec = model.spec
    with progress_bars(not args.no_progress) as progress:
        labelled = render_phantom_volumes(
            args.labelled,
            spec,
            seed=args.seed + CALIBRATION_SEED_OFFSET,
            max_slices=args.max_slices,
            region=CALIBRATION_REGION,
            advance=progress_callback(progress, "labelled phantoms"),
        )
        test = render_phantom_volumes(
            args.test,
            spec,
            seed=args.seed + TEST_SEED_OFFSET,
            max_slices=args.max_slices,
            advance=progress_callback(progress, "test phantoms"),
        )
        try:
            study = calibration_pair_study(
                model, test, labelled, advance=progress_callback(progress, "scoring")
            )
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            return 2
    figures = study.metrics()
    table = Table(title=f"{args.model.name}: three-zone accuracy on {study.test_slices} slices")
    for column in ("calibration", "zone accuracy %"):
        table.add_column(column)
    table.add_row(
        f"each of {figures['pairs']} pairs: mean (min–max)",
        f"{figures['pair_mean_pct']:.1f} ({figures['pair_min_pct']:.1f}–"
        f"{figures['pair_max_pct']:.1f})",
    )
    table.add_row(f"all {study.labelled_volumes} labelled", f"{figures['all_labelled_pct']:.1f}")
    table.add_row("ceiling (fitted on the test slices)", f"{figures['ceiling_pct']:.1f}")
    table.add_row("paper (two labelled volumes, real CT)", f"{PAPER_ZONE_ACCURACY_PCT:.2f}")
    Console().print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
