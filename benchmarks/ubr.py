"""UBR benchmark: the ``ct_body_part`` path on one CT series, stage by stage, per variant.

    .venv/bin/python -m benchmarks.ubr [--slices 300] [--size 512] [--threads 2]
                                       [--variants alexnet@96/all,vgg16@64/50,...] [--vgg224]
                                       [--model FOLDER ...] [--accuracy-volumes 8]
                                       [--repeat 3] [--baseline-slices 4]
                                       [--onnx-variant auto|none|KEY] [--quick]
                                       [--workdir DIR] [--json PATH]

One series, as the node runs it (``CtBodyPart.run`` and the worker's encoding), with
``torch.set_num_threads(--threads)``: a ``--slices``-slice ``--size``² chest-abdomen-pelvis
phantom (``training.synthetic.ct_phantoms``, ~2.3 mm apart at 300 slices) written once
as a CT series. Stages, seconds per series:

- ``geometry``: ``read_ct_geometry`` (every header, superior → inferior order);
- ``decode+prep``: ``read_slices_hu`` and ``slice_to_input`` of each slice scored
  (uncompressed values read from where the header read found them; window, area resize
  to the model's input);
- ``network``: the scores of those slices, in batches of ``--batch-size``, channels-last,
  and the interpolation of the others along z;
- ``plot``: the score plot (matplotlib) for the Secondary Capture;
- ``other``: the rest of ``CtBodyPart.run`` (model cache look-up, anomaly checks, zones,
  the result's measurements), i.e. its wall time minus the four stages above;
- ``headers``: ``source_headers_for`` the result, as the worker does before encoding (the
  headers the pipeline parsed; the files are not read again);
- ``encode``: ``encode_result`` of the result: the SR and the SC of the plot.

The first four come from the pipeline's own ``summary["seconds"]``; the others are timed
here. ``total`` is their sum per run. Each variant runs once untimed first (its model is
loaded then: the "1st run" column, reported apart and left out of the medians), then
``--repeat`` timed runs; "net ms/slice" is the network's median per slice it scored (the
paper: 4 ms on a GPU). The variants take turns run by run, so that all of them meet the
same machine (its speed drifts when other processes use it). A variant whose first run
takes more than ``--slow-row-s`` (20 s) gets one timed run only (its ``n`` says so).

Variants (``ARCH@SIZE/SCORED``): architecture ``vgg16`` or ``alexnet``, network input
``SIZE``², and ``all`` slices scored or at most ``SCORED`` evenly spaced ones (the rest
interpolated along z, the pipeline's ``max_scored_slices``). The default grid is
{vgg16, alexnet} × {64, 96, 128} × {all, 100, 50}; ``--vgg224`` adds vgg16 at 224².
The baseline, "vgg16 @ 512² input, all slices", is too slow to run whole: it runs on the
series with ``--baseline-slices`` slices scored, and its decode+prep and network are
scaled to all slices (marked "extrapolated"). Every total is given against the 10 s
target and against that baseline.

Weights: without ``--model``, every variant's model folder holds seeded random weights
and a placeholder calibration (speed does not depend on the weights; the zones they give
mean nothing, so their accuracy is "—"). With ``--model`` (a trained, calibrated
``ct_body_part`` model; repeat it for several, one per architecture and input size, to
weigh e.g. the paper's VGG16 against the AlexNet variant in one run against one
baseline), the variants of its architecture and input size run with it, and each is
evaluated on ``--accuracy-volumes`` held-out phantoms (seeds from 900000, far from
any training seed) rendered straight to its input (``training.ct_body_part.data``'s way:
at twice the input size, area-averaged, through ``slice_to_input``) with ``--slices``
slices over the chest, abdomen and pelvis: the three-zone accuracy (``evaluate_volumes``,
the paper's 95.99 %) and the mean Spearman ρ, for all slices scored and for 100 and 50
scored and the rest interpolated (``max_scored_slices``). The same models' zones on the
benchmark series itself, through DICOM, are the "series acc" column.

ONNX Runtime: one variant (``--onnx-variant``; ``auto``: the fastest trained model's
all-slices variant, else the fastest all-slices one) also runs with its network exported in memory
(``torch.onnx.export``, TorchScript exporter) and run by ONNX Runtime's CPU provider with
``--threads`` intra-op threads, beside its torch twin timed again in the same rounds; the
scores of both on real slices are compared. The pipeline itself is not changed.

``--quick``: two variants, one timed run, a 2-slice baseline, 2 accuracy volumes (about
a minute at 300 × 512² on an idle machine). The share of the CPUs other processes used during the run is
printed and stored: figures taken beside other work are pessimistic. Results go to
``--json`` (default ``WORKDIR/ubr-results.json``).
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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

from benchmarks.orientation import cpu_counters, foreign_share, machine_state  # noqa: E402
from dicom_node.output.encode import DeviceIdentity, encode_result, source_headers_for  # noqa: E402
from pipelines.contract import PipelineResult, SeriesInput  # noqa: E402
from pipelines.ct_body_part import CtBodyPart  # noqa: E402
from pipelines.ct_body_part.model import DEFAULT_BATCH_SIZE, UbrModel, load_model  # noqa: E402
from pipelines.ct_body_part.network import ARCHITECTURES, MIN_INPUT_SIZE, build_network  # noqa: E402
from pipelines.ct_body_part.pipeline import SCORE_CONCEPT, scored_indices  # noqa: E402
from pipelines.ct_body_part.preprocess import InputSpec, network_batch, slice_to_input  # noqa: E402
from pipelines.ct_body_part.volume import read_hu  # noqa: E402
from pipelines.ct_body_part.zones import PAPER_ZONES, Calibration  # noqa: E402
from pipelines.model_store import (  # noqa: E402
    WEIGHTS_FILE,
    ModelCard,
    file_sha256,
    write_model_card,
)
from pipelines.onnx_runtime import OnnxNetwork  # noqa: E402
from pipelines.onnx_runtime import export_onnx as export_network  # noqa: E402
from training.ct_body_part.data import PHANTOM_FOV_MM, TrainingVolume  # noqa: E402
from training.ct_body_part.evaluate import (  # noqa: E402
    PAPER_ZONE_ACCURACY_PCT,
    evaluate_volumes,
)
from training.synthetic.ct_phantoms import (  # noqa: E402
    Phantom,
    Scan,
    WrittenSeries,
    make_phantom,
    random_scan,
    render_slice,
    write_ct_series,
)

TARGET_S = 10.0  # the issue's target for a 300-slice series on 2 cores
PAPER_MS_PER_SLICE = 4.0  # Yan et al.: per slice, on a GPU
REGION = "chest_abdomen_pelvis"
SERIES_SEED = 424_242  # the benchmark series' phantom
HELD_OUT_SEED = 900_000  # accuracy phantoms: far from training (0+), validation, test seeds
SIZES = (64, 96, 128)
SUBSETS = (0, 100, 50)  # 0: all slices
QUICK_VARIANTS = "alexnet@96/all,vgg16@64/50"
STAGES = ("geometry", "decode+prep", "network", "plot", "other", "headers", "encode")
PIPELINE_STAGES = {  # our name: the key in the pipeline's summary["seconds"]
    "geometry": "geometry",
    "decode+prep": "decode_preprocess",
    "network": "network",
    "plot": "plot",
}
PER_SLICE_STAGES = ("decode+prep", "network")  # what the baseline scales to all slices
#: The calibration on a random-weights model's card: the pipeline draws zones with it, as
#: with a real one; they mean nothing.
PLACEHOLDER_CALIBRATION = {"zones": ["chest", "abdomen", "pelvis"], "thresholds": [-1.0, 1.0]}
RANDOM_INPUT_SCALE = 1.0 / 64.0  # as a network trained from scratch is fed
UID_ROOT = "1.2.826.0.1.3680043.8.498.77"
DEVICE = DeviceIdentity(ae_title="BENCH_NODE", software_version="bench")
NO_ACCURACY = "untrained (random) weights: zones meaningless"

#: Trained models by (architecture, input size); their held-out accuracy by the same key,
#: then by slices scored (0: all).
ModelKey = tuple[str, int]
Accuracy = Mapping[ModelKey, dict[int, dict[str, Any]]]

console = Console(highlight=False, soft_wrap=False, width=210)


# -- variants ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way to run the path: architecture, network input size, slices scored (0: all)."""

    architecture: str
    size: int
    scored: int = 0
    runtime: str = "torch"  # or "onnxruntime"

    @property
    def key(self) -> str:
        key = f"{self.architecture}@{self.size}/{self.scored or 'all'}"
        return key if self.runtime == "torch" else f"{key}+ort"

    @property
    def label(self) -> str:
        slices = "all slices" if not self.scored else f"{self.scored} slices"
        runtime = "" if self.runtime == "torch" else f", {self.runtime}"
        return f"{self.architecture} @ {self.size}², {slices}{runtime}"


