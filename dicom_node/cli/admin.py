"""``dicom-node db upgrade`` and ``dicom-node config check``: the database and the settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape

from dicom_node.cli import term
from dicom_node.cli.common import Parents, migrated_engine, node_settings
from dicom_node.settings import SettingsError, load_settings


def register(sub: Any, parents: Parents) -> None:
    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    p = db.add_parser("upgrade", parents=[parents.common], help="apply migrations")
    p.set_defaults(func=cmd_db_upgrade)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", required=True
    )
    p = cfg.add_parser("check", parents=[parents.common], help="validate a settings file")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_config_check)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from dicom_node.db import migrate

    engine = migrated_engine(node_settings(args))
    term.out.print(f"database at revision {migrate.current_revision(engine)}")
    return term.EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file)
    except SettingsError as exc:
        term.console.print(f"[red]{escape(exc.source)}: {len(exc.problems)} problem(s)[/]")
        for problem in exc.problems:
            term.console.print(f"  - {escape(problem)}")
        return term.EXIT_FAILURE
    from pipelines import PipelineRegistry

    named = {name for route in settings.routes for name in route.pipelines}
    named |= {r.when_headers_unclear for r in settings.routes if r.when_headers_unclear}
    registry = PipelineRegistry(settings.extra_pipelines, settings.pipeline_options)
    problems = registry.problems(sorted(named | set(settings.pipeline_options)))
    problems += registry.order_problems(named)
    if problems:
        term.console.print(f"[red]{escape(str(args.file))}: {len(problems)} problem(s)[/]")
        for problem in problems:
            term.console.print(f"  - {escape(problem)}")
        return term.EXIT_FAILURE
    term.out.print(
        f"{args.file}: OK — AE {settings.ae_title} on port {settings.port}, "
        f"{len(settings.routes)} route(s), {len(settings.destinations)} destination(s)"
    )
    return term.EXIT_OK
