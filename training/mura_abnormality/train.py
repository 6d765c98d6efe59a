"""Training a MURA abnormality model (paper 001) into a complete model folder.

``train_mura(config)`` loads labelled views (``data``: MURA's folder, DICOM studies with a
labels CSV, or synthetic studies), splits them by patient into training and validation
(and a test part where no held-out set exists), and trains the network of
``pipelines.mura_abnormality.network`` with:

* the paper's input (224 × 224, [−1, 1]) and head (dropout 0.2, batch norm, extra linear
  layers, He init); every layer trained ("Layers freezed: None", the paper's best);
* batches of 64 and Adam (β = 0.9, 0.999) at lr 1e-4, the paper's Table 1 rate;
* MURA's class weighting (the paper's dataset and baseline): per study type T, an
  abnormal image weighs w_T,1 = |N_T| / (|A_T| + |N_T|) and a normal one w_T,0 =
  |A_T| / (|A_T| + |N_T|) in the binary cross-entropy, |A_T| and |N_T| the abnormal and
  normal training images of T; each image carries its study's label;
* MURA's augmentation (random lateral inversion, rotation up to 30°) and its schedule:
  the learning rate divided by 10 when the validation loss stops falling (PyTorch's
  ``ReduceLROnPlateau``, as paper 004 also uses);
* the epoch with the lowest validation loss kept (the best checkpoint);
* the decision threshold chosen on the validation studies (``evaluate.choose_threshold``:
  the highest Cohen's kappa) and kept on the model card.

The kept network is written with its card into ``out_dir/<version>`` (a staged folder
renamed into place at the end), loaded back as the pipeline loads it and evaluated on
held-out studies: MURA's ``valid`` split, else a test part of the patients, else (for
synthetic data) freshly made studies from another seed. The report (``evaluate``) — per
region and overall: accuracy, F1, Cohen's kappa, AUROC, sensitivity at the threshold — is
the card's ``metrics`` (with its table), ``evaluation.json``, ``evaluation.md`` and
``roc.png``. On synthetic studies the share of abnormal held-out views whose Grad-CAM
maximum falls on the lesion is measured too.

Presets (``PRESETS``; times on this project's shared 2-core CPU, README): ``paper``
(DenseNet-169, 224, batch 64, lr 1e-4, 20 epochs: a GPU run on MURA), ``cpu`` (DenseNet-121
at 128 on synthetic studies, about 25 minutes), ``demo`` (about 2 minutes) and ``smoke``
(about 25 s) with the tiny DenseNet. The CPU presets train on matched normal/abnormal pairs
of synthetic studies with hardware, the abnormality a network from random weights learns
in minutes on a CPU (README: "Why hardware, pairs and a tiny DenseNet on a CPU"). Threads
are the caller's business (``torch.set_num_threads``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.model_store import ModelCard, check_version, new_version, write_model_card
from pipelines.mura_abnormality.model import PIPELINE_NAME, load_model
from pipelines.mura_abnormality.network import (
    ARCHITECTURES,
    DEFAULT_HEAD,
    HEAD_DROPOUT,
    build_network,
    load_imagenet_weights,
)
from pipelines.mura_abnormality.preprocess import InputSpec, from_8bit
from training.contract import Presets, Trainer
from training.mura_abnormality.data import (
    MuraView,
    ViewSet,
    has_split,
    load_dicom_studies,
    load_mura_folder,
    make_synthetic,
    split_by_patient,
)
from training.mura_abnormality.evaluate import (
    EvaluationReport,
    StudyPrediction,
    choose_threshold,
    evaluate_studies,
    gradcam_lesion_check,
    write_evaluation,
)
from training.runs import (
    check_loss_finite,
    int_seed,
    progress_bars,
    progress_callback,
    staged_folder,
    write_weights_and_card,
)

logger = logging.getLogger(__name__)

Source = Literal["mura", "dicom", "synthetic"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; ``validate`` says what does not fit together.

    The data source is exactly one of ``mura_dir`` (MURA's folder), ``data_dir`` with
    ``labels_csv`` (DICOM studies), or ``synthetic_studies`` > 0.
    """

    out_dir: Path = Path("var/models/mura_abnormality")
    mura_dir: Path | None = None
    data_dir: Path | None = None
    labels_csv: Path | None = None
    synthetic_studies: int = 0
    #: Held-out synthetic studies (another seed) for the evaluation; None: 40.
    synthetic_test_studies: int | None = None
    #: Side in pixels the synthetic films are made at; None: twice the input size.
    synthetic_image_size: int | None = None
    abnormal_fraction: float = 0.5
    #: Abnormalities of the synthetic studies (``msk_films.ABNORMALITIES``); empty: all.
    synthetic_abnormalities: tuple[str, ...] = ()
    #: Train on matched normal/abnormal pairs of synthetic studies (``data.make_synthetic``),
    #: a pair in the same batch and augmented alike.
    synthetic_pairs: bool = False
    architecture: str = "densenet169"
    head: tuple[int, ...] = DEFAULT_HEAD
    dropout: float = HEAD_DROPOUT
    size: int = 224
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    #: Epochs without a lower validation loss before the rate is divided by 10.
    plateau_patience: int = 1
    augment: bool = True
    rotate_deg: float = 30.0
    class_weights: bool = True
    #: A local torchvision DenseNet state dict (ImageNet) for the base; None: random.
    init_weights: Path | None = None
    val_fraction: float = 0.1
    #: Patients held out for the evaluation when the data has no held-out part of its own.
    test_fraction: float = 0.2
    #: Wall-clock budget (s) for the epochs; None: none.
    time_limit_s: float | None = None
    seed: int = 0
    version: str | None = None
    progress: bool = True

    @property
    def spec(self) -> InputSpec:
        return InputSpec(size=self.size)

    @property
    def source(self) -> Source:
        if self.mura_dir is not None:
            return "mura"
        if self.data_dir is not None or self.labels_csv is not None:
            return "dicom"
        return "synthetic"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        given = [
            self.mura_dir is not None,
            self.data_dir is not None or self.labels_csv is not None,
            self.synthetic_studies > 0,
        ]
        if sum(given) != 1:
            raise ValueError(
                "give exactly one data source: mura_dir (MURA's folder), data_dir with "
                "labels_csv (DICOM studies), or synthetic_studies > 0"
            )
        if (self.data_dir is None) != (self.labels_csv is None):
            raise ValueError("DICOM studies need both data_dir and labels_csv")
        InputSpec(size=self.size)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r} (known: {', '.join(ARCHITECTURES)})"
            )
        if not self.head or any(int(h) < 1 for h in self.head):
            raise ValueError("head needs at least one positive hidden width")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be at least 1 and batch_size at least 2")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            raise ValueError("lr must be a positive number and weight_decay not negative")
        if self.plateau_patience < 0 or not 0.0 <= self.rotate_deg <= 180.0:
            raise ValueError("plateau_patience must be >= 0 and rotate_deg in [0, 180]")
        if not 0.0 < self.val_fraction < 1.0 or not 0.0 <= self.test_fraction < 1.0:
            raise ValueError("val_fraction must be in (0, 1) and test_fraction in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must leave patients to train on")
        if not 0.0 < self.abnormal_fraction < 1.0:
            raise ValueError("abnormal_fraction must be in (0, 1)")
        if self.synthetic_test_studies is not None and self.synthetic_test_studies < 2:
            raise ValueError("synthetic_test_studies must be at least 2")
        from training.synthetic.msk_films import ABNORMALITIES

        unknown = sorted(set(self.synthetic_abnormalities) - set(ABNORMALITIES))
        if unknown:
            raise ValueError(
                f"unknown synthetic abnormalities {unknown} (known: {', '.join(ABNORMALITIES)})"
            )
        if self.synthetic_image_size is not None and self.synthetic_image_size < self.size:
            raise ValueError("synthetic_image_size must be at least the input size")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError("time_limit_s must be a positive number of seconds")
        if self.version is not None:
            check_version(self.version)

    def summary(self) -> dict[str, Any]:
        """The settings as JSON-ready values (paths as strings)."""
        return {
            key: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for key, v in asdict(self).items()
        }