BASELINE = Variant("vgg16", 512, 0)
BASELINE_LABEL = "baseline: vgg16 @ 512², all slices"


def parse_variant(text: str) -> Variant:
    """``ARCH@SIZE/SCORED`` (``SCORED``: ``all`` or a number ≥ 2), e.g. ``alexnet@96/50``."""
    try:
        architecture, rest = text.strip().split("@")
        size_text, _, scored_text = rest.partition("/")
        size = int(size_text)
        scored = 0 if scored_text in ("", "all") else int(scored_text)
    except ValueError as exc:
        raise ValueError(f"variant {text!r} is not ARCH@SIZE/SCORED (e.g. alexnet@96/50)") from exc
    if architecture not in ARCHITECTURES:
        raise ValueError(f"variant {text!r}: architecture must be one of {ARCHITECTURES}")
    if not MIN_INPUT_SIZE[architecture] <= size <= 1024:
        raise ValueError(f"variant {text!r}: size must be {MIN_INPUT_SIZE[architecture]}..1024")
    if scored == 1 or scored < 0:
        raise ValueError(f"variant {text!r}: score all slices or at least 2")
    return Variant(architecture, size, scored)


def default_variants(vgg224: bool) -> list[Variant]:
    out = [Variant(a, s, n) for a in ARCHITECTURES for s in SIZES for n in SUBSETS]
    if vgg224:
        out += [Variant("vgg16", 224, n) for n in SUBSETS]
    return out


