"""MURA benchmark: the ``mura_abnormality`` path per view, stage by stage, per runtime.

    .venv/bin/python -m benchmarks.mura [--architecture densenet169] [--views 8]
                                        [--threads 2] [--films synthetic|real]
                                        [--size 2048] [--input 224] [--repeat 3]
                                        [--warmup 1] [--keep-freed-mb N]
                                        [--workdir DIR] [--json PATH]

One study of ``--views`` views, run as the node runs it (``MuraAbnormality.run`` and the
worker's ``encode_result``; writing the files is disk, not CPU, and left out), with
``torch.set_num_threads(--threads)`` and ONNX Runtime given as many threads. The network
runs under each runtime in the same run, ``torch`` (eager, channels-last,
``inference_mode``) and ``onnxruntime`` (exported in memory, as the pipeline's
``runtime="onnxruntime"`` does); the runtimes take turns round by round, so that both
meet the same machine. Every figure is milliseconds per view: a study's time divided by
its number of views, the median over ``--repeat`` rounds after ``--warmup`` rounds.

Stages, timed one by one with the functions the pipeline calls, in its order:

- ``decode``: ``pipelines.film_io.read_film`` (pydicom and its decoders; LUTs, MONOCHROME1);
- ``preprocess``: ``preprocess.network_input`` (area resize to ``--input``², 8 bit, [−1, 1]);
- ``network``: ``MuraModel.probabilities`` of the study's views (8 per forward pass);
- ``encode SR``: ``encode_result`` of the result without heat maps (the SR);
- ``Grad-CAM``: ``MuraModel.heat_maps`` of every view (always eager torch: it needs
  gradients), as for an abnormal study whose every view reaches the threshold, the most
  heat maps a study gets;
- ``overlay``: ``heatmap.render_overlay`` of every view (the SC's picture, ≤ 1024 px);
- ``encode SC+KOS``: ``encode_result`` of those SCs and the Key Object Selection.

Whole paths, measured end to end (one call each, not a sum): ``whole path`` is
``MuraAbnormality(heat_maps=False, threshold=1.0).run`` (a normal study) and the encoding
of its result, the SR; ``whole path + Grad-CAM`` is ``MuraAbnormality(threshold=0.0)``
(every view abnormal, so every view gets a heat map) and the encoding of its SR, SCs and
KOS. The pipeline's network runs on the views read so far while a thread reads the next
ones, so a whole path can take less than the sum of its stages, which are timed one
after the other. The target of issue 23: the
whole path without Grad-CAM under ONNX Runtime within 1.5 × ONNX Runtime's ``network``
time alone, in the same run; Grad-CAM's extra cost is the difference of the two whole
paths, also given as a ratio to that network time. The network is timed alone just
before and just after the whole paths without Grad-CAM in every round (the ``network``
stage is the mean of the two), and the target's ratios are the median over rounds of
each round's ratio: the speed of a shared machine drifts over minutes, and a ratio of
times taken seconds apart drifts far less. The table's ratios are of medians.

Films: ``synthetic`` (default): ``training.synthetic.msk_films`` studies, DX MONOCHROME2 and
CR MONOCHROME1 alternating, longer side ``--size`` (written once into ``WORKDIR``);
``real``: the real radiographs the installed packages hold, pydicom-data's chest and
extremity CR (MONOCHROME1) as Explicit VR Little Endian, JPEG 2000 lossless and JPEG 2000
lossy, and deid-data's DX film, taken in turn; each view's copy gets its own SOP, Series
and the study's Study Instance UID (and the benchmark's patient), its pixel data (the
JPEG 2000 codestreams too) kept byte for byte.

The network's weights are untrained (seeded random, written as a model folder the
pipeline loads): the time does not depend on them, the verdicts are meaningless. The
share of the CPUs other processes used during the run is printed and stored: figures
taken beside other work are pessimistic. Results: tables, and ``--json`` (default
``WORKDIR/mura-results.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import torch  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.orientation import cpu_counters, foreign_share, machine_state  # noqa: E402
from dicom_node.jobs.worker import keep_freed_memory  # noqa: E402
from dicom_node.output.encode import DeviceIdentity, encode_result  # noqa: E402
from dicom_node.output.sources import source_headers_for  # noqa: E402
from dicom_node.settings import NodeSettings  # noqa: E402
from pipelines import SeriesInput, StudyInput  # noqa: E402
from pipelines.contract import PipelineResult  # noqa: E402
from pipelines.film_io import read_film  # noqa: E402
from pipelines.model_store import (  # noqa: E402
    WEIGHTS_FILE,
    ModelCard,
    file_sha256,
    write_model_card,
)
from pipelines.mura_abnormality import MuraAbnormality  # noqa: E402
from pipelines.mura_abnormality.heatmap import GradCamMaps, render_overlay  # noqa: E402
from pipelines.mura_abnormality.model import MuraModel  # noqa: E402
from pipelines.mura_abnormality.network import (  # noqa: E402
    ARCHITECTURES,
    DEFAULT_HEAD,
    HEAD_DROPOUT,
    PAPER_ARCHITECTURE,
    build_network,
)
from pipelines.mura_abnormality.preprocess import PAPER_SIZE, InputSpec, network_input  # noqa: E402

RUNTIMES = ("torch", "onnxruntime")
BASELINE_RUNTIME = "onnxruntime"
#: The stages of the path without Grad-CAM, and those Grad-CAM adds, in the pipeline's order.
PLAIN_STAGES = ("decode", "preprocess", "network", "encode SR")
GRADCAM_STAGES = ("Grad-CAM", "overlay", "encode SC+KOS")
STAGES = (*PLAIN_STAGES, *GRADCAM_STAGES)
WHOLE_PATHS = ("whole path", "whole path + Grad-CAM")
#: The same work without the pipeline's two levers, measured in the same rounds.
READ_FIRST = "whole path, read first"
FULL_BACKWARD = "Grad-CAM, full backward"
REFERENCES = (READ_FIRST, FULL_BACKWARD)
#: The target: the whole path without Grad-CAM within this many ONNX Runtime network times.
TARGET_RATIO = 1.5
VERSION = "bench-untrained"
UID_ROOT = "1.2.826.0.1.3680043.8.498.99"
DEVICE = DeviceIdentity(ae_title="DICOM_NODE", software_version="benchmark")
WEIGHTS_NOTE = "untrained (seeded random weights): the times hold, the verdicts mean nothing"

#: (package, path inside it) of the real radiographs ``--films real`` takes in turn.
REAL_FILMS: tuple[tuple[str, str], ...] = (
    ("data_store", "data/RG1_UNCR.dcm"),
    ("data_store", "data/RG3_J2KR.dcm"),
    ("deid_data", "data/animals/cat.dcm"),
    ("data_store", "data/RG1_J2KI.dcm"),
    ("data_store", "data/RG3_UNCR.dcm"),
    ("data_store", "data/RG1_J2KR.dcm"),
    ("data_store", "data/RG3_J2KI.dcm"),
)

console = Console(highlight=False, soft_wrap=False, width=160)


# -- the model and the films ------------------------------------------------------------------


def write_untrained_model(folder: Path, architecture: str, size: int) -> Path:
    """A model folder with seeded random weights, as the pipeline loads a trained one."""
    torch.manual_seed(0)
    network = build_network(architecture, head=DEFAULT_HEAD, dropout=HEAD_DROPOUT)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / WEIGHTS_FILE)
    card = ModelCard(
        pipeline="mura_abnormality",
        version=VERSION,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        architecture={"name": architecture, "head": list(DEFAULT_HEAD), "dropout": HEAD_DROPOUT},
        input_spec=InputSpec(size=size).to_json(),
        weights_sha256=file_sha256(folder / WEIGHTS_FILE),
        training_data={"kind": WEIGHTS_NOTE},
        calibration={"threshold": 0.5},
    )
    write_model_card(folder, card)
    return folder


def write_synthetic_films(folder: Path, views: int, size: int) -> list[Path]:
    """``views`` synthetic views (four per rendered study) in one study, one series each."""
    from training.synthetic.msk_films import REGIONS, make_msk_study, write_msk_study

    study_uid = generate_uid(prefix=f"{UID_ROOT}.", entropy_srcs=["mura-bench", str(size)])
    files: list[Path] = []
    seed = 0
    while len(files) < views:
        count = min(4, views - len(files))
        study = make_msk_study(
            7000 + seed, region=REGIONS[seed % len(REGIONS)], views=count, size=size
        )
        written = write_msk_study(
            folder,
            study,
            modality="DX" if seed % 2 == 0 else "CR",
            photometric="MONOCHROME2" if seed % 2 == 0 else "MONOCHROME1",
            series_per_view=True,
            study_uid=study_uid,
        )
        files.extend(written.files)
        seed += 1
    return files


def real_film_sources() -> list[Path]:
    found = []
    for package, inside in REAL_FILMS:
        spec = importlib.util.find_spec(package)  # never pydicom.data's downloader
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"{package} is not installed: pip install -e '.[dev]'")
        path = Path(next(iter(spec.submodule_search_locations))) / inside
        if not path.is_file():
            raise SystemExit(f"{path} is missing")
        found.append(path)
    return found


def write_real_films(folder: Path, views: int) -> list[Path]:
    """``views`` copies of the real films, taken in turn, as one study of one-view series
    (new UIDs and the benchmark's patient; the pixel data as it was, byte for byte)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid(prefix=f"{UID_ROOT}.", entropy_srcs=["mura-bench-real"])
    sources = real_film_sources()
    files = []
    for index in range(views):
        source = sources[index % len(sources)]
        dataset = pydicom.dcmread(source)
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = generate_uid(
            prefix=f"{UID_ROOT}.", entropy_srcs=[study_uid, "series", str(index)]
        )
        dataset.SOPInstanceUID = generate_uid(
            prefix=f"{UID_ROOT}.", entropy_srcs=[study_uid, "instance", str(index)]
        )
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.PatientName = "Benchmark^MURA"
        dataset.PatientID = "MURA-BENCH"
        dataset.SeriesNumber = index + 1
        path = folder / f"{index:03d}-{source.stem}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def film_descriptions(files: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in files:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        out.append(
            {
                "file": path.name,
                "modality": str(header.Modality),
                "photometric": str(header.PhotometricInterpretation),
                "transfer_syntax": header.file_meta.TransferSyntaxUID.name,
                "rows": int(header.Rows),
                "columns": int(header.Columns),
            }
        )
    return out


