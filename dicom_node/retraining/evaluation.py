"""The gate's evaluation, in a process of its own: model folders scored on one held-out folder.

    python -m dicom_node.retraining.evaluation --pipeline P --data DIR --inputs JSON \\
        --model candidate=FOLDER [--model active=FOLDER] --out RESULTS.json [--threads N]

Each model goes through the trainer's ``Retraining.evaluate`` (found through
``dicom_node.trainers``) on the same folder with the same inputs, so both are scored on
the same films. ``RESULTS.json`` maps each name to its figures, or to ``{"error": ...}``
when that model could not be scored (the other is still scored). Numbers that JSON cannot
hold (NaN, infinity) are written as null.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicom_node import trainers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerInputs:
    """What ``training.contract.RetrainInputs`` holds, by shape (the node never imports
    ``training``): the site's labels file, the active model's folder, the trainer options."""

    labels_file: Path | None = None
    active_model: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "labels_file": None if self.labels_file is None else str(self.labels_file),
            "active_model": None if self.active_model is None else str(self.active_model),
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainerInputs:
        labels, active = data.get("labels_file"), data.get("active_model")
        return cls(
            labels_file=None if labels is None else Path(labels),
            active_model=None if active is None else Path(active),
            options=dict(data.get("options", {})),
        )


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None, tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def evaluate_models(
    pipeline: str, data: Path, models: Mapping[str, Path], inputs: TrainerInputs
) -> dict[str, dict[str, Any]]:
    """Each model's figures on ``data`` (or its error), by name."""
    support = trainers.retraining_support(pipeline)
    results: dict[str, dict[str, Any]] = {}
    for name, folder in models.items():
        try:
            results[name] = json_safe(support.evaluate(folder, data, inputs))
        except Exception as exc:  # recorded: the gate reads it, the log shows it
            logger.exception("%s model %s could not be scored", name, folder)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dicom_node.retraining.evaluation")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--inputs", type=Path, required=True, help="TrainerInputs as JSON")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        import torch  # the trainers' evaluations run on torch

        torch.set_num_threads(args.threads)
    models = {}
    for item in args.model:
        name, _, folder = item.partition("=")
        if not name or not folder:
            parser.error(f"--model {item!r}: expected NAME=FOLDER")
        models[name] = Path(folder)
    inputs = TrainerInputs.from_json(json.loads(args.inputs.read_text(encoding="utf-8")))
    results = evaluate_models(args.pipeline, args.data, models, inputs)
    staging = args.out.with_name(args.out.name + ".partial")
    staging.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
