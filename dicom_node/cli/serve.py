"""``dicom-node serve`` and ``dicom-node worker``: running the node."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any

from dicom_node import __version__
from dicom_node.cli import term
from dicom_node.cli.common import Parents, configure_logging, node_settings
from dicom_node.settings import NodeSettings

logger = logging.getLogger("dicom_node.cli")


def register(sub: Any, parents: Parents) -> None:
    p = sub.add_parser(
        "serve", parents=[parents.common], help="run receiver, scheduler and workers"
    )
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser(
        "worker", parents=[parents.common], help="run a worker (more of them scale out)"
    )
    p.add_argument("--once", action="store_true", help="run at most one job, then exit")
    p.set_defaults(func=cmd_worker)


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
        term.out.print(f"job {outcome.job_id}: {outcome.state}" if outcome else "no job to run")
        return term.EXIT_OK
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if parent_pid is not None:
        threading.Thread(
            target=_stop_when_orphaned, args=(parent_pid, stop), name="parent-watch", daemon=True
        ).start()
    worker.run_forever(stop)
    return term.EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from dicom_node.flow import Node, spawn_context

    settings = node_settings(args)
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
    term.console.print(
        f"[bold]dicom-node {__version__}[/] receiving as [cyan]{settings.ae_title}[/] on "
        f"{settings.bind_address}:{node.receiver.port}; storage {settings.storage_dir}; "
        f"{len(node.workers)} worker(s). Send with: "
        f"storescu -aec {settings.ae_title} HOST {node.receiver.port} FILES  (Ctrl-C stops)"
    )
    try:
        stop.wait()
    finally:
        node.stop()
    return term.EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    settings = node_settings(args)
    return _run_worker(settings, once=args.once)