def study_of(files: list[Path], model_dir: Path) -> StudyInput:
    """The node's view of the study: one series per file, in the files' order."""
    series = []
    for path in files:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        series.append(
            SeriesInput(
                study_instance_uid=str(header.StudyInstanceUID),
                series_instance_uid=str(header.SeriesInstanceUID),
                modality=str(header.Modality),
                files=(path,),
                model_version=VERSION,
                model_dir=model_dir,
            )
        )
    return StudyInput(series[0].study_instance_uid, tuple(series), VERSION, model_dir)


# -- one round --------------------------------------------------------------------------------


def encode(result: PipelineResult, study: StudyInput) -> int:
    """The worker's encoding of ``result`` (no writing); returns the number of objects."""
    return len(
        encode_result(
            result,
            source_headers_for(result, study.files),
            device=DEVICE,
            uid_root=UID_ROOT,
            source_key=f"study:{study.study_instance_uid}",
        )
    )


@dataclasses.dataclass
class Runtime:
    """One runtime's pipelines (without heat maps, reading ahead or not; with a heat map for
    every view), a Grad-CAM with a full backward pass, and the per-view milliseconds of
    each round."""

    name: str
    plain: MuraAbnormality
    heat: MuraAbnormality
    read_first: MuraAbnormality
    full_backward: GradCamMaps | None = None
    times: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    outputs: dict[str, int] = dataclasses.field(default_factory=dict)
    ratios: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def model(self, study: StudyInput) -> MuraModel:
        return self.plain.model(study)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def run_and_encode(runtime: Runtime, key: str, pipeline: MuraAbnormality, study: StudyInput) -> Any:
    """One whole path: the pipeline's run and the worker's encoding of its result."""
    result = pipeline.run(study)
    runtime.outputs[key] = encode(result, study)
    return result