# -- the series and the held-out phantoms ------------------------------------------------------


def cap_scan(phantom: Phantom, rng: np.random.Generator, slices: int) -> Scan:
    """A head-first chest-abdomen-pelvis scan of exactly ``slices`` evenly spaced slices."""
    extent = random_scan(phantom, rng, region=REGION, head_first=True).z_positions
    top, bottom = float(np.max(extent)), float(np.min(extent))
    return Scan(
        z_positions=np.round(np.linspace(top, bottom, slices), 3),
        spacing_mm=(top - bottom) / (slices - 1),
        region=REGION,
        head_first=True,
    )


def write_series(folder: Path, slices: int, size: int) -> tuple[WrittenSeries, Phantom, Scan]:
    phantom = make_phantom(SERIES_SEED)
    scan = cap_scan(phantom, np.random.default_rng(SERIES_SEED), slices)
    written = write_ct_series(
        folder,
        phantom,
        scan,
        size=size,
        pixel_spacing=460.8 / size,  # the phantoms' field of view, 0.9 mm at 512
        series_description="UBR benchmark chest-abdomen-pelvis",
    )
    return written, phantom, scan


def held_out_volume(seed: int, spec: InputSpec, slices: int) -> TrainingVolume:
    """A held-out phantom's scan (as ``cap_scan``), rendered straight to the network input."""
    phantom = make_phantom(seed)
    scan = cap_scan(phantom, np.random.default_rng(seed + 7_000_003), slices)
    render_size = 2 * spec.size
    spacing = PHANTOM_FOV_MM / render_size
    images = np.stack(
        [
            slice_to_input(
                render_slice(phantom, float(z), size=render_size, pixel_spacing=spacing), spec
            )
            for z in scan.z_positions  # superior first
        ]
    )
    return TrainingVolume(
        name=f"phantom-{seed}", images=images, z_mm=scan.z_positions, zones=dict(phantom.zones)
    )


# -- models ------------------------------------------------------------------------------------


