"""Orientation benchmark: the hand_orientation path per film, stage by stage, per runtime.

    .venv/bin/python benchmarks/orientation.py [--films N] [--repeat R] [--warmup W]
                                               [--runtimes torch,compile,onnxruntime]
                                               [--model DIR] [--architecture resnet50]
                                               [--threads 2] [--free-angle 37]
                                               [--size 3000] [--keep-freed-mb 256]
                                               [--workdir DIR] [--json PATH]

One film's path, as the node runs it (``HandOrientation.run`` and the worker's encoding),
timed stage by stage with ``torch.set_num_threads(--threads)``:

- ``decode``: ``pipelines.film_io.read_film`` of a ``--size``² 16-bit (12 stored) DX file
  (pydicom, Modality + VOI LUT + MONOCHROME1 inversion in one look-up table);
- ``preprocess``: ``preprocess.network_input`` (area resize to 256², 16 → 8 bit, three
  channels, centre crop 224, ImageNet normalisation);
- ``network``: ResNet-50 (fc → 2) on the one input, and the angle read back;
- ``rotate 90°`` / ``rotate free``: ``correct.rotate_film`` of the full-resolution film by a
  quarter turn (exact) and by ``--free-angle`` (bilinear, expanded canvas);
- ``encode SR``: ``encode_result`` of a result holding only the SR (two measurements) —
  shown to split the next two;
- ``encode 90°`` / ``encode free``: ``read_source_headers`` and ``encode_result`` of the
  pipeline's result holding the SR and the SC of the quarter-turned / freely turned film;
- ``write``: ``write_output`` of the SR and the free-angle SC (fsync included): disk, not
  CPU, shown apart and left out of the totals.

``total free`` = decode + preprocess + network + rotate free + encode free, and ``total
90°`` the same with the quarter turn, each summed per iteration before the median and p90
are taken. Every runtime runs the whole path (so what one runtime's threads leave behind
is felt by the stages after it), on ``--films`` films × ``--repeat`` rounds after
``--warmup`` rounds; the runtimes take turns film by film, in a rotating order, so that
all of them meet the same machine (on a shared or virtual machine its speed drifts by
tens of per cent over minutes). The share of the CPUs other processes used during the
run is printed and stored: figures taken beside other work are pessimistic.

Runtimes: ``torch`` (eager fp32, channels-last, ``inference_mode``), ``compile``
(``torch.compile`` of that network; its compile time is reported, from an empty
inductor cache unless ``--reuse-compile-cache``) and ``onnxruntime``
(the network exported in memory and run by ONNX Runtime's CPU provider, as the pipeline's
``runtime="onnxruntime"`` does; export and session time reported). Their outputs are
compared on every film's input and on fixed random inputs: max |Δ| of the two outputs
and of the angle, against eager torch.

The process's malloc is set as a worker's is (``dicom_node.jobs.worker.keep_freed_memory``
with ``--keep-freed-mb``, by default the node's ``worker_keep_freed_mb``; 0 measures
glibc's defaults).

Films come from ``training.synthetic.write_hand_study`` (analytic hand phantoms, angles
spread over the circle, MONOCHROME1 and 2 alternating), written once into ``WORKDIR``
and reused. Without ``--model`` the network has seeded random weights (speed does not
depend on them); with it, the model folder is loaded as the pipeline loads it. The paper
reports 176 ms per image for the network alone on a 4-core CPU; ratios are printed
against it and against this run's eager network. Results go to ``--json`` (default
``WORKDIR/orientation-results.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from dicom_node.jobs.worker import keep_freed_memory  # noqa: E402
from dicom_node.output.encode import (  # noqa: E402
    DeviceIdentity,
    encode_result,
    read_source_headers,
    write_output,
)
from dicom_node.settings import NodeSettings  # noqa: E402
from pipelines.contract import DerivedImage, Measurement, PipelineResult  # noqa: E402
from pipelines.film_io import Film, read_film  # noqa: E402
from pipelines.hand_orientation.angles import angular_error, output_to_degrees  # noqa: E402
from pipelines.hand_orientation.correct import rotate_film  # noqa: E402
from pipelines.hand_orientation.model import (  # noqa: E402
    OnnxNetwork,
    OrientationModel,
    agreement_inputs,
    export_onnx,
    load_model,
)
from pipelines.hand_orientation.network import build_network  # noqa: E402
from pipelines.hand_orientation.pipeline import ANGLE_CONCEPT, ROTATION_CONCEPT  # noqa: E402
from pipelines.hand_orientation.preprocess import network_input  # noqa: E402
from pipelines.model_store import (  # noqa: E402
    WEIGHTS_FILE,
    ModelCard,
    file_sha256,
    write_model_card,
)

PAPER_MS = 176.0  # Baltruschat et al.: ResNet-50 per image, 4-core CPU
RUNTIMES = ("torch", "compile", "onnxruntime")
STAGES = (
    "decode",
    "preprocess",
    "network",
    "rotate 90°",
    "rotate free",
    "encode SR",
    "encode 90°",
    "encode free",
    "write",
)
TOTALS = {
    "total free": ("decode", "preprocess", "network", "rotate free", "encode free"),
    "total 90°": ("decode", "preprocess", "network", "rotate 90°", "encode 90°"),
}
UID_ROOT = "1.2.826.0.1.3680043.8.498.77"
DEVICE = DeviceIdentity(ae_title="BENCH_NODE", software_version="bench")
MODEL_VERSION = "bench-1"

console = Console(highlight=False, soft_wrap=False, width=120)


@dataclass
class RuntimeRun:
    """One runtime's timings (ms per stage per iteration) and set-up cost."""

    name: str
    setup_s: float | None = None  # export + session, or compile (first call)
    setup_note: str = ""
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    error: str | None = None

    def totals(self) -> dict[str, list[float]]:
        count = len(self.stages["decode"])
        return {
            name: [sum(self.stages[s][i] for s in parts) for i in range(count)]
            for name, parts in TOTALS.items()
        }