def _real_data_replaces_synthetic(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A preset's synthetic studies give way to real data among the overrides."""
    if any(overrides.get(k) is not None for k in ("mura_dir", "data_dir", "labels_csv")):
        return replace(config, synthetic_studies=0)
    return config


PRESETS: Presets[TrainConfig] = Presets(
    {
        # The paper's recipe (224, [-1, 1], batch 64, Adam 1e-4, DenseNet-169 + head, no
        # frozen layers) for 20 epochs on MURA: a GPU run. --init FILE starts the base from
        # local ImageNet DenseNet weights, as the paper did.
        "paper": TrainConfig(),
        # A CPU-sized DenseNet-121 on synthetic studies with hardware (the abnormality a
        # network from random weights picks up on a CPU; see the README), matched pairs;
        # about half an hour on 2 cores.
        "cpu": TrainConfig(
            architecture="densenet121",
            size=128,
            synthetic_studies=480,
            synthetic_test_studies=100,
            synthetic_abnormalities=("hardware",),
            synthetic_pairs=True,
            epochs=12,
            batch_size=32,
            lr=1e-3,
            plateau_patience=3,
            time_limit_s=2400.0,
        ),
        # `dicom-node demo`: the tiny DenseNet on synthetic studies, about 2-3 minutes.
        "demo": TrainConfig(
            architecture="densenet_tiny",
            head=(128, 64),
            size=96,
            synthetic_studies=400,
            synthetic_test_studies=60,
            synthetic_abnormalities=("hardware",),
            synthetic_pairs=True,
            epochs=25,
            batch_size=32,
            lr=3e-3,
            plateau_patience=10,
            rotate_deg=0.0,  # lateral inversion only
            time_limit_s=240.0,
        ),
        # The CI smoke test: about 25 s on two idle cores (a fixed number of steps, no time
        # limit, so that the test's model is the same on a busy machine).
        "smoke": TrainConfig(
            architecture="densenet_tiny",
            head=(128, 64),
            size=64,
            synthetic_studies=160,
            synthetic_test_studies=40,
            synthetic_abnormalities=("hardware",),
            synthetic_pairs=True,
            epochs=20,
            batch_size=32,
            lr=3e-3,
            plateau_patience=10,
            augment=False,
        ),
    },
    adjust=_real_data_replaces_synthetic,
)


def preset(name: str, **overrides: Any) -> TrainConfig:
    """``TrainConfig`` from a named preset with ``overrides`` (None keeps the preset's)."""
    return PRESETS.build(name, **overrides)


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_auroc: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class TrainedModel:
    """A finished model folder, its card, its evaluation and how it got there."""

    folder: Path
    card: ModelCard
    report: EvaluationReport
    gradcam: dict[str, Any] | None = None
    history: list[EpochStats] = field(default_factory=list)


# -- data ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Splits:
    train: list[MuraView]
    validation: list[MuraView]
    test: list[MuraView]
    evaluated_on: str
    loaded: ViewSet


def load_splits(config: TrainConfig, seeds: list[np.random.SeedSequence], progress: Any) -> Splits:
    """The training, validation and test views of ``config``'s source."""
    spec = config.spec
    load_bar = progress_callback(progress, "loading views")
    if config.source == "synthetic":
        loaded = make_synthetic(
            config.synthetic_studies,
            seed=int_seed(seeds[0]),
            size=spec.size,
            image_size=config.synthetic_image_size or 2 * spec.size,
            abnormal_fraction=config.abnormal_fraction,
            kinds=config.synthetic_abnormalities,
            paired=config.synthetic_pairs,
            advance=load_bar,
        )
        train, validation = split_by_patient(
            loaded.views, [config.val_fraction], int_seed(seeds[1])
        )
        count = config.synthetic_test_studies or 40
        test = make_synthetic(
            count,
            seed=int_seed(seeds[3]),
            size=spec.size,
            image_size=config.synthetic_image_size or 2 * spec.size,
            abnormal_fraction=config.abnormal_fraction,
            kinds=config.synthetic_abnormalities,
            prefix="held-out",
            advance=progress_callback(progress, "held-out studies"),
        ).views
        return Splits(
            train, validation, test, f"{count} synthetic studies from another seed", loaded
        )
    if config.source == "mura":
        assert config.mura_dir is not None
        loaded = load_mura_folder(config.mura_dir, "train", size=spec.size, advance=load_bar)
        if has_split(config.mura_dir, "valid"):
            held_out = load_mura_folder(
                config.mura_dir,
                "valid",
                size=spec.size,
                advance=progress_callback(progress, "MURA valid split"),
            )
            train, validation = split_by_patient(
                loaded.views, [config.val_fraction], int_seed(seeds[1])
            )
            return Splits(train, validation, held_out.views, "MURA's valid split", loaded)
    else:
        assert config.data_dir is not None and config.labels_csv is not None
        loaded = load_dicom_studies(
            config.data_dir, config.labels_csv, size=spec.size, advance=load_bar
        )
    fractions = [config.val_fraction] + ([config.test_fraction] if config.test_fraction else [])
    parts = split_by_patient(loaded.views, fractions, int_seed(seeds[1]))
    if config.test_fraction and parts[2]:
        return Splits(
            parts[0],
            parts[1],
            parts[2],
            f"test split ({config.test_fraction:.0%} of the patients)",
            loaded,
        )
    return Splits(
        parts[0],
        parts[1],
        parts[1],
        "validation split (it also chose the epoch and threshold)",
        loaded,
    )


def class_weights(views: list[MuraView]) -> dict[str, tuple[float, float]]:
    """MURA's weights per study type: region → (w_0 for a normal image, w_1 for an abnormal)."""
    weights = {}
    for region in sorted({v.region for v in views}):
        labels = [v.label for v in views if v.region == region]
        abnormal, normal = sum(labels), len(labels) - sum(labels)
        total = abnormal + normal
        weights[region] = (abnormal / total, normal / total) if abnormal and normal else (0.5, 0.5)
    return weights


def sample_weights(
    views: list[MuraView], weights: Mapping[str, tuple[float, float]] | None
) -> torch.Tensor:
    if weights is None:
        return torch.ones(len(views))
    return torch.tensor(
        [weights.get(v.region, (0.5, 0.5))[v.label] for v in views], dtype=torch.float32
    )


def augment_batch(
    batch: torch.Tensor,
    rng: np.random.Generator,
    rotate_deg: float,
    groups: list[str] | None = None,
) -> torch.Tensor:
    """MURA's augmentation on a (N, C, S, S) batch: each image mirrored left-right with
    probability ½ and turned by a uniform angle in [−rotate_deg, rotate_deg] (edges
    extended). Images of one of ``groups`` (a matched pair) get the same transform."""
    count = len(batch)
    names = groups if groups is not None else [str(i) for i in range(count)]
    unique = sorted(set(names))
    which = np.array([unique.index(name) for name in names])
    angles = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg, len(unique)))[which]
    flips = np.where(rng.random(len(unique)) < 0.5, -1.0, 1.0)[which]
    theta = np.zeros((count, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = np.cos(angles) * flips
    theta[:, 0, 1] = -np.sin(angles)
    theta[:, 1, 0] = np.sin(angles) * flips
    theta[:, 1, 1] = np.cos(angles)
    grid = F.affine_grid(torch.from_numpy(theta), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)


def epoch_order(views: list[MuraView], rng: np.random.Generator, *, by_patient: bool) -> np.ndarray:
    """The order of one epoch: shuffled views, or shuffled patients each with its views
    together (a matched pair of synthetic studies then shares a batch)."""
    if not by_patient:
        return rng.permutation(len(views))
    groups: dict[str, list[int]] = {}
    for index, view in enumerate(views):
        groups.setdefault(view.patient, []).append(index)
    keys = sorted(groups)
    return np.array([i for g in rng.permutation(len(keys)) for i in groups[keys[int(g)]]])


def _images(views: list[MuraView]) -> torch.Tensor:
    return torch.from_numpy(np.stack([v.image for v in views]))


@torch.inference_mode()
def view_probabilities(
    network: torch.nn.Module, views: list[MuraView], spec: InputSpec, *, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probabilities) of ``views`` from ``network`` in eval mode."""
    network.eval()
    logits = []
    for start in range(0, len(views), batch_size):
        batch = from_8bit(_images(views[start : start + batch_size]), spec)
        logits.append(network(batch).float().reshape(-1))
    out = torch.cat(logits) if logits else torch.zeros(0)
    return out.double().numpy(), torch.sigmoid(out).double().numpy()


def study_predictions(views: list[MuraView], probabilities: np.ndarray) -> list[StudyPrediction]:
    """Each study's probability: the mean over its views (MURA's rule)."""
    by_study: dict[str, list[int]] = {}
    for index, view in enumerate(views):
        by_study.setdefault(view.study, []).append(index)
    return [
        StudyPrediction(
            study=study,
            region=views[indices[0]].region,
            label=views[indices[0]].label,
            probability=float(np.mean(probabilities[indices])),
            views=len(indices),
        )
        for study, indices in by_study.items()
    ]


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """MURA's loss: −w_T,1·y·log p − w_T,0·(1 − y)·log(1 − p), averaged over the batch."""
    return F.binary_cross_entropy_with_logits(logits, labels, weight=weights)


# -- training ------------------------------------------------------------------------------


def train_mura(config: TrainConfig) -> TrainedModel:
    """Train, keep the best epoch, choose the threshold, write and evaluate the folder."""
    config.validate()
    version = config.version or new_version()
    out_dir = Path(config.out_dir)
    if (out_dir / version).exists():
        raise FileExistsError(
            f"model folder {out_dir / version} already exists; choose another version"
        )
    seeds = np.random.SeedSequence(config.seed).spawn(4)  # data, split, training, test
    spec = config.spec
    started = time.perf_counter()
    with progress_bars(config.progress) as progress:
        splits = load_splits(config, seeds, progress)
        data_seconds = time.perf_counter() - started
        train, validation = splits.train, splits.validation
        if len(train) < 2 or not validation:
            raise ValueError(
                f"{len(train)} training and {len(validation)} validation views: too few to train"
            )
        torch.manual_seed(int_seed(seeds[2]))
        rng = np.random.default_rng(seeds[2])
        network = build_network(config.architecture, head=config.head, dropout=config.dropout)
        init: dict[str, Any] | str = "random (He init of the head, MONAI's of the DenseNet)"
        if config.init_weights is not None:
            state = torch.load(config.init_weights, map_location="cpu", weights_only=True)
            copied = load_imagenet_weights(network, state.get("state_dict", state))
            init = {"file": Path(config.init_weights).name, "tensors": copied}
        weights = class_weights(train) if config.class_weights else None
        train_weights = sample_weights(train, weights)
        val_weights = sample_weights(validation, weights)
        train_labels = torch.tensor([float(v.label) for v in train])
        val_labels = torch.tensor([float(v.label) for v in validation])
        train_images = _images(train)
        optimizer = torch.optim.Adam(
            network.parameters(), lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay
        )
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.1, patience=config.plateau_patience
        )
        steps = math.ceil(len(train) / config.batch_size)
        task = progress.add_task("training", total=config.epochs * steps, status="")
        history: list[EpochStats] = []
        best_loss, best_epoch = math.inf, 0
        best_state: dict[str, torch.Tensor] | None = None
        best_val: np.ndarray | None = None
        train_started = time.perf_counter()
        stopped = False
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            network.train()
            order = epoch_order(train, rng, by_patient=config.synthetic_pairs)
            total, seen = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                if (
                    config.time_limit_s is not None
                    and time.perf_counter() - train_started > config.time_limit_s
                ):
                    stopped = True
                    break
                chosen = torch.from_numpy(order[start : start + config.batch_size])
                progress.advance(task)
                if len(chosen) < 2:  # batch norm needs two
                    continue
                batch = from_8bit(train_images[chosen], spec)
                if config.augment:
                    groups = [train[int(i)].patient for i in chosen]
                    batch = augment_batch(batch, rng, config.rotate_deg, groups)
                optimizer.zero_grad(set_to_none=True)
                loss = weighted_bce(
                    network(batch).reshape(-1), train_labels[chosen], train_weights[chosen]
                )
                value = float(loss.item())
                check_loss_finite(
                    value, step=epoch, lr=optimizer.param_groups[0]["lr"], unit="epoch"
                )
                loss.backward()
                optimizer.step()
                total += value * len(chosen)
                seen += len(chosen)
            if seen == 0:
                break
            logits, probabilities = view_probabilities(network, validation, spec)
            val_loss = float(
                weighted_bce(torch.from_numpy(logits).float(), val_labels, val_weights)
            )
            studies = study_predictions(validation, probabilities)
            val_auroc = evaluate_studies(studies, 0.5).overall.auroc
            lr = optimizer.param_groups[0]["lr"]
            history.append(
                EpochStats(
                    epoch,
                    total / seen,
                    val_loss,
                    val_auroc,
                    lr,
                    time.perf_counter() - epoch_started,
                )
            )
            if val_loss < best_loss:
                best_loss, best_epoch, best_val = val_loss, epoch, probabilities
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            plateau.step(val_loss)
            progress.update(
                task,
                description=f"epoch {epoch}/{config.epochs}",
                status=f"loss {total / seen:.3f} · val loss {val_loss:.3f} · val AUROC {val_auroc:.3f} (best epoch {best_epoch})",
            )
            logger.info(
                "epoch %d: train loss %.4f, val loss %.4f, val AUROC %.3f",
                epoch,
                total / seen,
                val_loss,
                val_auroc,
            )
            if stopped:
                break
        train_seconds = time.perf_counter() - train_started
    if best_state is None or best_val is None:
        raise ValueError("no epoch finished within the time limit: give more time")
    val_studies = study_predictions(validation, best_val)
    threshold = choose_threshold(
        [s.label for s in val_studies], [s.probability for s in val_studies]
    )
    summary = {
        **splits.loaded.report.to_json(),
        **splits.loaded.extra,
        "train_views": len(train),
        "validation_views": len(validation),
        "validation_studies": len(val_studies),
        "test_views": len(splits.test),
        "evaluated_on": splits.evaluated_on,
        "seed": config.seed,
        "epochs": config.epochs,
        "epochs_run": len(history),
        "stopped_by_time_limit": stopped,
        "best_epoch": best_epoch,
        "best_validation_loss": round(best_loss, 6),
        "optimizer": f"Adam(lr={config.lr:g}, betas=(0.9, 0.999), weight_decay={config.weight_decay:g})",
        "schedule": f"ReduceLROnPlateau(factor=0.1, patience={config.plateau_patience}) on validation loss",
        "loss": "binary cross-entropy with MURA's class weights per study type"
        if weights
        else "binary cross-entropy",
        "class_weights": {
            r: {"normal": round(w[0], 4), "abnormal": round(w[1], 4)}
            for r, w in (weights or {}).items()
        },
        "augmentation": f"lateral inversion, rotation up to {config.rotate_deg:g} deg"
        if config.augment
        else "none",
        "batch_size": config.batch_size,
        "init": init,
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    calibration = {
        "threshold": round(threshold, 6),
        "chosen_by": "highest Cohen's kappa on the validation studies",
        "validation_studies": len(val_studies),
    }
    return _write_model_folder(
        out_dir, version, config, best_state, summary, calibration, splits, history
    )


def _write_model_folder(
    out_dir: Path,
    version: str,
    config: TrainConfig,
    state: dict[str, torch.Tensor],
    summary: dict[str, Any],
    calibration: dict[str, Any],
    splits: Splits,
    history: list[EpochStats],
) -> TrainedModel:
    with staged_folder(out_dir, version) as staging:
        card = write_weights_and_card(
            staging,
            pipeline=PIPELINE_NAME,
            version=version,
            architecture=config.architecture,
            input_spec=config.spec.to_json(),
            state=state,
            training_data=summary,
        )
        card = replace(
            card,
            architecture={
                "name": config.architecture,
                "head": list(config.head),
                "dropout": config.dropout,
            },
            calibration=calibration,
        )
        write_model_card(staging, card)
        model = load_model(staging)  # as the pipeline loads it
        started = time.perf_counter()
        probabilities = model.probabilities(
            from_8bit(_images(splits.test), model.spec), batch_size=64
        )
        report = evaluate_studies(study_predictions(splits.test, probabilities), model.threshold)
        gradcam = gradcam_lesion_check(model, splits.test) if config.source == "synthetic" else None
        metrics: dict[str, Any] = {**report.metrics(), "evaluated_on": splits.evaluated_on}
        if gradcam is not None:
            metrics["gradcam"] = gradcam
        metrics["evaluation_seconds"] = round(time.perf_counter() - started, 1)
        write_evaluation(
            report,
            staging,
            extra={
                "history": [asdict(h) for h in history],
                "config": config.summary(),
                "gradcam": gradcam,
            },
            title=f"{PIPELINE_NAME} {version} ({config.architecture}, {config.source}): {splits.evaluated_on}",
        )
        card = replace(card, metrics=metrics)
        write_model_card(staging, card)
    folder = out_dir / version
    logger.info("model %s written to %s: AUROC %.3f", version, folder, report.overall.auroc)
    return TrainedModel(folder=folder, card=card, report=report, gradcam=gradcam, history=history)


#: This trainer as the node and the demo see it (``training.contract``).
TRAINER: Trainer[TrainConfig] = Trainer(
    pipeline=PIPELINE_NAME, config_type=TrainConfig, presets=PRESETS, train=train_mura
)
