"""``dicom-node``: the one place that builds settings, configures logging and wires parts.

One module per command group: ``serve`` (serve, worker), ``admin`` (db, config),
``log`` (studies, jobs, deliveries, results), ``models``, ``train`` (every trainer's
commands, found through the trainers' registry), ``retrain`` (retraining runs), ``demo``
and ``net`` (echo, send); they
share ``common`` (options, settings, database) and print through ``term``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.markup import escape

from dicom_node import __version__
from dicom_node.cli import admin, demo, log, models, net, retrain, serve, term, train
from dicom_node.cli.common import Parents, configure_logging
from dicom_node.cli.term import EXIT_FAILURE, EXIT_USAGE
from dicom_node.errors import NodeError
from dicom_node.settings import SettingsError

__all__ = ["build_parser", "configure_logging", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-node",
        description="A DICOM node beside the PACS: receives studies, routes series to AI pipelines, logs results.",
    )
    parser.add_argument("--version", action="version", version=f"dicom-node {__version__}")
    parents = Parents.make()
    sub = parser.add_subparsers(dest="command", required=True)
    trainers = train.load_trainers()
    serve.register(sub, parents)
    admin.register(sub, parents)
    log.register(sub, parents)
    models_sub = models.register(sub, parents, train.models_command_names(trainers))
    train.register(sub, parents, models_sub, trainers)
    retrain.register(sub, parents)
    demo.register(sub, parents.common)
    net.register(sub, parents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "log_level", "INFO"))
    try:
        return int(args.func(args))
    except SettingsError as exc:
        term.console.print(f"[red]configuration error in {escape(exc.source)}[/]")
        for problem in exc.problems:
            term.console.print(f"  - {escape(problem)}")
        return EXIT_USAGE
    except (NodeError, ValueError, OSError) as exc:
        term.console.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
