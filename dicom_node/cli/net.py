"""``dicom-node echo`` and ``dicom-node send``: the node as a DICOM client (SCU)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dicom_node.cli import term
from dicom_node.cli.common import Parents


def register(sub: Any, parents: Parents) -> None:
    p = sub.add_parser("echo", parents=[parents.common], help="C-ECHO a DICOM peer")
    p.add_argument("target", metavar="HOST:PORT")
    p.add_argument("--aet", default="DICOM_NODE", help="calling AE title")
    p.add_argument("--aec", default="ANY-SCP", help="called AE title")
    p.set_defaults(func=cmd_echo)

    p = sub.add_parser("send", parents=[parents.common], help="C-STORE files and folders to a peer")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--to", required=True, metavar="HOST:PORT")
    p.add_argument("--aet", default="DICOM_NODE", help="calling AE title")
    p.add_argument("--aec", default="ANY-SCP", help="called AE title")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_send)


def cmd_echo(args: argparse.Namespace) -> int:
    from dicom_node.net.netutil import parse_host_port
    from dicom_node.net.scu import echo

    host, port = parse_host_port(args.target)
    status = echo(host, port, calling_aet=args.aet, called_aet=args.aec)
    if status == 0:
        term.out.print(f"C-ECHO {args.aec}@{host}:{port}: success")
        return term.EXIT_OK
    term.out.print(f"C-ECHO {args.aec}@{host}:{port}: status 0x{status:04X}")
    return term.EXIT_FAILURE


def cmd_send(args: argparse.Namespace) -> int:
    from dicom_node.net.netutil import parse_host_port
    from dicom_node.net.scu import SendReport, inspect_files, send_files

    host, port = parse_host_port(args.to)
    report = SendReport()
    files = inspect_files(args.paths, report)
    for path, why in report.skipped:
        term.console.print(f"[yellow]skipped[/] {path}: {why}")
    if not files:
        term.console.print("[red]nothing to send[/]")
        return term.EXIT_FAILURE
    total = sum(f.size_bytes for f in files)
    with Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=term.console,
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
        term.console.print(f"[red]failed[/] {path}: {why}")
    term.out.print(f"sent {report.sent} of {len(files)} file(s), {report.bytes_sent / 1e6:.1f} MB")
    return term.EXIT_OK if not report.failed else term.EXIT_FAILURE
