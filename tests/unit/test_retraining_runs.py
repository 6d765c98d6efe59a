"""Retraining runs without training: the rows (one per pipeline at a time, dead ones
reaped), the selection from the index and from the PACS, the workspace, and the child
processes (niceness, a kill, a stop, a parent that dies). Real SQLite files, real
processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import Engine, inspect

from dicom_node.ingest.index import InstanceHeader, index_instance
from dicom_node.retraining import retrieve
from dicom_node.retraining import runner as runner_module
from dicom_node.retraining import runs as runs_module
from dicom_node.retraining.process import ChildFailed, low_priority, run_child
from dicom_node.retraining.runner import Retrainer, entry_for
from dicom_node.retraining.runs import (
    OTHER_HOST_LIMIT,
    PROCESS_DIED,
    RunRefused,
    fail_run,
    finish_run,
    get_run,
    list_runs,
    pid_alive,
    reap_dead_runs,
    start_run,
)
from dicom_node.retraining.selection import (
    Filters,
    SelectionError,
    check_scope,
    pipeline_routes,
    select_studies,
)
from dicom_node.retraining.workspace import Workspace, WorkspaceError
from dicom_node.settings import NodeSettings, RetrievalSettings, RouteRule
from dicom_node.store import DurableStore
from tests.unit.conftest import UID_ROOT, sqlite_url, wait_for

HANDS = RouteRule(name="hands", pipelines=("hand_orientation",), body_part=("HAND",))
CT = RouteRule(name="ct", pipelines=("ct_body_part",), modality=("CT",))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _run(engine: Engine, pipeline: str = "hand_orientation", pid: int | None = None) -> int:
    return start_run(
        engine, pipeline=pipeline, source="archive", trigger="manual", selection={}, pid=pid
    )


# -- rows -----------------------------------------------------------------------------------


def test_one_run_per_pipeline_at_a_time(engine: Engine) -> None:
    first = _run(engine)
    with pytest.raises(RunRefused, match=f"being retrained already: run {first}"):
        _run(engine)
    other = _run(engine, "ct_body_part")  # another pipeline may run meanwhile
    finish_run(engine, first, decision="rejected", reason="worse")
    second = _run(engine)
    assert second > other > first
    row = get_run(engine, first)
    assert row["state"] == "done" and row["pid"] is None and row["ended_at"] is not None


def test_a_run_whose_process_died_is_failed_before_the_next(engine: Engine) -> None:
    gone = _run(engine, pid=_dead_pid())
    alive = _run(engine, "ct_body_part")  # this process
    assert not pid_alive(get_run(engine, gone)["pid"]) and pid_alive(os.getpid())
    assert reap_dead_runs(engine) == [gone]
    row = get_run(engine, gone)
    assert (row["state"], row["error"], row["pid"]) == ("failed", PROCESS_DIED, None)
    assert get_run(engine, alive)["state"] == "running"
    _run(engine)  # hand_orientation may run again


def test_a_run_records_its_host_and_only_this_hosts_dead_runs_are_reaped(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes of several hosts share one database: a pid means something only on its own
    host, so another host's run with a pid that is dead here is left alone, until it has
    been running longer than OTHER_HOST_LIMIT."""
    here = socket.gethostname()
    mine = _run(engine, pid=_dead_pid())
    monkeypatch.setattr(runs_module, "this_host", lambda: "node-b.example")
    theirs = _run(engine, "ct_body_part", pid=_dead_pid())  # as node-b starts it
    monkeypatch.undo()
    assert (get_run(engine, mine)["host"], get_run(engine, theirs)["host"]) == (
        here,
        "node-b.example",
    )
    assert not pid_alive(get_run(engine, theirs)["pid"])  # no such process here

    assert reap_dead_runs(engine) == [mine]
    assert get_run(engine, mine)["state"] == "failed"
    assert get_run(engine, theirs)["state"] == "running"  # node-b's to judge
    with pytest.raises(RunRefused, match="process .* on node-b.example"):
        _run(engine, "ct_body_part")  # still one run per pipeline, whichever host runs it

    # Seen from node-b, it is node-b's own run with a dead pid.
    assert reap_dead_runs(engine, host="node-b.example") == [theirs]
    assert get_run(engine, theirs)["error"] == PROCESS_DIED


