"""Triage benchmark: the ``xray_triage`` path per film, both modules, against eager torch and
against the downstream pipelines' own networks, all in the same run.

    .venv/bin/python -m benchmarks.triage [--architecture densenet121] [--input 224]
                                          [--films 4] [--size 2048] [--threads 2]
                                          [--repeat 3] [--warmup 1] [--workdir DIR]
                                          [--json PATH]

One series of ``--films`` synthetic radiographs (``training.synthetic.xray_types``, DX,
longer side ``--size``, Body Part Examined missing: the series triage exists for) is
classified as the node runs it, with ``torch.set_num_threads(--threads)``. Every figure is
milliseconds per film: a series' time divided by its films, the median over ``--repeat``
rounds after ``--warmup`` rounds; the measurements take turns within each round, so all
meet the same machine.

Measured:

- ``decode``: ``preprocess.read_image`` (film_io: LUTs, MONOCHROME1);
- ``preprocess``: ``preprocess.network_input`` (area resize to ``--input``², 8 bit, [−1, 1]);
- ``module I`` / ``module II``: ``TriageModel.xray_probabilities`` / ``type_probabilities``
  of the series' films (channels-last, ``inference_mode``, the pipeline's batches of 8);
- ``whole path``: ``XrayTriage(xray_threshold=0).run`` (every film read, both modules run:
  the most a series costs);
- ``eager torch``: the same two networks, the textbook way (a copy in the default memory
  format, ``torch.no_grad``, the whole series as one batch): the networks' bare cost;
- the downstream networks, per film at their papers' input (224): ``mura_abnormality``'s
  DenseNet-169 with its head as its pipeline runs it on torch (``MuraModel.probabilities``)
  and ``hand_orientation``'s ResNet-50 (eager, channels-last, ``inference_mode``).

Ratios: whole path / eager torch (what the pipeline adds to its networks), modules I + II /
eager torch, and whole path / each downstream network (issue 28: triage must add less than
the downstream pipeline's own network time, i.e. a ratio below 1).

Weights are untrained (seeded random): the times hold, the classes mean nothing. The share
of the CPUs other processes used during the run is printed and stored: figures taken
beside other work are pessimistic. Results: a table, and ``--json`` (default
``WORKDIR/triage-results.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.mura import write_untrained_model as write_untrained_mura  # noqa: E402
from benchmarks.orientation import cpu_counters, foreign_share, machine_state  # noqa: E402
from pipelines import SeriesInput  # noqa: E402
from pipelines.hand_orientation.network import build_network as build_orientation  # noqa: E402
from pipelines.model_store import WEIGHTS_FILE, ModelCard, file_sha256, write_model_card  # noqa: E402
from pipelines.mura_abnormality.model import load_model as load_mura  # noqa: E402
from pipelines.xray_triage import XrayTriage  # noqa: E402
from pipelines.xray_triage.model import architecture_json  # noqa: E402
from pipelines.xray_triage.model import load_model as load_triage  # noqa: E402
from pipelines.xray_triage.network import ARCHITECTURES, TriageNetworks  # noqa: E402
from pipelines.xray_triage.preprocess import InputSpec, network_input, read_image  # noqa: E402

VERSION = "bench-untrained"
UID_ROOT = "1.2.826.0.1.3680043.8.498.98"
WEIGHTS_NOTE = "untrained (seeded random weights): the times hold, the classes mean nothing"
STAGES = ("decode", "preprocess", "module I", "module II")
WHOLE = "whole path"
EAGER = "eager torch (modules I + II)"
DOWNSTREAM = ("mura_abnormality network (DenseNet-169)", "hand_orientation network (ResNet-50)")
DOWNSTREAM_INPUT = 224

console = Console(highlight=False, soft_wrap=False, width=160)


def write_untrained_triage(folder: Path, architecture: str, size: int) -> Path:
    """A triage model folder with seeded random weights, as the pipeline loads a trained one."""
    torch.manual_seed(0)
    networks = TriageNetworks(architecture)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(networks.state_dict(), folder / WEIGHTS_FILE)
    card = ModelCard(
        pipeline="xray_triage",
        version=VERSION,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        architecture=architecture_json(architecture),
        input_spec=InputSpec(size=size).to_json(),
        weights_sha256=file_sha256(folder / WEIGHTS_FILE),
        training_data={"kind": WEIGHTS_NOTE},
        calibration={"xray_threshold": 0.5, "disagreement_threshold": 0.9},
    )
    write_model_card(folder, card)
    return folder


def write_films(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` synthetic radiographs of different types as one series, no Body Part Examined."""
    from training.synthetic.xray_types import XRAY_TYPE_NAMES, render_triage_film, write_triage_film

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        kind = XRAY_TYPE_NAMES[(index * 5) % len(XRAY_TYPE_NAMES)]
        film = render_triage_film(kind, 500 + index, size=size)
        files.append(
            write_triage_film(
                film,
                folder / f"{index:03d}-{kind}.dcm",
                body_part_examined=None,
                study_instance_uid=f"{UID_ROOT}.1",
                series_instance_uid=f"{UID_ROOT}.2",
                seed=index,
            )
        )
    return files


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000.0


