"""``dicom-node train xray_triage``: this trainer's command, as the node loads it.

The node builds its command line from this module on every call (through
``dicom_node.trainers``), so it imports neither torch nor numpy: the handler imports the
trainer when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.contract import NodeContext, Retraining, Trainer, TrainerCommands
    from training.demo_entry import DemoEntry
    from training.xray_triage.train import TrainConfig

PIPELINE = "xray_triage"


def _labels(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def register(commands: TrainerCommands) -> None:
    p = commands.add_train_command(
        PIPELINE,
        help="X-ray or not, and which X-ray type (paper 004, modules I and II)",
        description="Train both modules (DenseNet-121s) from a folder of images with a labels "
        "CSV (--data DIR --labels CSV: path or file name, label = one of the 14 X-ray types "
        "or not_xray; DICOM, PNG or JPEG), from DICOM films labelled by their own Body Part "
        "Examined (--data DIR --weak-labels, optionally --filter-model FOLDER to drop films "
        "that model confidently calls another type), and/or from --synthetic N synthetic "
        "films per label. The default is the paper's recipe (224, Adam 1e-3, weight decay "
        "1e-5, plateau 3, 10 epochs, 70/20/10): a GPU run; --preset cpu is DenseNet-121 on "
        "synthetic films in tens of minutes on 2 cores, --preset demo a couple of minutes. "
        "The model folder holds the evaluation (evaluation.md, confusion_matrix.png).",
    )
    p.add_argument("--preset", help="paper | cpu | demo | smoke")
    p.add_argument("--data", type=Path, help="folder of images (with --labels or --weak-labels)")
    p.add_argument("--labels", type=Path, help="CSV: path (or file), label")
    p.add_argument(
        "--weak-labels",
        action="store_true",
        default=None,
        help="label DICOM films by their own Body Part Examined (and Modality)",
    )
    p.add_argument(
        "--filter-model", type=Path, help="model folder whose confident calls filter --data"
    )
    p.add_argument("--filter-confidence", type=float, help="drop above this confidence (0.9)")
    p.add_argument("--synthetic", type=int, help="N synthetic films per label")
    p.add_argument(
        "--synthetic-labels", type=_labels, help="comma-separated labels of the synthetic films"
    )
    p.add_argument("--synthetic-not-xray", type=int, help="synthetic non-X-rays (default: balance)")
    p.add_argument("--arch", choices=["densenet121", "densenet_tiny"])
    p.add_argument("--size", type=int, help="input size in pixels (the paper's: 224)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--xray-threshold", type=float, help="module I threshold for the card (0.5)")
    p.add_argument(
        "--disagreement-threshold", type=float, help="header disagreement confidence (0.9)"
    )
    p.add_argument("--time-limit", type=float, help="stop training after this many seconds")
    p.add_argument("--seed", type=int)
    p.add_argument("--version")
    p.add_argument("--out", type=Path, help="parent folder of the model folder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-register", dest="register", action="store_false")
    p.add_argument("--activate", action="store_true")
    p.set_defaults(handler=train_command)


def trainer() -> Trainer[TrainConfig]:
    from training.xray_triage.train import TRAINER

    return TRAINER


def demo_entry() -> DemoEntry | None:
    """Films with an unclear header routed by the image (``training/xray_triage/demo.py``)."""
    from training.xray_triage.demo import DEMO

    return DEMO


def retraining() -> Retraining:
    from training.xray_triage.retraining import RETRAINING

    return RETRAINING


def train_command(args: argparse.Namespace, node: NodeContext) -> int:
    """Train with the flags given (on a preset, if one is named), then register the model."""
    import torch

    from training.xray_triage.train import TRAINER, train_triage

    if args.threads:
        torch.set_num_threads(args.threads)
    chosen: dict[str, Any] = {
        "data_dir": args.data,
        "labels_csv": args.labels,
        "weak_labels": args.weak_labels,
        "filter_model": args.filter_model,
        "filter_confidence": args.filter_confidence,
        "synthetic_per_label": args.synthetic,
        "synthetic_labels": args.synthetic_labels,
        "synthetic_not_xray": args.synthetic_not_xray,
        "architecture": args.arch,
        "size": args.size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "xray_threshold": args.xray_threshold,
        "disagreement_threshold": args.disagreement_threshold,
        "time_limit_s": args.time_limit,
        "seed": args.seed,
        "version": args.version,
        "out_dir": args.out or node.model_dir / PIPELINE,
        "progress": not args.no_progress,
    }
    config = TRAINER.config(args.preset, **chosen)
    trained = train_triage(config)
    report = trained.report
    node.say(
        f"model {trained.card.version} in {trained.folder}: module I (X-ray or not) "
        f"{report.module_1.accuracy_pct:.1f} % on {report.module_1.images} images, module II "
        f"(X-ray type) {report.module_2.accuracy_pct:.1f} % on {report.module_2.images} X-rays, "
        f"whole triage {report.whole.accuracy_pct:.1f} % (paper: 98.7 % and 97.6 %; per class: "
        f"{trained.folder / 'evaluation.md'}, {trained.folder / 'confusion_matrix.png'})"
    )
    if args.register:
        node.register_model(trained.folder, activate=args.activate)
    return 0
