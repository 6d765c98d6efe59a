"""``dicom-node``: the one place that builds settings, configures logging and wires parts."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from dicom_node import __version__
from dicom_node.errors import NodeError
from dicom_node.settings import NodeSettings, SettingsError, load_settings

logger = logging.getLogger("dicom_node.cli")
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


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


def _settings(args: argparse.Namespace) -> NodeSettings:
    return load_settings(args.config)


# -- serve and worker ------------------------------------------------------------------------


def worker_process_main(settings: NodeSettings, log_level: str, parent_pid: int) -> None:
    """Entry point of a worker process started by ``serve`` (spawned, so importable)."""
    configure_logging(log_level)
    _run_worker(settings, parent_pid=parent_pid)


def _stop_when_orphaned(parent_pid: int, stop: threading.Event) -> None:
    """A worker of ``serve`` ends when ``serve`` is gone (even after kill -9)."""
    while not stop.wait(1.0):
        if os.getppid() != parent_pid:
            logger.warning("serve process %d is gone; worker stopping", parent_pid)
            stop.set()


def _run_worker(settings: NodeSettings, once: bool = False, parent_pid: int | None = None) -> int:
    from dicom_node.flow import NodeParts

    parts = NodeParts.open(settings)
    worker = parts.worker()
    if once:
        outcome = worker.run_once()
        out.print(f"job {outcome.job_id}: {outcome.state}" if outcome else "no job to run")
        return EXIT_OK
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if parent_pid is not None:
        threading.Thread(
            target=_stop_when_orphaned, args=(parent_pid, stop), name="parent-watch", daemon=True
        ).start()
    worker.run_forever(stop)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from dicom_node.flow import Node, spawn_context

    settings = _settings(args)
    context = spawn_context()

    def spawn() -> Any:
        return context.Process(
            target=worker_process_main,
            args=(settings, args.log_level, os.getpid()),
            name="worker",
            daemon=False,
        )

    node = Node(settings, spawn_worker=spawn)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node.start()
    console.print(
        f"[bold]dicom-node {__version__}[/] receiving as [cyan]{settings.ae_title}[/] on "
        f"{settings.bind_address}:{node.receiver.port}; storage {settings.storage_dir}; "
        f"{len(node.workers)} worker(s). Send with: "
        f"storescu -aec {settings.ae_title} HOST {node.receiver.port} FILES  (Ctrl-C stops)"
    )
    try:
        stop.wait()
    finally:
        node.stop()
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return _run_worker(settings, once=args.once)


# -- database and config -------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from dicom_node.db import migrate
    from dicom_node.db.engine import make_engine

    settings = _settings(args)
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    out.print(f"database at revision {migrate.current_revision(engine)}")
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file)
    except SettingsError as exc:
        console.print(f"[red]{escape(exc.source)}: {len(exc.problems)} problem(s)[/]")
        for problem in exc.problems:
            console.print(f"  - {escape(problem)}")
        return EXIT_FAILURE
    out.print(
        f"{args.file}: OK — AE {settings.ae_title} on port {settings.port}, "
        f"{len(settings.routes)} route(s), {len(settings.destinations)} destination(s)"
    )
    return EXIT_OK


# -- results log ------------------------------------------------------------------------------


def _render(
    rows: list[dict[str, Any]],
    fmt: str,
    columns: Sequence[str],
    title: str,
    fields: Sequence[str],
) -> None:
    """Print rows as JSON, CSV (every field) or a table (``columns`` only)."""
    if fmt == "json":
        out.print_json(json.dumps(rows, default=str))
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(fields))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
            )
        sys.stdout.write(buffer.getvalue())
        return
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*["" if row.get(c) is None else escape(str(row.get(c))) for c in columns])
    out.print(table)
    if not rows:
        out.print("(none)")


def _engine(args: argparse.Namespace) -> Any:
    from sqlalchemy.engine import make_url

    from dicom_node.db import migrate
    from dicom_node.db.engine import make_engine

    settings = _settings(args)
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


def cmd_studies(args: argparse.Namespace) -> int:
    from dicom_node.results_log import STUDY_FIELDS, list_studies

    rows = list_studies(_engine(args), state=args.state)
    _render(
        rows,
        args.format,
        ["study_instance_uid", "state", "series", "instances", "last_received_at", "stable_at"],
        "Studies",
        STUDY_FIELDS,
    )
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    from dicom_node.results_log import JOB_FIELDS, list_jobs

    rows = list_jobs(_engine(args), state=args.state)
    _render(
        rows,
        args.format,
        [
            "id",
            "state",
            "pipeline",
            "model_version",
            "series_instance_uid",
            "attempts",
            "run_after",
            "last_error",
        ],
        "Jobs",
        JOB_FIELDS,
    )
    return EXIT_OK


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    from dicom_node.queue import JobQueue

    settings = _settings(args)
    JobQueue(_engine(args), settings.queue).retry(args.id)
    out.print(f"job {args.id} queued again")
    return EXIT_OK


def cmd_deliveries(args: argparse.Namespace) -> int:
    from dicom_node.results_log import DELIVERY_FIELDS, list_deliveries

    rows = list_deliveries(_engine(args), state=args.state)
    _render(
        rows,
        args.format,
        ["id", "state", "destination", "kind", "sop_instance_uid", "attempts", "last_error"],
        "Deliveries",
        DELIVERY_FIELDS,
    )
    return EXIT_OK


def cmd_deliveries_retry(args: argparse.Namespace) -> int:
    from dicom_node.deliver import replay_dead

    if bool(args.ids) == bool(args.all_dead):
        raise NodeError("give delivery IDs or --all-dead (one of the two)")
    count = replay_dead(_engine(args), None if args.all_dead else list(args.ids))
    out.print(f"{count} dead deliver{'y' if count == 1 else 'ies'} queued again")
    if args.ids and count < len(args.ids):
        console.print("only dead deliveries are replayed; the others were left as they are")
    return EXIT_OK


def _parse_since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date (YYYY-MM-DD[THH:MM])"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cmd_results(args: argparse.Namespace) -> int:
    from dicom_node.results_log import RESULT_FIELDS, list_results

    rows = list_results(_engine(args), study=args.study, pipeline=args.pipeline, since=args.since)
    _render(
        rows,
        args.format,
        ["id", "created_at", "pipeline", "study_instance_uid", "measurements", "deliveries"],
        "Results",
        RESULT_FIELDS,
    )
    return EXIT_OK


# -- SCU ----------------------------------------------------------------------------------------


def cmd_echo(args: argparse.Namespace) -> int:
    from dicom_node.netutil import parse_host_port
    from dicom_node.scu import echo

    host, port = parse_host_port(args.target)
    status = echo(host, port, calling_aet=args.aet, called_aet=args.aec)
    if status == 0:
        out.print(f"C-ECHO {args.aec}@{host}:{port}: success")
        return EXIT_OK
    out.print(f"C-ECHO {args.aec}@{host}:{port}: status 0x{status:04X}")
    return EXIT_FAILURE


def cmd_send(args: argparse.Namespace) -> int:
    from dicom_node.netutil import parse_host_port
    from dicom_node.scu import SendReport, inspect_files, send_files

    host, port = parse_host_port(args.to)
    report = SendReport()
    files = inspect_files(args.paths, report)
    for path, why in report.skipped:
        console.print(f"[yellow]skipped[/] {path}: {why}")
    if not files:
        console.print("[red]nothing to send[/]")
        return EXIT_FAILURE
    total = sum(f.size_bytes for f in files)
    with Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.quiet,
    ) as progress:
        task = progress.add_task("send", total=len(files))
        bytes_task = progress.add_task("bytes", total=total, visible=False)

        def advance(item: Any) -> None:
            progress.advance(task)
            progress.advance(bytes_task, item.size_bytes)

        send_files(
            files,
            host,
            port,
            calling_aet=args.aet,
            called_aet=args.aec,
            report=report,
            on_progress=advance,
        )
    for path, why in report.failed:
        console.print(f"[red]failed[/] {path}: {why}")
    out.print(f"sent {report.sent} of {len(files)} file(s), {report.bytes_sent / 1e6:.1f} MB")
    return EXIT_OK if not report.failed else EXIT_FAILURE


# -- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-node",
        description="A DICOM node beside the PACS: receives studies, routes series to AI pipelines, logs results.",
    )
    parser.add_argument("--version", action="version", version=f"dicom-node {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, help="TOML settings file (DICOM_NODE_* variables override it)"
    )
    common.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    # For a sub-subcommand (`jobs retry`): argparse copies a subparser's defaults over what
    # the parent parsed, so without SUPPRESS `jobs --config X retry 1` would lose --config.
    nested_common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    nested_common.add_argument(
        "--config", type=Path, help="TOML settings file (DICOM_NODE_* variables override it)"
    )
    nested_common.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=["table", "json", "csv"], default="table")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run receiver, scheduler and workers")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("worker", parents=[common], help="run a worker (more of them scale out)")
    p.add_argument("--once", action="store_true", help="run at most one job, then exit")
    p.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    p = db.add_parser("upgrade", parents=[common], help="apply migrations")
    p.set_defaults(func=cmd_db_upgrade)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", required=True
    )
    p = cfg.add_parser("check", parents=[common], help="validate a settings file")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_config_check)

    p = sub.add_parser("studies", parents=[common, fmt], help="list studies")
    p.add_argument("--state", choices=["receiving", "stable"])
    p.set_defaults(func=cmd_studies)

    jobs = sub.add_parser(
        "jobs", parents=[common, fmt], help="list jobs; `jobs retry ID` re-runs one"
    )
    jobs.add_argument("--state", choices=["queued", "running", "done", "failed"])
    jobs.set_defaults(func=cmd_jobs)
    jobs_sub = jobs.add_subparsers(dest="jobs_command")
    p = jobs_sub.add_parser(
        "retry", parents=[nested_common], help="queue a failed or done job again"
    )
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_jobs_retry)

    deliveries = sub.add_parser(
        "deliveries",
        parents=[common, fmt],
        help="list deliveries of results; `deliveries retry ID... | --all-dead` replays dead ones",
    )
    deliveries.add_argument("--state", choices=["pending", "sent", "dead"])
    deliveries.set_defaults(func=cmd_deliveries)
    deliveries_sub = deliveries.add_subparsers(dest="deliveries_command")
    p = deliveries_sub.add_parser(
        "retry", parents=[nested_common], help="send dead deliveries again"
    )
    p.add_argument("ids", type=int, nargs="*", metavar="ID")
    p.add_argument("--all-dead", action="store_true", help="every dead delivery")
    p.set_defaults(func=cmd_deliveries_retry)

    p = sub.add_parser("results", parents=[common, fmt], help="query the results log")
    p.add_argument("--study", help="StudyInstanceUID")
    p.add_argument("--pipeline")
    p.add_argument("--since", type=_parse_since, help="ISO date or date-time (UTC unless given)")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("echo", parents=[common], help="C-ECHO a DICOM peer")
    p.add_argument("target", metavar="HOST:PORT")
    p.add_argument("--aet", default="DICOM_NODE", help="calling AE title")
    p.add_argument("--aec", default="ANY-SCP", help="called AE title")
    p.set_defaults(func=cmd_echo)

    p = sub.add_parser("send", parents=[common], help="C-STORE files and folders to a peer")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--to", required=True, metavar="HOST:PORT")
    p.add_argument("--aet", default="DICOM_NODE", help="calling AE title")
    p.add_argument("--aec", default="ANY-SCP", help="called AE title")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_send)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "log_level", "INFO"))
    try:
        return int(args.func(args))
    except SettingsError as exc:
        console.print(f"[red]configuration error in {escape(exc.source)}[/]")
        for problem in exc.problems:
            console.print(f"  - {escape(problem)}")
        return EXIT_USAGE
    except (NodeError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