@dataclass
class Agreement:
    """max |Δ| of outputs and angles of a runtime against eager torch."""

    inputs: int = 0
    max_abs_output: float = 0.0
    max_abs_angle_deg: float = 0.0
    output_scale: float = 0.0


# -- inputs ------------------------------------------------------------------------------------


def make_films(folder: Path, count: int, size: int) -> tuple[list[Path], str]:
    """``count`` films of ``size``² in ``folder`` (reused when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.dcm"))
    if len(existing) >= count:
        return existing[:count], "reused"
    for path in existing:
        path.unlink()
    try:
        from training.synthetic import write_hand_study
    except ImportError:  # the phantoms are not there: plain synthetic DX films instead
        return [_plain_film(folder, i, size) for i in range(count)], "synthetic_dx (no phantoms)"
    paths = []
    for i in range(count):
        film = write_hand_study(
            folder,
            angle_deg=(37.0 + 360.0 * i / max(1, count)) % 360.0,
            seed=1000 + i,
            detector=(size, size),
            modality="DX" if i % 2 == 0 else "CR",
            photometric="MONOCHROME2" if i % 2 == 0 else "MONOCHROME1",
        )
        paths.append(film.path)
    return paths, "training.synthetic.write_hand_study"


def _plain_film(folder: Path, index: int, size: int) -> Path:
    from tests.support.datasets import synthetic_dx

    ds = synthetic_dx(index + 1, rows=size, columns=size)
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:size, 0:size] / size
    blob = 3000 * np.exp(-((x - 0.5) ** 2 + (y - 0.4) ** 2 * 4) * 8)
    pixels = np.clip(blob + rng.normal(400, 60, (size, size)), 0, 4095).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    path = folder / f"film{index + 1}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def random_model_folder(folder: Path, architecture: str) -> Path:
    """A model folder with seeded random weights, loadable as the pipeline loads models."""
    from pipelines.hand_orientation.preprocess import InputSpec

    torch.manual_seed(0)
    network = build_network(architecture)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / WEIGHTS_FILE)
    write_model_card(
        folder,
        ModelCard(
            pipeline="hand_orientation",
            version=MODEL_VERSION,
            created=dt.datetime.now(dt.UTC),
            architecture={"name": architecture},
            input_spec=InputSpec().to_json(),
            weights_sha256=file_sha256(folder / WEIGHTS_FILE),
            training_data={"kind": "random weights for a benchmark"},
        ),
    )
    return folder


# -- runtimes ----------------------------------------------------------------------------------

Forward = Callable[[torch.Tensor], torch.Tensor]


def prepare_runtime(name: str, model: OrientationModel, run: RuntimeRun) -> Forward | None:
    """The forward function of ``name`` (set-up timed into ``run``), or None if it fails."""
    network = model.network
    example = agreement_inputs(model.spec, 1)
    if name == "torch":

        def eager(batch: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return network(batch.contiguous(memory_format=torch.channels_last))

        return eager
    if name == "onnxruntime":
        started = time.perf_counter()
        try:
            exported = export_onnx(network, model.spec)
            exported_s = time.perf_counter() - started
            onnx = OnnxNetwork(exported, threads=torch.get_num_threads())
        except Exception as exc:  # noqa: BLE001  # reported in the results, not raised
            run.error = f"{type(exc).__name__}: {exc}"
            return None
        run.setup_s = time.perf_counter() - started
        run.setup_note = (
            f"export {exported_s:.1f} s ({len(exported) / 1e6:.0f} MB), "
            f"session {run.setup_s - exported_s:.1f} s"
        )
        return onnx
    if name == "compile":
        compiled = torch.compile(network)  # inductor's cache: see --reuse-compile-cache

        def forward(batch: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return compiled(batch.contiguous(memory_format=torch.channels_last))

        started = time.perf_counter()
        try:
            forward(example)
        except Exception as exc:  # noqa: BLE001  # inductor needs a compiler; reported
            run.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            return None
        run.setup_s = time.perf_counter() - started
        run.setup_note = "first call (compile)"
        return forward
    raise ValueError(f"unknown runtime {name!r}")


def compare(reference: Forward, other: Forward, inputs: list[torch.Tensor]) -> Agreement:
    found = Agreement()
    for batch in inputs:
        with torch.inference_mode():
            expected = reference(batch).float()
            got = other(batch).float()
        found.inputs += batch.shape[0]
        found.max_abs_output = max(found.max_abs_output, float((got - expected).abs().max()))
        found.output_scale = max(found.output_scale, float(expected.abs().max()))
        error = angular_error(output_to_degrees(got), output_to_degrees(expected)).abs()
        found.max_abs_angle_deg = max(found.max_abs_angle_deg, float(error.max()))
    return found


# -- the path ----------------------------------------------------------------------------------


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def derived(film: Film, pixels: np.ndarray, turn: float, right: bool) -> DerivedImage:
    """The pipeline's corrected-film image (``HandOrientation._corrected_image``)."""
    spacing = film.pixel_spacing
    if spacing is not None and right and int(turn) % 180:
        spacing = (spacing[1], spacing[0])
    elif spacing is not None and not right and spacing[0] != spacing[1]:
        spacing = None
    return DerivedImage(
        pixels=pixels,
        kind="grayscale",
        description=f"Film turned {turn:.1f} deg to upright",
        source_sop_instance_uid=film.sop_instance_uid,
        pixel_spacing=spacing,
    )