def test_another_hosts_run_is_failed_only_after_the_generous_limit(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_module, "this_host", lambda: "node-b.example")
    theirs = _run(engine, pid=os.getpid())  # alive here, but that says nothing of node-b
    monkeypatch.undo()
    started = get_run(engine, theirs)["started_at"]
    assert OTHER_HOST_LIMIT >= timedelta(hours=24)
    just_within = started + OTHER_HOST_LIMIT - timedelta(minutes=1)
    assert reap_dead_runs(engine, now=just_within) == []
    assert reap_dead_runs(engine, now=started + OTHER_HOST_LIMIT + timedelta(minutes=1)) == [theirs]
    row = get_run(engine, theirs)
    hours = OTHER_HOST_LIMIT.total_seconds() / 3600
    assert row["state"] == "failed"
    assert row["error"] == f"its host node-b.example left it running for more than {hours:g} hours"


def test_runs_from_before_the_host_column_are_judged_by_their_pid(db_path: Path) -> None:
    """Revision 0005 adds ``retraining_runs.host`` (NULL for the runs already there, judged
    by pid wherever the node runs, as before); its downgrade drops it in place."""
    from dicom_node.db import migrate
    from dicom_node.db.engine import make_engine
    from tests.unit.test_db import _alembic, schema_differences

    engine = make_engine(sqlite_url(db_path))
    try:
        migrate.upgrade(engine, "0004")
        with engine.begin() as conn:
            for run_id, pid in ((1, _dead_pid()), (2, os.getpid())):
                conn.exec_driver_sql(
                    "INSERT INTO retraining_runs (id, pipeline, source, trigger, state, "
                    "started_at, pid, selection) VALUES (?, 'hand_orientation', 'archive', "
                    "'manual', 'running', '2026-03-01 00:00:00.000000', ?, '{}')",
                    (run_id, pid),
                )
        migrate.upgrade(engine, "0005")
        assert [get_run(engine, i)["host"] for i in (1, 2)] == [None, None]
        assert reap_dead_runs(engine, host="any-host") == [1]
        assert get_run(engine, 2)["state"] == "running"

        _alembic(engine, "downgrade", "0004")
        columns = {c["name"] for c in inspect(engine).get_columns("retraining_runs")}
        assert "host" not in columns and "pid" in columns
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM retraining_runs").scalar() == 2
        migrate.upgrade(engine)
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_an_ended_run_keeps_its_state(engine: Engine) -> None:
    run_id = _run(engine)
    finish_run(engine, run_id, decision="passed", reason="ok")
    fail_run(engine, run_id, "too late")
    row = get_run(engine, run_id)
    assert row["state"] == "done" and row["error"] is None


# -- selection ------------------------------------------------------------------------------


def _index(
    engine: Engine, study: int, *, date: str, modality: str = "DX", body_part: str = "HAND"
) -> str:
    uid = f"{UID_ROOT}.7.{study}"
    header = InstanceHeader(
        study_uid=uid,
        series_uid=f"{uid}.1",
        sop_instance_uid=f"{uid}.1.1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        transfer_syntax_uid=ExplicitVRLittleEndian,
        modality=modality,
        body_part_examined=body_part,
        study_date=date,
    )
    index_instance(
        engine,
        header,
        relative_path=f"{uid}/{uid}.1/{uid}.1.1.dcm",
        size_bytes=10,
        calling_ae_title="T",
    )
    return uid


