"""The run's child processes: training and evaluation, each at low priority.

``run_child`` starts a command through ``low_priority`` (niceness, dies with its parent,
same pid after ``exec``), with its own CPU thread count (``OMP_NUM_THREADS`` and the like;
the trainers also take ``--threads``), its output appended to a log file, and waits for it
while the rest of the node goes on. The pid goes to ``on_start`` (the run's row). A
``cancel`` event (the node stopping) ends the child; a child that fails, is killed or is
cancelled raises ``ChildFailed`` with its exit status or signal and its log's last lines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import dicom_node
from dicom_node.errors import NodeError

POLL_SECONDS = 0.5
TERMINATE_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 12
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: The folder that holds ``dicom_node`` (and ``pipelines`` and ``training`` beside it).
SOURCE_ROOT = Path(dicom_node.__file__).resolve().parents[1]


class ChildFailed(NodeError):
    """A run's training or evaluation process failed, was killed or was stopped."""


def python_module(module: str, *arguments: str) -> list[str]:
    return [sys.executable, "-m", module, *arguments]


def low_priority(command: Sequence[str], nice: int) -> list[str]:
    """``command`` wrapped so that it runs at niceness ``nice`` and dies with this process."""
    wrapper = ["--nice", str(nice), "--parent", str(os.getpid()), "--"]
    return python_module("dicom_node.retraining.low_priority", *wrapper, *command)


def run_child(
    what: str,
    command: Sequence[str],
    *,
    nice: int,
    threads: int,
    log_path: Path,
    on_start: Callable[[int], None],
    cancel: threading.Event | None = None,
    environment: Mapping[str, str] | None = None,
) -> None:
    """Run ``command`` at low priority to its end; ``ChildFailed`` unless it exits 0."""
    env = dict(os.environ)
    env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.update(environment or {})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            low_priority(command, nice),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        on_start(child.pid)
        status = _wait(child, cancel)
    except BaseException:
        _end(child)
        raise
    if status is None:
        raise ChildFailed(f"the {what} process {child.pid} was stopped: the node is stopping")
    if status != 0:
        if status < 0:
            name = signal.Signals(-status).name if -status in signal.valid_signals() else -status
            how = f"was killed by signal {name}"
        else:
            how = f"exited with status {status}"
        raise ChildFailed(f"the {what} process {child.pid} {how}; {log_path}:\n{_tail(log_path)}")


def _wait(child: subprocess.Popen[bytes], cancel: threading.Event | None) -> int | None:
    """The child's exit status, or None when ``cancel`` was set (the child is ended)."""
    while True:
        try:
            return child.wait(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.is_set():
                _end(child)
                return None


def _end(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(lines[-LOG_TAIL_LINES:])
