"""``python -m training.ship FOLDER --command "..." --wall-time-s N``: a trained model folder
into ``pipelines/shipped/<pipeline>/<version>/``, its card saying how to make it again.

The card's ``training_data["reproduce"]`` gets the command that trained it, the machine
(processor, cores, Python, torch) and the wall time; the config (seed, data, sizes) and the
held-out metrics are on the card already. The weights' checksum is verified before the
copy and the card is written anew beside the same weights. Checks on real data that can
change after a model was trained (``RESCORED_AT_SHIP``: which region a real CT slice shows)
are run again on the shipped copy, and the card says which metrics were. With
``--half-weights`` the floating-point weights are stored as float16 (half the file; the
loader copies them into the float32 network), for a model whose float32 file would pass
the size a repository should carry; the card says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipelines.model_store import file_sha256, read_model_card, write_model_card
from pipelines.shipped import SHIPPED_DIR


def machine() -> dict[str, Any]:
    """What the run's wall time depends on: processor, cores, Python and torch (its threads
    are on the card already: ``training_data["torch_threads"]``)."""
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        model = names[0] if names else model
    return {
        "processor": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _ct_body_part_metrics(folder: Path) -> dict[str, Any]:
    from pipelines.ct_body_part.model import load_model
    from training.ct_body_part.train import real_slice_metrics

    return real_slice_metrics(load_model(folder))


#: pipeline → the metrics scored again on the shipped copy (merged into the card's).
RESCORED_AT_SHIP: dict[str, Callable[[Path], dict[str, Any]]] = {
    "ct_body_part": _ct_body_part_metrics,
}


def halve_weights(path: Path) -> None:
    """Store the floating-point tensors of the state dict at ``path`` as float16 (integer
    ones, such as batch norm's counters, as they are), durably."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    halved = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(halved, temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def ship(
    folder: Path,
    command: str,
    wall_time_s: float,
    target_root: Path = SHIPPED_DIR,
    *,
    half_weights: bool = False,
) -> Path:
    """Copy ``folder`` (a verified model folder) to ``target_root/<pipeline>/<version>`` and
    record how it was made on its card; refuses to replace a shipped version."""
    card = read_model_card(folder)  # checks the weights against the card
    target = target_root / card.pipeline / card.version
    if target.exists():
        raise FileExistsError(f"{target} exists: a shipped version is never replaced")
    shutil.copytree(folder, target)
    reproduce: dict[str, Any] = {
        "command": command,
        "wall_time_s": round(wall_time_s),
        "machine": machine(),
    }
    if half_weights:
        halve_weights(target / card.weights_file)
        card = replace(card, weights_sha256=file_sha256(target / card.weights_file))
        reproduce["weights_stored_as"] = (
            "float16, loaded into the float32 network (the held-out metrics were measured "
            "with the float32 weights)"
        )
    metrics = dict(card.metrics)
    rescore = RESCORED_AT_SHIP.get(card.pipeline)
    if rescore is not None:
        rescored = rescore(target)
        metrics.update(rescored)
        reproduce["metrics_rescored_at_ship"] = sorted(rescored)
    training_data = {**card.training_data, "reproduce": reproduce}
    write_model_card(target, replace(card, metrics=metrics, training_data=training_data))
    read_model_card(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__)
    parser.add_argument("folder", type=Path, help="a trained model folder")
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--wall-time-s", type=float, required=True, help="how long it took")
    parser.add_argument(
        "--half-weights", action="store_true", help="store the weights as float16 (half the size)"
    )
    args = parser.parse_args(argv)
    target = ship(args.folder, args.command, args.wall_time_s, half_weights=args.half_weights)
    print(json.dumps({"shipped": str(target)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