def random_model_folder(folder: Path, architecture: str, size: int, weights: Path | None) -> Path:
    """A model folder with seeded random weights (``weights``: a file to link, not write)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / WEIGHTS_FILE
    if weights is not None and weights.is_file():
        try:
            os.link(weights, target)
        except OSError:
            shutil.copyfile(weights, target)
    else:
        torch.manual_seed(0)
        torch.save(build_network(architecture).state_dict(), target)
    spec = InputSpec(size=size, scale=RANDOM_INPUT_SCALE)
    write_model_card(
        folder,
        ModelCard(
            pipeline="ct_body_part",
            version=f"bench-{architecture}-{size}",
            created=dt.datetime.now(dt.UTC),
            architecture={"name": architecture},
            input_spec=spec.to_json(),
            weights_sha256=file_sha256(target),
            training_data={"kind": "random weights for a benchmark"},
            calibration=dict(PLACEHOLDER_CALIBRATION),
        ),
    )
    return folder


@dataclass(frozen=True, eq=False)
class SubsetScored(UbrModel):
    """A model that scores at most ``limit`` evenly spaced slices of a volume (as the
    pipeline's ``max_scored_slices``) and interpolates the others; 0 scores all. The
    volumes are evenly spaced, so interpolating by index is interpolating along z."""

    limit: int = 0

    def scores(self, images: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        chosen = scored_indices(len(images), self.limit or None)
        values = super().scores(images[chosen], batch_size=batch_size)
        if len(chosen) == len(images):
            return values
        return np.interp(np.arange(len(images)), chosen, values)


class OrtNetwork(torch.nn.Module):
    """``OnnxNetwork`` as a torch module, so it can stand in a ``UbrModel``."""

    def __init__(self, onnx_model: bytes, *, threads: int) -> None:
        super().__init__()
        self.onnx = OnnxNetwork(onnx_model, threads=threads)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.onnx(batch)


def export_onnx(network: torch.nn.Module, size: int) -> bytes:
    """``network`` as an ONNX model with a variable batch size, in memory."""
    return export_network(network, torch.zeros(2, 3, size, size))


class FixedModelPipeline(CtBodyPart):
    """``CtBodyPart`` with a model given in memory (the ONNX Runtime row)."""

    def __init__(self, model: UbrModel, *, max_scored_slices: int, batch_size: int) -> None:
        super().__init__(max_scored_slices=max_scored_slices, batch_size=batch_size)
        self._fixed = model

    def model(self, series: SeriesInput) -> UbrModel:
        return self._fixed


# -- timing ------------------------------------------------------------------------------------


@dataclass
class Row:
    """One table row: a variant, how it runs and what its runs measured (seconds)."""

    variant: Variant
    label: str
    pipeline: CtBodyPart
    series: SeriesInput
    weights: str  # "random" or "trained"
    calibration: Calibration | None = None
    wanted: int = 3  # timed runs
    extrapolate: tuple[int, int] | None = None  # (slices scored, slices in the series)
    first: dict[str, float] | None = None
    runs: list[dict[str, float]] = field(default_factory=list)
    scored_slices: int = 0
    outputs: list[str] = field(default_factory=list)
    series_accuracy_pct: float | None = None
    note: str = ""

    def medians(self) -> dict[str, float]:
        return {s: statistics.median(r[s] for r in self.runs) for s in (*STAGES, "total")}


def one_run(row: Row) -> tuple[dict[str, float], PipelineResult]:
    """The whole path once; seconds per stage (extrapolated to all slices for the baseline)."""
    started = time.perf_counter()
    result = row.pipeline.run(row.series)
    ran = time.perf_counter()
    sources = source_headers_for(result, row.series.files)
    read = time.perf_counter()
    outputs = encode_result(result, sources, device=DEVICE, uid_root=UID_ROOT)
    encoded = time.perf_counter()
    seconds: dict[str, float] = dict(result.summary["seconds"])  # type: ignore[call-overload]
    times = {ours: float(seconds[theirs]) for ours, theirs in PIPELINE_STAGES.items()}
    times["other"] = max(0.0, (ran - started) - sum(times.values()))
    times["headers"] = read - ran
    times["encode"] = encoded - read
    if row.extrapolate is not None:
        scored, count = row.extrapolate
        for stage in PER_SLICE_STAGES:
            times[f"{stage} measured"] = times[stage]
            times[stage] *= count / scored
    times["total"] = sum(times[s] for s in STAGES)
    row.outputs = sorted(o.kind for o in outputs)
    row.scored_slices = int(result.summary["scored_slices"])  # type: ignore[call-overload]
    return times, result


def series_accuracy(
    result: PipelineResult, calibration: Calibration, written: WrittenSeries, phantom: Phantom
) -> float | None:
    """Three-zone accuracy of the pipeline's per-slice scores on the benchmark series."""
    z_by_file = dict(enumerate(written.z_positions))
    correct = total = 0
    for item in result.log_measurements:
        if item.concept != SCORE_CONCEPT or item.slice_index is None:
            continue
        truth = phantom.zone_at(float(z_by_file[item.slice_index]))
        if truth not in PAPER_ZONES:
            continue
        guess = calibration.zones[int(calibration.classify(np.array([item.value]))[0])]
        total += 1
        correct += int(guess == truth)
    return 100.0 * correct / total if total else None


def time_rows(rows: list[Row], written: WrittenSeries, phantom: Phantom, slow_row_s: float) -> None:
    """A first (untimed) run of every row, then timed rounds, the rows taking turns."""
    for row in rows:
        console.print(f"   first run: {row.label} ...", end="")
        row.first, result = one_run(row)
        console.print(f" {row.first['total']:.1f} s")
        if row.calibration is not None and row.weights == "trained":
            row.series_accuracy_pct = series_accuracy(result, row.calibration, written, phantom)
        if row.first["total"] > slow_row_s and row.wanted > 1:
            row.wanted = 1
            row.note = f"1st run > {slow_row_s:.0f} s: one timed run"
    rounds = max((r.wanted for r in rows), default=0)
    for index in range(rounds):
        todo = [r for r in rows if len(r.runs) < r.wanted]
        console.print(f"   round {index + 1}/{rounds}: {len(todo)} variant(s)")
        shift = index % max(1, len(todo))
        for row in todo[shift:] + todo[:shift]:  # a rotating order
            times, _ = one_run(row)
            row.runs.append(times)


# -- accuracy ----------------------------------------------------------------------------------


def accuracy_table(
    model: UbrModel, subsets: Sequence[int], count: int, slices: int
) -> dict[int, dict[str, Any]]:
    """Zone accuracy and Spearman on ``count`` held-out phantoms, per slices scored."""
    if model.calibration is None:
        return {}
    started = time.perf_counter()
    volumes = [held_out_volume(HELD_OUT_SEED + i, model.spec, slices) for i in range(count)]
    console.print(
        f"   {count} held-out phantoms (seeds {HELD_OUT_SEED}..{HELD_OUT_SEED + count - 1}, "
        f"{slices} slices each) rendered in {time.perf_counter() - started:.1f} s"
    )
    out = {}
    for limit in sorted(set(subsets)):
        scorer = SubsetScored(model.card, model.network, model.spec, model.calibration, limit)
        evaluation = evaluate_volumes(scorer, volumes)
        out[limit] = {
            "zone_accuracy_pct": evaluation.zone_accuracy_pct,
            "zone_accuracy_by_zone": evaluation.zone_accuracy_by_zone,
            "zone_slices": evaluation.zone_slices,
            "spearman_mean": evaluation.spearman_mean,
            "spearman_min": evaluation.spearman_min,
            "normal_flagged": evaluation.normal_flagged,
            "volumes": evaluation.volumes,
        }
    return out


# -- ONNX Runtime ------------------------------------------------------------------------------


def onnx_rows(
    twin: Row, folder: Path, threads: int, batch_size: int
) -> tuple[Row | None, Row | None, dict[str, Any]]:
    """The ORT row of ``twin``'s variant and a fresh torch twin, and what the export gave."""
    info: dict[str, Any] = {"variant": twin.variant.key}
    model = load_model(folder)
    started = time.perf_counter()
    try:
        exported = export_onnx(model.network, model.spec.size)
        exported_s = time.perf_counter() - started
        ort_network = OrtNetwork(exported, threads=threads)
    except Exception as exc:  # noqa: BLE001  # reported in the results, not raised
        info["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return None, None, info
    info["export_s"] = round(exported_s, 2)
    info["session_s"] = round(time.perf_counter() - started - exported_s, 2)
    info["onnx_mb"] = round(len(exported) / 1e6, 1)
    # Agreement on real inputs: 16 slices of the series, evenly spaced.
    files = twin.series.files
    picks = scored_indices(len(files), 16)
    images = np.stack([slice_to_input(read_hu(files[int(i)]), model.spec) for i in picks])
    with torch.inference_mode():
        batch = network_batch(images, model.spec)
        reference = model.network(batch).float()
        got = ort_network(batch).float()
    info["agreement"] = {
        "inputs": len(picks),
        "max_abs_score_diff": float((got - reference).abs().max()),
        "score_scale": float(reference.abs().max()),
    }
    scored = twin.variant.scored
    ort_model = replace(model, network=ort_network)
    variant = replace(twin.variant, runtime="onnxruntime")
    ort_row = Row(
        variant=variant,
        label=variant.label,
        pipeline=FixedModelPipeline(ort_model, max_scored_slices=scored, batch_size=batch_size),
        series=twin.series,
        weights=twin.weights,
        calibration=twin.calibration,
        wanted=twin.wanted,
    )
    torch_row = Row(
        variant=twin.variant,
        label=f"{twin.variant.label}, torch",
        pipeline=CtBodyPart(max_scored_slices=scored, batch_size=batch_size),
        series=twin.series,
        weights=twin.weights,
        calibration=twin.calibration,
        wanted=twin.wanted,
    )
    return ort_row, torch_row, info


# -- report ------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def row_report(row: Row, baseline_total: float | None, accuracy: Accuracy) -> dict[str, Any]:
    medians = row.medians() if row.runs else {}
    total = medians.get("total")
    key = (row.variant.architecture, row.variant.size)
    found = accuracy.get(key, {}).get(row.variant.scored) if row.weights == "trained" else None
    report: dict[str, Any] = {
        "variant": row.variant.key,
        "label": row.label,
        "architecture": row.variant.architecture,
        "input_size": row.variant.size,
        "max_scored_slices": row.variant.scored,
        "scored_slices": row.scored_slices,
        "runtime": row.variant.runtime,
        "weights": row.weights,
        "timed_runs": len(row.runs),
        "first_run_s": row.first,
        "runs_s": row.runs,
        "median_s": medians,
        "total_s": total,
        "total_over_target": None if total is None else total / TARGET_S,
        "total_over_baseline": None
        if total is None or not baseline_total
        else total / baseline_total,
        "network_ms_per_scored_slice": (
            1000.0
            * medians["network"]
            / (row.extrapolate[1] if row.extrapolate else row.scored_slices)
            if medians and row.scored_slices
            else None
        ),
        "meets_target": None if total is None else total <= TARGET_S,
        "outputs": row.outputs,
        "series_zone_accuracy_pct": row.series_accuracy_pct,
        "held_out": found,
        "accuracy_note": None if row.weights == "trained" else NO_ACCURACY,
        "note": row.note,
    }
    if row.extrapolate is not None:
        scored, count = row.extrapolate
        report["extrapolated"] = {
            "from_slices": scored,
            "to_slices": count,
            "stages": list(PER_SLICE_STAGES),
        }
    return report


def print_table(reports: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title, box=box.ASCII)
    table.add_column("variant", no_wrap=True)
    for column in (
        "weights",
        "n",
        *STAGES,
        "total s",
        "net ms/slice",
        "1st run",
        "÷ 10 s",
        "÷ base",
        "held-out acc %",
        "ρ",
        "series acc %",
    ):
        table.add_column(column, justify="right")
    notes = []
    for report in reports:
        medians = report["median_s"]
        held = report["held_out"] or {}
        label = report["label"]
        if report.get("extrapolated"):
            found = report["extrapolated"]
            label += " *"
            notes.append(
                f"* extrapolated: {', '.join(found['stages'])} measured on "
                f"{found['from_slices']} slices, scaled to {found['to_slices']}"
            )
        if report["note"]:
            notes.append(f"{report['label']}: {report['note']}")
        table.add_row(
            label,
            report["weights"],
            str(report["timed_runs"]),
            *(fmt(medians.get(s)) for s in STAGES),
            fmt(report["total_s"]),
            fmt(report["network_ms_per_scored_slice"], 1),
            fmt((report["first_run_s"] or {}).get("total"), 1),
            fmt(report["total_over_target"]),
            fmt(report["total_over_baseline"], 3),
            fmt(held.get("zone_accuracy_pct")),
            fmt(held.get("spearman_mean"), 4),
            fmt(report["series_zone_accuracy_pct"]),
        )
    console.print(table)
    for note in notes:
        console.print(f"   {note}")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300, help="slices in the series")
    parser.add_argument("--size", type=int, default=512, help="rows = columns of the slices")
    parser.add_argument("--threads", type=int, default=2, help="torch / ORT threads")
    parser.add_argument(
        "--variants",
        help="comma-separated ARCH@SIZE/SCORED (default: {vgg16, alexnet} × {64, 96, 128} × "
        f"{{all, 100, 50}}; with --quick: {QUICK_VARIANTS})",
    )
    parser.add_argument("--vgg224", action="store_true", help="add vgg16 @ 224² (slow)")
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        help="a trained, calibrated ct_body_part model (repeat: one per architecture and size)",
    )
    parser.add_argument(
        "--accuracy-volumes", type=int, help="held-out phantoms for accuracy (default 8)"
    )
    parser.add_argument("--repeat", type=int, help="timed runs per variant (default 3)")
    parser.add_argument(
        "--baseline-slices",
        type=int,
        help="slices the baseline scores before extrapolation (default 4; 0: no baseline)",
    )
    parser.add_argument(
        "--onnx-variant",
        default="auto",
        help="the variant also run under ONNX Runtime: auto, none or ARCH@SIZE/SCORED",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--slow-row-s",
        type=float,
        default=20.0,
        help="a variant whose first run takes longer gets one timed run (default 20)",
    )
    parser.add_argument("--quick", action="store_true", help="a one-minute sanity run")
    parser.add_argument("--workdir", type=Path, help="series, models, results (default: temp)")
    parser.add_argument("--json", type=Path, help="results file")
    parser.add_argument("--keep", action="store_true", help="keep a temporary workdir")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.repeat is None:
        args.repeat = 1 if quick else 3
    if args.baseline_slices is None:
        args.baseline_slices = 2 if quick else 4
    if args.accuracy_volumes is None:
        args.accuracy_volumes = 2 if quick else 8
    if args.variants is None and quick:
        args.variants = QUICK_VARIANTS
    if args.slices < 2 or args.size < 16 or args.repeat < 1 or args.baseline_slices < 0:
        parser.error("--slices ≥ 2, --size ≥ 16, --repeat ≥ 1, --baseline-slices ≥ 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        variants = (
            [parse_variant(v) for v in args.variants.split(",") if v.strip()]
            if args.variants
            else default_variants(args.vgg224)
        )
    except ValueError as exc:
        console.print(str(exc))
        return 2
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    temporary = args.workdir is None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ubr-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, variants, workdir, temporary)
    finally:
        torch.set_num_threads(previous_threads)


