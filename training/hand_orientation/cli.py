"""``dicom-node train hand_orientation``: this trainer's command, as the node loads it.

The node builds its command line from this module on every call (through
``dicom_node.trainers``), so it imports neither torch nor numpy: the handler imports
the trainer when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.contract import NodeContext, Retraining, Trainer, TrainerCommands
    from training.demo_entry import DemoEntry
    from training.hand_orientation.train import TrainConfig

PIPELINE = "hand_orientation"


def register(commands: TrainerCommands) -> None:
    p = commands.add_train_command(
        PIPELINE,
        help="orientation regression (paper 000) from DICOM films or synthetic ones",
        description="Train from --data DIR (films assumed upright: self-supervised; "
        "--upright-check MODEL_DIR leaves out those a model finds askew), "
        "--labels CSV (file or sop_instance_uid, angle_deg) or --synthetic N. The model "
        "folder goes into the store and is registered (--activate makes new jobs use it).",
    )
    p.add_argument(
        "--preset",
        help="paper | cpu | demo | smoke | vgg16_imagenet (default: ResNet-50 from random weights)",
    )
    p.add_argument("--data", type=Path, help="folder of DICOM films")
    p.add_argument("--labels", type=Path, help="CSV: file or sop_instance_uid, angle_deg")
    p.add_argument("--synthetic", type=int, help="train on N synthetic hand films")
    p.add_argument("--arch", help="resnet50 (the paper's), resnet18, resnet10 or vgg16")
    p.add_argument("--resize", type=int)
    p.add_argument("--crop", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"])
    p.add_argument("--time-limit", type=float, help="stop training after this many seconds")
    p.add_argument("--fine-tune", choices=["conv5", "conv4", "fc", "all"])
    p.add_argument(
        "--init",
        type=Path,
        help="local initial weights: a torchvision-style ResNet state dict, or for vgg16 "
        "the converted ImageNet VGG16 weights",
    )
    p.add_argument(
        "--imagenet-init",
        action="store_true",
        help="vgg16: start conv1-conv5 from the node's ImageNet VGG16 weights, "
        "<model_dir>/_init/vgg16_imagenet.pt (`dicom-node models vgg16-init` makes them)",
    )
    p.add_argument("--rotations", type=int, help="--data: known random turns of each upright film")
    p.add_argument(
        "--upright-check",
        type=Path,
        metavar="MODEL_DIR",
        help="--data: leave out films this model finds more than --max-tilt from upright",
    )
    p.add_argument("--max-tilt", type=float, help="degrees, with --upright-check (default 20)")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--version")
    p.add_argument("--out", type=Path, help="parent folder of the model folder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-register", dest="register", action="store_false")
    p.add_argument("--activate", action="store_true")
    p.set_defaults(handler=train_command)


def trainer() -> Trainer[TrainConfig]:
    from training.hand_orientation.train import TRAINER

    return TRAINER


def demo_entry() -> DemoEntry | None:
    from training.hand_orientation.demo import DEMO

    return DEMO


def retraining() -> Retraining:
    from training.hand_orientation.retraining import RETRAINING

    return RETRAINING


def train_command(args: argparse.Namespace, node: NodeContext) -> int:
    """Train with the flags given (on a preset, if one is named), then register the model."""
    import torch

    from training.hand_orientation.train import TRAINER, train_orientation

    if args.threads:
        torch.set_num_threads(args.threads)
    init = args.init
    if args.imagenet_init:
        if init is not None:
            raise ValueError("give either --init FILE or --imagenet-init, not both")
        from pipelines.ct_body_part.vgg16_init import default_init_path

        init = default_init_path(node.model_dir)
    chosen: dict[str, Any] = {
        "data_dir": args.data,
        "labels_csv": args.labels,
        "synthetic_films": args.synthetic,
        "architecture": args.arch,
        "resize": args.resize,
        "crop": args.crop,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "time_limit_s": args.time_limit,
        "fine_tune": args.fine_tune,
        "init_weights": init,
        "rotations_per_film": args.rotations,
        "upright_check_model": args.upright_check,
        "max_tilt_deg": args.max_tilt,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "version": args.version,
        "out_dir": args.out or node.model_dir / PIPELINE,
    }
    config = TRAINER.config(args.preset, **chosen)
    if args.imagenet_init and config.architecture != "vgg16":
        raise ValueError("--imagenet-init is the VGG16 init: use it with --arch vgg16")
    trained = train_orientation(config)
    report = trained.report
    check = trained.card.training_data.get("upright_check")
    if check:
        node.say(
            f"{check['films_left_out']} films left out: {check['model']} finds them more than "
            f"{check['max_tilt_deg']:g}° from upright"
        )
    node.say(
        f"model {trained.card.version} in {trained.folder}: MAE {report.mae_deg:.2f}°, "
        f"{report.within_4deg_pct:.1f} % within ±4°, four-way accuracy "
        f"{report.quadrant_accuracy_pct:.1f} % ({report.films} held-out films)"
    )
    if args.register:
        node.register_model(trained.folder, activate=args.activate)
    return 0
