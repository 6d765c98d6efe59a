"""The shape every trainer package follows, and what the node lends it.

A trainer is ``training/<pipeline>/``. It offers:

* a **config type**: a frozen dataclass with ``out_dir``, ``seed``, ``version``,
  ``validate()`` (raises ``ValueError`` naming the first setting that cannot work) and
  ``summary()`` (the settings as JSON-ready values, written on the model card);
* **named presets** as ``Presets`` of that type (``paper``, ``demo``, ``smoke``, ...),
  built with ``presets.build(name, **overrides)``;
* ``train(config) -> TrainedModel``: a complete model folder and its card;
* its **commands** in ``training/<pipeline>/cli.py``: ``register(commands)`` adds
  ``dicom-node train <pipeline>`` (and any pipeline-specific command, such as
  ``models vgg16-init``) through ``TrainerCommands``, and that module's ``trainer()`` and
  ``demo_entry()`` return the ``Trainer`` and the ``training.demo_entry.DemoEntry``
  (imported on first use, so that building the command line does not import torch);
* optionally ``retraining()`` in that module: its ``Retraining`` (how it retrains from
  the node's archive and scores a model for the promotion gate); a trainer without it
  cannot be retrained by the node.

The node finds trainers by import string (``dicom_node.trainers``), as it finds
pipelines; it never imports a trainer by name. A trainer's command gets a
``NodeContext`` from the node (folders from the node's settings, a way to register the
model folder, an output), so trainers import ``pipelines``, never ``dicom_node``.

This module imports nothing heavy (no torch, no numpy, ``pipelines`` only for type
checking), so that a trainer's command module may use it while the node builds its
command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from pipelines.model_store import ModelCard


class TrainingConfig(Protocol):
    """What every trainer's config type has (a frozen dataclass)."""

    @property
    def out_dir(self) -> Path: ...

    @property
    def seed(self) -> int: ...

    @property
    def version(self) -> str | None: ...

    def validate(self) -> None: ...

    def summary(self) -> dict[str, Any]: ...


C = TypeVar("C", bound=TrainingConfig)


class TrainedModel(Protocol):
    """A finished model folder (``weights.pt``, ``model.json`` and the evaluation) and its card."""

    @property
    def folder(self) -> Path: ...

    @property
    def card(self) -> ModelCard: ...


@dataclass(frozen=True)
class Presets(Generic[C]):
    """Named configs of one trainer; ``build(name, **overrides)`` makes a run's config.

    ``configs`` maps each name to a whole config. An override of ``None`` keeps the
    preset's value (the CLI passes every flag, given or not). ``adjust`` may rewrite the
    preset's config before the overrides go on (hand_orientation drops a preset's
    synthetic films when the overrides name real data).
    """

    configs: Mapping[str, C]
    adjust: Callable[[C, Mapping[str, Any]], C] | None = None

    def names(self) -> list[str]:
        return list(self.configs)

    def __contains__(self, name: object) -> bool:
        return name in self.configs

    def __getitem__(self, name: str) -> C:
        return self.configs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.configs)

    def __len__(self) -> int:
        return len(self.configs)

    def build(self, name: str, **overrides: Any) -> C:
        """The preset ``name`` with ``overrides`` on top; ``ValueError`` for an unknown name
        or setting."""
        if name not in self.configs:
            raise ValueError(f"unknown preset {name!r} (known: {', '.join(self.configs)})")
        base = self.configs[name]
        assert is_dataclass(base)
        known = {item.name for item in fields(base)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        given = {key: value for key, value in overrides.items() if value is not None}
        if self.adjust is not None:
            base = self.adjust(base, given)
        return replace(base, **given)


@dataclass(frozen=True)
class Trainer(Generic[C]):
    """One pipeline's trainer: its config type, presets and training function."""

    pipeline: str
    config_type: type[C]
    presets: Presets[C]
    train: Callable[[C], TrainedModel]

    def config(self, preset: str | None, **chosen: Any) -> C:
        """The config a command line asks for: the named preset (or the defaults, when
        ``preset`` is None) with every setting in ``chosen`` that is not None on top."""
        given = {key: value for key, value in chosen.items() if value is not None}
        return self.config_type(**given) if preset is None else self.presets.build(preset, **given)


# -- retraining from the node's archive ----------------------------------------------------


class CannotRetrain(ValueError):
    """A trainer cannot retrain from what it was given (the message says what it needs)."""


@dataclass(frozen=True)
class RetrainInputs:
    """What a retraining run lends its trainer besides the data folder.

    ``labels_file``: the site's labels (``labels_file`` of a ``[[retraining]]`` entry);
    ``active_model``: the folder of the pipeline's active model, for a trainer that reads
    its data with it (hand_orientation's upright check); None when there is none, and in
    the evaluation on the site's pinned folder, whose films count as they are;
    ``options``: the entry's trainer options (``trainer_options``, e.g. ``max_tilt_deg``).
    """

    labels_file: Path | None = None
    active_model: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Retraining:
    """A trainer's part in a retraining run (``dicom_node/retraining``), where it has one.

    The node picks the studies, links their files into a folder, and calls:

    * ``train_arguments(data_dir, inputs)``: the flags of ``dicom-node train PIPELINE``
      that train from that folder with the trainer's own labels (the node adds
      ``--preset``, ``--out``, ``--version``, ``--threads`` and ``--no-register``);
      ``CannotRetrain`` when the inputs lack what it needs (a labels file);
    * ``evaluate(model_folder, data_folder, inputs)``: a model's figures on a held-out
      folder of DICOM files, the same call for the candidate and the active model (in a
      process of its own: it may import torch);
    * ``sanity(card_metrics, evaluation, inputs)``: what is wrong with a candidate,
      whatever the active model scores (an empty list: nothing).

    ``metric`` names the figure of ``evaluate`` the gate compares (``higher_is_better``
    says which way); ``labels`` says in words where the labels come from.
    """

    labels: str
    metric: str
    higher_is_better: bool
    train_arguments: Callable[[Path, RetrainInputs], list[str]]
    evaluate: Callable[[Path, Path, RetrainInputs], dict[str, Any]]
    sanity: Callable[[Mapping[str, Any], Mapping[str, Any], RetrainInputs], list[str]]


# -- what the node lends a trainer's commands ----------------------------------------------


class NodeContext(Protocol):
    """The node's side of a trainer command: its folders, its model store, its output."""

    @property
    def model_dir(self) -> Path: ...

    @property
    def storage_dir(self) -> Path: ...

    def say(self, text: str) -> None:
        """Print a line of results (rich markup) to standard output."""
        ...

    def register_model(self, folder: Path, *, activate: bool) -> None:
        """Import a model folder into the node's model store (and make it active)."""
        ...


#: A trainer command's handler: ``handler(args, node) -> exit status``.
CommandHandler = Callable[[argparse.Namespace, NodeContext], int]


class TrainerCommands(Protocol):
    """Where a trainer adds its commands to ``dicom-node``; the parser it gets back takes
    the node's common options (``--config``, ``--log-level``) already. The trainer sets
    its handler with ``parser.set_defaults(handler=...)``."""

    def add_train_command(self, name: str, **parser_options: Any) -> argparse.ArgumentParser:
        """``dicom-node train NAME``."""
        ...

    def add_models_command(self, name: str, **parser_options: Any) -> argparse.ArgumentParser:
        """``dicom-node models NAME`` (a pipeline-specific model store command)."""
        ...
