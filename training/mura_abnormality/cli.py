"""``dicom-node train mura_abnormality``: this trainer's command, as the node loads it.

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
    from training.mura_abnormality.train import TrainConfig

PIPELINE = "mura_abnormality"


def register(commands: TrainerCommands) -> None:
    p = commands.add_train_command(
        PIPELINE,
        help="normal/abnormal upper-extremity studies (paper 001, MURA) with Grad-CAM",
        description="Train from MURA's own folder (--mura DIR: MURA-v1.1 with train/ and "
        "valid/ and their CSVs), from DICOM studies with labels (--data DIR --labels CSV: "
        "study_instance_uid or accession_number, label normal/abnormal) or from --synthetic "
        "N studies. The default is the paper's recipe (DenseNet-169 + head, 224, batch 64, "
        "Adam 1e-4, 20 epochs): a GPU run; --preset cpu is DenseNet-121 on synthetic studies "
        "in about half an hour on 2 cores, --preset demo a few minutes. The model folder "
        "holds the evaluation per region (evaluation.md, roc.png) and goes into the store.",
    )
    p.add_argument("--preset", help="paper | cpu | demo | smoke")
    p.add_argument("--mura", type=Path, help="MURA's folder (MURA-v1.1)")
    p.add_argument("--data", type=Path, help="folder of DICOM studies (with --labels)")
    p.add_argument("--labels", type=Path, help="CSV: study_instance_uid or accession_number, label")
    p.add_argument("--synthetic", type=int, help="train on N synthetic studies")
    p.add_argument("--arch", choices=["densenet169", "densenet121", "densenet_tiny"])
    p.add_argument("--size", type=int, help="input size in pixels (the paper's: 224)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--time-limit", type=float, help="stop training after this many seconds")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--no-class-weights", dest="class_weights", action="store_false", default=None)
    p.add_argument(
        "--init", type=Path, help="local torchvision DenseNet weights (ImageNet) for the base"
    )
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--test-fraction", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--version")
    p.add_argument("--out", type=Path, help="parent folder of the model folder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-register", dest="register", action="store_false")
    p.add_argument("--activate", action="store_true")
    p.set_defaults(handler=train_command)


def trainer() -> Trainer[TrainConfig]:
    from training.mura_abnormality.train import TRAINER

    return TRAINER


def demo_entry() -> DemoEntry | None:
    from training.mura_abnormality.demo import DEMO

    return DEMO


def retraining() -> Retraining:
    from training.mura_abnormality.retraining import RETRAINING

    return RETRAINING


def train_command(args: argparse.Namespace, node: NodeContext) -> int:
    """Train with the flags given (on a preset, if one is named), then register the model."""
    import torch

    from training.mura_abnormality.train import TRAINER, train_mura

    if args.threads:
        torch.set_num_threads(args.threads)
    chosen: dict[str, Any] = {
        "mura_dir": args.mura,
        "data_dir": args.data,
        "labels_csv": args.labels,
        "synthetic_studies": args.synthetic,
        "architecture": args.arch,
        "size": args.size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "time_limit_s": args.time_limit,
        "augment": args.augment,
        "class_weights": args.class_weights,
        "init_weights": args.init,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "seed": args.seed,
        "version": args.version,
        "out_dir": args.out or node.model_dir / PIPELINE,
        "progress": not args.no_progress,
    }
    config = TRAINER.config(args.preset, **chosen)
    trained = train_mura(config)
    overall = trained.report.overall
    node.say(
        f"model {trained.card.version} in {trained.folder}: AUROC {overall.auroc:.3f}, accuracy "
        f"{overall.accuracy_pct:.1f} %, F1 {overall.f1_pct:.1f} %, kappa {overall.kappa:.3f}, "
        f"sensitivity {overall.sensitivity_pct:.1f} % at threshold {trained.report.threshold:.3f} "
        f"({overall.studies} held-out studies; per region: {trained.folder / 'evaluation.md'})"
    )
    if trained.gradcam is not None:
        cam = trained.gradcam
        node.say(
            f"Grad-CAM maximum on the lesion in {cam['peak_on_lesion']} of {cam['views']} "
            f"abnormal views ({cam['peak_on_lesion_pct']} %, chance {cam['chance_pct']} %), "
            f"within 15/224 of it in {cam['pointing_game_pct']} % (pointing game)"
        )
    if args.register:
        node.register_model(trained.folder, activate=args.activate)
    return 0