def eager(network: torch.nn.Module, batch: torch.Tensor) -> None:
    with torch.no_grad():
        network(batch)


def one_round(
    series: SeriesInput,
    pipeline: XrayTriage,
    eager_networks: TriageNetworks,
    mura: Any,
    orientation: torch.nn.Module,
) -> dict[str, float]:
    """Every measurement once, in turn; milliseconds per film."""
    films = len(series.files)
    model = pipeline.model(series)
    out: dict[str, float] = {}
    images: list[Any] = []
    out["decode"] = timed(lambda: images.extend(read_image(p) for p in series.files))
    tensors: list[torch.Tensor] = []
    out["preprocess"] = timed(
        lambda: tensors.extend(network_input(i.grey, model.spec) for i in images)
    )
    batch = torch.stack(tensors)
    out["module I"] = timed(lambda: model.xray_probabilities(batch))
    out["module II"] = timed(lambda: model.type_probabilities(batch))
    out[WHOLE] = timed(lambda: pipeline.run(series))
    plain = batch.contiguous()

    def both() -> None:
        eager(eager_networks.xray_or_not, plain)
        eager(eager_networks.xray_type, plain)

    out[EAGER] = timed(both)
    downstream_batch = torch.rand(films, 3, DOWNSTREAM_INPUT, DOWNSTREAM_INPUT) * 2 - 1
    out[DOWNSTREAM[0]] = timed(lambda: mura.probabilities(downstream_batch))

    @torch.inference_mode()
    def orient() -> None:
        orientation(downstream_batch.contiguous(memory_format=torch.channels_last))

    out[DOWNSTREAM[1]] = timed(orient)
    return {key: value / films for key, value in out.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="densenet121")
    parser.add_argument("--input", type=int, default=224, help="triage input size (paper: 224)")
    parser.add_argument("--films", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048, help="longer side of the films")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.films < 1 or args.repeat < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--films, --repeat and --threads must be at least 1, --warmup at least 0")
    torch.set_num_threads(args.threads)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="triage-bench-"))
    triage_dir = write_untrained_triage(workdir / "triage-model", args.architecture, args.input)
    mura_dir = write_untrained_mura(workdir / "mura-model", "densenet169", DOWNSTREAM_INPUT)
    files = write_films(workdir / "films", args.films, args.size)
    series = SeriesInput(f"{UID_ROOT}.1", f"{UID_ROOT}.2", "DX", tuple(files), VERSION, triage_dir)
    pipeline = XrayTriage(xray_threshold=0.0)  # module II runs for every series
    eager_networks = load_triage(triage_dir).networks.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    mura = load_mura(mura_dir, runtime="torch")
    torch.manual_seed(0)
    orientation = build_orientation("resnet50").eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    rounds: list[dict[str, float]] = []
    before = cpu_counters()
    started = time.perf_counter()
    for index in range(args.warmup + args.repeat):
        measured = one_round(series, pipeline, eager_networks, mura, orientation)
        if index >= args.warmup:
            rounds.append(measured)
    wall = time.perf_counter() - started
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    network = medians["module I"] + medians["module II"]
    ratios = {
        "whole path / eager torch": medians[WHOLE] / medians[EAGER],
        "modules I + II / eager torch": network / medians[EAGER],
        **{f"whole path / {name}": medians[WHOLE] / medians[name] for name in DOWNSTREAM},
        **{f"modules I + II / {name}": network / medians[name] for name in DOWNSTREAM},
    }
    report: dict[str, Any] = {
        "architecture": args.architecture,
        "input": args.input,
        "films": args.films,
        "film_size": args.size,
        "threads": args.threads,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "weights": WEIGHTS_NOTE,
        "ms_per_film": {key: round(value, 2) for key, value in medians.items()},
        "ratios": {key: round(value, 3) for key, value in ratios.items()},
        "target_met": {name: medians[WHOLE] < medians[name] for name in DOWNSTREAM},
        "foreign_cpu_share": foreign_share(before, wall),
        "machine": {
            **machine_state(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    table = Table(
        title=f"xray_triage ({args.architecture} at {args.input}), {args.films} films of "
        f"{args.size} px, {args.threads} threads: ms per film (median of {args.repeat})",
        box=box.ASCII,
    )
    table.add_column("measured")
    table.add_column("ms / film", justify="right")
    for key, value in medians.items():
        table.add_row(key, f"{value:.1f}")
    console.print(table)
    for key, value in ratios.items():
        console.print(f"{key}: {value:.2f}")
    share = report["foreign_cpu_share"]
    if share is not None:
        console.print(f"other processes used {share:.0%} of the CPUs during the run")
    out = args.json or workdir / "triage-results.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
