"""``dicom-node retrain``: ``run`` a retraining run now, list the ``runs``.

``retrain run PIPELINE`` takes the pipeline's ``[[retraining]]`` entry (or the defaults)
with the options given on top, runs it in this process (training and evaluation in
low-priority child processes; ``dicom_node/retraining``) with a progress bar, and prints
the gate's decision. ``retrain runs`` lists the ``retraining_runs`` rows as a table, JSON
or CSV, newest first.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError
from rich.markup import escape

from dicom_node.cli import term
from dicom_node.cli.common import Parents, existing_engine, migrated_engine, node_settings
from dicom_node.errors import NodeError

TABLE_COLUMNS = (
    "id",
    "pipeline",
    "state",
    "trigger",
    "source",
    "started_at",
    "studies",
    "instances",
    "candidate_version",
    "active_version",
    "decision",
    "reason",
    "error",
)


def _names(text: str) -> list[str]:
    """``--modality CR,DX`` or ``--modality CR --modality DX``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def register(sub: Any, parents: Parents) -> None:
    retrain = sub.add_parser(
        "retrain", help="retrain a pipeline's model from the site's studies: run, runs"
    )
    retrain_sub = retrain.add_subparsers(dest="retrain_command", required=True)
    p = retrain_sub.add_parser(
        "run",
        parents=[parents.common],
        help="one retraining run now: select, train, evaluate, gate",
        description="Retrain PIPELINE's model from the node's archive (or the PACS) with its "
        "[[retraining]] entry's settings and these options on top. The candidate is "
        "registered; it is activated only if it passes the gate.",
    )
    p.add_argument("pipeline")
    p.add_argument("--source", choices=["archive", "pacs"])
    p.add_argument("--modality", type=_names, action="extend", help="e.g. CR,DX")
    p.add_argument("--body-part", type=_names, action="extend", help="e.g. HAND")
    p.add_argument("--since", help="first study date, YYYYMMDD")
    p.add_argument("--until", help="last study date, YYYYMMDD")
    p.add_argument("--max-studies", type=int, help="at most N studies, newest first")
    p.add_argument("--preset", help="the trainer's preset")
    p.add_argument("--threads", type=int, help="CPU threads of the training process")
    p.add_argument(
        "--no-activate",
        action="store_true",
        help="register the candidate but do not activate it, even if it passes the gate",
    )
    p.set_defaults(func=cmd_retrain_run)
    p = retrain_sub.add_parser(
        "runs", parents=[parents.common, parents.fmt], help="list retraining runs, newest first"
    )
    p.add_argument("--pipeline")
    p.set_defaults(func=cmd_retrain_runs)


def cmd_retrain_run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from dicom_node.retraining.runner import STEPS, Retrainer, entry_for

    settings = node_settings(args)
    changes: dict[str, Any] = {
        "source": args.source,
        "modality": tuple(args.modality) if args.modality else None,
        "body_part": tuple(args.body_part) if args.body_part else None,
        "since": args.since,
        "until": args.until,
        "max_studies": args.max_studies,
        "preset": args.preset,
        "threads": args.threads,
        "auto_activate": False if args.no_activate else None,
    }
    try:
        entry = entry_for(settings, args.pipeline, **changes)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise NodeError("retrain run: " + "; ".join(problems)) from None
    engine = migrated_engine(settings)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=term.console, transient=False) as progress:
        task = progress.add_task(f"retraining {args.pipeline}", total=len(STEPS), status="")

        def report(step: str, detail: str) -> None:
            progress.update(task, completed=STEPS.index(step), description=step, status=detail)

        outcome = Retrainer(settings, engine).run(entry, progress=report)
        progress.update(task, completed=len(STEPS), description="done", status="")
    term.out.print(
        f"run {outcome.run_id}: {args.pipeline} {outcome.candidate_version} "
        f"[bold]{outcome.decision}[/bold]: {escape(outcome.reason)}"
    )
    term.out.print(f"active {args.pipeline} model: {outcome.active_version}")
    return term.EXIT_OK


def cmd_retrain_runs(args: argparse.Namespace) -> int:
    from dicom_node.retraining.runs import RUN_FIELDS, list_runs

    rows = list_runs(existing_engine(args), args.pipeline)
    term.render(rows, args.format, TABLE_COLUMNS, "Retraining runs", RUN_FIELDS)
    return term.EXIT_OK
