"""Retraining hand_orientation from the node's own archive, end to end: real SQLite
files, the real ``dicom-node train`` in a low-priority child process, the real gate.

Each test indexes a few dozen small synthetic hand films (``write_hand_study``, scale
0.1: about 300 pixels) into a node's store, as the receiver would, and retrains with the
``smoke`` preset on one thread (20–40 s a run on a busy 2-core machine):

* a run from the archive against a deliberately bad active model (random weights):
  the row goes running → done with its counts, the candidate is registered, promoted, and
  is the version the next job gets; ``retrain runs`` lists it as JSON and CSV;
* a deliberately bad candidate (one epoch) against the shipped model: registered,
  inactive, the reason with both figures; films stored askew are left out by the active
  model's upright check, in training and in the evaluation;
* a schedule firing in ``serve``'s node while it receives (C-ECHO, C-STORE), and a node
  stopped during a run (the run ends, ``failed``);
* a training process killed with SIGKILL, and a run whose own process is killed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import Engine, select

from dicom_node import cli
from dicom_node.cli import term
from dicom_node.db import migrate
from dicom_node.db.engine import make_engine
from dicom_node.db.models import ModelVersion
from dicom_node.flow import Node
from dicom_node.ingest.index import index_instance, read_header
from dicom_node.jobs.model_registry import active_model_version, import_model
from dicom_node.net.scu import echo
from dicom_node.retraining import schedule
from dicom_node.retraining.process import ChildFailed
from dicom_node.retraining.runner import Retrainer, entry_for
from dicom_node.retraining.runs import PROCESS_DIED, get_run, list_runs, pid_alive, reap_dead_runs
from dicom_node.settings import NodeSettings, RouteRule, load_settings
from dicom_node.store import DurableStore
from pipelines.shipped import shipped_model
from tests.integration.conftest import LOCALHOST, NODE_AET, build_node_settings, store_files
from tests.peers import wait_until

PIPELINE = "hand_orientation"
HANDS = RouteRule(name="hands", pipelines=(PIPELINE,), body_part=("HAND",))
FILMS = 36
#: Long enough for a run on a busy machine; a run takes 20–60 s.
RUN_TIMEOUT = 240


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DICOM_NODE_"):
            monkeypatch.delenv(name)


def node_archive(root: Path) -> tuple[Engine, DurableStore]:
    """A node's database (migrated) and store under ``root`` (``node.sqlite``, ``storage``)."""
    engine = make_engine(f"sqlite:///{root / 'node.sqlite'}")
    migrate.upgrade(engine)
    return engine, DurableStore(root / "storage")


def archive_files(engine: Engine, store: DurableStore, paths: Iterable[Path]) -> int:
    """Store and index DICOM files in the node as the receiver's C-STORE handler does
    (spooled, placed durably, indexed); how many."""
    count = 0
    for path in paths:
        header = read_header(path)
        relative = store.relative_path_for(
            header.study_uid, header.series_uid, header.sop_instance_uid
        )
        spooled = store.spool_dir / f"{header.sop_instance_uid}.part"
        shutil.copyfile(path, spooled)
        stored = store.place(spooled, relative, overwrite=False)
        index_instance(
            engine,
            header,
            relative_path=stored.relative_path,
            size_bytes=stored.size_bytes,
            calling_ae_title="TEST_SCU",
        )
        count += 1
    return count


def index_films(root: Path, count: int, *, askew: int = 0, seed: int = 1000) -> Engine:
    """``count`` upright hand films (and ``askew`` more at 180°) stored and indexed in the
    node under ``root`` (``storage``, ``node.sqlite``), as the receiver leaves them."""
    from training.synthetic.hand_films import write_hand_study

    engine, store = node_archive(root)
    angles = [90.0] * count + [270.0] * askew
    films = [
        write_hand_study(root / "films", angle_deg=angle, seed=seed + index, scale=0.1).path
        for index, angle in enumerate(angles)
    ]
    archive_files(engine, store, films)
    shutil.rmtree(root / "films")
    return engine


def random_model(root: Path, version: str) -> Path:
    """An orientation model folder with random weights: a deliberately bad model."""
    import torch

    from pipelines.hand_orientation.network import build_network
    from pipelines.hand_orientation.preprocess import input_spec
    from training.runs import write_weights_and_card

    torch.manual_seed(11)
    folder = root / version
    folder.mkdir(parents=True)
    write_weights_and_card(
        folder,
        pipeline=PIPELINE,
        version=version,
        architecture="resnet10",
        input_spec=input_spec("resnet10", 64, 56).to_json(),
        state=build_network("resnet10").state_dict(),
        training_data={"source": "none: random weights"},
    )
    return folder


def write_config(root: Path, retraining: str) -> Path:
    path = root / "node.toml"
    path.write_text(
        'storage_dir = "storage"\ndatabase_url = "sqlite:///node.sqlite"\nmodel_dir = "models"\n'
        '[[routes]]\nname = "hands"\npipelines = ["hand_orientation"]\nbody_part = ["HAND"]\n'
        f'[[retraining]]\npipeline = "hand_orientation"\n{retraining}\n'
    )
    return path