def _run(args: argparse.Namespace, variants: list[Variant], workdir: Path, temporary: bool) -> int:
    state_before = machine_state()
    console.print(
        f"workdir {workdir}; {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; load average {state_before['loadavg']}"
    )
    if state_before["loadavg"][0] > 0.5:
        console.print("warning: the machine is not idle: figures will be pessimistic")

    started = time.perf_counter()
    series_dir = workdir / f"series-{args.slices}x{args.size}"
    if series_dir.exists():
        shutil.rmtree(series_dir)
    written, phantom, scan = write_series(series_dir, args.slices, args.size)
    series_bytes = sum(p.stat().st_size for p in written.files)
    console.print(
        f"series: {len(written.files)} slices of {args.size}², {scan.spacing_mm:.2f} mm apart, "
        f"{REGION} of phantom {SERIES_SEED}, {series_bytes / 1e6:.0f} MB, written in "
        f"{time.perf_counter() - started:.1f} s"
    )

    trained: dict[ModelKey, tuple[Path, UbrModel]] = {}
    for folder in args.model or []:
        model = load_model(folder)
        key = (model.architecture, model.spec.size)
        if key in trained:
            console.print(
                f"--model {folder}: {key[0]} @ {key[1]}² is already {trained[key][0]}; "
                "give one model per architecture and input size"
            )
            return 2
        trained[key] = (Path(folder), model)
        console.print(
            f"trained model {folder}: {model.architecture} @ {model.spec.size}², "
            f"version {model.card.version}, calibrated: {model.calibration is not None}"
        )
        if model.calibration is None:
            console.print("warning: the model is not calibrated: no zone accuracy")
        if not any((v.architecture, v.size) == key for v in variants):
            variants.append(Variant(*key, 0))  # its own rows, so accuracy has a row

    counters, counted_from = cpu_counters(), time.perf_counter()
    weights_files: dict[str, Path] = {}
    folders: dict[tuple[str, int], Path] = {}

    def folder_of(architecture: str, size: int) -> tuple[Path, str]:
        if (architecture, size) in trained:
            return trained[architecture, size][0], "trained"
        if (architecture, size) not in folders:
            folder = random_model_folder(
                workdir / "models" / f"{architecture}-{size}",
                architecture,
                size,
                weights_files.get(architecture),
            )
            weights_files[architecture] = folder / WEIGHTS_FILE
            folders[architecture, size] = folder
        return folders[architecture, size], "random"

    def make_row(variant: Variant, label: str, scored: int) -> Row:
        folder, weights = folder_of(variant.architecture, variant.size)
        return Row(
            variant=variant,
            label=label,
            pipeline=CtBodyPart(max_scored_slices=scored, batch_size=args.batch_size),
            series=SeriesInput(
                study_instance_uid=written.study_instance_uid,
                series_instance_uid=written.series_instance_uid,
                modality="CT",
                files=written.files,
                model_version=f"{variant.architecture}-{variant.size}",
                model_dir=folder,
            ),
            weights=weights,
            calibration=(
                trained[variant.architecture, variant.size][1].calibration
                if weights == "trained"
                else None
            ),
            wanted=args.repeat,
        )

    rows = [make_row(v, v.label, v.scored) for v in variants]
    baseline: Row | None = None
    if args.baseline_slices >= 2 and args.baseline_slices < args.slices:
        baseline = make_row(BASELINE, BASELINE_LABEL, args.baseline_slices)
        baseline.extrapolate = (args.baseline_slices, args.slices)
    console.print(
        f"-- timing {len(rows)} variant(s)"
        + (f" and the baseline ({args.baseline_slices} slices scored)" if baseline else "")
        + f": 1 first run + {args.repeat} timed run(s) each"
    )
    time_rows(([baseline] if baseline else []) + rows, written, phantom, args.slow_row_s)
    baseline_total = baseline.medians()["total"] if baseline and baseline.runs else None

    accuracy: dict[ModelKey, dict[int, dict[str, Any]]] = {}
    for key, (_, model) in trained.items():
        if model.calibration is None or args.accuracy_volumes <= 0:
            continue
        subsets = {0, 100, 50} | {v.scored for v in variants if (v.architecture, v.size) == key}
        console.print(
            f"-- accuracy of the trained {key[0]} @ {key[1]}², slices scored: {sorted(subsets)}"
        )
        accuracy[key] = accuracy_table(model, sorted(subsets), args.accuracy_volumes, args.slices)

    reports = [row_report(r, baseline_total, accuracy) for r in rows]
    onnx: dict[str, Any] = {"variant": None}
    twin_key = _onnx_choice(args.onnx_variant, reports, bool(trained))
    if twin_key is not None:
        twin = next(r for r in rows if r.variant.key == twin_key)
        folder = twin.series.model_dir
        assert folder is not None
        console.print(f"-- ONNX Runtime: {twin.label}, beside torch")
        ort_row, torch_row, onnx = onnx_rows(twin, folder, args.threads, args.batch_size)
        if ort_row is not None and torch_row is not None:
            time_rows([torch_row, ort_row], written, phantom, args.slow_row_s)
            onnx["rows"] = [
                row_report(torch_row, baseline_total, accuracy),
                row_report(ort_row, baseline_total, accuracy),
            ]
            onnx["network_speedup"] = (
                torch_row.medians()["network"] / ort_row.medians()["network"]
                if ort_row.medians()["network"] > 0
                else None
            )
            onnx["total_speedup"] = torch_row.medians()["total"] / ort_row.medians()["total"]
        else:
            console.print(f"   not usable: {onnx.get('error')}")

    state_after = machine_state()
    others = foreign_share(counters, time.perf_counter() - counted_from)
    state_after["other_processes_cpu_share"] = None if others is None else round(others, 3)

    baseline_report = row_report(baseline, baseline_total, {}) if baseline else None
    title = (
        f"{args.slices} slices of {args.size}², {args.threads} threads: seconds per series, "
        f"median of the timed runs (the 1st run, which loads the model, apart); "
        f"target {TARGET_S:.0f} s"
    )
    print_table(([baseline_report] if baseline_report else []) + reports, title)
    if onnx.get("rows"):
        print_table(onnx["rows"], "ONNX Runtime against torch, timed in the same rounds")
        agreement = onnx["agreement"]
        console.print(
            f"ORT: export {onnx['export_s']} s ({onnx['onnx_mb']} MB), session "
            f"{onnx['session_s']} s; network ×{fmt(onnx['network_speedup'])} faster, whole "
            f"path ×{fmt(onnx['total_speedup'])}; max |Δ score| "
            f"{agreement['max_abs_score_diff']:.2e} (scores up to {agreement['score_scale']:.3g}) "
            f"on {agreement['inputs']} real slices"
        )
    for key, table in accuracy.items():
        _print_accuracy(table, trained[key][1])
    if any(r["weights"] == "random" for r in reports):
        console.print(f"accuracy '—': {NO_ACCURACY} (speed does not depend on them)")
    _print_verdict(reports, onnx)
    if others is not None:
        console.print(f"other processes kept {100 * others:.1f} % of the CPUs busy meanwhile")

    results = {
        "when": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "before": state_before,
            "after": state_after,
        },
        "series": {
            "slices": len(written.files),
            "size": args.size,
            "spacing_mm": scan.spacing_mm,
            "region": REGION,
            "phantom_seed": SERIES_SEED,
            "bytes": series_bytes,
        },
        "target_s": TARGET_S,
        "paper_ms_per_slice_gpu": PAPER_MS_PER_SLICE,
        "stages": list(STAGES),
        "timing": {
            "repeat": args.repeat,
            "first_run": "untimed warm-up (loads the model); in first_run_s, not in the medians",
            "batch_size": args.batch_size,
            "slow_row_s": args.slow_row_s,
        },
        "models": [
            {
                "folder": str(folder),
                "architecture": model.architecture,
                "size": model.spec.size,
                "version": model.card.version,
                "calibration": None if model.calibration is None else model.calibration.to_json(),
            }
            for folder, model in trained.values()
        ],
        "accuracy": None
        if not accuracy
        else {
            "held_out_seeds": [HELD_OUT_SEED, HELD_OUT_SEED + args.accuracy_volumes - 1],
            "paper_zone_accuracy_pct": PAPER_ZONE_ACCURACY_PCT,
            "by_model": {
                f"{key[0]}@{key[1]}": {
                    "by_max_scored_slices": {str(k): v for k, v in table.items()}
                }
                for key, table in accuracy.items()
            },
        },
        "baseline": baseline_report,
        "variants": reports,
        "onnxruntime": onnx,
    }
    out = args.json or workdir / "ubr-results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results written to {out}; load average after {state_after['loadavg']}")
    if temporary and not args.keep:  # the series and models; the results stay
        for part in workdir.iterdir():
            if part.is_dir():
                shutil.rmtree(part, ignore_errors=True)
        if not any(workdir.iterdir()):  # the results went elsewhere (--json)
            workdir.rmdir()
    return 0


