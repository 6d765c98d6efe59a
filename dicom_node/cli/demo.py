"""``dicom-node demo``: the command; the demo itself is ``dicom_node.demo``.

The command's own options are the work folder, the seed, the PACS and how long to run;
each pipeline's demo entry adds its own (``add_options``).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from dicom_node.settings import NodeSettings


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from dicom_node.demo.entries import load_demo_entries

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="synthetic hand studies and a CT through a local Orthanc and the node, end to end",
    )
    p.add_argument("--workdir", type=Path, default=Path("var/demo"))
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument(
        "--orthanc",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use a local Orthanc as the PACS (default: when installed)",
    )
    entries, _problems = load_demo_entries()  # run_demo reports the problems
    for entry in entries:
        entry.add_options(p)
    p.add_argument(
        "--train",
        action="store_true",
        help="train demo-sized models where none is active, instead of importing the "
        "models shipped with dicom-node",
    )
    p.add_argument("--keep-running", action="store_true")
    p.add_argument("--timeout", type=float, default=900.0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from dicom_node.cli import term
    from dicom_node.cli.serve import worker_process_main
    from dicom_node.demo.run import DemoOptions, run_demo
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
        seed=args.seed,
        use_orthanc=args.orthanc,
        keep_running=args.keep_running,
        train=args.train,
        timeout_seconds=args.timeout,
        entry_options=args,
    )
    run_demo(options, term.console, spawn)
    return term.EXIT_OK
