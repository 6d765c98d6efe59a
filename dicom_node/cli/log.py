"""The results log: ``studies``, ``jobs`` (``jobs retry``), ``deliveries`` (``deliveries
retry``) and ``results``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from dicom_node.cli import term
from dicom_node.cli.common import Parents, existing_engine, node_settings
from dicom_node.errors import NodeError


def register(sub: Any, parents: Parents) -> None:
    listing = [parents.common, parents.fmt]
    p = sub.add_parser("studies", parents=listing, help="list studies")
    p.add_argument("--state", choices=["receiving", "stable"])
    p.set_defaults(func=cmd_studies)

    jobs = sub.add_parser("jobs", parents=listing, help="list jobs; `jobs retry ID` re-runs one")
    jobs.add_argument("--state", choices=["waiting", "queued", "running", "done", "failed"])
    jobs.set_defaults(func=cmd_jobs)
    jobs_sub = jobs.add_subparsers(dest="jobs_command")
    p = jobs_sub.add_parser(
        "retry", parents=[parents.nested], help="queue a failed or done job again"
    )
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_jobs_retry)

    deliveries = sub.add_parser(
        "deliveries",
        parents=listing,
        help="list deliveries of results; `deliveries retry ID... | --all-dead` replays dead ones",
    )
    deliveries.add_argument("--state", choices=["pending", "sent", "dead"])
    deliveries.set_defaults(func=cmd_deliveries)
    deliveries_sub = deliveries.add_subparsers(dest="deliveries_command")
    p = deliveries_sub.add_parser(
        "retry", parents=[parents.nested], help="send dead deliveries again"
    )
    p.add_argument("ids", type=int, nargs="*", metavar="ID")
    p.add_argument("--all-dead", action="store_true", help="every dead delivery")
    p.set_defaults(func=cmd_deliveries_retry)

    p = sub.add_parser("results", parents=listing, help="query the results log")
    p.add_argument("--study", help="StudyInstanceUID")
    p.add_argument("--pipeline")
    p.add_argument("--since", type=parse_since, help="ISO date or date-time (UTC unless given)")
    p.set_defaults(func=cmd_results)


def cmd_studies(args: argparse.Namespace) -> int:
    from dicom_node.jobs.results_log import STUDY_FIELDS, list_studies

    rows = list_studies(existing_engine(args), state=args.state)
    term.render(
        rows,
        args.format,
        ["study_instance_uid", "state", "series", "instances", "last_received_at", "stable_at"],
        "Studies",
        STUDY_FIELDS,
    )
    return term.EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    from dicom_node.jobs.results_log import JOB_FIELDS, list_jobs

    rows = list_jobs(existing_engine(args), state=args.state)
    term.render(
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
    return term.EXIT_OK


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    from dicom_node.jobs.queue import JobQueue

    settings = node_settings(args)
    JobQueue(existing_engine(args), settings.queue).retry(args.id)
    term.out.print(f"job {args.id} queued again")
    return term.EXIT_OK


def cmd_deliveries(args: argparse.Namespace) -> int:
    from dicom_node.jobs.results_log import DELIVERY_FIELDS, list_deliveries

    rows = list_deliveries(existing_engine(args), state=args.state)
    term.render(
        rows,
        args.format,
        ["id", "state", "destination", "kind", "sop_instance_uid", "attempts", "last_error"],
        "Deliveries",
        DELIVERY_FIELDS,
    )
    return term.EXIT_OK


def cmd_deliveries_retry(args: argparse.Namespace) -> int:
    from dicom_node.output.deliver import replay_dead

    if bool(args.ids) == bool(args.all_dead):
        raise NodeError("give delivery IDs or --all-dead (one of the two)")
    count = replay_dead(existing_engine(args), None if args.all_dead else list(args.ids))
    term.out.print(f"{count} dead deliver{'y' if count == 1 else 'ies'} queued again")
    if args.ids and count < len(args.ids):
        term.console.print("only dead deliveries are replayed; the others were left as they are")
    return term.EXIT_OK


def parse_since(text: str) -> datetime:
    """``--since``: an ISO date or date-time, UTC unless it names its zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date (YYYY-MM-DD[THH:MM])"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cmd_results(args: argparse.Namespace) -> int:
    from dicom_node.jobs.results_log import RESULT_FIELDS, list_results

    rows = list_results(
        existing_engine(args), study=args.study, pipeline=args.pipeline, since=args.since
    )
    term.render(
        rows,
        args.format,
        ["id", "created_at", "pipeline", "study_instance_uid", "measurements", "deliveries"],
        "Results",
        RESULT_FIELDS,
    )
    return term.EXIT_OK
