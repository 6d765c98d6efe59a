"""``dicom-node train <pipeline>`` and the trainers' other commands: where trainers plug in.

A trainer is ``training/<pipeline>/``; its commands live in its ``cli.py`` and follow
``training.contract``: ``register(commands)`` adds them through a ``TrainerCommands`` and
sets a ``handler(args, node) -> exit status`` on each, which runs with a ``NodeContext``.

The node finds those modules through ``dicom_node.trainers``, by import string, as it finds
pipelines through ``pipelines.registry``: ``dicom_node`` never imports ``training`` by
name. So the dependency stays one-way (``training`` imports ``pipelines``, never
``dicom_node``), a trainer plugs in with one registry line and no change here, and one
that cannot be imported (a node installed without ``training``, a broken trainer)
breaks nothing else: its ``train`` command says why it cannot run. The command line is
built from every trainer on each call; trainer command modules import torch only inside
their handlers, so that stays quick.

``Commands`` and ``TrainingNode`` are the node's side of ``training.contract``'s
``TrainerCommands`` and ``NodeContext``; they match those protocols by shape (the
protocols are not imported, for the reasons above).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from dicom_node import trainers
from dicom_node.cli import term
from dicom_node.cli.common import Parents, migrated_engine, node_settings
from dicom_node.errors import NodeError
from dicom_node.settings import NodeSettings


@dataclass(frozen=True)
class TrainerPlugin:
    """One trainer's command module, or why it cannot be used."""

    pipeline: str
    module: ModuleType | None
    problem: str | None = None


def load_trainers() -> list[TrainerPlugin]:
    """Every trainer of ``dicom_node.trainers``, in its order."""
    plugins = []
    for name in trainers.trainer_names():
        try:
            plugins.append(TrainerPlugin(name, trainers.trainer_module(name)))
        except trainers.TrainerUnavailable as exc:
            plugins.append(TrainerPlugin(name, None, str(exc)))
    return plugins


class Commands:
    """The node's ``TrainerCommands``: a trainer's parsers under ``train`` and ``models``, with
    the node's common options, run by ``run_trainer_command``."""

    def __init__(self, train_sub: Any, models_sub: Any, common: argparse.ArgumentParser) -> None:
        self._train_sub = train_sub
        self._models_sub = models_sub
        self._common = common

    def add_train_command(self, name: str, **parser_options: Any) -> argparse.ArgumentParser:
        return self._add(self._train_sub, name, parser_options)

    def add_models_command(self, name: str, **parser_options: Any) -> argparse.ArgumentParser:
        return self._add(self._models_sub, name, parser_options)

    def _add(self, sub: Any, name: str, options: dict[str, Any]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, parents=[self._common], **options)
        parser.set_defaults(func=run_trainer_command)
        return parser


@dataclass
class _Names:
    """A ``TrainerCommands`` that only notes the names of the commands a trainer adds."""

    train: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    def add_train_command(self, name: str, **parser_options: Any) -> argparse.ArgumentParser:
        self.train.append(name)
        return argparse.ArgumentParser(add_help=False)

    def add_models_command(self, name: str, **parser_options: Any) -> argparse.ArgumentParser:
        self.models.append(name)
        return argparse.ArgumentParser(add_help=False)


def models_command_names(plugins: Sequence[TrainerPlugin]) -> list[str]:
    """The commands the trainers add under ``models`` (the group's help names them before
    the trainers can add them: argparse takes a group's help when it makes the group)."""
    names = _Names()
    for trainer in plugins:
        if trainer.module is not None:
            trainer.module.register(names)
    return names.models


def register(sub: Any, parents: Parents, models_sub: Any, plugins: Sequence[TrainerPlugin]) -> None:
    """Add ``train`` with every trainer's commands (and theirs under ``models``)."""
    train_sub = sub.add_parser("train", help="train a pipeline's model").add_subparsers(
        dest="train_command", required=True
    )
    commands = Commands(train_sub, models_sub, parents.common)
    for trainer in plugins:
        if trainer.module is not None:
            trainer.module.register(commands)
            continue
        problem = trainer.problem or "unavailable"
        p = train_sub.add_parser(
            trainer.pipeline,
            parents=[parents.common],
            help=f"cannot run here: {problem}".replace("%", "%%"),
        )
        p.set_defaults(func=_fails(problem))


def _fails(problem: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise NodeError(problem)

    return run


def run_trainer_command(args: argparse.Namespace) -> int:
    """Run the handler a trainer set on its command, lending it the node."""
    handler = getattr(args, "handler", None)
    if handler is None:
        raise NodeError(f"`dicom-node {args.command}`: the trainer set no handler on it")
    return int(handler(args, TrainingNode(args)))


class TrainingNode:
    """The node's ``NodeContext``: the folders of the settings of ``--config`` (read when a
    command first needs them), the model store, and the results console."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args

    @cached_property
    def settings(self) -> NodeSettings:
        return node_settings(self._args)

    @property
    def model_dir(self) -> Path:
        return self.settings.model_dir

    @property
    def storage_dir(self) -> Path:
        return self.settings.storage_dir

    def say(self, text: str) -> None:
        term.out.print(text)

    def register_model(self, folder: Path, *, activate: bool) -> None:
        from dicom_node.jobs.model_registry import import_model

        card = import_model(
            migrated_engine(self.settings), folder, self.model_dir, activate=activate
        )
        state = "and active" if activate else "(activate: `dicom-node models activate`)"
        term.out.print(f"registered {card.pipeline} {card.version} {state}")