def one_film(
    path: Path, model: OrientationModel, forward: Forward, free_angle: float, out_dir: Path
) -> dict[str, float]:
    """Run the whole path once on ``path``; milliseconds per stage."""
    times: dict[str, float] = {}
    started = time.perf_counter()
    film = read_film(path)
    times["decode"] = ms_since(started)

    started = time.perf_counter()
    batch = network_input(film.display, model.spec)[None]
    times["preprocess"] = ms_since(started)

    started = time.perf_counter()
    with torch.inference_mode():
        angle = float(output_to_degrees(forward(batch).float())[0])
    times["network"] = ms_since(started)

    started = time.perf_counter()
    quarter = rotate_film(film.display, 90.0)
    times["rotate 90°"] = ms_since(started)
    started = time.perf_counter()
    turned = rotate_film(film.display, free_angle)
    times["rotate free"] = ms_since(started)

    uid = film.sop_instance_uid
    measurements = (
        Measurement("Orientation angle", round(angle, 2), "deg", ANGLE_CONCEPT, uid),
        Measurement("Rotation applied", round(free_angle, 2), "deg", ROTATION_CONCEPT, uid),
    )

    def result(*images: DerivedImage) -> PipelineResult:
        return PipelineResult(
            pipeline="hand_orientation",
            model_version=MODEL_VERSION,
            measurements=measurements,
            derived_images=images,
        )

    started = time.perf_counter()
    encode_result(result(), read_source_headers([path]), device=DEVICE, uid_root=UID_ROOT)
    times["encode SR"] = ms_since(started)

    started = time.perf_counter()
    sources = read_source_headers([path])
    encode_result(
        result(derived(film, quarter, 90.0, True)), sources, device=DEVICE, uid_root=UID_ROOT
    )
    times["encode 90°"] = ms_since(started)

    started = time.perf_counter()
    sources = read_source_headers([path])
    outputs = encode_result(
        result(derived(film, turned, free_angle, False)),
        sources,
        device=DEVICE,
        uid_root=UID_ROOT,
    )
    times["encode free"] = ms_since(started)

    started = time.perf_counter()
    for output in outputs:
        write_output(output, out_dir)
    times["write"] = ms_since(started)
    return times


