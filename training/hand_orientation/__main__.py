"""``python -m training.hand_orientation``: one training run from the shell, without the node.

The node's own command is ``dicom-node train hand_orientation`` (it also registers the
model); this entry point is for experiments: a preset, any ``TrainConfig`` field as
``--set name=value`` (JSON values, strings as they are), and the thread count.

    python -m training.hand_orientation --preset demo --out var/models-eval \\
        --set synthetic_films=3000 --set epochs=30 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from training.hand_orientation.train import PRESETS, TrainConfig, train_orientation


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.hand_orientation")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset")
    parser.add_argument("--out", type=Path, required=True, help="parent of the model folder")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {"out_dir": args.out, "progress": not args.no_progress}
    for item in args.set:
        name, _, text = item.partition("=")
        value = _value(text)
        if name in ("data_dir", "labels_csv", "init_weights") and value is not None:
            value = Path(str(value))
        overrides[name] = value
    if args.preset is None:
        config = TrainConfig(**overrides)
    else:  # `--set NAME=null` sets None, where the presets' None keeps the preset's value
        unset: dict[str, Any] = {k: None for k, v in overrides.items() if v is None}
        config = replace(PRESETS.build(args.preset, **overrides), **unset)
    trained = train_orientation(config)
    print(json.dumps({"folder": str(trained.folder), **trained.metrics}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
