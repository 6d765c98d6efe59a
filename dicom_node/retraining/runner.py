"""One retraining run, start to end: select, link, train, register, evaluate, gate.

``Retrainer(settings, engine).run(entry, trigger=...)`` does it in the calling process
(the command line, or a scheduler thread of ``serve``), and the heavy parts in child
processes at low priority (``process``), so that receiving and inference go on:

1. dead runs are reaped; the trainer's ``Retraining`` is found and its inputs checked
   (a trainer that cannot retrain, a missing labels file, a second run of the pipeline:
   refused before a row is made);
2. a ``running`` row; the studies selected (``selection``; pulled from the PACS first for
   ``source = "pacs"``) and linked into the run's folder (``workspace``);
3. ``python -m dicom_node train PIPELINE --preset P <the trainer's data flags> --out
   <run>/candidate --version V --threads N --no-register`` (the entry's ``train_options``
   as more flags), its pid in the row; a failure, a kill or the node stopping fails the
   run;
4. the candidate is registered, inactive; the evaluation child scores it and the active
   model on the same held-out folder; the gate decides, and a promoted candidate is
   activated (new jobs use it);
5. the row is ``done`` with the counts, both versions, both figures, the decision and its
   reason; any exception sets it ``failed`` with the error instead.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from dicom_node import trainers
from dicom_node.errors import NodeError
from dicom_node.jobs.model_registry import (
    NO_MODEL,
    ResolvedModel,
    activate_model,
    active_model_version,
    import_model,
    resolve_model,
)
from dicom_node.retraining.evaluation import TrainerInputs
from dicom_node.retraining.gate import GateDecision, decide
from dicom_node.retraining.process import ChildFailed, python_module, run_child
from dicom_node.retraining.runs import (
    RunRefused,
    fail_run,
    finish_run,
    reap_dead_runs,
    start_run,
    update_run,
)
from dicom_node.retraining.selection import (
    Filters,
    SelectedStudy,
    check_scope,
    pipeline_routes,
    retrieve_from_pacs,
    select_studies,
)
from dicom_node.retraining.workspace import Workspace, prepare_workspace
from dicom_node.settings import NodeSettings, RetrainingEntry
from dicom_node.store import DurableStore
from pipelines.model_store import new_version

logger = logging.getLogger(__name__)

#: The steps of a run as ``progress(step, detail)`` names them, in order.
STEPS = ("selecting studies", "linking files", "training", "registering", "evaluating", "gate")
Progress = Callable[[str, str], None]


def _quiet(step: str, detail: str) -> None:
    pass


@dataclass(frozen=True)
class RunOutcome:
    run_id: int
    decision: str
    reason: str
    candidate_version: str
    active_version: str  # the version active after the run (NO_MODEL: none)


def entry_for(settings: NodeSettings, pipeline: str, **changes: Any) -> RetrainingEntry:
    """The ``[[retraining]]`` entry of ``pipeline`` (defaults without one), with ``changes``
    (None: keep) on top, validated again."""
    entry = next((e for e in settings.retraining if e.pipeline == pipeline), None)
    values = entry.model_dump() if entry is not None else {"pipeline": pipeline}
    values.update({key: value for key, value in changes.items() if value is not None})
    return RetrainingEntry.model_validate(values)


def train_option_flags(options: dict[str, Any]) -> list[str]:
    """``{"epochs": 3, "realistic_scans": True}`` → ``--epochs 3 --realistic-scans``."""
    flags: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False:
            flags += [flag, str(value)]
    return flags


class Retrainer:
    """Runs retraining runs for one node; ``cancel`` (set when the node stops) ends a run's
    child process and fails the run."""

    def __init__(
        self, settings: NodeSettings, engine: Engine, *, cancel: threading.Event | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.cancel = cancel
        self.work_root = Path(settings.storage_dir).resolve().parent / "retraining"

    def run(
        self, entry: RetrainingEntry, *, trigger: str = "manual", progress: Progress = _quiet
    ) -> RunOutcome:
        """One run of ``entry``; ``RunRefused`` before any row when it cannot start, and
        after a ``failed`` row the exception that failed it."""
        reap_dead_runs(self.engine)
        pipeline = entry.pipeline
        try:
            support = trainers.retraining_support(pipeline)
        except trainers.TrainerUnavailable as exc:
            raise RunRefused(str(exc)) from exc
        if entry.source == "pacs" and self.settings.retrieval is None:
            raise RunRefused(f"{pipeline}: source pacs needs [retrieval] in the settings")
        filters, rules = Filters.of(entry), pipeline_routes(self.settings.routes, pipeline)
        check_scope(rules, pipeline, filters)
        active = self._active(pipeline)
        inputs = TrainerInputs(
            labels_file=entry.labels_file,
            active_model=active.folder if active is not None else None,
            options=dict(entry.trainer_options),
        )
        if entry.labels_file is not None and not entry.labels_file.is_file():
            raise RunRefused(f"{pipeline}: the labels file {entry.labels_file} does not exist")
        try:  # the trainer says now whether it can retrain from these inputs
            support.train_arguments(self.work_root / "check", inputs)
        except ValueError as exc:  # training.contract.CannotRetrain
            raise RunRefused(f"{pipeline}: {exc}") from exc
        selection = {
            "filters": filters.to_json(),
            "routes": [rule.name for rule in rules],
            "labels": support.labels,
            "preset": entry.preset,
            "train_options": dict(entry.train_options),
            "trainer_options": dict(entry.trainer_options),
            "held_out": str(entry.evaluation_dir) if entry.evaluation_dir else entry.held_out_pct,
            "metric": support.metric,
            "margin": entry.margin,
            "auto_activate": entry.auto_activate,
        }
        run_id = start_run(
            self.engine,
            pipeline=pipeline,
            source=entry.source,
            trigger=trigger,
            selection=selection,
        )
        workspace: Workspace | None = None
        try:
            progress(STEPS[0], entry.source)
            studies, details = self._select(entry, filters, rules, progress)
            selection.update(details)
            update_run(
                self.engine,
                run_id,
                selection=selection,
                studies=len(studies),
                instances=sum(len(s.files) for s in studies),
            )
            progress(STEPS[1], f"{len(studies)} studies")
            workspace = prepare_workspace(
                self.work_root / f"run-{run_id}",
                studies,
                DurableStore(self.settings.storage_dir),
                held_out_pct=entry.held_out_pct,
                evaluation_dir=entry.evaluation_dir,
            )
            selection.update(
                training_studies=workspace.training_studies,
                held_out_studies=workspace.held_out_studies,
            )
            update_run(self.engine, run_id, selection=selection)
            return self._train_and_gate(run_id, entry, support, inputs, active, workspace, progress)
        except BaseException as exc:
            fail_run(self.engine, run_id, _describe(exc))
            raise
        finally:
            if workspace is not None:
                workspace.clean()

    # -- steps ------------------------------------------------------------------------------

    def _active(self, pipeline: str) -> ResolvedModel | None:
        with self.engine.connect() as conn:
            version = active_model_version(conn, pipeline)
            if version == NO_MODEL:
                return None
            resolved = resolve_model(conn, pipeline, version, self.settings.model_dir)
        if resolved is None or not resolved.folder.is_dir():
            logger.warning("%s: the active model %s has no folder; none used", pipeline, version)
            return None
        return resolved

    def _select(
        self,
        entry: RetrainingEntry,
        filters: Filters,
        rules: tuple[Any, ...],
        progress: Progress,
    ) -> tuple[list[SelectedStudy], dict[str, Any]]:
        if entry.source == "archive":
            return select_studies(self.engine, rules, filters), {}

        def advance(done: int, total: int) -> None:
            progress(STEPS[0], f"retrieving from the PACS: {done}/{total}")

        uids, report = retrieve_from_pacs(self.settings, self.engine, filters, advance)
        return select_studies(self.engine, rules, filters, only=uids), {"pacs": report}

    def _train_and_gate(
        self,
        run_id: int,
        entry: RetrainingEntry,
        support: Any,
        inputs: TrainerInputs,
        active: ResolvedModel | None,
        workspace: Workspace,
        progress: Progress,
    ) -> RunOutcome:
        pipeline = entry.pipeline
        version = f"{new_version()}-run{run_id}"
        command = python_module("dicom_node", "train", pipeline)
        command += ["--preset", entry.preset] if entry.preset else []
        command += support.train_arguments(workspace.train_dir, inputs)
        command += train_option_flags(dict(entry.train_options))
        command += ["--out", str(workspace.candidate_dir), "--version", version]
        command += ["--threads", str(entry.threads), "--no-register"]
        progress(STEPS[2], f"candidate {version}")
        self._child(run_id, entry, "training", command, workspace.folder / "train.log")

        progress(STEPS[3], version)
        card = import_model(self.engine, workspace.candidate_dir / version, self.settings.model_dir)
        update_run(self.engine, run_id, candidate_version=version)
        with self.engine.connect() as conn:
            stored = resolve_model(conn, pipeline, version, self.settings.model_dir)
        assert stored is not None  # registered just now

        progress(STEPS[4], f"on {workspace.evaluation_dir}")
        models = {"candidate": stored.folder}
        if active is not None:
            models["active"] = active.folder
        results = self._evaluate(run_id, entry, workspace, models, inputs)
        candidate = {**results["candidate"], "training_data": _training_counts(card)}
        active_figures = results.get("active")

        progress(STEPS[5], "")
        problems = support.sanity(card.metrics, results["candidate"], inputs)
        decision: GateDecision = decide(
            pipeline=pipeline,
            metric=support.metric,
            higher_is_better=support.higher_is_better,
            candidate_version=version,
            candidate=results["candidate"],
            active_version=active.version if active is not None else None,
            active=active_figures,
            margin=entry.margin,
            problems=problems,
            auto_activate=entry.auto_activate,
        )
        if decision.activate:
            activate_model(self.engine, pipeline, version)
        finish_run(
            self.engine,
            run_id,
            candidate_metrics=candidate,
            active_version=active.version if active is not None else None,
            active_metrics=active_figures,
            decision=decision.decision.value,
            reason=decision.reason,
        )
        with self.engine.connect() as conn:
            now_active = active_model_version(conn, pipeline)
        return RunOutcome(run_id, decision.decision.value, decision.reason, version, now_active)

    def _evaluate(
        self,
        run_id: int,
        entry: RetrainingEntry,
        workspace: Workspace,
        models: dict[str, Path],
        inputs: TrainerInputs,
    ) -> dict[str, dict[str, Any]]:
        if entry.evaluation_dir is not None:  # the site's pinned films count as they are:
            inputs = replace(inputs, active_model=None)  # no model leaves any of them out
        inputs_path = workspace.folder / "inputs.json"
        inputs_path.write_text(json.dumps(inputs.to_json(), indent=2), encoding="utf-8")
        results_path = workspace.folder / "evaluation.json"
        command = python_module(
            "dicom_node.retraining.evaluation",
            "--pipeline",
            entry.pipeline,
            "--data",
            str(workspace.evaluation_dir),
            "--inputs",
            str(inputs_path),
            "--out",
            str(results_path),
            "--threads",
            str(entry.threads),
        )
        for name, folder in models.items():
            command += ["--model", f"{name}={folder}"]
        self._child(run_id, entry, "evaluation", command, workspace.folder / "evaluation.log")
        results: dict[str, dict[str, Any]] = json.loads(results_path.read_text(encoding="utf-8"))
        return results

    def _child(
        self, run_id: int, entry: RetrainingEntry, what: str, command: list[str], log: Path
    ) -> None:
        """Run a child process for the run, its pid in the row while it runs."""
        if self.cancel is not None and self.cancel.is_set():
            raise ChildFailed(f"no {what} process started: the node is stopping")
        run_child(
            what,
            command,
            nice=entry.nice,
            threads=entry.threads,
            log_path=log,
            on_start=lambda pid: update_run(self.engine, run_id, pid=pid),
            cancel=self.cancel,
            environment={  # the child's settings: the node's folders, whatever its cwd
                "DICOM_NODE_MODEL_DIR": str(Path(self.settings.model_dir).resolve()),
                "DICOM_NODE_STORAGE_DIR": str(Path(self.settings.storage_dir).resolve()),
            },
        )
        update_run(self.engine, run_id, pid=os.getpid())


#: What a candidate's card says it trained on, as the trainers name it: hand_orientation's
#: films and samples, ct_body_part's volumes (series) and slices, mura_abnormality's
#: studies and views (with the labelled ones missing and the unlabelled ones left out).
TRAINING_COUNTS = (
    ("films", "samples", "series", "studies", "skipped_films", "upright_check")
    + ("volumes", "validation_volumes", "slices")
    + ("views", "train_views", "validation_studies", "abnormal_studies")
    + ("labelled_studies_missing", "unlabelled_studies_skipped")
)


def _training_counts(card: Any) -> dict[str, Any]:
    """The counts of ``TRAINING_COUNTS`` that the candidate's card holds."""
    return {key: card.training_data[key] for key in TRAINING_COUNTS if key in card.training_data}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, NodeError | ValueError | OSError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
