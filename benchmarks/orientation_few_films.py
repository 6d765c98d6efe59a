"""Orientation from few films: ResNet-10 from random weights against VGG16 from ImageNet.

    .venv/bin/python benchmarks/orientation_few_films.py [--workdir DIR] [--threads 1]
        [--synthetic-films 30] [--rotations 12] [--resize 112] [--crop 96]
        [--resnet-epochs 60] [--resnet-lr 2e-3] [--vgg-epochs 10] [--vgg-lr 1e-4]
        [--vgg-fine-tune conv5] [--held-out-films 24] [--held-out-turns 8]
        [--real-turns 36] [--folds 0,1,2] [--networks resnet10,vgg16] [--seed 0]
        [--init FILE] [--json PATH]

Issue 22, item 6. Self-supervised training (``TrainConfig(data_dir=...)``: films assumed
upright, each turned by ``--rotations`` random known angles, the paper's augmentation on
top) from a folder of a few dozen films, with both networks on the same films, the same
turns, the same split and the same input size, written as model folders and evaluated
after ``pipelines.hand_orientation.model.load_model`` has read them back, as the node
does:

- ``resnet10``: the project's CPU network, from random weights, all layers trained (lr
  ``--resnet-lr``, cosine decay, ``--resnet-epochs``);
- ``vgg16``: conv1–conv5 from the ImageNet VGG16 weights (``dicom-node models
  vgg16-init``; converted into ``WORKDIR/_init`` here when ``--init`` is not given), the
  fc from random, ``--vgg-fine-tune`` trained (default conv5 + fc, the paper's choice),
  lr ``--vgg-lr``, cosine decay, ``--vgg-epochs``; fed as the Caffe-lineage weights
  expect (grey 0..255 in three channels minus the BGR means).

Films. Training: ``--synthetic-films`` upright synthetic hand films
(``training.synthetic.write_hand_study``, longest side ≈ 300 px, DX/CR and MONOCHROME1/2
alternating) from one renderer seed stream, and every distinct real radiograph the
installed packages hold (``REAL_FILMS``): pydicom-data's chest CR (RG1) and extremity CR
(RG3; their J2K variants are the same image and are left out) and deid-data's cat DX.
Left out as not usable: pydicom's three 16 × 16 CR thumbnails (``dicomdirtests``: noise
at that size), pynetdicom's RT portal image (a ball-bearing phantom, the same under
quarter turns: it has no "upright"), deid-data's dicom-cookies (colour photographs) and
pydicom-data's SMPTE test patterns (not radiographs). With three real films the real
held-out evaluation is leave-one-out: fold k trains on the synthetic films and the two
other real films and is evaluated on real film k, each network once per fold. Each fold's
seed (``--seed`` upward) is the first whose 20 % validation split (by film, as
``train_orientation`` draws it) holds no real film, so every real film not held out is
trained on.

Evaluation (never trained on): ``--held-out-films`` upright synthetic films from another
renderer seed stream, each turned by ``--held-out-turns`` random known angles, and the
fold's held-out real film turned by ``--real-turns`` random known angles — both with
``load_upright_films`` (turns within the frame, no black corners, as in training) and
the same turns for every network. Reported: MAE, share within ±4°, four-way accuracy
(``training.hand_orientation.evaluate``), separately for synthetic and real films, and
the time of each run (training epochs and the whole run with data, writing and the
run's own evaluation). A constant guess has MAE 90° and 25 % four-way accuracy on such
uniformly turned films. Results: a table, and ``--json`` (default
``WORKDIR/orientation-few-films.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
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

from pipelines.hand_orientation.model import load_model  # noqa: E402
from pipelines.hand_orientation.preprocess import InputSpec  # noqa: E402
from training.hand_orientation.data import (  # noqa: E402
    OrientationSample,
    load_upright_films,
    split_by_film,
)
from training.hand_orientation.evaluate import EvaluationReport, evaluate_model  # noqa: E402
from training.hand_orientation.train import TrainConfig, train_orientation  # noqa: E402
from training.runs import int_seed  # noqa: E402

console = Console(highlight=False, soft_wrap=False, width=180)

#: (name, importable package, path inside it): the distinct real radiographs installed.
REAL_FILMS: tuple[tuple[str, str, str], ...] = (
    ("chest-CR", "data_store", "data/RG1_UNCR.dcm"),
    ("extremity-CR", "data_store", "data/RG3_UNCR.dcm"),
    ("cat-DX", "deid_data", "data/animals/cat.dcm"),
)
VAL_FRACTION = 0.2
BATCH_SIZE = 16
#: Longest side (pixels) of the synthetic films: above 2 × resize, so the working size
#: of ``load_upright_films`` is reached by area averaging as for real films.
SYNTHETIC_LONGEST = 300
TRAIN_STREAM, HELD_OUT_STREAM, TURN_STREAM = 11, 22, 33


def real_film_paths() -> list[tuple[str, Path]]:
    """The installed real radiographs, or SystemExit naming the package that is missing."""
    import importlib

    found = []
    for name, package, inside in REAL_FILMS:
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise SystemExit(f"{package} is not installed (the real film {name})") from None
        path = Path(next(iter(module.__path__))) / inside
        if not path.is_file():
            raise SystemExit(f"{path} is missing (the real film {name})")
        found.append((name, path))
    return found


def write_synthetic(folder: Path, count: int, stream: int, seed: int) -> list[Path]:
    """``count`` upright synthetic films (reused when already written)."""
    from training.synthetic.hand_films import DETECTOR_SIZES, write_hand_study

    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.dcm"))
    if len(existing) == count:
        return existing
    for path in existing:
        path.unlink()
    rng = np.random.default_rng([stream, seed])
    paths = []
    for i in range(count):
        detector = DETECTOR_SIZES[i % len(DETECTOR_SIZES)]
        film = write_hand_study(
            folder,
            angle_deg=90.0,
            seed=int(rng.integers(0, 2**31 - 1)),
            detector=detector,
            scale=SYNTHETIC_LONGEST / max(detector),
            modality="DX" if i % 2 == 0 else "CR",
            photometric="MONOCHROME2" if (i // 2) % 2 == 0 else "MONOCHROME1",
        )
        paths.append(film.path)
    return sorted(paths)


def link_folder(folder: Path, files: Sequence[tuple[str, Path]]) -> None:
    """``folder`` holding a symbolic link per (name, file), and nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for name, target in files:
        (folder / name).symlink_to(target.resolve())