def test_the_selection_takes_the_pipelines_series_newest_first(engine: Engine) -> None:
    old = _index(engine, 1, date="20240105")
    mid = _index(engine, 2, date="20250610", modality="CR")
    new = _index(engine, 3, date="20260101")
    _index(engine, 4, date="20260201", modality="CT", body_part="CHEST")  # ct_body_part's
    _index(engine, 5, date="20260202", body_part="FOOT")  # no route takes it
    rules = pipeline_routes((HANDS, CT), "hand_orientation")
    assert rules == (HANDS,)

    def uids(**filters: Any) -> list[str]:
        return [s.study_instance_uid for s in select_studies(engine, rules, Filters(**filters))]

    assert uids() == [new, mid, old]
    assert uids(max_studies=2) == [new, mid]
    assert uids(since="20250101", until="20251231") == [mid]
    assert uids(modality=("cr", "DX"), max_studies=1) == [new]
    assert uids(modality=("CR",)) == [mid]
    assert [
        s.study_instance_uid
        for s in select_studies(engine, rules, Filters(), only=[old, "1.2.3.4"])
    ] == [old]
    (first,) = select_studies(engine, rules, Filters(max_studies=1))
    assert first.study_date == "20260101" and first.files == (f"{new}/{new}.1/{new}.1.1.dcm",)
    # Without a route, the filters alone say what to take.
    assert [s.study_instance_uid for s in select_studies(engine, (), Filters(body_part=("FOOT",)))]
    with pytest.raises(SelectionError, match="no route sends series to bone_age"):
        check_scope((), "bone_age", Filters())


def _settings(tmp_path: Path, **values: Any) -> NodeSettings:
    return NodeSettings(
        storage_dir=tmp_path / "storage",
        database_url=sqlite_url(tmp_path / "db" / "node.sqlite"),
        model_dir=tmp_path / "models",
        routes=(HANDS,),
        **values,
    )