def one_round(runtime: Runtime, study: StudyInput) -> tuple[dict[str, float], dict[str, float]]:
    """Each stage once, as the pipeline runs it, and each whole path once, end to end:
    seconds for the whole study, and each whole path's ratio to the network's time of
    this round (timed alone just before and just after the whole paths without Grad-CAM,
    so that the ratio compares times taken within seconds of each other)."""
    model = runtime.model(study)
    heat_model = runtime.heat.model(study)
    seconds = dict.fromkeys(STAGES, 0.0)
    inputs = []
    displays = []
    for path in study.files:
        spent, film = timed(partial(read_film, path))
        seconds["decode"] += spent
        spent, tensor = timed(partial(network_input, film.display, model.spec))
        seconds["preprocess"] += spent
        inputs.append(tensor)
        displays.append(film.display)
    batch = torch.stack(inputs)
    network = partial(model.probabilities, batch, batch_size=8)
    before, _ = timed(network)
    results: dict[str, PipelineResult] = {}
    for key, pipeline in (("whole path", runtime.plain), (READ_FIRST, runtime.read_first)):
        seconds[key], results[key] = timed(partial(run_and_encode, runtime, key, pipeline, study))
    after, _ = timed(network)
    seconds["network"] = (before + after) / 2
    key = "whole path + Grad-CAM"
    seconds[key], full = timed(partial(run_and_encode, runtime, key, runtime.heat, study))

    seconds["encode SR"], _ = timed(partial(encode, results["whole path"], study))
    seconds["Grad-CAM"], (maps, _) = timed(partial(heat_model.heat_maps, batch))
    if runtime.full_backward is None:
        # From the network that predicts (the pipeline's Grad-CAM copy is restricted).
        runtime.full_backward = GradCamMaps(heat_model.network, layer_gradient_only=False)
    seconds[FULL_BACKWARD], (same, _) = timed(partial(runtime.full_backward, batch))
    if not np.allclose(same, maps, atol=1e-5):
        raise SystemExit("Grad-CAM with the full backward pass gives other maps")
    lines = ["Study ABNORMAL: p = 0.50 (threshold 0.00)", "This view: p = 0.50", "benchmark"]
    for display, heat in zip(displays, maps, strict=True):
        spent, _ = timed(
            partial(render_overlay, display, heat, lines, max_side=runtime.heat.max_side)
        )
        seconds["overlay"] += spent
    pictures = dataclasses.replace(full, measurements=(), findings=())
    seconds["encode SC+KOS"], _ = timed(partial(encode, pictures, study))

    net = seconds["network"]
    ratios = {key: seconds[key] / net for key in (*WHOLE_PATHS, READ_FIRST)}
    ratios["Grad-CAM's extra"] = (seconds["whole path + Grad-CAM"] - seconds["whole path"]) / net
    return seconds, ratios