def fold_seed(names: Sequence[str], real: set[str], start: int) -> int:
    """The first seed from ``start`` whose validation split (``train_orientation``'s draw:
    ``split_by_film`` with the second of four spawned seeds) holds none of ``real``."""
    for seed in range(start, start + 1000):
        stand_ins = [OrientationSample(torch.empty(0), 0.0, name) for name in names]
        split_seed = int_seed(np.random.SeedSequence(seed).spawn(4)[1])
        _, validation = split_by_film(stand_ins, [VAL_FRACTION], seed=split_seed)
        if not {s.film for s in validation} & real:
            return seed
    raise RuntimeError("no seed keeps the real films out of validation")


def held_out_samples(folder: Path, turns: int, resize: int, seed: int) -> list[OrientationSample]:
    spec = InputSpec(resize=resize, crop=resize)  # samples depend on the resize alone
    loaded = load_upright_films(folder, spec, rotations_per_film=turns, seed=seed)
    return loaded.samples


def figures(report: EvaluationReport) -> dict[str, float | int]:
    return {
        "films": report.films,
        "samples": report.samples,
        "mae_deg": round(report.mae_deg, 2),
        "within_4deg_pct": round(report.within_4deg_pct, 1),
        "four_way_pct": round(report.quadrant_accuracy_pct, 1),
        "median_abs_error_deg": round(report.median_abs_error_deg, 2),
    }


def train_config(args: argparse.Namespace, network: str, data: Path, out: Path, seed: int,
                 version: str, init: Path) -> TrainConfig:  # fmt: skip
    common: dict[str, Any] = {
        "data_dir": data,
        "rotations_per_film": args.rotations,
        "resize": args.resize,
        "crop": args.crop,
        "val_fraction": VAL_FRACTION,
        "batch_size": BATCH_SIZE,
        "lr_schedule": "cosine",
        "seed": seed,
        "out_dir": out,
        "version": version,
        "progress": False,
    }
    if network == "resnet10":
        return TrainConfig(
            architecture="resnet10", epochs=args.resnet_epochs, lr=args.resnet_lr, **common
        )
    return TrainConfig(
        architecture="vgg16",
        epochs=args.vgg_epochs,
        lr=args.vgg_lr,
        init_weights=init,
        fine_tune=args.vgg_fine_tune,
        **common,
    )