def test_the_pacs_source_retrieves_first_then_selects_those_studies(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plumbing of ``source = "pacs"``: the PACS query made of the filters, the
    studies it retrieved selected from the index, counted in the row and linked; the
    retrieval itself (``dicom_node.retraining.retrieve``) is replaced by a stand-in."""
    store = DurableStore(tmp_path / "storage")
    uids = [_index(engine, n, date=f"202601{n:02d}") for n in range(1, 31)]
    for uid in uids:
        path = store.resolve(f"{uid}/{uid}.1/{uid}.1.1.dcm")
        path.parent.mkdir(parents=True)
        path.write_bytes(b"DICM")
    asked: list[Any] = []

    def retrieve_for_training(settings: Any, engine: Any, query: Any, *, progress: Any) -> Any:
        asked.append(query)
        progress(1, 2)
        return retrieve.RetrieveReport(
            studies_found=25,
            study_instance_uids=uids[:25],
            series_found=25,
            instances_found=25,
            instances_retrieved=20,
            instances_already_stored=5,
            failures=["one"],
        )

    linked: dict[str, Any] = {}

    def train_and_gate(self: Retrainer, run_id: int, *args: Any) -> Any:
        workspace: Workspace = args[4]
        linked["train"] = sorted(p.name for p in workspace.train_dir.rglob("*.dcm"))
        linked["held"] = sorted(p.name for p in workspace.evaluation_dir.rglob("*.dcm"))
        linked["resolved"] = next(workspace.train_dir.rglob("*.dcm")).resolve()
        return run_id

    monkeypatch.setattr(retrieve, "retrieve_for_training", retrieve_for_training)
    monkeypatch.setattr(runner_module.Retrainer, "_train_and_gate", train_and_gate)
    retrieval = RetrievalSettings(host="127.0.0.1", port=11112, ae_title="PACS")
    settings = _settings(tmp_path, retrieval=retrieval)
    entry = entry_for(
        settings, "hand_orientation", source="pacs", modality=("DX",), since="20250101"
    )
    steps: list[tuple[str, str]] = []
    run_id = Retrainer(settings, engine).run(entry, progress=lambda *s: steps.append(s))
    (query,) = asked
    assert query.modality == ("DX",) and query.study_date_from == "20250101"
    assert query.study_date_to is None and query.max_studies is None
    assert ("selecting studies", "retrieving from the PACS: 1/2") in steps
    row = get_run(engine, run_id)  # type: ignore[arg-type]
    assert row["source"] == "pacs" and (row["studies"], row["instances"]) == (25, 25)
    assert row["selection"]["pacs"] == {
        "studies_found": 25,
        "studies": 25,
        "instances_retrieved": 20,
        "instances_already_stored": 5,
        "failures": 1,
    }
    held = row["selection"]["held_out_studies"]
    assert row["selection"]["training_studies"] + held == 25 and held >= 1
    assert len(linked["train"]) + len(linked["held"]) == 25 and len(linked["held"]) == held
    assert linked["resolved"].is_relative_to(store.root)
    assert not (tmp_path / "retraining" / f"run-{run_id}" / "train").exists()  # cleaned


def test_a_run_that_cannot_start_makes_no_row(engine: Engine, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    retrainer = Retrainer(settings, engine)
    with pytest.raises(RunRefused, match="needs a normal/abnormal label per study"):
        retrainer.run(entry_for(settings, "mura_abnormality", body_part=("WRIST",)))
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(RunRefused, match="the labels file .* does not exist"):
        retrainer.run(entry_for(settings, "ct_body_part", modality=("CT",), labels_file=missing))
    with pytest.raises(SelectionError, match="no route sends series to ct_body_part"):
        retrainer.run(entry_for(settings, "ct_body_part"))
    assert list_runs(engine) == []


def test_a_selection_with_nothing_in_it_fails_the_run(engine: Engine, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(WorkspaceError, match="no study of the archive matches the selection"):
        Retrainer(settings, engine).run(entry_for(settings, "hand_orientation"))
    (row,) = list_runs(engine)
    assert row["state"] == "failed" and "no study of the archive" in row["error"]


# -- child processes ------------------------------------------------------------------------


def _sleeper(seconds: float = 60) -> list[str]:
    return [
        sys.executable,
        "-c",
        f"import os, time; print(os.nice(0), flush=True); time.sleep({seconds})",
    ]


def test_a_child_runs_at_low_priority_and_a_kill_fails_it(tmp_path: Path) -> None:
    pids: list[int] = []
    log = tmp_path / "child.log"
    failures: list[BaseException] = []

    def start() -> None:
        try:
            run_child("training", _sleeper(), nice=7, threads=1, log_path=log, on_start=pids.append)
        except ChildFailed as exc:
            failures.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    wait_for(lambda: log.exists() and log.read_text().strip(), timeout=20)
    assert int(log.read_text().split()[0]) >= 7  # its niceness, after exec: the same pid
    os.kill(pids[0], signal.SIGKILL)
    thread.join(timeout=20)
    (failure,) = failures
    assert f"the training process {pids[0]} was killed by signal SIGKILL" in str(failure)


def test_a_failing_child_says_why_and_a_cancelled_one_is_ended(tmp_path: Path) -> None:
    log = tmp_path / "fails.log"
    command = [sys.executable, "-c", "import sys; print('no films here'); sys.exit(3)"]
    with pytest.raises(ChildFailed, match=r"exited with status 3(.|\n)*no films here"):
        run_child("training", command, nice=0, threads=1, log_path=log, on_start=lambda p: None)
    cancel = threading.Event()
    cancel.set()
    pids: list[int] = []
    with pytest.raises(ChildFailed, match="was stopped: the node is stopping"):
        run_child(
            "evaluation",
            _sleeper(),
            nice=0,
            threads=1,
            log_path=tmp_path / "c.log",
            on_start=pids.append,
            cancel=cancel,
        )
    assert not pid_alive(pids[0])


def test_a_child_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """kill -9 of the process running a retraining run ends its training process too
    (PR_SET_PDEATHSIG), so that no training goes on unrecorded."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    script = (
        "import subprocess, sys, time\n"
        "from dicom_node.retraining.process import low_priority\n"
        f"child = subprocess.Popen(low_priority({_sleeper()!r}, 5))\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        wait_for(lambda: b"time.sleep" in Path(f"/proc/{child}/cmdline").read_bytes(), 20)
        parent.kill()
        parent.wait()
        wait_for(lambda: not pid_alive(child), timeout=20)
    finally:
        parent.kill()
        parent.wait()


def test_low_priority_needs_a_command() -> None:
    done = subprocess.run(
        low_priority([], 5), capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 2 and "no command given" in done.stderr
