"""Multi-frame CT benchmark: ``ct_body_part``'s read path on one series in three forms.

    .venv/bin/python -m benchmarks.ct_multi_frame [--slices 300] [--size 512]
                                                  [--input 96] [--repeat 5]
                                                  [--workdir DIR] [--json PATH]

``benchmarks/ubr.py``'s series (a ``--slices``-slice ``--size``² chest-abdomen-pelvis
phantom), read the way the node reads it, in three forms:

- ``single-frame`` (the baseline): one CT Image file per slice, as the other benchmarks;
- ``multi-frame``: the same slices as one Legacy Converted Enhanced CT image
  (``write_multi_frame_ct``), uncompressed;
- ``multi-frame RLE``: that image with RLE Lossless pixel data (decoded frame by frame
  by pydicom's first RLE decoder: pylibjpeg-rle, installed with the project).

Stages, seconds per series, each the median of ``--repeat`` runs (the forms take turns
run by run, so all meet the same machine):

- ``geometry``: ``read_ct_geometry`` (headers, superior → inferior order);
- ``decode+prep``: ``read_slices_hu`` and ``slice_to_input`` (at ``--input``²) of every
  slice, as ``CtBodyPart.score_series`` does;
- ``headers``: ``read_source_headers``, as the worker does before encoding.

The network, plot and encoding do not depend on the form (``benchmarks/ubr.py`` times
them). Every form's network inputs are checked to be identical to the baseline's. Results
go to ``--json`` (default ``WORKDIR/ct-multi-frame-results.json``); the share of the CPUs
other processes used during the run is stored with them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.uid import RLELossless  # noqa: E402
from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.orientation import cpu_counters, foreign_share, machine_state  # noqa: E402
from benchmarks.ubr import write_series  # noqa: E402
from dicom_node.output.encode import read_source_headers  # noqa: E402
from pipelines.ct_body_part.preprocess import InputSpec, slices_to_inputs  # noqa: E402
from pipelines.ct_body_part.volume import read_ct_geometry  # noqa: E402
from training.synthetic.ct_phantoms import write_multi_frame_ct  # noqa: E402

FORMS = ("single-frame", "multi-frame", "multi-frame RLE")
STAGES = ("geometry", "decode+prep", "headers")
BASELINE = FORMS[0]


def write_forms(folder: Path, slices: int, size: int) -> dict[str, list[Path]]:
    """The series in each form (``benchmarks/ubr.py``'s series): the files to read, by form."""
    single, _, _ = write_series(folder / "single-frame", slices, size)
    multi = write_multi_frame_ct(single, folder / "multi-frame" / "image.dcm")
    rle = folder / "multi-frame-rle" / "image.dcm"
    rle.parent.mkdir(parents=True, exist_ok=True)
    dataset = pydicom.dcmread(multi)
    dataset.compress(RLELossless)
    dataset.save_as(rle)
    return {FORMS[0]: list(single.files), FORMS[1]: [multi], FORMS[2]: [rle]}


def read_once(files: list[Path], spec: InputSpec) -> tuple[dict[str, float], np.ndarray]:
    """One run of the read path: seconds per stage, and the network inputs."""
    started = time.perf_counter()
    stack = read_ct_geometry(files)
    geometry = time.perf_counter()
    images = slices_to_inputs(stack.slices, spec)
    decoded = time.perf_counter()
    read_source_headers(files)
    headers = time.perf_counter()
    seconds = {
        "geometry": geometry - started,
        "decode+prep": decoded - geometry,
        "headers": headers - decoded,
    }
    return seconds, images


def run(
    forms: dict[str, list[Path]], spec: InputSpec, repeat: int, advance: Callable[[], None]
) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[dict[str, float]]] = {form: [] for form in forms}
    inputs: dict[str, np.ndarray] = {}
    for _ in range(repeat):
        for form, files in forms.items():
            seconds, images = read_once(files, spec)
            runs[form].append(seconds)
            inputs.setdefault(form, images)
            advance()
    baseline = inputs[BASELINE]
    out: dict[str, dict[str, Any]] = {}
    for form, timed in runs.items():
        medians = {stage: statistics.median(t[stage] for t in timed) for stage in STAGES}
        medians["total"] = sum(medians[stage] for stage in STAGES)
        out[form] = {
            "files": len(forms[form]),
            "median_s": {k: round(v, 4) for k, v in medians.items()},
            "same_inputs_as_baseline": bool(np.array_equal(inputs[form], baseline)),
        }
    base = out[BASELINE]["median_s"]
    for row in out.values():
        row["vs_baseline"] = {
            k: round(v / base[k], 3) if base[k] > 0 else None for k, v in row["median_s"].items()
        }
    return out


def print_table(console: Console, results: dict[str, dict[str, Any]], slices: int) -> None:
    table = Table(
        title=f"ct_body_part read path, {slices} slices: median s (× {BASELINE})", box=box.ASCII
    )
    table.add_column("form")
    for stage in (*STAGES, "total"):
        table.add_column(stage, justify="right")
    table.add_column("same inputs")
    for form, row in results.items():
        cells = [
            f"{row['median_s'][stage]:.3f} ({row['vs_baseline'][stage]:.2f}×)"
            for stage in (*STAGES, "total")
        ]
        table.add_row(form, *cells, "yes" if row["same_inputs_as_baseline"] else "NO")
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512, help="written slice size")
    parser.add_argument("--input", type=int, default=96, help="network input size")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.slices < 2 or args.size < 16 or args.input < 16 or args.repeat < 1:
        parser.error("--slices ≥ 2, --size and --input ≥ 16, --repeat ≥ 1")
    console = Console()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        console.print(f"writing a {args.slices}-slice {args.size}² series in {len(FORMS)} forms…")
        forms = write_forms(workdir / "series", args.slices, args.size)
        slices = len(read_ct_geometry(forms[BASELINE]))
        spec = InputSpec(size=args.input)
        before = cpu_counters()
        started = time.perf_counter()
        from rich.progress import Progress

        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("timed runs", total=args.repeat * len(forms))
            results = run(forms, spec, args.repeat, lambda: bar.advance(task))
        wall = time.perf_counter() - started
        share = foreign_share(before, wall)
        print_table(console, results, slices)
        if share is not None:
            console.print(f"other processes kept {100 * share:.0f} % of the CPUs busy meanwhile")
        report = {
            "series": {"slices": slices, "size": args.size, "input": args.input},
            "repeat": args.repeat,
            "baseline": BASELINE,
            "stages": list(STAGES),
            "forms": results,
            "foreign_cpu_share": None if share is None else round(share, 3),
            "machine": {"platform": platform.platform(), **machine_state()},
        }
        out = args.json or workdir / "ct-multi-frame-results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        console.print(f"results: {out}")
        if not all(row["same_inputs_as_baseline"] for row in results.values()):
            console.print("[red]a form's network inputs differ from the single-frame series'[/]")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
