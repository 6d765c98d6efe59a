"""``python -m dicom_node.retraining.low_priority --nice N --parent PID -- COMMAND ...``

Lowers this process's priority to niceness ``N`` (never raises it), asks Linux to end it
with SIGTERM when the process that started it dies (``PR_SET_PDEATHSIG``, so that a
killed node leaves no training running on unrecorded), then replaces itself with
``COMMAND`` (``exec``: the same pid, so the run's row names the training process itself).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
#: Exit status when the parent died before the command could start.
PARENT_GONE = 75


def lower_priority(niceness: int) -> int:
    """Raise the niceness to at least ``niceness``; the niceness now."""
    current = os.nice(0)
    return os.nice(niceness - current) if niceness > current else current


def die_with_parent() -> bool:
    """Ask the kernel for SIGTERM when the parent ends; False where that cannot be asked."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)) == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dicom_node.retraining.low_priority")
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--parent", type=int, required=True, help="the pid that started it")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    lower_priority(args.nice)
    die_with_parent()
    if os.getppid() != args.parent:  # the parent died before the request took effect
        return PARENT_GONE
    os.execvp(command[0], command)
    return 0  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main())