def vgg16_init(args: argparse.Namespace, workdir: Path) -> Path:
    """``--init``, or the ImageNet VGG16 weights converted once into ``workdir/_init``."""
    if args.init is not None:
        return Path(args.init)
    from pipelines.ct_body_part.vgg16_init import (
        convert_vgg16,
        default_init_path,
        install_vgg16_init,
    )

    target = default_init_path(workdir)
    outcome = install_vgg16_init(convert_vgg16(None), target)
    console.print(f"VGG16 ImageNet init: {target} ({outcome})")
    return target


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    torch.set_num_threads(args.threads)
    init = vgg16_init(args, workdir) if "vgg16" in args.networks else Path("unused")
    real = real_film_paths()
    synthetic = write_synthetic(
        workdir / "films" / "synthetic-train", args.synthetic_films, TRAIN_STREAM, args.seed
    )
    held_out_folder = workdir / "films" / "synthetic-held-out"
    write_synthetic(held_out_folder, args.held_out_films, HELD_OUT_STREAM, args.seed)
    turn_seed = int(np.random.default_rng([TURN_STREAM, args.seed]).integers(2**31))
    synthetic_eval = held_out_samples(held_out_folder, args.held_out_turns, args.resize, turn_seed)
    console.print(
        f"training: {len(synthetic)} synthetic + {len(real) - 1} real films per fold; "
        f"held out: {len(synthetic_eval)} synthetic samples ({args.held_out_films} films × "
        f"{args.held_out_turns} turns), one real film × {args.real_turns} turns per fold"
    )
    rows: list[dict[str, Any]] = []
    for fold in args.folds:
        held_name, held_path = real[fold]
        trained_real = [(f"{name}.dcm", path) for name, path in real if name != held_name]
        files = [(f"syn-{i:03d}.dcm", p) for i, p in enumerate(synthetic)] + trained_real
        data = workdir / "folds" / f"fold-{fold}" / "train"
        link_folder(data, files)
        link_folder(data.parent / "held-out-real", [(f"{held_name}.dcm", held_path)])
        real_eval = held_out_samples(
            data.parent / "held-out-real", args.real_turns, args.resize, turn_seed + fold
        )
        link_folder(data.parent / "seen-real", trained_real)
        seen_eval = held_out_samples(  # the trained-on real films at other turns
            data.parent / "seen-real", args.real_turns, args.resize, turn_seed + 100 + fold
        )
        seed = fold_seed([name for name, _ in files], {n for n, _ in trained_real}, args.seed)
        for network in args.networks:
            version = f"{network}-fold{fold}-seed{seed}"
            out = workdir / "models"
            timing_file = workdir / "timings" / f"{version}.json"
            if (out / version).exists() and timing_file.is_file():
                console.print(f"[yellow]{version} exists: evaluated again, not retrained[/]")
            else:
                config = train_config(args, network, data, out, seed, version, init)
                load = os.getloadavg()[0]
                started = time.perf_counter()
                train_orientation(config)
                wall = time.perf_counter() - started
                timing_file.parent.mkdir(parents=True, exist_ok=True)
                timing = {"wall_seconds": round(wall, 1), "load_average_before": round(load, 2)}
                timing_file.write_text(json.dumps(timing) + "\n", encoding="utf-8")
            timing = json.loads(timing_file.read_text(encoding="utf-8"))
            card = json.loads((out / version / "model.json").read_text(encoding="utf-8"))
            model = load_model(out / version)
            row = {
                "fold": fold,
                "held_out_real": held_name,
                "network": network,
                "init": "ImageNet" if network == "vgg16" else "random",
                "fine_tune": card["training_data"]["fine_tune"],
                "seed": seed,
                "epochs_run": card["training_data"]["epochs_run"],
                "best_epoch": card["training_data"]["best_epoch"],
                "train_seconds": card["training_data"]["train_seconds"],
                "wall_seconds": timing["wall_seconds"],
                "load_average_before": timing["load_average_before"],
                "train_samples": card["training_data"]["train_samples"],
                "validation_samples": card["training_data"]["validation_samples"],
                "synthetic": figures(evaluate_model(model, synthetic_eval)),
                "real": figures(evaluate_model(model, real_eval)),
                "seen_real": figures(evaluate_model(model, seen_eval)),
            }
            rows.append(row)
            console.print(
                f"fold {fold} ({held_name} held out) {network}: synthetic MAE "
                f"{row['synthetic']['mae_deg']}°, real MAE {row['real']['mae_deg']}° (trained-on "
                f"real films at new turns {row['seen_real']['mae_deg']}°), "
                f"{row['train_seconds']} s training, {row['wall_seconds']} s in all"
            )
    return {
        "benchmark": "orientation_few_films",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "real_films": {name: str(path) for name, path in real},
        "rows": rows,
        "summary": summarise(rows),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per network: the mean over folds of each figure, and of the training time."""
    out: dict[str, dict[str, float]] = {}
    for network in dict.fromkeys(row["network"] for row in rows):
        mine = [row for row in rows if row["network"] == network]
        summary: dict[str, float] = {"folds": len(mine)}
        for part in ("synthetic", "real", "seen_real"):
            for key in ("mae_deg", "within_4deg_pct", "four_way_pct"):
                summary[f"{part}_{key}"] = round(float(np.mean([r[part][key] for r in mine])), 2)
        summary["train_seconds"] = round(float(np.mean([r["train_seconds"] for r in mine])), 1)
        summary["wall_seconds"] = round(float(np.mean([r["wall_seconds"] for r in mine])), 1)
        out[network] = summary
    return out


def print_table(result: dict[str, Any]) -> None:
    table = Table(box=box.SIMPLE_HEAD, title="orientation from few films (held-out films)")
    for column in ("fold / held-out real", "network", "syn MAE", "syn ≤4°", "syn 4-way",
                   "real MAE", "real ≤4°", "real 4-way", "seen MAE", "train s", "run s",
                   "epochs (best)"):  # fmt: skip
        table.add_column(column, justify="left" if column[0] in "fn" else "right", no_wrap=True)
    for row in result["rows"]:
        syn, real = row["synthetic"], row["real"]
        table.add_row(
            f"{row['fold']} / {row['held_out_real']}",
            f"{row['network']}/{row['init']}/{row['fine_tune']}",
            f"{syn['mae_deg']:.1f}°",
            f"{syn['within_4deg_pct']:.1f} %",
            f"{syn['four_way_pct']:.1f} %",
            f"{real['mae_deg']:.1f}°",
            f"{real['within_4deg_pct']:.1f} %",
            f"{real['four_way_pct']:.1f} %",
            f"{row['seen_real']['mae_deg']:.1f}°",
            f"{row['train_seconds']:.0f}",
            f"{row['wall_seconds']:.0f}",
            f"{row['epochs_run']} ({row['best_epoch']})",
        )
    for network, s in result["summary"].items():
        table.add_row(
            f"mean of {int(s['folds'])}",
            network,
            f"{s['synthetic_mae_deg']:.1f}°",
            f"{s['synthetic_within_4deg_pct']:.1f} %",
            f"{s['synthetic_four_way_pct']:.1f} %",
            f"{s['real_mae_deg']:.1f}°",
            f"{s['real_within_4deg_pct']:.1f} %",
            f"{s['real_four_way_pct']:.1f} %",
            f"{s['seen_real_mae_deg']:.1f}°",
            f"{s['train_seconds']:.0f}",
            f"{s['wall_seconds']:.0f}",
            "",
        )
    console.print(table)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("var/bench/orientation-few-films"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--synthetic-films", type=int, default=30)
    parser.add_argument("--rotations", type=int, default=12, help="turns per training film")
    parser.add_argument("--resize", type=int, default=112)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--resnet-epochs", type=int, default=60)
    parser.add_argument("--resnet-lr", type=float, default=2e-3)
    parser.add_argument("--vgg-epochs", type=int, default=10)
    parser.add_argument("--vgg-lr", type=float, default=1e-4)
    parser.add_argument("--vgg-fine-tune", default="conv5", choices=["conv5", "conv4", "fc", "all"])
    parser.add_argument("--held-out-films", type=int, default=24)
    parser.add_argument("--held-out-turns", type=int, default=8)
    parser.add_argument("--real-turns", type=int, default=36)
    parser.add_argument("--folds", default="0,1,2", help="real films held out, by index")
    parser.add_argument("--networks", default="resnet10,vgg16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, help="converted VGG16 init (default: made here)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.folds = [int(f) for f in str(args.folds).split(",") if f.strip()]
    args.networks = [n.strip() for n in str(args.networks).split(",") if n.strip()]
    if not set(args.networks) <= {"resnet10", "vgg16"}:
        parser.error("--networks takes resnet10 and/or vgg16")
    if not set(args.folds) <= set(range(len(REAL_FILMS))):
        parser.error(f"--folds are indices 0..{len(REAL_FILMS) - 1}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_table(result)
    path = args.json or Path(args.workdir) / "orientation-few-films.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
