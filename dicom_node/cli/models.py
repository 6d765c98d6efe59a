"""``dicom-node models``: the model store (list, import, activate).

A trainer may add a command of its own under ``models`` (``cli.train``); the group's help
names those too.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicom_node.cli import term
from dicom_node.cli.common import Parents, existing_engine, migrated_engine, node_settings


def register(sub: Any, parents: Parents, more: Sequence[str] = ()) -> Any:
    """Add ``models`` and its commands; ``more``: the names of the trainers' commands under
    it (for the group's help). Returns the group's subparsers, for those commands."""
    names = ", ".join(["list", "import", "activate", *more])
    models = sub.add_parser("models", help=f"the model store: {names}")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    p = models_sub.add_parser(
        "list", parents=[parents.common, parents.fmt], help="registered model versions"
    )
    p.add_argument("--pipeline")
    p.set_defaults(func=cmd_models_list)
    p = models_sub.add_parser(
        "import",
        parents=[parents.common],
        help="copy a model folder into the store and register it",
    )
    p.add_argument("folder", type=Path)
    p.add_argument("--activate", action="store_true", help="make it the active version")
    p.set_defaults(func=cmd_models_import)
    p = models_sub.add_parser(
        "activate",
        parents=[parents.common],
        help="make a registered version the one new jobs use",
    )
    p.add_argument("pipeline")
    p.add_argument("version")
    p.set_defaults(func=cmd_models_activate)
    return models_sub


def cmd_models_list(args: argparse.Namespace) -> int:
    from dicom_node.jobs.model_registry import MODEL_FIELDS, list_models

    rows = list_models(existing_engine(args), args.pipeline)
    for row in rows:
        row["active"] = "yes" if row["active"] else ""
        row["sha256"] = row["sha256"] if args.format != "table" else row["sha256"][:12]
    term.render(
        rows,
        args.format,
        ["pipeline", "version", "active", "created_at", "sha256", "metrics"],
        "Models",
        MODEL_FIELDS,
    )
    return term.EXIT_OK


def cmd_models_import(args: argparse.Namespace) -> int:
    from dicom_node.jobs.model_registry import import_model

    settings = node_settings(args)
    engine = migrated_engine(settings)
    card = import_model(engine, args.folder, settings.model_dir, activate=args.activate)
    state = "active" if args.activate else "not active: `dicom-node models activate`"
    term.out.print(f"{card.pipeline} {card.version} imported into {settings.model_dir} ({state})")
    return term.EXIT_OK


def cmd_models_activate(args: argparse.Namespace) -> int:
    from dicom_node.jobs.model_registry import activate_model

    activate_model(existing_engine(args), args.pipeline, args.version)
    term.out.print(f"{args.pipeline} {args.version} is active; new jobs use it")
    return term.EXIT_OK
