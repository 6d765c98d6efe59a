"""``benchmarks/ingest.py``: the receiver's CPU time is read from /proc and summarised; the
parallel runs (``--associations``) are parsed, planned and compared at the same N."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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


# -- parallel runs: --associations, the plan, the same max PDU, ratios at the same N ----------


def test_associations_option_parses_a_list_and_defaults_to_one() -> None:
    assert ingest.parse_args([]).associations == [1]
    assert ingest.parse_args(["--associations", "1,4,8"]).associations == [1, 4, 8]
    assert ingest.parse_args(["--associations", " 4, 1,4 "]).associations == [4, 1]


@pytest.mark.parametrize("text", ["0", "1,x", str(ingest.MAX_ASSOCIATIONS + 1), ",", "-2"])
def test_associations_option_refuses_what_cannot_run(text: str) -> None:
    with pytest.raises(SystemExit):
        ingest.parse_args(["--associations", text])


def test_every_receiver_gets_the_same_max_pdu() -> None:
    assert ingest.parse_args([]).max_pdu == ingest.DEFAULT_MAX_PDU == 131072
    assert ingest.parse_args(["--max-pdu", "16384"]).max_pdu == 16384
    for out_of_range in ("4095", "131073", str(4 * 1024**2)):
        with pytest.raises(SystemExit):
            ingest.parse_args(["--max-pdu", out_of_range])
    env = ingest.environment(["dicom-node"], "test", 16384, [1, 8])
    assert env["max_pdu_bytes"] == dict.fromkeys(ingest.TARGETS, 16384)
    assert env["orthanc_dicom_threads"] == {"1": 4, "8": 8}


def test_the_node_config_carries_the_max_pdu_and_room_for_the_associations(
    tmp_path: Path,
) -> None:
    config = ingest.write_node_config(tmp_path, 11112, 65536, associations=12)
    text = config.read_text()
    assert "max_pdu_bytes = 65536" in text
    assert "max_associations = 12" in text
    assert "max_associations = 10" in ingest.write_node_config(tmp_path, 1, 4096).read_text()


def test_the_plan_splits_the_series_into_contiguous_near_equal_parts() -> None:
    files = [Path(f"CT_{i:04d}.dcm") for i in range(10)]
    parts = ingest.plan_associations(files, 4)
    assert [len(part) for part in parts] == [3, 3, 2, 2]
    assert [f for part in parts for f in part] == files  # every file once, in order
    assert ingest.plan_associations(files, 1) == [files]
    assert [len(part) for part in ingest.plan_associations(files, 10)] == [1] * 10
    with pytest.raises(ValueError, match="cannot fill"):
        ingest.plan_associations(files[:3], 4)


def test_the_run_order_covers_every_association_count_for_every_target() -> None:
    runs = ingest.plan(["ct"], [1, 4], ["orthanc", "dicom-node"], 2)
    assert runs[:4] == [
        (1, "ct", 1, "orthanc"),
        (1, "ct", 1, "dicom-node"),
        (1, "ct", 4, "orthanc"),
        (1, "ct", 4, "dicom-node"),
    ]
    assert len(runs) == 8 and runs[-1] == (2, "ct", 4, "dicom-node")


def _parallel(target: str, associations: int, seconds: float, sender: float) -> ingest.Run:
    run = _run(target, seconds, seconds / 2)
    run.associations = associations
    run.sender_cpu_seconds = sender
    return run


def test_ratios_divide_by_the_reference_at_the_same_association_count() -> None:
    runs = [
        _parallel("orthanc", 1, 3.0, 0.6),
        _parallel("dicom-node", 1, 6.0, 0.6),
        _parallel("orthanc", 4, 1.0, 0.9),
        _parallel("dicom-node", 4, 4.0, 0.9),
    ]
    summary = ingest.summarise(runs)
    assert [(r["target"], r["associations"]) for r in summary] == [
        ("orthanc", 1),
        ("dicom-node", 1),
        ("orthanc", 4),
        ("dicom-node", 4),
    ]
    assert summary[3]["sender_cpu_ms_per_image"] == pytest.approx(3.0)  # 0.9 s / 300
    rel = ingest.ratios(summary, "dicom-node")
    assert rel == [
        {"corpus": "ct", "associations": 1, "vs_orthanc": pytest.approx(0.5)},
        {"corpus": "ct", "associations": 4, "vs_orthanc": pytest.approx(0.25)},
    ]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_tree_cpu_counts_a_child_process_and_children_cpu_counts_waited_ones() -> None:
    parent = _process(
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {_BUSY.format(seconds=0.5)!r}],"
        " stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)\n"
        "print(child.stdout.readline().strip(), flush=True)\n"
        "sys.stdin.read()\n"
        "child.stdin.close(); child.wait()\n"
    )
    before = ingest.children_cpu_seconds()
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "burnt"
        own = ingest.cpu_seconds(parent.pid)
        tree = ingest.tree_cpu_seconds(parent.pid)
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(timeout=30)
    assert tree - own >= 0.45  # the child's 0.5 s, which the parent's own figure lacks
    assert ingest.children_cpu_seconds() - before >= 0.45  # waited for: counted
