"""Trainers by pipeline name, as import strings: the node never imports `training` by name.

``BUILTIN_TRAINERS`` maps a pipeline to its trainer's command module (``training/<pipeline>/
cli.py``), as ``pipelines.registry`` maps pipelines to their classes. That module has
``register(commands)`` (its ``dicom-node`` commands), ``trainer()`` (the
``training.contract.Trainer``) and ``demo_entry()`` (its ``training.demo_entry.DemoEntry``,
or None); it imports torch only inside them, so the command line stays quick to build.
A trainer the node can retrain from its archive also has ``retraining()`` (its
``training.contract.Retraining``, reached through ``retraining_support``).
The node reaches every trainer through this registry and never imports one by name.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

# bone_age and xray_triage are added here as their issues land.
BUILTIN_TRAINERS: dict[str, str] = {
    "hand_orientation": "training.hand_orientation.cli",
    "ct_body_part": "training.ct_body_part.cli",
    "mura_abnormality": "training.mura_abnormality.cli",
    "xray_triage": "training.xray_triage.cli",
    "bone_age": "training.bone_age.cli",
}


class TrainerUnavailable(LookupError):
    """No trainer under that name, or its module cannot be imported or lacks a part."""


_REQUIRED = ("register", "trainer", "demo_entry")


def trainer_names() -> list[str]:
    return list(BUILTIN_TRAINERS)


def trainer_module(name: str) -> ModuleType:
    """The command module of ``name``'s trainer, checked for the parts the node calls."""
    target = BUILTIN_TRAINERS.get(name)
    if target is None:
        known = ", ".join(BUILTIN_TRAINERS) or "none"
        raise TrainerUnavailable(f"no trainer for pipeline {name!r} (known: {known})")
    try:
        module = importlib.import_module(target)
    except ImportError as exc:
        raise TrainerUnavailable(f"trainer {name!r}: cannot import {target}: {exc}") from exc
    missing = [part for part in _REQUIRED if not callable(getattr(module, part, None))]
    if missing:
        raise TrainerUnavailable(f"trainer {name!r}: {target} has no {', '.join(missing)}")
    return module


def retraining_support(name: str) -> Any:
    """``name``'s ``training.contract.Retraining`` (typed ``Any``: the node never imports
    ``training``); ``TrainerUnavailable`` when the trainer cannot retrain from the archive."""
    module = trainer_module(name)
    make = getattr(module, "retraining", None)
    if not callable(make):
        raise TrainerUnavailable(
            f"trainer {name!r} cannot retrain from the node's archive "
            f"({BUILTIN_TRAINERS[name]} has no retraining())"
        )
    return make()