def run_rounds(
    runtimes: list[Runtime],
    study: StudyInput,
    repeat: int,
    warmup: int,
    advance: Callable[[], None],
) -> None:
    views = len(study.files)
    for number in range(warmup + repeat):
        # A rotating order, so that neither runtime always runs first in a round.
        order = runtimes[number % len(runtimes) :] + runtimes[: number % len(runtimes)]
        for runtime in order:
            seconds, ratios = one_round(runtime, study)
            if number >= warmup:
                for key, value in seconds.items():
                    runtime.times.setdefault(key, []).append(1000.0 * value / views)
                for key, value in ratios.items():
                    runtime.ratios.setdefault(key, []).append(value)
            advance()


# -- the report -------------------------------------------------------------------------------


def runtime_report(runtime: Runtime) -> dict[str, Any]:
    median = {key: statistics.median(values) for key, values in runtime.times.items()}
    stages = {stage: round(median[stage], 3) for stage in STAGES}
    without = sum(stages[s] for s in PLAIN_STAGES)
    extra = sum(stages[s] for s in GRADCAM_STAGES)
    return {
        "references_ms": {key: round(median[key], 3) for key in REFERENCES},
        "stages_ms": stages,
        "stages_without_gradcam_ms": round(without, 3),
        "stages_gradcam_extra_ms": round(extra, 3),
        "stages_total_ms": round(without + extra, 3),
        "whole_path_ms": round(median["whole path"], 3),
        "whole_path_gradcam_ms": round(median["whole path + Grad-CAM"], 3),
        "gradcam_extra_ms": round(median["whole path + Grad-CAM"] - median["whole path"], 3),
        "outputs": {key: runtime.outputs[key] for key in WHOLE_PATHS},
        "per_round_ratios_to_own_network": {
            key: round(statistics.median(values), 3) for key, values in runtime.ratios.items()
        },
        "rounds": len(runtime.times["whole path"]),
    }


