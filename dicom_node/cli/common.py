"""What every command group shares: the common options, logging, settings and the database."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicom_node.errors import NodeError
from dicom_node.settings import NodeSettings, load_settings

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
CONFIG_HELP = "TOML settings file (DICOM_NODE_* variables override it)"


@dataclass(frozen=True)
class Parents:
    """The parent parsers a command takes its shared options from."""

    #: ``--config`` and ``--log-level``.
    common: argparse.ArgumentParser
    #: The same for a sub-subcommand (``jobs retry``): argparse copies a subparser's
    #: defaults over what the parent parsed, so without SUPPRESS ``jobs --config X retry 1``
    #: would lose --config.
    nested: argparse.ArgumentParser
    #: ``--format table|json|csv``.
    fmt: argparse.ArgumentParser

    @classmethod
    def make(cls) -> Parents:
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--config", type=Path, help=CONFIG_HELP)
        common.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
        nested = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
        nested.add_argument("--config", type=Path, help=CONFIG_HELP)
        nested.add_argument("--log-level", choices=LOG_LEVELS)
        fmt = argparse.ArgumentParser(add_help=False)
        fmt.add_argument("--format", choices=["table", "json", "csv"], default="table")
        return cls(common=common, nested=nested, fmt=fmt)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    # pynetdicom is chatty at INFO (a line per message); keep its warnings.
    logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: already running"
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # a line per copied module
    logging.getLogger("alembic").setLevel(logging.WARNING)


def node_settings(args: argparse.Namespace) -> NodeSettings:
    """The settings of ``--config`` (or the defaults), with DICOM_NODE_* on top."""
    return load_settings(args.config)


def existing_engine(args: argparse.Namespace) -> Any:
    """The node's database as it is; ``NodeError`` when it is absent or has no schema yet
    (for commands that only read, or change rows of a running node)."""
    from sqlalchemy.engine import make_url

    from dicom_node.db import migrate
    from dicom_node.db.engine import make_engine

    settings = node_settings(args)
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        hint = "" if args.config else " (no --config given: the default is relative to this folder)"
        raise NodeError(f"no database at {url.database}{hint}")
    engine = make_engine(settings.database_url)
    if migrate.current_revision(engine) is None:
        raise NodeError(
            "the database has no schema yet: run `dicom-node db upgrade` or `dicom-node serve`"
        )
    return engine


def migrated_engine(settings: NodeSettings) -> Any:
    """The database, created or brought up to date first (for commands that write to it)."""
    from dicom_node.db import migrate
    from dicom_node.db.engine import make_engine

    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    return engine
