"""``dicom-node demo``: the command; the demo itself is ``dicom_node.demo``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from dicom_node.settings import NodeSettings


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="synthetic hand studies and a CT through a local Orthanc and the node, end to end",
    )
    p.add_argument("--workdir", type=Path, default=Path("var/demo"))
    p.add_argument("--studies", type=int, default=4)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--film-scale", type=float, default=1.0, help="1.0: the paper's detector sizes")
    p.add_argument(
        "--orthanc",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use a local Orthanc as the PACS (default: when installed)",
    )
    p.add_argument(
        "--preset", default="demo", help="hand_orientation training preset when no model is active"
    )
    p.add_argument(
        "--ct-slices",
        type=int,
        default=120,
        help="slices of the synthetic chest-abdomen-pelvis CT series (0: no CT part)",
    )
    p.add_argument("--ct-size", type=int, default=512, help="rows and columns of the CT slices")
    p.add_argument(
        "--ct-preset", default="demo", help="ct_body_part training preset when no model is active"
    )
    p.add_argument("--keep-running", action="store_true")
    p.add_argument("--timeout", type=float, default=900.0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from dicom_node.cli import EXIT_OK, console, worker_process_main
    from dicom_node.demo import DemoOptions, run_demo
    from dicom_node.flow import spawn_context

    if args.log_level == "INFO":  # the demo speaks through its own progress and tables
        logging.getLogger().setLevel(logging.WARNING)
    context = spawn_context()

    def spawn(settings: NodeSettings) -> Any:
        return context.Process(
            target=worker_process_main,
            args=(settings, "WARNING", os.getpid()),
            name="worker",
            daemon=False,
        )

    options = DemoOptions(
        workdir=args.workdir,
        studies=args.studies,
        seed=args.seed,
        film_scale=args.film_scale,
        use_orthanc=args.orthanc,
        training_preset=args.preset,
        ct_slices=args.ct_slices,
        ct_size=args.ct_size,
        ct_training_preset=args.ct_preset,
        keep_running=args.keep_running,
        timeout_seconds=args.timeout,
    )
    run_demo(options, console, spawn)
    return EXIT_OK
