"""``benchmarks/ingest.py``: the receiver's CPU time is read from /proc and summarised."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from benchmarks import ingest

# Burns ``seconds`` of CPU, says so, then waits for its stdin to close.
_BUSY = """
import sys, time
end = time.process_time() + {seconds}
while time.process_time() < end:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""


def _process(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_cpu_seconds_counts_a_busy_process_and_not_an_idle_one() -> None:
    busy = _process(_BUSY.format(seconds=0.6))
    idle = _process("import sys; sys.stdin.read()")
    try:
        time.sleep(0.5)  # let the idle one finish starting up
        idle_start = ingest.cpu_seconds(idle.pid)
        assert busy.stdout is not None
        assert busy.stdout.readline().strip() == "burnt"
        busy_cpu = ingest.cpu_seconds(busy.pid)
        idle_cpu = ingest.cpu_seconds(idle.pid) - idle_start
    finally:
        for process in (busy, idle):
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=30)
    assert 0.58 <= busy_cpu <= 2.0  # 0.6 s burnt plus start-up; /proc counts in 10 ms ticks
    assert idle_cpu < 0.1


def _run(target: str, seconds: float, cpu: float | None) -> ingest.Run:
    return ingest.Run(target, "ct", 1, 300, 300 * 525_000, seconds, 300, 0, True, "", cpu)


def test_summary_reports_cpu_per_image_and_share_of_the_wall_clock() -> None:
    runs = [
        _run("pynetdicom", 2.0, 1.8),
        _run("pynetdicom", 1.0, 0.9),
        _run("pynetdicom", 3.0, 2.4),
    ]
    (row,) = ingest.summarise(runs)
    assert row["seconds"] == 2.0
    assert row["receiver_cpu_seconds"] == 1.8
    assert row["receiver_cpu_ms_per_image"] == pytest.approx(6.0)
    assert row["receiver_cpu_share"] == pytest.approx(0.9)


def test_summary_without_cpu_figures_says_nan() -> None:
    (row,) = ingest.summarise([_run("orthanc", 2.0, None)])
    assert row["receiver_cpu_ms_per_image"] != row["receiver_cpu_ms_per_image"]  # NaN
