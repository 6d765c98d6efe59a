"""``dicom-node train bone_age``: this trainer's command, as the node loads it.

The node builds its command line from this module on every call (through
``dicom_node.trainers``), so it imports neither torch nor numpy: the handler imports the
trainer when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.bone_age.train import TrainConfig
    from training.contract import NodeContext, Retraining, Trainer, TrainerCommands
    from training.demo_entry import DemoEntry

PIPELINE = "bone_age"


def register(commands: TrainerCommands) -> None:
    p = commands.add_train_command(
        PIPELINE,
        help="bone age in months from hand films (paper 002, VGG16 + attention map + sex)",
        description="Train from --data DIR --labels CSV (file or id, boneage, male), the RSNA "
        "bone-age layout (--rsna DIR: id,boneage,male and <id>.png), or --synthetic N "
        "paediatric hands. The model folder goes into the store and is registered "
        "(--activate makes new jobs use it).",
    )
    p.add_argument(
        "--preset",
        help="paper (VGG16 at 500, ImageNet init, a GPU run) | cpu (the CPU variant) | demo | smoke",
    )
    p.add_argument("--data", type=Path, help="folder of films (DICOM or PNG), with --labels")
    p.add_argument(
        "--labels", type=Path, help="CSV: file, id or sop_instance_uid; boneage (months); male"
    )
    p.add_argument("--rsna", type=Path, help="a folder in the RSNA bone-age layout")
    p.add_argument("--synthetic", type=int, help="train on N synthetic paediatric hands")
    p.add_argument("--max-films", type=int, help="use at most N films of --data/--rsna")
    p.add_argument("--arch", help="vgg16 (the paper's), vgg_small (CPU variant) or vgg_tiny")
    p.add_argument("--input-size", type=int, help="input side in pixels (paper: 500)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--time-limit", type=float, help="stop training after this many seconds")
    p.add_argument(
        "--imagenet-init",
        action="store_true",
        help="vgg16: start from <model_dir>/_init/vgg16_imagenet.pt "
        "(`dicom-node models vgg16-init` makes it); the paper preset uses it by default",
    )
    p.add_argument("--init", type=Path, help="the converted ImageNet VGG16 weights file")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="start from random weights and train the whole network",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--version")
    p.add_argument("--out", type=Path, help="parent folder of the model folder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-register", dest="register", action="store_false")
    p.add_argument("--activate", action="store_true")
    p.set_defaults(handler=train_command)


def trainer() -> Trainer[TrainConfig]:
    from training.bone_age.train import TRAINER

    return TRAINER


def demo_entry() -> DemoEntry | None:
    return None  # bone_age has no part in `dicom-node demo` yet


def retraining() -> Retraining:
    from training.bone_age.retraining import RETRAINING

    return RETRAINING


def chosen_settings(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """The config settings the flags name (None: the preset's)."""
    if args.rsna is not None and args.data is not None:
        raise ValueError("give either --rsna DIR or --data DIR --labels CSV, not both")
    source = None
    if args.rsna is not None:
        source = "rsna"
    elif args.data is not None:
        if args.labels is None:
            raise ValueError("--data needs --labels CSV (file or id, boneage, male)")
        source = "folder"
    elif args.synthetic is not None:
        source = "synthetic"
    init = args.init
    if args.imagenet_init and init is None:
        from pipelines.ct_body_part.vgg16_init import default_init_path

        init = default_init_path(model_dir)
    chosen: dict[str, Any] = {
        "source": source,
        "data_dir": args.rsna or args.data,
        "labels_csv": args.labels,
        "synthetic_films": args.synthetic,
        "max_films": args.max_films,
        "architecture": args.arch,
        "input_size": args.input_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "time_limit_s": args.time_limit,
        "init_weights": init,
        "seed": args.seed,
        "version": args.version,
        "out_dir": args.out or model_dir / PIPELINE,
    }
    if args.random_init:
        chosen.update(backbone_init="random", freeze_backbone=False, init_weights=None)
    return chosen


def train_command(args: argparse.Namespace, node: NodeContext) -> int:
    """Train with the flags given (on a preset, if one is named), then register the model."""
    import torch

    from training.bone_age.train import TRAINER, train_bone_age

    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = chosen_settings(args, node.model_dir)
    config = TRAINER.config(args.preset, **chosen)
    if config.backbone_init == "imagenet" and config.init_weights is None:
        from dataclasses import replace

        from pipelines.ct_body_part.vgg16_init import default_init_path

        config = replace(config, init_weights=default_init_path(node.model_dir))
    trained = train_bone_age(config)
    report = trained.report
    by_sex = ", ".join(
        f"{label} {value:.1f}"
        for label, value in (("boys", report.mae_male_months), ("girls", report.mae_female_months))
        if value is not None
    )
    node.say(
        f"model {trained.card.version} in {trained.folder}: MAE {report.mae_months:.1f} months"
        f"{f' ({by_sex})' if by_sex else ''} on {report.films} held-out films "
        f"(labels' SD {report.label_sd_months:.1f})"
    )
    if args.register:
        node.register_model(trained.folder, activate=args.activate)
    return 0