def target_report(report: dict[str, dict[str, Any]]) -> dict[str, Any]:
    base = report[BASELINE_RUNTIME]
    network = base["stages_ms"]["network"]

    def ratio(value: float) -> float:
        return round(value / network, 3)

    # The target's figures: the median over rounds of each round's ratio to that round's
    # own network time (on a shared machine its speed drifts between rounds).
    own = base["per_round_ratios_to_own_network"]
    return {
        "baseline": f"{BASELINE_RUNTIME} network",
        "network_ms": network,
        "limit_ms": round(TARGET_RATIO * network, 3),
        "target_ratio": TARGET_RATIO,
        "ratios_are": "median over rounds of the round's time / that round's network time",
        "whole_path_ratio": own["whole path"],
        "met": own["whole path"] <= TARGET_RATIO,
        "whole_path_gradcam_ratio": own["whole path + Grad-CAM"],
        "gradcam_extra_ratio": own["Grad-CAM's extra"],
        "read_first_ratio": own[READ_FIRST],
        "gradcam_full_backward_over_gradcam": round(
            base["references_ms"][FULL_BACKWARD] / base["stages_ms"]["Grad-CAM"], 3
        ),
        "ratios": {
            name: {
                **{stage: ratio(row["stages_ms"][stage]) for stage in STAGES},
                "whole path": ratio(row["whole_path_ms"]),
                "whole path + Grad-CAM": ratio(row["whole_path_gradcam_ms"]),
                **{key: ratio(row["references_ms"][key]) for key in REFERENCES},
            }
            for name, row in report.items()
        },
    }


def print_tables(report: dict[str, dict[str, Any]], target: dict[str, Any], title: str) -> None:
    names = list(report)
    table = Table(
        title=f"{title}: ms per view, median (× {target['baseline']} time)", box=box.ASCII
    )
    table.add_column("stage")
    for name in names:
        table.add_column(name, justify="right")

    def cell(name: str, value: float, key: str) -> str:
        return f"{value:.1f} ({target['ratios'][name][key]:.2f}×)"

    for stage in STAGES:
        if stage == GRADCAM_STAGES[0]:
            table.add_row(
                "sum without Grad-CAM",
                *(f"{report[n]['stages_without_gradcam_ms']:.1f}" for n in names),
            )
        table.add_row(stage, *(cell(n, report[n]["stages_ms"][stage], stage) for n in names))
    table.add_row("sum of stages", *(f"{report[n]['stages_total_ms']:.1f}" for n in names))
    table.add_section()
    table.add_row("whole path", *(cell(n, report[n]["whole_path_ms"], "whole path") for n in names))
    table.add_row(
        "whole path + Grad-CAM",
        *(cell(n, report[n]["whole_path_gradcam_ms"], "whole path + Grad-CAM") for n in names),
    )
    table.add_row("Grad-CAM's extra", *(f"{report[n]['gradcam_extra_ms']:.1f}" for n in names))
    table.add_section()
    for key in REFERENCES:
        table.add_row(
            f"{key} (before the lever)",
            *(cell(n, report[n]["references_ms"][key], key) for n in names),
        )
    console.print(table)
    verdict = "[green]met[/]" if target["met"] else "[red]not met[/]"
    console.print(
        f"target (per round, median): whole path ({BASELINE_RUNTIME}) = "
        f"{target['whole_path_ratio']:.2f} × the {BASELINE_RUNTIME} network's time alone "
        f"(median {target['network_ms']:.1f} ms per view), against {TARGET_RATIO} ×: "
        f"{verdict}; with Grad-CAM "
        f"{target['whole_path_gradcam_ratio']:.2f} × (Grad-CAM adds "
        f"{target['gradcam_extra_ratio']:.2f} ×); reading every view before the network: "
        f"{target['read_first_ratio']:.2f} ×; Grad-CAM with a full backward pass takes "
        f"{target['gradcam_full_backward_over_gradcam']:.2f} × the pipeline's"
    )