def _onnx_choice(choice: str, reports: list[dict[str, Any]], has_trained: bool) -> str | None:
    if choice == "none":
        return None
    measured = [r for r in reports if r["total_s"] is not None]
    if choice != "auto":
        key = parse_variant(choice).key
        if any(r["variant"] == key for r in measured):
            return key
        console.print(f"--onnx-variant {choice}: not among the variants timed; no ORT row")
        return None
    everything = [r for r in measured if r["max_scored_slices"] == 0]
    if has_trained:
        own = [r for r in everything if r["weights"] == "trained"]
        everything = own or everything
    best = min(everything or measured, key=lambda r: r["total_s"], default=None)
    return None if best is None else str(best["variant"])


def _print_accuracy(accuracy: dict[int, dict[str, Any]], trained: UbrModel) -> None:
    table = Table(
        title=(
            f"held-out accuracy of {trained.architecture} @ {trained.spec.size}² "
            f"(version {trained.card.version}); paper: {PAPER_ZONE_ACCURACY_PCT} %"
        ),
        box=box.ASCII,
    )
    for column in ("slices scored", "zone acc %", "chest", "abdomen", "pelvis", "ρ mean", "ρ min"):
        table.add_column(column, justify="right")
    for limit, found in sorted(accuracy.items(), key=lambda item: item[0] or 10**9, reverse=True):
        zones = found["zone_accuracy_by_zone"]
        table.add_row(
            "all" if not limit else str(limit),
            fmt(found["zone_accuracy_pct"]),
            *(fmt(zones.get(z)) for z in PAPER_ZONES),
            fmt(found["spearman_mean"], 4),
            fmt(found["spearman_min"], 4),
        )
    console.print(table)


def _print_verdict(reports: list[dict[str, Any]], onnx: dict[str, Any]) -> None:
    candidates = [r for r in reports + onnx.get("rows", [])[1:] if r["meets_target"]]
    if not candidates:
        console.print(f"no variant meets the {TARGET_S:.0f} s target")
        return
    fastest = min(candidates, key=lambda r: r["total_s"])
    console.print(
        f"{len(candidates)} variant(s) meet ≤ {TARGET_S:.0f} s; fastest: {fastest['label']} "
        f"({fastest['total_s']:.2f} s)"
    )
    scored = [r for r in candidates if (r["held_out"] or {}).get("zone_accuracy_pct") is not None]
    for report in sorted(scored, key=lambda r: r["total_s"]):
        console.print(
            f"   {report['label']}: {report['total_s']:.2f} s, held-out zone accuracy "
            f"{report['held_out']['zone_accuracy_pct']:.2f} %, ρ "
            f"{report['held_out']['spearman_mean']:.4f}"
        )


if __name__ == "__main__":
    sys.exit(main())
