"""bone_age benchmark: the pipeline's path per film, stage by stage, against the network alone.

    .venv/bin/python -m benchmarks.bone_age [--architecture vgg_small] [--input 192]
                                            [--films 4] [--size 1024] [--threads 2]
                                            [--repeat 3] [--warmup 1]
                                            [--workdir DIR] [--json PATH]

``--films`` synthetic paediatric hand films (``training.synthetic.paediatric_hands``, side
``--size``), written as DX files lying a quarter turn from upright, with hand_orientation's
result as ``series.after`` saying so (the "turned" path: hand_orientation wrote a GSPS,
so bone_age turns the film itself). Every figure is milliseconds per film, the median
over ``--repeat`` rounds after ``--warmup`` rounds, with ``torch.set_num_threads(--threads)``.

Stages, timed one by one with the functions the pipeline calls, in its order:

- ``decode``: ``pipelines.film_io.read_film``;
- ``upright``: the quarter turn (``hand_orientation.correct.rotate_film``);
- ``mask + crop``: ``preprocess.hand_crop`` (Sobel + watershed mask, crop, square, grey stretch);
- ``resize``: ``preprocess.resize_square`` to ``--input`` and ``network_input``;
- ``network``: ``BoneAgeModel.predict`` of one film (eager torch, attention map included);
- ``overlay``: ``overlay.attention_picture`` (the SC's picture);
- ``encode``: the node's ``encode_result`` of the film's result (SR and SC).

``whole path`` is ``BoneAge.run`` over the films plus the encoding of its result, end to
end, divided by the number of films; ``network alone`` is the network's forward pass on
an already prepared (1, 3, S, S) input under eager torch in the same run, and the report
gives the whole path as a multiple of it. The weights are untrained (seeded random): the
time does not depend on them, the estimates are meaningless.
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
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import torch  # noqa: E402

from dicom_node.output.encode import DeviceIdentity, encode_result  # noqa: E402
from pipelines import SeriesInput  # noqa: E402
from pipelines.bone_age import BoneAge  # noqa: E402
from pipelines.bone_age.model import PIPELINE_NAME, load_model  # noqa: E402
from pipelines.bone_age.network import build_network  # noqa: E402
from pipelines.bone_age.overlay import attention_picture  # noqa: E402
from pipelines.bone_age.preprocess import (  # noqa: E402
    InputSpec,
    hand_crop,
    network_input,
    resize_square,
)
from pipelines.contract import UpstreamResult  # noqa: E402
from pipelines.film_io import read_film  # noqa: E402
from pipelines.hand_orientation.correct import rotate_film  # noqa: E402
from training.runs import write_weights_and_card  # noqa: E402
from training.synthetic.paediatric_hands import (  # noqa: E402
    render_paediatric_hand,
    write_paediatric_hand_film,
)

STAGES = ("decode", "upright", "mask + crop", "resize", "network", "overlay", "encode")
DEVICE = DeviceIdentity(ae_title="DICOM_NODE", software_version="benchmark")
UID_ROOT = "1.2.826.0.1.3680043.8.498.77"
TURN_DEG = -90.0  # hand_orientation's turn back to upright for the films written here


def write_model(folder: Path, architecture: str, size: int) -> Path:
    torch.manual_seed(0)
    network = build_network(architecture)
    folder.mkdir(parents=True, exist_ok=True)
    write_weights_and_card(
        folder,
        pipeline=PIPELINE_NAME,
        version="bench-1",
        architecture=architecture,
        input_spec=InputSpec(size).to_json(),
        state=network.state_dict(),
        training_data={"kind": "untrained (seeded random): for timing only"},
    )
    return folder


def write_films(folder: Path, films: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    study = f"{UID_ROOT}.1"
    for index in range(films):
        hand = render_paediatric_hand(30.0 + 35.0 * index, "MF"[index % 2], index, size=size)
        turned = replace(hand, image=np.ascontiguousarray(np.rot90(hand.image)))
        paths.append(
            write_paediatric_hand_film(
                turned,
                folder / f"film{index + 1}.dcm",
                study_instance_uid=study,
                series_instance_uid=f"{UID_ROOT}.2",
                seed=index,
            )
        )
    return paths


def median_ms(run: Callable[[], object], repeat: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    model_dir = write_model(work / "model", args.architecture, args.input)
    paths = write_films(work / "films", args.films, args.size)
    sources = [pydicom.dcmread(path) for path in paths]
    after = UpstreamResult(
        "hand_orientation",
        "done",
        "bench",
        summary={
            "films": [
                {"sop_instance_uid": str(ds.SOPInstanceUID), "rotation_deg": TURN_DEG}
                for ds in sources
            ]
        },
    )
    series = SeriesInput(
        str(sources[0].StudyInstanceUID),
        str(sources[0].SeriesInstanceUID),
        "DX",
        tuple(paths),
        "bench-1",
        model_dir,
        after,
    )
    pipeline = BoneAge()
    model = load_model(model_dir)
    per = 1.0 / len(paths)

    def encode(result: Any) -> None:
        encode_result(result, sources, device=DEVICE, uid_root=UID_ROOT)

    first = pipeline.run(series)
    decoded = [read_film(path) for path in paths]
    upright = [rotate_film(film.display, TURN_DEG) for film in decoded]
    crops = [hand_crop(image) for image in upright]
    inputs = [resize_square(crop.pixels, args.input) for crop in crops]
    maps = [model.predict(image[None], [0])[1][0] for image in inputs]
    stages = {
        "decode": lambda: [read_film(path) for path in paths],
        "upright": lambda: [rotate_film(film.display, TURN_DEG) for film in decoded],
        "mask + crop": lambda: [hand_crop(image) for image in upright],
        "resize": lambda: [network_input(resize_square(c.pixels, args.input)[None]) for c in crops],
        "network": lambda: [model.predict(image[None], [0]) for image in inputs],
        "overlay": lambda: [
            attention_picture(c.pixels, m, ["line one", "line two"])
            for c, m in zip(crops, maps, strict=True)
        ],
        "encode": lambda: encode(first),
    }
    stage_ms = {name: median_ms(stages[name], args.repeat, args.warmup) * per for name in STAGES}
    batch = torch.from_numpy(np.stack(inputs[:1]))

    def network_alone() -> None:
        with torch.inference_mode():
            model.network.attend(network_input(batch), torch.zeros(1, dtype=torch.long))

    alone_ms = median_ms(network_alone, args.repeat * len(paths), args.warmup)
    whole_ms = median_ms(lambda: encode(pipeline.run(series)), args.repeat, args.warmup) * per
    return {
        "benchmark": "bone_age",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "threads": args.threads,
        "architecture": args.architecture,
        "input": args.input,
        "films": len(paths),
        "film_side": args.size,
        "path": "turned (hand_orientation's rotation applied by bone_age)",
        "weights": "untrained (seeded random)",
        "stages": list(STAGES),
        "stages_ms": {k: round(v, 3) for k, v in stage_ms.items()},
        "stages_sum_ms": round(sum(stage_ms.values()), 3),
        "whole_path_ms": round(whole_ms, 3),
        "network_alone_ms": round(alone_ms, 3),
        "whole_path_over_network": round(whole_ms / alone_ms, 2),
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--architecture", default="vgg_small")
    parser.add_argument("--input", type=int, default=192)
    parser.add_argument("--films", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.films < 1 or args.repeat < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--films, --repeat and --threads must be at least 1, --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="bone-age-bench-") as scratch:
        if args.workdir is None:
            args.workdir = Path(scratch)
        report = run_benchmark(args)
    out = args.json or Path(args.workdir) / "bone-age-results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"bone_age: {report['architecture']} at {report['input']}, {report['films']} films "
        f"of {report['film_side']} px, {report['threads']} threads (ms per film)"
    )
    for name, value in report["stages_ms"].items():
        print(f"  {name:<12} {value:9.2f}")
    print(f"  {'sum':<12} {report['stages_sum_ms']:9.2f}")
    print(f"  whole path   {report['whole_path_ms']:9.2f}")
    print(
        f"  network alone {report['network_alone_ms']:8.2f}  "
        f"(whole path = {report['whole_path_over_network']:.2f} x network)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