def active_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return active_model_version(conn, PIPELINE)


def registered(engine: Engine, version: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(ModelVersion).where(ModelVersion.version == version)).one()


def test_a_run_from_the_archive_promotes_a_better_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(term, "out", term.Console(width=400, force_terminal=False))
    engine = index_films(tmp_path, FILMS)
    bad = random_model(tmp_path / "bad", "20200101.000000-random")
    import_model(engine, bad, tmp_path / "models", activate=True)
    config = write_config(
        tmp_path,
        # A random model reads every film askew: its upright check would leave out all.
        'preset = "smoke"\nthreads = 1\ntrainer_options = { max_tilt_deg = 180 }',
    )

    assert cli.main(["retrain", "run", PIPELINE, "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "promoted" in printed

    (run,) = list_runs(engine)
    assert run["state"] == "done" and run["trigger"] == "manual" and run["source"] == "archive"
    assert run["pid"] is None and run["ended_at"] > run["started_at"]
    assert (run["studies"], run["instances"]) == (FILMS, FILMS)
    selection = run["selection"]
    assert selection["routes"] == ["hands"] and selection["preset"] == "smoke"
    assert selection["training_studies"] + selection["held_out_studies"] == FILMS
    assert selection["held_out_studies"] >= 3
    candidate, figures = run["candidate_version"], run["candidate_metrics"]
    assert candidate.endswith(f"-run{run['id']}")
    assert figures["films"] == selection["held_out_studies"] and figures["rotations_per_film"] == 4
    assert figures["training_data"]["films"] == selection["training_studies"]
    assert run["active_version"] == "20200101.000000-random"
    assert figures["mae_deg"] < 30 < run["active_metrics"]["mae_deg"]
    assert run["decision"] == "promoted"
    assert f"{figures['mae_deg']:.4g} (candidate {candidate})" in run["reason"]
    assert (
        f"{run['active_metrics']['mae_deg']:.4g} (active 20200101.000000-random)" in run["reason"]
    )
    # Registered and active: the next job's model_version is the candidate's.
    assert registered(engine, candidate).active and active_version(engine) == candidate
    assert (tmp_path / "models" / PIPELINE / candidate / "weights.pt").is_file()
    work = tmp_path / "retraining" / f"run-{run['id']}"
    assert (work / "train.log").is_file() and not (work / "train").exists()

    # `retrain runs` as JSON and as CSV.
    assert cli.main(["retrain", "runs", "--config", str(config), "--format", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["id"] == run["id"] and listed["decision"] == "promoted"
    assert listed["candidate_metrics"]["mae_deg"] == figures["mae_deg"]
    assert cli.main(["retrain", "runs", "--config", str(config), "--format", "csv"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["state"] == "done" and row["candidate_version"] == candidate
    assert json.loads(row["selection"])["held_out_studies"] == selection["held_out_studies"]
    assert cli.main(["retrain", "runs", "--config", str(config), "--pipeline", "ct_body_part",
                     "--format", "json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out) == []


def test_a_worse_candidate_stays_registered_and_inactive(tmp_path: Path) -> None:
    """One epoch of training makes a deliberately bad candidate; the shipped model is
    active. Four films stored upside down are left out by the shipped model's upright
    check, wherever the split puts them."""
    engine = index_films(tmp_path, 30, askew=4)
    shipped = shipped_model(PIPELINE)
    assert shipped is not None
    import_model(engine, shipped, tmp_path / "models", activate=True)
    settings = load_settings(
        write_config(tmp_path, 'preset = "smoke"\nthreads = 1\ntrain_options = { epochs = 1 }')
    )
    outcome = Retrainer(settings, engine).run(entry_for(settings, PIPELINE))
    assert outcome.decision == "rejected" and outcome.active_version == shipped.name

    run = get_run(engine, outcome.run_id)
    assert run["state"] == "done" and run["decision"] == "rejected"
    assert (run["studies"], run["instances"]) == (34, 34)
    mine, theirs = run["candidate_metrics"]["mae_deg"], run["active_metrics"]["mae_deg"]
    assert theirs < 5 and mine > theirs + 20
    assert "worse than the active model" in run["reason"]
    assert f"{mine:.4g} (candidate {outcome.candidate_version})" in run["reason"]
    assert f"{theirs:.4g} (active {shipped.name})" in run["reason"]
    assert not registered(engine, outcome.candidate_version).active  # registered, inactive
    assert active_version(engine) == shipped.name
    left_out = run["candidate_metrics"]["training_data"]["upright_check"]["films_left_out"]
    assert left_out + run["active_metrics"]["films_left_out"] == 4
    assert run["candidate_metrics"]["films_left_out"] == run["active_metrics"]["films_left_out"]


def test_a_scheduled_run_trains_while_the_node_receives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_films(tmp_path, FILMS).dispose()
    settings: NodeSettings = build_node_settings(
        tmp_path,
        storage_dir=tmp_path / "storage",
        routes=[HANDS],
        retraining=[
            {
                "pipeline": PIPELINE,
                "cron": "0 3 * * sun",
                "preset": "smoke",
                "threads": 1,
                "train_options": {"epochs": 2},
                "trainer_options": {"max_mae_deg": 180},  # two epochs: the schedule is tested
                "auto_activate": False,
            }
        ],
    )
    fired: list[Any] = []

    def soon(entry: Any) -> DateTrigger:  # instead of Sunday 03:00: in a moment, once
        fired.append(entry.cron)
        return DateTrigger(run_date=datetime.now(UTC) + timedelta(seconds=0.5))

    monkeypatch.setattr(schedule, "trigger_for", soon)
    node = Node(settings)
    node.start()
    try:
        engine = node.parts.engine

        def training() -> Any:
            runs = list_runs(engine)
            return runs and runs[0]["pid"] not in (None, os.getpid()) and runs[0]

        run = wait_until(training, timeout=RUN_TIMEOUT)
        assert fired == ["0 3 * * sun"] and run["trigger"] == "schedule"
        assert run["state"] == "running" and pid_alive(run["pid"])
        # The node goes on receiving while the training process runs.
        port = node.receiver.port
        assert echo(LOCALHOST, port, calling_aet="TEST_SCU", called_aet=NODE_AET) == 0
        from training.synthetic.hand_films import write_hand_study

        film = write_hand_study(tmp_path / "new", angle_deg=90.0, seed=77, scale=0.1)
        assert store_files(port, [film.path]).statuses == [0]
        assert get_run(engine, run["id"])["state"] == "running"

        wait_until(lambda: get_run(engine, run["id"])["state"] != "running", RUN_TIMEOUT)
        done = get_run(engine, run["id"])
        assert done["state"] == "done", done["error"]
        assert done["decision"] == "passed" and done["active_version"] is None
        assert "no active model" in done["reason"] and "auto_activate is off" in done["reason"]
        assert active_version(engine) == "none"  # passed, not activated
        assert registered(engine, done["candidate_version"]).active is False
    finally:
        node.stop()


def test_stopping_the_node_ends_its_run_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_films(tmp_path, FILMS).dispose()
    entry = {"pipeline": PIPELINE, "cron": "0 3 * * sun", "preset": "smoke", "threads": 1}
    settings = build_node_settings(tmp_path, routes=[HANDS], retraining=[entry])
    monkeypatch.setattr(
        schedule, "trigger_for", lambda entry: DateTrigger(run_date=datetime.now(UTC))
    )
    node = Node(settings)
    node.start()
    try:
        engine = node.parts.engine
        run = wait_until(
            lambda: (r := list_runs(engine)) and r[0]["pid"] not in (None, os.getpid()) and r[0],
            timeout=RUN_TIMEOUT,
        )
    finally:
        node.stop()  # does not wait for the run: it ends it
    check = make_engine(settings.database_url)
    stopped = get_run(check, run["id"])
    check.dispose()
    assert stopped["state"] == "failed" and "the node is stopping" in stopped["error"]
    assert not pid_alive(run["pid"])


def test_a_killed_training_process_fails_its_run(tmp_path: Path) -> None:
    engine = index_films(tmp_path, FILMS)
    config = write_config(tmp_path, 'preset = "smoke"\nthreads = 1')
    settings = load_settings(config)

    def training_pid(run_id: int | None, starter: int) -> Any:
        runs = [r for r in list_runs(engine) if run_id is None or r["id"] == run_id]
        return runs and runs[0]["pid"] not in (None, starter) and runs[0]

    # The training process killed: the run that started it records the failure.
    failures: list[BaseException] = []

    def run() -> None:
        try:
            Retrainer(settings, engine).run(entry_for(settings, PIPELINE))
        except ChildFailed as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    first = wait_until(lambda: training_pid(None, os.getpid()), timeout=RUN_TIMEOUT)
    os.kill(first["pid"], signal.SIGKILL)
    thread.join(timeout=RUN_TIMEOUT)
    assert len(failures) == 1
    killed = get_run(engine, first["id"])
    assert killed["state"] == "failed" and killed["pid"] is None
    assert f"training process {first['pid']} was killed by signal SIGKILL" in killed["error"]
    assert killed["candidate_version"] is None and active_version(engine) == "none"

    # The process running the run killed (`dicom-node retrain run`): its training process
    # dies with it, and the run is set failed before the next one starts.
    command = [sys.executable, "-m", "dicom_node", "retrain", "run", PIPELINE, "--config"]
    starter = subprocess.Popen([*command, str(config)], stderr=subprocess.DEVNULL)
    try:
        second = wait_until(lambda: training_pid(first["id"] + 1, starter.pid), RUN_TIMEOUT)
        starter.kill()
        starter.wait()
        wait_until(lambda: not pid_alive(second["pid"]), timeout=30)
    finally:
        starter.kill()
        starter.wait()
    assert get_run(engine, second["id"])["state"] == "running"  # until someone looks
    assert reap_dead_runs(engine) == [second["id"]]
    dead = get_run(engine, second["id"])
    assert dead["state"] == "failed" and dead["error"] == PROCESS_DIED