# -- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", choices=ARCHITECTURES, default=PAPER_ARCHITECTURE)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--films", choices=("synthetic", "real"), default="synthetic")
    parser.add_argument("--size", type=int, default=2048, help="synthetic films' longer side")
    parser.add_argument("--input", type=int, default=PAPER_SIZE, help="network input size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--keep-freed-mb",
        type=int,
        default=NodeSettings.model_fields["worker_keep_freed_mb"].default,
        help="malloc keeps this much freed memory, as the node's worker_keep_freed_mb does",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.views < 1 or args.threads < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error("--views, --threads and --repeat ≥ 1, --warmup ≥ 0")
    if args.size < 64 or not 32 <= args.input <= 1024:
        parser.error("--size ≥ 64, --input in 32..1024")

    torch.set_num_threads(args.threads)
    malloc_tuned = keep_freed_memory(args.keep_freed_mb)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        model_dir = write_untrained_model(
            workdir / f"model-{args.architecture}-{args.input}", args.architecture, args.input
        )
        suffix = f"-{args.size}" if args.films == "synthetic" else ""
        films = workdir / f"films-{args.films}-{args.views}{suffix}"
        existing = sorted(films.glob("*.dcm"))
        if len(existing) == args.views:
            files = existing
        else:
            for path in existing:
                path.unlink()
            console.print(f"writing {args.views} {args.films} views into {films}…")
            if args.films == "synthetic":
                files = write_synthetic_films(films, args.views, args.size)
            else:
                files = write_real_films(films, args.views)
        study = study_of(sorted(files), model_dir)
        described = film_descriptions(list(study.files))
        console.print(
            f"mura_abnormality, {args.architecture} at {args.input}², {WEIGHTS_NOTE}; "
            f"{args.views} {args.films} views; {os.cpu_count()} CPUs, torch "
            f"{torch.__version__} with {torch.get_num_threads()} threads; load average "
            f"{machine_state()['loadavg']}"
        )
        runtimes = [
            Runtime(
                name,
                # A normal study (nothing reaches a threshold of 1): the SR alone.
                MuraAbnormality(runtime=name, heat_maps=False, threshold=1.0),  # type: ignore[arg-type]
                MuraAbnormality(runtime=name, threshold=0.0),  # type: ignore[arg-type]
                MuraAbnormality(runtime=name, heat_maps=False, threshold=1.0, read_ahead=False),  # type: ignore[arg-type]
            )
            for name in RUNTIMES
        ]
        for runtime in runtimes:
            for pipeline in (runtime.plain, runtime.heat, runtime.read_first):
                loaded = pipeline.model(study).runtime
                if loaded != runtime.name:
                    console.print(
                        f"[red]the model runs on {loaded}, not {runtime.name} (see the log)[/]"
                    )
                    return 1
        before = cpu_counters()
        started = time.perf_counter()
        from rich.progress import Progress

        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("rounds", total=(args.warmup + args.repeat) * len(runtimes))
            run_rounds(runtimes, study, args.repeat, args.warmup, lambda: bar.advance(task))
        wall = time.perf_counter() - started
        share = foreign_share(before, wall)
        report = {runtime.name: runtime_report(runtime) for runtime in runtimes}
        target = target_report(report)
        print_tables(report, target, f"{args.architecture}, {args.views} {args.films} views")
        if share is not None:
            console.print(f"other processes kept {100 * share:.0f} % of the CPUs busy meanwhile")
        results = {
            "pipeline": "mura_abnormality",
            "architecture": args.architecture,
            "weights": WEIGHTS_NOTE,
            "input_size": args.input,
            "views": args.views,
            "threads": args.threads,
            "films": args.films,
            "film_files": described,
            "repeat": args.repeat,
            "warmup": args.warmup,
            "stages": {"without_gradcam": list(PLAIN_STAGES), "gradcam": list(GRADCAM_STAGES)},
            "references": {
                READ_FIRST: "the whole path with read_ahead=False: every view read, then the "
                "network (the pipeline before its read-ahead)",
                FULL_BACKWARD: "Grad-CAM computing every weight's gradient too (the pipeline's "
                "before it kept to the target layer's gradient); the same maps",
            },
            "runtimes": report,
            "target": target,
            "foreign_cpu_share": None if share is None else round(share, 3),
            "malloc_keeps_freed_mb": args.keep_freed_mb if malloc_tuned else 0,
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                **machine_state(),
            },
        }
        out = args.json or workdir / "mura-results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        console.print(f"results: {out}")
        if not np.isfinite(target["whole_path_ratio"]):
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