# -- report ------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "p90": float("nan"), "n": 0}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(np.ceil(0.9 * len(ordered))) - 1)]
    return {"median": statistics.median(values), "p90": p90, "n": len(values)}


def machine_state() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {"loadavg": [round(load1, 2), round(load5, 2), round(load15, 2)]}


def cpu_counters() -> tuple[float, float] | None:
    """(busy seconds of all CPUs, this process's CPU seconds), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / ticks
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system


def foreign_share(before: tuple[float, float] | None, wall_s: float) -> float | None:
    """Share of the CPUs other processes kept busy since ``before`` (0 = an idle machine)."""
    after = cpu_counters()
    if before is None or after is None or wall_s <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others) / (wall_s * (os.cpu_count() or 1))


def print_tables(runs: list[RuntimeRun], agreements: dict[str, Agreement]) -> dict[str, Any]:
    done = [r for r in runs if r.error is None and r.stages["decode"]]
    table = Table(title="per film, ms: median / p90", box=box.ASCII)
    table.add_column("stage")
    for run in done:
        table.add_column(run.name, justify="right")
    report: dict[str, Any] = {}
    for run in done:
        report[run.name] = {s: summary(v) for s, v in run.stages.items()}
        report[run.name].update({t: summary(v) for t, v in run.totals().items()})
    for stage in (*STAGES, *TOTALS):
        cells = []
        for run in done:
            value = report[run.name][stage]
            cells.append(f"{value['median']:.1f} / {value['p90']:.1f}")
        table.add_row(stage, *cells)
    console.print(table)

    eager = report.get("torch", {}).get("network", {}).get("median")
    ratios = Table(title=f"against the paper's {PAPER_MS:.0f} ms and eager torch", box=box.ASCII)
    for column in (
        "runtime",
        "network ms",
        "÷ eager",
        "÷ 176",
        "total free",
        "÷ 176",
        "total 90°",
        "÷ 176",
    ):
        ratios.add_column(column, justify="right")
    for run in done:
        network = report[run.name]["network"]["median"]
        free = report[run.name]["total free"]["median"]
        right = report[run.name]["total 90°"]["median"]
        ratios.add_row(
            run.name,
            f"{network:.1f}",
            f"{network / eager:.2f}" if eager else "-",
            f"{network / PAPER_MS:.2f}",
            f"{free:.1f}",
            f"{free / PAPER_MS:.2f}",
            f"{right:.1f}",
            f"{right / PAPER_MS:.2f}",
        )
    console.print(ratios)

    setup = Table(title="set-up and agreement with eager torch", box=box.ASCII)
    for column in ("runtime", "set-up s", "note", "inputs", "max |Δ| output", "max |Δθ| °"):
        setup.add_column(column)
    for run in runs:
        found = agreements.get(run.name)
        setup.add_row(
            run.name,
            "-" if run.setup_s is None else f"{run.setup_s:.1f}",
            run.error or run.setup_note,
            "-" if found is None else str(found.inputs),
            "-" if found is None else f"{found.max_abs_output:.2e} (of {found.output_scale:.2g})",
            "-" if found is None else f"{found.max_abs_angle_deg:.2e}",
        )
    console.print(setup)
    return report


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--films", type=int, default=4, help="films (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over the films")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument(
        "--runtimes", default=",".join(RUNTIMES), help=f"comma-separated, of {RUNTIMES}"
    )
    parser.add_argument("--model", type=Path, help="a hand_orientation model folder")
    parser.add_argument("--architecture", default="resnet50", help="without --model")
    parser.add_argument("--threads", type=int, default=2, help="torch / ORT threads")
    parser.add_argument("--free-angle", type=float, default=37.0, help="the free turn, °")
    parser.add_argument("--size", type=int, default=3000, help="rows = columns of the films")
    parser.add_argument("--workdir", type=Path, help="films and results (default: temporary)")
    parser.add_argument("--json", type=Path, help="results file")
    parser.add_argument("--keep", action="store_true", help="keep a temporary workdir")
    parser.add_argument(
        "--keep-freed-mb",
        type=int,
        default=NodeSettings.model_fields["worker_keep_freed_mb"].default,
        help="freed heap kept for the next film, as a worker with the setting "
        "worker_keep_freed_mb does (default: the node's default); 0: glibc's defaults",
    )
    parser.add_argument(
        "--reuse-compile-cache",
        action="store_true",
        help="let torch.compile use inductor's usual cache (default: a fresh one, so the "
        "compile time reported is a cold compile)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.runtimes.split(",") if n.strip()]
    unknown = sorted(set(names) - set(RUNTIMES))
    if unknown:
        console.print(f"unknown runtime(s): {', '.join(unknown)}")
        return 2
    if "torch" not in names:
        names.insert(0, "torch")  # the reference for agreement and ratios
    torch.set_num_threads(args.threads)
    malloc_tuned = keep_freed_memory(args.keep_freed_mb)
    if args.keep_freed_mb and not malloc_tuned:
        console.print("warning: malloc left as it is (not glibc, or MALLOC_* variables set)")
    temporary = args.workdir is None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="orientation-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if not args.reuse_compile_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-", dir=workdir)
    state_before = machine_state()
    console.print(
        f"workdir {workdir}; {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; load average {state_before['loadavg']}"
        + (f"; malloc keeps {args.keep_freed_mb} MB freed" if malloc_tuned else "")
    )
    if state_before["loadavg"][0] > 0.5:
        console.print("warning: the machine is not idle: figures will be pessimistic")

    started = time.perf_counter()
    paths, source = make_films(workdir / f"films-{args.size}", args.films, args.size)
    console.print(f"{len(paths)} films from {source} in {time.perf_counter() - started:.1f} s")
    folder = args.model or random_model_folder(workdir / "model", args.architecture)
    model = load_model(folder)
    console.print(f"model {folder} ({model.architecture}, crop {model.spec.crop})")

    counters, counted_from = cpu_counters(), time.perf_counter()
    probe_inputs = [agreement_inputs(model.spec, 4)]
    probe_inputs += [network_input(read_film(p).display, model.spec)[None] for p in paths]
    runs: list[RuntimeRun] = []
    agreements: dict[str, Agreement] = {}
    forwards: dict[str, Forward] = {}
    out_dir = workdir / "outputs"
    out_dir.mkdir(exist_ok=True)
    usable: list[tuple[RuntimeRun, Forward]] = []
    for name in sorted(names, key=lambda n: n != "torch"):  # torch first: the reference
        run = RuntimeRun(name)
        runs.append(run)
        console.print(f"-- {name}: setting up")
        forward = prepare_runtime(name, model, run)
        if forward is None:
            console.print(f"   {name} is not usable: {run.error}")
            continue
        forwards[name] = forward
        if name != "torch":
            agreements[name] = compare(forwards["torch"], forward, probe_inputs)
        usable.append((run, forward))
    usable.sort(key=lambda item: names.index(item[0].name))
    console.print(
        f"timing {len(usable)} runtime(s), interleaved: {args.warmup} warm-up and "
        f"{args.repeat} timed round(s) over {len(paths)} film(s)"
    )
    turn = 0
    for round_index in range(args.warmup + args.repeat):
        for path in paths:
            # Every runtime runs the film in turn, the order rotating from film to film.
            shift = turn % len(usable)
            turn += 1
            for run, forward in usable[shift:] + usable[:shift]:
                times = one_film(path, model, forward, args.free_angle, out_dir)
                if round_index >= args.warmup:
                    for stage, value in times.items():
                        run.stages[stage].append(value)
            for leftover in out_dir.iterdir():
                leftover.unlink()

    report = print_tables(runs, agreements)
    state_after = machine_state()
    others = foreign_share(counters, time.perf_counter() - counted_from)
    state_after["other_processes_cpu_share"] = None if others is None else round(others, 3)
    if others is not None:
        console.print(f"other processes kept {100 * others:.1f} % of the CPUs busy meanwhile")
    results = {
        "when": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "malloc_keeps_freed_mb": args.keep_freed_mb if malloc_tuned else 0,
            "before": state_before,
            "after": state_after,
        },
        "films": {"count": len(paths), "size": args.size, "source": source},
        "model": {"folder": str(folder), "architecture": model.architecture},
        "free_angle_deg": args.free_angle,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "paper_ms": PAPER_MS,
        "setup": {
            r.name: {"seconds": r.setup_s, "note": r.setup_note, "error": r.error} for r in runs
        },
        "agreement_with_torch": {k: vars(v) for k, v in agreements.items()},
        "stages_ms": report,
    }
    out = args.json or workdir / "orientation-results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results written to {out}; load average after {state_after['loadavg']}")
    if temporary and not args.keep:  # the films, model and outputs; the results stay
        for part in workdir.iterdir():
            if part.is_dir():
                shutil.rmtree(part, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
